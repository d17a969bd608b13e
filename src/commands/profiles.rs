//! `init`, `add`, `remove`: creating the vault and managing profiles.

use std::io::{IsTerminal, Read};
use std::net::IpAddr;
use std::path::Path;

use age::secrecy::SecretString;
use anyhow::{Context as _, anyhow, bail};
use zeroize::Zeroizing;

use super::context::Context;
use crate::cli::{AddArgs, EditArgs, InitArgs};
use crate::config::Paths;
use crate::vault::{
    Endpoints, IdentityFile, Profile, ProfileError, Provider, Sealing, VaultData, crypto, store,
};

/// `tokdeck init`
pub fn init(ctx: &Context, args: &InitArgs) -> anyhow::Result<()> {
    let path = ctx.vault_path()?;
    if path.exists() {
        return Err(crate::vault::VaultError::AlreadyExists(path).into());
    }
    let mut data = VaultData::default();
    let sealing = if args.passphrase {
        Sealing::Passphrase(ctx.passphrase(&path, true)?)
    } else {
        let mut recipients = Vec::new();
        for r in &args.recipients {
            crypto::parse_recipient(r)?;
            recipients.push(r.trim().to_string());
        }
        match ctx.identity_path() {
            Some(identity) => recipients.extend(IdentityFile::load(&identity)?.recipients),
            None if recipients.is_empty() => {
                let identity = Paths::default_identity()
                    .ok_or_else(|| anyhow!("no config dir for a new identity: pass --identity"))?;
                let key = if identity.exists() {
                    IdentityFile::load(&identity)?
                } else {
                    let key = IdentityFile::generate(&identity)?;
                    crate::note!(
                        "created identity {} (public key {}): back it up, the vault cannot be opened without it",
                        identity.display(),
                        key.recipients.join(", ")
                    );
                    key
                };
                recipients.extend(key.recipients);
            }
            None => {}
        }
        recipients.dedup();
        warn_if_locked_out(ctx, &recipients);
        data.recipients = recipients.clone();
        Sealing::Recipients(recipients)
    };
    let text = Zeroizing::new(toml::to_string(&data)?);
    let bytes = crypto::encrypt(text.as_bytes(), &sealing)?;
    store::write_atomic(&path, &bytes, false)?;
    match sealing {
        Sealing::Passphrase(_) => crate::note!("created vault {} (passphrase)", path.display()),
        Sealing::Recipients(list) => crate::note!(
            "created vault {} for {} recipient{}",
            path.display(),
            list.len(),
            if list.len() == 1 { "" } else { "s" }
        ),
    }
    Ok(())
}

/// `init --recipient X` without one of your own keys creates a vault you cannot open.
fn warn_if_locked_out(ctx: &Context, recipients: &[String]) {
    let own_key = ctx
        .identity_path()
        .or_else(|| Paths::default_identity().filter(|p| p.exists()));
    let mine: Vec<String> = own_key
        .and_then(|path| IdentityFile::load(&path).ok())
        .map(|key| key.recipients)
        .unwrap_or_default();
    let canonical = |r: &String| crypto::canonical_recipient(r).ok();
    let included = mine
        .iter()
        .filter_map(canonical)
        .any(|m| recipients.iter().filter_map(canonical).any(|r| r == m));
    if !included {
        crate::note!(
            "warning: none of your keys is among the recipients, so you cannot open this vault yourself; add your public key with --recipient (or pass --identity), unless another member will hand it over"
        );
    }
}

/// Names that work unquoted in shells and URLs.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("invalid profile name '{name}': use up to 64 letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => *d == "localhost",
        url::Host::Ipv4(ip) => IpAddr::from(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::from(*ip).is_loopback(),
    }
}

