//! The rules for what a profile may hold, in one place for every front end: names, URLs,
//! client ids, scopes and notes, each checked where it enters (the CLI and the app's form).

use super::model::Provider;

/// A value a profile cannot hold; the message says what to type instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

macro_rules! invalid_err {
    ($($arg:tt)*) => {
        Invalid(format!($($arg)*))
    };
}

macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err(invalid_err!($($arg)*))
    };
}

/// A visible ASCII character (RFC 6749 appendix A, VSCHAR).
pub fn is_vschar(c: char) -> bool {
    ('\x20'..='\x7e').contains(&c)
}

/// Names that work unquoted in shells and URLs.
pub fn validate_name(name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        invalid!(
            "invalid profile name '{}': use up to 64 letters, digits, '-', '_' or '.', not starting with '.'",
            crate::display::untrusted(name)
        );
    }
    Ok(())
}

/// A group's name: what a profile name may be, lower case (filters match groups without
/// regard to case, so `Payroll` and `payroll` must not be two groups), and not `none`, which
/// the filter's `group:none` keeps for profiles without one.
pub fn validate_group(text: &str) -> Result<String, Invalid> {
    let ok = validate_name(text).is_ok()
        && !text.chars().any(|c| c.is_ascii_uppercase())
        && text != "none";
    if !ok {
        invalid!(
            "invalid group '{}': use up to 64 lower-case letters, digits, '-', '_' or '.', not starting with '.' and not 'none'",
            crate::display::untrusted(text)
        );
    }
    Ok(text.to_string())
}

/// Every rule `add` and `edit` enforce, for a profile that came another way (an `import`ed
/// file): its name, endpoints (no plain http:// off this machine), redirect URI, client id,
/// scopes, notes, extra authorize parameters and `exec` variable.
pub fn check_profile(p: &crate::vault::Profile) -> Result<(), Invalid> {
    validate_name(&p.name)?;
    if let Some(group) = &p.group {
        validate_group(group)?;
    }
    check_where_secrets_go(p)?;
    if !p.redirect_uri.is_empty() {
        validate_redirect_uri(&p.redirect_uri)?;
    }
    validate_client_id(&p.client_id)?;
    validate_scopes(&p.scope_string())?;
    validate_notes(&p.notes)?;
    for (key, value) in &p.authorize_params {
        check_authorize_param(key, value)?;
    }
    Ok(())
}

/// A stored profile that sends its secrets where `add` and `edit` would not (a hand edit, an
/// older build): nothing of it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "profile '{name}' breaks a rule ({why}): nothing of it is used; fix it with `tokdeck edit {name}`"
)]
pub struct Broken {
    pub name: String,
    pub why: Invalid,
}

/// Checks the stored `profile`, where it is used, against [`check_where_secrets_go`].
pub fn check_stored(profile: &crate::vault::Profile) -> Result<(), Broken> {
    check_where_secrets_go(profile).map_err(|why| Broken {
        name: crate::display::untrusted(&profile.name).into_owned(),
        why,
    })
}

/// The rules about where a profile's secrets go, checked again wherever a stored profile is
/// used (a hand edit or an older build may hold anything): its endpoints and issuer (no plain
/// http:// off this machine) and its `exec` variable (none that makes programs load code).
pub fn check_where_secrets_go(p: &crate::vault::Profile) -> Result<(), Invalid> {
    let e = &p.endpoints;
    if !e.explicit || !e.base_url.is_empty() {
        validate_base_url(&e.base_url)?;
    }
    for (what, url) in [
        ("authorize URL", &e.authorize_url),
        ("token URL", &e.token_url),
        ("revoke URL", &e.revoke_url),
        ("introspection URL", &e.introspect_url),
        ("device URL", &e.device_url),
        ("userinfo URL", &e.userinfo_url),
    ] {
        if let Some(url) = url {
            validate_endpoint_url(what, url)?;
        }
    }
    if let Some(issuer) = &p.issuer {
        validate_endpoint_url("issuer", issuer)?;
    }
    if let Some(var) = &p.env_var {
        validate_env_var(var)?;
    }
    Ok(())
}

use crate::http::is_loopback_host;

