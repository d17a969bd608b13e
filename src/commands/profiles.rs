//! `init`, `add`, `remove`: creating the vault and managing profiles.

use std::io::{IsTerminal, Read};
use std::net::IpAddr;

use age::secrecy::SecretString;
use anyhow::{Context as _, anyhow, bail};
use zeroize::Zeroizing;

use super::context::Context;
use crate::cli::{AddArgs, InitArgs};
use crate::config::Paths;
use crate::vault::{Endpoints, IdentityFile, Profile, Provider, Sealing, VaultData, crypto, store};

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

/// An endpoint base URL: https, or http on loopback only.
pub fn validate_base_url(text: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(text.trim())
        .map_err(|e| anyhow!("invalid URL '{text}' ({e}): use e.g. https://api.example.com"))?;
    let host = url
        .host()
        .ok_or_else(|| anyhow!("invalid URL '{text}': it names no host"))?;
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
    Ok(text.into())
}

fn read_client_secret(args: &AddArgs) -> anyhow::Result<SecretString> {
    let raw = if let Some(file) = &args.client_secret_file {
        Zeroizing::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read client secret file {}", file.display()))?,
        )
    } else if std::io::stdin().is_terminal() {
        Zeroizing::new(rpassword::prompt_password(format!(
            "client secret for {}: ",
            args.name
        ))?)
    } else {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .context("cannot read the client secret from stdin")?;
        text
    };
    let secret = raw.trim();
    if secret.is_empty() {
        bail!("empty client secret: give it with --client-secret-file, a prompt, or stdin");
    }
    Ok(SecretString::from(secret.to_string()))
}

/// `tokdeck add`
pub fn add(ctx: &Context, args: &AddArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let (provider, base_url) = match &args.base_url {
        Some(url) => (Provider::Custom, validate_base_url(url)?),
        None => match args.provider.base_url() {
            Some(url) => (args.provider, url.to_string()),
            None => bail!("--provider custom needs --base-url URL"),
        },
    };
    let redirect_uri = validate_redirect_uri(&args.redirect_uri)?;
    if args.client_id.trim().is_empty() {
        bail!("empty --client-id: copy it from the OAuth application page");
    }
    let store = ctx.open_store()?;
    if store.profile(&args.name)?.is_some() {
        bail!(
            "a profile named '{0}' already exists: choose another name, or `tokdeck remove {0}` first",
            args.name
        );
    }
    let client_secret = read_client_secret(args)?;
    let mut profile = Profile::new(
        args.name.clone(),
        provider,
        Endpoints::at(base_url),
        args.client_id.trim().to_string(),
        client_secret,
        redirect_uri,
    );
    profile.scopes = args
        .scope
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    profile.owner = args.owner;
    profile.pkce = args.pkce;
    profile.auto_refresh = args.auto_refresh;
    profile.notes = args.notes.clone();
    if let Some(window) = args.refresh_window {
        profile.refresh_window = window;
    }
    let name = args.name.clone();
    store
        .update(move |data| {
            if data.profile(&name).is_some() {
                return Err(anyhow!(
                    "a profile named '{name}' already exists: choose another name, or `tokdeck remove {name}` first"
                ));
            }
            data.profiles.push(profile);
            Ok(())
        })??;
    crate::note!(
        "added profile '{}': next, `tokdeck authorize {}`",
        args.name,
        args.name
    );
    Ok(())
}

/// `tokdeck remove`
pub fn remove(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let store = ctx.open_store()?;
    store.update(|data| {
        let before = data.profiles.len();
        data.profiles.retain(|p| p.name != name);
        if data.profiles.len() == before {
            return Err(anyhow!("no profile named '{name}': see `tokdeck status`"));
        }
        Ok(())
    })??;
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
    }

    #[test]
    fn redirect_uris_are_checked() {
        assert!(validate_redirect_uri("urn:ietf:wg:oauth:2.0:oob").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:8765/callback").is_ok());
        assert!(validate_redirect_uri("callback").is_err());
    }
}