/// An endpoint base URL: https, or http on loopback only; no credentials, query or fragment.
pub fn validate_base_url(text: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(text.trim())
        .map_err(|e| anyhow!("invalid URL '{text}' ({e}): use e.g. https://api.example.com"))?;
    let host = url
        .host()
        .ok_or_else(|| anyhow!("invalid URL '{text}': it names no host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!(
            "the URL holds a user name or password, which would be printed in every authorize URL: remove the 'user:password@' part"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!(
            "a base URL takes no '?query' or '#fragment' (they would break every endpoint built from it): use e.g. https://api.example.com"
        );
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => {
            bail!("refusing http:// for {host}: secrets would travel unencrypted; use https://")
        }
        other => bail!("invalid URL '{text}': scheme {other} is not http(s)"),
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A redirect URI: the out-of-band URN or an absolute URL.
pub fn validate_redirect_uri(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if text == "urn:ietf:wg:oauth:2.0:oob" {
        return Ok(text.into());
    }
    let url = url::Url::parse(text).map_err(|e| {
        anyhow!("invalid redirect URI '{text}' ({e}): use the one registered with the OAuth app, e.g. urn:ietf:wg:oauth:2.0:oob")
    })?;
    if url.cannot_be_a_base() && url.scheme() != "urn" {
        bail!("invalid redirect URI '{text}': use an absolute URL");
    }
    if url.fragment().is_some() {
        bail!("invalid redirect URI '{text}': OAuth forbids a '#fragment' in it (RFC 6749 3.1.2)");
    }
    Ok(text.into())
}

/// Longer than any real client secret: more means the wrong thing was piped in.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Scopes as typed: space- or comma-separated.
fn parse_scopes(text: &str) -> Vec<String> {
    text.split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn read_client_secret(name: &str, file: Option<&Path>) -> anyhow::Result<SecretString> {
    let raw = if let Some(file) = file {
        Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read client secret file {}", file.display()))?,
        )
    } else if std::io::stdin().is_terminal() {
        Zeroizing::new(rpassword::prompt_password(format!(
            "client secret for {name}: "
        ))?)
    } else {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .take(MAX_SECRET_BYTES + 1)
            .read_to_string(&mut text)
            .context("cannot read the client secret from stdin")?;
        if text.len() as u64 > MAX_SECRET_BYTES {
            bail!(
                "the client secret on stdin is longer than 64 KiB, which is no client secret: pipe in only the secret"
            );
        }
        text
    };
    let secret = raw.trim();
    if secret.is_empty() {
        bail!("empty client secret: give it with --client-secret-file, a prompt, or stdin");
    }
    Ok(SecretString::from(secret.to_string()))
}

/// The server a new profile talks to, from `--provider` and `--base-url`.
pub fn provider_and_base(
    provider: Option<Provider>,
    base_url: Option<&str>,
) -> anyhow::Result<(Provider, String)> {
    match (provider, base_url) {
        (None | Some(Provider::Custom), Some(url)) => {
            Ok((Provider::Custom, validate_base_url(url)?))
        }
        (Some(Provider::Custom), None) => {
            bail!("--provider custom needs the server's address: add --base-url URL")
        }
        (Some(preset), Some(_)) => bail!(
            "--provider {} has its own URL: drop --base-url, or use --base-url alone for another server",
            preset.flag()
        ),
        (preset, None) => {
            let preset = preset.unwrap_or(Provider::Factorial);
            let url = preset
                .base_url()
                .ok_or_else(|| anyhow!("--provider custom needs --base-url URL"))?;
            Ok((preset, url.to_string()))
        }
    }
}

/// `tokdeck add`
pub fn add(ctx: &Context, args: &AddArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let (provider, base_url) = provider_and_base(args.provider, args.base_url.as_deref())?;
    let redirect_uri = validate_redirect_uri(&args.redirect_uri)?;
    let client_id = validate_client_id(&args.client_id)?;
    let store = ctx.open_store()?;
    if store.profile(&args.name)?.is_some() {
        return Err(ProfileError::NameTaken(args.name.clone()).into());
    }
    let client_secret = read_client_secret(&args.name, args.client_secret_file.as_deref())?;
    let mut profile = Profile::new(
        args.name.clone(),
        provider,
        Endpoints::at(base_url),
        client_id,
        client_secret,
        redirect_uri,
    );
    profile.scopes = validate_scopes(&args.scope)?;
    profile.owner = args.owner;
    profile.pkce = args.pkce;
    profile.auto_refresh = args.auto_refresh;
    profile.notes = validate_notes(&args.notes)?;
    if let Some(window) = args.refresh_window {
        profile.refresh_window = window;
    }
    store.update(move |data| data.insert(profile))??;
    crate::note!(
        "added profile '{}': next, `tokdeck authorize {}`",
        args.name,
        args.name
    );
    Ok(())
}

/// `tokdeck edit`: the app's edit form, from the command line. Only the given settings
/// change; the tokens stay. A changed app (client id, server, redirect URI) drops a pending
/// authorization, whose state belongs to the old one.
pub fn edit(ctx: &Context, args: &EditArgs) -> anyhow::Result<()> {
    let store = ctx.open_store()?;
    let mut profile = store
        .profile(&args.name)?
        .ok_or_else(|| ProfileError::NotFound(args.name.clone()))?;
    if let Some(new) = &args.rename {
        validate_name(new)?;
        profile.name = new.clone();
    }
    let app_changed = args.provider.is_some()
        || args.base_url.is_some()
        || args.client_id.is_some()
        || args.redirect_uri.is_some();
    if args.provider.is_some() || args.base_url.is_some() {
        let (provider, base) = provider_and_base(args.provider, args.base_url.as_deref())?;
        profile.provider = provider;
        profile.endpoints = Endpoints::at(base);
    }
    if let Some(id) = &args.client_id {
        profile.client_id = validate_client_id(id)?;
    }
    if let Some(uri) = &args.redirect_uri {
        profile.redirect_uri = validate_redirect_uri(uri)?;
    }
    if let Some(scope) = &args.scope {
        profile.scopes = validate_scopes(scope)?;
    }
    if let Some(owner) = args.owner {
        profile.owner = owner;
    }
    if args.pkce || args.no_pkce {
        profile.pkce = args.pkce;
    }
    if args.auto_refresh || args.no_auto_refresh {
        profile.auto_refresh = args.auto_refresh;
    }
    if let Some(window) = args.refresh_window {
        profile.refresh_window = window;
    }
    if let Some(notes) = &args.notes {
        profile.notes = validate_notes(notes)?;
    }
    if args.new_client_secret || args.client_secret_file.is_some() {
        profile.client_secret =
            read_client_secret(&profile.name, args.client_secret_file.as_deref())?;
    }
    if app_changed {
        profile.pending = None;
    }
    let original = args.name.clone();
    let new_name = profile.name.clone();
    store.update(move |data| data.replace(&original, profile))??;
    crate::note!("updated profile '{new_name}'");
    Ok(())
}

/// A client id as pasted from the OAuth application page: visible ASCII (RFC 6749
/// appendix A, VSCHAR).
pub fn validate_client_id(text: &str) -> anyhow::Result<String> {
    let id = text.trim();
    if id.is_empty() {
        bail!("empty --client-id: copy it from the OAuth application page");
    }
    if !id.chars().all(crate::oauth::client::is_vschar) {
        bail!(
            "the client id '{}' holds characters a client id cannot have (only visible ASCII): copy it again from the OAuth application page",
            crate::display::untrusted(id)
        );
    }
    Ok(id.to_string())
}

/// Scopes as typed, space- or comma-separated; each a scope token (RFC 6749 3.3, NQCHAR:
/// visible ASCII but `"` and `\`).
pub fn validate_scopes(text: &str) -> anyhow::Result<Vec<String>> {
    let scopes = parse_scopes(text);
    let nqchar = |c: char| crate::oauth::client::is_vschar(c) && !matches!(c, ' ' | '"' | '\\');
    if let Some(bad) = scopes.iter().find(|s| !s.chars().all(nqchar)) {
        bail!(
            "the scope '{}' holds characters a scope cannot have (visible ASCII but quotes and backslashes): use the names the provider documents",
            crate::display::untrusted(bad)
        );
    }
    Ok(scopes)
}

/// Notes: any printable text and newlines, but no other control characters.
pub fn validate_notes(text: &str) -> anyhow::Result<String> {
    if text.chars().any(|c| c.is_control() && c != '\n') {
        bail!(
            "the notes hold control characters (escape sequences, tabs, ...): use printable text and newlines only"
        );
    }
    Ok(text.to_string())
}

/// `tokdeck remove`
pub fn remove(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let store = ctx.open_store()?;
    store.update(|data| data.remove(name))??;
    crate::note!(
        "removed profile '{name}' (its tokens stay valid at the server until they expire; `revoke` first to end them)"
    );
    Ok(())
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
    fn redirect_uris_are_checked() {
        assert!(validate_redirect_uri("urn:ietf:wg:oauth:2.0:oob").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:8765/callback").is_ok());
        assert!(validate_redirect_uri("callback").is_err());
        assert!(validate_redirect_uri("http://127.0.0.1:1/cb#x").is_err());
    }
}