/// An endpoint base URL: https, or http on loopback only; no credentials, query or fragment.
pub fn validate_base_url(text: &str) -> Result<String, Invalid> {
    let url = url::Url::parse(text.trim()).map_err(|e| {
        invalid_err!("invalid URL '{text}' ({e}): use e.g. https://api.example.com")
    })?;
    let host = url
        .host()
        .ok_or_else(|| invalid_err!("invalid URL '{text}': it names no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        invalid!(
            "the URL holds a user name or password, which would be printed in every authorize URL: remove the 'user:password@' part"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        invalid!(
            "a base URL takes no '?query' or '#fragment' (they would break every endpoint built from it): use e.g. https://api.example.com"
        );
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            invalid!("refusing http:// for {host}: secrets would travel unencrypted; use https://")
        }
        other => invalid!("invalid URL '{text}': scheme {other} is not http(s)"),
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// An endpoint URL (`--token-url` and kin, or one a metadata document names): https, or http
/// on loopback only; no credentials or fragment. Kept as given: a trailing slash can matter.
pub fn validate_endpoint_url(what: &str, text: &str) -> Result<String, Invalid> {
    let text = text.trim();
    let url = url::Url::parse(text).map_err(|e| {
        invalid_err!(
            "invalid {what} '{}' ({e}): use e.g. https://auth.example.com/oauth/token",
            crate::display::untrusted(text)
        )
    })?;
    let host = url
        .host()
        .ok_or_else(|| invalid_err!("invalid {what} '{text}': it names no host"))?;
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        invalid!(
            "the {what} '{}' holds a user name, password or '#fragment': give the plain endpoint URL",
            crate::display::untrusted(text)
        );
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => invalid!(
            "refusing http:// for the {what} on {host}: secrets would travel unencrypted; use https://"
        ),
        other => invalid!("invalid {what} '{text}': scheme {other} is not http(s)"),
    }
    Ok(text.to_string())
}

/// A redirect URI: the out-of-band URN or an absolute URL.
pub fn validate_redirect_uri(text: &str) -> Result<String, Invalid> {
    let text = text.trim();
    if text == "urn:ietf:wg:oauth:2.0:oob" {
        return Ok(text.into());
    }
    let url = url::Url::parse(text).map_err(|e| {
        invalid_err!("invalid redirect URI '{text}' ({e}): use the one registered with the OAuth app, e.g. urn:ietf:wg:oauth:2.0:oob")
    })?;
    if url.cannot_be_a_base() && url.scheme() != "urn" {
        invalid!("invalid redirect URI '{text}': use an absolute URL");
    }
    if url.fragment().is_some() {
        invalid!(
            "invalid redirect URI '{text}': OAuth forbids a '#fragment' in it (RFC 6749 3.1.2)"
        );
    }
    Ok(text.into())
}

/// Scopes as typed: space- or comma-separated.
fn parse_scopes(text: &str) -> Vec<String> {
    text.split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The server a new profile talks to, from `--provider` and `--base-url`.
pub fn provider_and_base(
    provider: Option<Provider>,
    base_url: Option<&str>,
) -> Result<(Provider, String), Invalid> {
    match (provider, base_url) {
        (None | Some(Provider::Custom), Some(url)) => {
            Ok((Provider::Custom, validate_base_url(url)?))
        }
        (Some(Provider::Custom), None) => {
            invalid!("--provider custom needs the server's address: add --base-url URL")
        }
        (Some(preset), Some(_)) => invalid!(
            "--provider {} has its own URL: drop --base-url, or use --base-url alone for another server",
            preset.flag()
        ),
        (preset, None) => {
            let preset = preset.unwrap_or(Provider::Factorial);
            let url = preset
                .base_url()
                .ok_or_else(|| invalid_err!("--provider custom needs --base-url URL"))?;
            Ok((preset, url.to_string()))
        }
    }
}

/// A client id as pasted from the OAuth application page: visible ASCII (RFC 6749
/// appendix A, VSCHAR).
pub fn validate_client_id(text: &str) -> Result<String, Invalid> {
    let id = text.trim();
    if id.is_empty() {
        invalid!("empty --client-id: copy it from the OAuth application page");
    }
    if !id.chars().all(is_vschar) {
        invalid!(
            "the client id '{}' holds characters a client id cannot have (only visible ASCII): copy it again from the OAuth application page",
            crate::display::untrusted(id)
        );
    }
    Ok(id.to_string())
}

/// Scopes as typed, space- or comma-separated; each a scope token (RFC 6749 3.3, NQCHAR:
/// visible ASCII but `"` and `\`).
pub fn validate_scopes(text: &str) -> Result<Vec<String>, Invalid> {
    let scopes = parse_scopes(text);
    let nqchar = |c: char| is_vschar(c) && !matches!(c, ' ' | '"' | '\\');
    if let Some(bad) = scopes.iter().find(|s| !s.chars().all(nqchar)) {
        invalid!(
            "the scope '{}' holds characters a scope cannot have (visible ASCII but quotes and backslashes): use the names the provider documents",
            crate::display::untrusted(bad)
        );
    }
    Ok(scopes)
}

/// Variables that change how programs load, run or reach the network: `exec` never puts a
/// token in one, because whoever chose the name would choose what runs. A denylist, not a
/// pattern such as `*_TOKEN`: the name is the one the program being run reads
/// (`GITHUB_TOKEN`, `FACTORIAL_API_KEY`, `BEARER`, ...), which no pattern foresees, while the
/// variables that act on loading and running are few and documented.
const RESERVED_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "SHELL",
    "ENV",
    "BASH_ENV",
    "IFS",
    "CDPATH",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "GLOBIGNORE",
    "ZDOTDIR",
    "TMPDIR",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
    "LESSOPEN",
    "LESSCLOSE",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCPATH",
    "NLSPATH",
    "RES_OPTIONS",
    "LOCALDOMAIN",
    "MALLOC_CHECK_",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
    "CLASSPATH",
    "RUBYOPT",
    "RUBYLIB",
    "PERLLIB",
    "SSH_ASKPASS",
    "SUDO_ASKPASS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Prefixes of variable families that act on loading and running: the dynamic loader
/// (`LD_PRELOAD`, `DYLD_INSERT_LIBRARIES`), Python, Perl, git's hooks and commands
/// (`GIT_SSH_COMMAND`, `GIT_EXEC_PATH`, `GIT_CONFIG_*`), and bash's exported functions.
const RESERVED_PREFIXES: &[&str] = &["LD_", "DYLD_", "PYTHON", "PERL5", "GIT_", "BASH_FUNC_"];

/// Why `name` is never set by `exec`, if it is reserved. Proxy variables are matched in any
/// case, as programs read them.
fn reserved_var(name: &str) -> Option<&'static str> {
    if RESERVED_VARS.contains(&name) {
        return Some("it changes how programs run");
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Some("its family changes how programs load or run");
    }
    if name.to_ascii_uppercase().ends_with("_PROXY") {
        return Some("it sends programs' traffic through a proxy");
    }
    None
}

/// An environment variable name for `exec`: letters, digits and `_`, not starting with a
/// digit, and none that changes how programs load or run (see `RESERVED_VARS`).
pub fn validate_env_var(text: &str) -> Result<String, Invalid> {
    let ok = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        invalid!(
            "'{}' is not a variable name: use letters, digits and '_', e.g. FACTORIAL_TOKEN",
            crate::display::untrusted(text)
        );
    }
    if let Some(why) = reserved_var(text) {
        invalid!(
            "tokdeck never puts a token in {text}: {why}; name the variable your program reads, e.g. FACTORIAL_TOKEN"
        );
    }
    Ok(text.to_string())
}

/// The authorize parameters tokdeck sets itself, which a profile cannot override.
const OWN_AUTHORIZE_PARAMS: [&str; 8] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource_owner_type",
];

/// An extra authorize parameter, `KEY=VALUE` (`prompt=consent`, `audience=...`): the key a
/// parameter name (letters, digits, `_`, `-`, `.`) other than those tokdeck sets, the value
/// printable text of at most 2,000 characters. An empty value (`KEY=`) means "remove it".
pub fn validate_authorize_param(text: &str) -> Result<(String, String), Invalid> {
    let Some((key, value)) = text.split_once('=') else {
        invalid!(
            "'{}' is not KEY=VALUE: write e.g. --authorize-param prompt=consent",
            crate::display::untrusted(text)
        );
    };
    check_authorize_param(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// The rules for one extra authorize parameter, given apart or as a profile holds it.
fn check_authorize_param(key: &str, value: &str) -> Result<(), Invalid> {
    let key_ok = !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !key_ok {
        invalid!(
            "'{}' is not an authorize parameter name: use letters, digits, '_', '-' and '.'",
            crate::display::untrusted(key)
        );
    }
    if OWN_AUTHORIZE_PARAMS.contains(&key) {
        invalid!(
            "tokdeck sets {key} itself: change it with the profile's own setting (`tokdeck edit`), not --authorize-param"
        );
    }
    if value.chars().count() > 2_000 || value.chars().any(char::is_control) {
        invalid!("the value of {key} must be printable text of at most 2,000 characters");
    }
    Ok(())
}

/// Notes: any printable text and newlines, but no other control characters.
pub fn validate_notes(text: &str) -> Result<String, Invalid> {
    if text.chars().any(|c| c.is_control() && c != '\n') {
        invalid!(
            "the notes hold control characters (escape sequences, tabs, ...): use printable text and newlines only"
        );
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shell_safe() {
        assert!(validate_name("acme-prod_1.x").is_ok());
        for bad in ["", "a b", "a/b", "ünï", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_only_on_loopback() {
        assert!(validate_base_url("https://api.example.com/").is_ok());
        assert_eq!(
            validate_base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(validate_base_url("http://localhost:1").is_ok());
        assert!(validate_base_url("http://[::1]:1").is_ok());
        let err = validate_base_url("http://api.example.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("use https://"), "{err}");
        assert!(validate_base_url("not a url").is_err());
        assert!(validate_base_url("ftp://x").is_err());
        for bad in [
            "https://api.example.com/?x=1",
            "https://api.example.com/#top",
            "https://user:pw@api.example.com",
            "https://user@api.example.com",
        ] {
            assert!(validate_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_group_is_a_lower_case_name_other_than_none() {
        for good in ["payroll", "team-a", "eu_2", "ops.night"] {
            assert_eq!(validate_group(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "Payroll",
            "none",
            ".hidden",
            "a b",
            "x/y",
            &"g".repeat(65),
        ] {
            let err = validate_group(bad).unwrap_err().to_string();
            assert!(err.contains("lower-case letters"), "{bad}: {err}");
        }
    }

    #[test]
    fn client_ids_scopes_and_notes_hold_only_what_their_standards_allow() {
        assert!(validate_client_id("abc-123_XYZ.~").is_ok());
        assert!(validate_client_id("abc\x1b]52;c;eA==").is_err());
        assert_eq!(validate_scopes("read write,employees").unwrap().len(), 3);
        for bad in ["re\"ad", "a\\b", "x\x1by", "caf\u{e9}"] {
            assert!(validate_scopes(bad).is_err(), "{bad:?}");
        }
        assert!(validate_notes("two\nlines, ünïcode ✓").is_ok());
        assert!(validate_notes("bell\x07").is_err());
        assert!(validate_notes("tab\there").is_err());
    }

    #[test]
    fn variables_that_change_how_programs_run_are_refused() {
        for name in RESERVED_VARS {
            let err = validate_env_var(name).unwrap_err().to_string();
            assert!(err.contains("never puts a token in"), "{name}: {err}");
        }
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "LD_AUDIT",
            "DYLD_INSERT_LIBRARIES",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "PERL5LIB",
            "PERL5OPT",
            "GIT_SSH_COMMAND",
            "GIT_EXEC_PATH",
            "GIT_CONFIG_PARAMETERS",
            "BASH_FUNC_x",
            "HTTP_PROXY",
            "https_proxy",
            "ALL_PROXY",
        ] {
            assert!(validate_env_var(name).is_err(), "{name}");
        }
        for name in [
            "TOKDECK_ACCESS_TOKEN",
            "FACTORIAL_TOKEN",
            "GITHUB_TOKEN",
            "API_KEY",
            "BEARER",
            "path",
            "MYPATH",
        ] {
            assert!(validate_env_var(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn endpoint_urls_keep_their_path_and_refuse_plain_http_off_loopback() {
        assert_eq!(
            validate_endpoint_url("token URL", "http://127.0.0.1:8/o/token/").unwrap(),
            "http://127.0.0.1:8/o/token/"
        );
        let err = validate_endpoint_url("token URL", "http://auth.example.com/token")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("token URL") && err.contains("https://"),
            "{err}"
        );
        assert!(validate_endpoint_url("x", "https://u:p@h/t").is_err());
    }

    #[test]
    fn redirect_uris_are_checked() {
        assert!(validate_redirect_uri("urn:ietf:wg:oauth:2.0:oob").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:8765/callback").is_ok());
        assert!(validate_redirect_uri("callback").is_err());
        assert!(validate_redirect_uri("http://127.0.0.1:1/cb#x").is_err());
    }
}
