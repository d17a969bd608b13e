//! `init`, `add`, `remove`: creating the vault and managing profiles.

use std::io::{IsTerminal, Read};
use std::path::Path;

use age::secrecy::SecretString;
use anyhow::{Context as _, anyhow, bail};
use zeroize::Zeroizing;

use super::server_args;
use crate::cli::{AddArgs, EditArgs, InitArgs};
use crate::config::Paths;
use crate::context::Context;
use crate::vault::text::Text;
use crate::vault::validate::{
    validate_client_id, validate_env_var, validate_group, validate_name, validate_notes,
    validate_redirect_uri, validate_scopes,
};
use crate::vault::{IdentityFile, Profile, ProfileError, Sealing, VaultData, crypto, store};

/// `tokdeck init`
pub fn init(ctx: &Context, args: &InitArgs) -> anyhow::Result<()> {
    let location = ctx.vault_location()?;
    let backend = ctx.backend(&location)?;
    // Refused before a passphrase is asked for.
    if backend.probe().is_some() {
        return Err(crate::vault::VaultError::AlreadyExists(location).into());
    }
    let mut data = VaultData::default();
    let sealing = if args.passphrase {
        Sealing::Passphrase(ctx.passphrase(&location, true)?)
    } else {
        let mut recipients = Vec::new();
        for r in &args.recipients {
            crypto::parse_recipient(r)?;
            recipients.push(r.trim().to_string());
        }
        match ctx.identity_path() {
            Some(identity) => recipients
                .extend(IdentityFile::load(&identity, crate::prompt::Terminal)?.recipients),
            None if recipients.is_empty() => {
                let identity = Paths::default_identity()
                    .ok_or_else(|| anyhow!("no config dir for a new identity: pass --identity"))?;
                let key = if identity.exists() {
                    IdentityFile::load(&identity, crate::prompt::Terminal)?
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
        // One key given twice (`--recipient` naming the own key, written differently) is
        // listed once.
        let mut seen = std::collections::HashSet::new();
        recipients
            .retain(|r| seen.insert(crypto::canonical_recipient(r).unwrap_or_else(|_| r.clone())));
        warn_if_locked_out(ctx, &recipients);
        Sealing::Recipients(recipients)
    };
    store::create_in(backend.as_ref(), &mut data, &sealing)?;
    trust_what_was_made(&location, &data, &sealing)?;
    match sealing {
        Sealing::Passphrase(_) => crate::note!("created vault {location} (passphrase)"),
        Sealing::Recipients(list) => crate::note!(
            "created vault {location} for {} recipient{}",
            list.len(),
            if list.len() == 1 { "" } else { "s" }
        ),
    }
    Ok(())
}

/// What this machine made, it trusts ([`crate::vault::trust`]).
fn trust_what_was_made(
    location: &crate::vault::Location,
    data: &VaultData,
    sealing: &Sealing,
) -> anyhow::Result<()> {
    if let (Some(pins), Sealing::Recipients(_)) = (Context::pins(), sealing) {
        let made = crate::vault::trust::Membership {
            recipients: &data.recipients,
            operators: &data.operators,
            groups: &data.groups,
            secret: data.members_secret.as_ref(),
            replaces: None,
        };
        let mut pinned = crate::vault::trust::Pinned::load(pins, location)?;
        pinned.accept(made)?;
    }
    Ok(())
}

/// `init --recipient X` without one of your own keys creates a vault you cannot open.
fn warn_if_locked_out(ctx: &Context, recipients: &[String]) {
    let own_key = ctx
        .identity_path()
        .or_else(|| Paths::default_identity().filter(|p| p.exists()));
    let mine: Vec<String> = own_key
        .and_then(|path| IdentityFile::load(&path, crate::prompt::Terminal).ok())
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

/// Longer than any real client secret: more means the wrong thing was piped in.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

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

/// `tokdeck add`: everything is checked (and the issuer's metadata read) before the vault
/// is opened for writing; a failure leaves it as it was.
pub fn add(ctx: &Context, args: &AddArgs) -> anyhow::Result<()> {
    validate_name(&args.name)?;
    let redirect_uri = match &args.redirect_uri {
        Some(uri) => validate_redirect_uri(uri)?,
        None => String::new(),
    };
    let client_id = validate_client_id(&args.client_id)?;
    let found = crate::runtime::block_on(server_args::resolve(ctx, &args.server))??;
    let store = ctx.open_store()?;
    if store.profile(&args.name)?.is_some() {
        return Err(ProfileError::NameTaken(args.name.clone()).into());
    }
    let mut profile = Profile::new(
        args.name.clone(),
        found.provider,
        found.endpoints,
        client_id,
        SecretString::from(String::new()),
        redirect_uri,
    );
    profile.issuer = found.issuer;
    profile.server = found.metadata;
    profile.scopes = validate_scopes(&args.scope)?;
    profile.owner = args.owner.into();
    server_args::settle_auth(&mut profile, &args.server, true)?;
    if profile.auth_method.has_secret() {
        profile.client_secret = read_client_secret(&args.name, args.client_secret_file.as_deref())?;
    }
    profile.auto_refresh = args.auto_refresh;
    profile.publish = args.publish;
    profile.notes = validate_notes(&args.notes)?;
    profile.group.clone_from(&args.group);
    profile.env_var.clone_from(&args.env_var);
    set_authorize_params(&mut profile, &args.authorize_params);
    if let Some(window) = args.refresh_window {
        profile.refresh_window = window;
    }
    store.update(|data| data.insert(profile.clone()))??;
    crate::note!(
        "added profile '{}': next, `tokdeck {} {}`",
        args.name,
        match args.server.grant.map(Into::into) {
            Some(crate::vault::GrantType::ClientCredentials) => "token",
            _ => "authorize",
        },
        args.name
    );
    Ok(())
}

/// Whether `edited` is the stored profile `name` as it was, compared as the vault writes it.
fn unchanged(store: &crate::vault::Store, name: &str, edited: &Profile) -> anyhow::Result<bool> {
    let Some(stored) = store.profile(name)? else {
        return Ok(false);
    };
    let (before, after) = (Text::profile(&stored)?, Text::profile(edited)?);
    Ok(*before == *after)
}

/// `tokdeck edit`: the app's edit form, from the command line. Only the given settings
/// change; the tokens stay. A changed app (client id, server, redirect URI) drops a pending
/// authorization, whose state belongs to the old one.
pub fn edit(ctx: &Context, args: &EditArgs) -> anyhow::Result<()> {
    let found = if args.server.names_a_server() {
        Some(crate::runtime::block_on(server_args::resolve(
            ctx,
            &args.server,
        ))??)
    } else {
        None
    };
    let store = ctx.open_store()?;
    let mut profile = store.named(&args.name)?;
    if let Some(new) = &args.rename {
        validate_name(new)?;
        profile.name.clone_from(new);
    }
    let app_changed = found.is_some() || args.client_id.is_some() || args.redirect_uri.is_some();
    if let Some(found) = found {
        found.apply(&mut profile);
    }
    if let Some(id) = &args.client_id {
        profile.client_id = validate_client_id(id)?;
    }
    if let Some(uri) = &args.redirect_uri {
        profile.redirect_uri = validate_redirect_uri(uri)?;
    }
    apply_settings(&mut profile, args)?;
    server_args::settle_auth(&mut profile, &args.server, false)?;
    if args.new_client_secret || args.client_secret_file.is_some() {
        profile.client_secret =
            read_client_secret(&profile.name, args.client_secret_file.as_deref())?;
    }
    if app_changed {
        profile.pending = None;
    }
    if unchanged(&store, &args.name, &profile)? {
        crate::note!(
            "'{}': nothing to change: give the settings to change, e.g. --scope or --rename (see `tokdeck edit --help`)",
            args.name
        );
        return Ok(());
    }
    let original = args.name.clone();
    let new_name = profile.name.clone();
    store.update(|data| data.replace(&original, profile.clone()))??;
    crate::note!("updated profile '{new_name}'");
    Ok(())
}

/// The settings `edit` changes without touching the OAuth app.
fn apply_settings(profile: &mut Profile, args: &EditArgs) -> anyhow::Result<()> {
    if let Some(scope) = &args.scope {
        profile.scopes = validate_scopes(scope)?;
    }
    if let Some(owner) = args.owner {
        profile.owner = owner.into();
    }
    if args.auto_refresh || args.no_auto_refresh {
        profile.auto_refresh = args.auto_refresh;
    }
    if args.publish || args.no_publish {
        profile.publish = args.publish;
    }
    if let Some(window) = args.refresh_window {
        profile.refresh_window = window;
    }
    if let Some(notes) = &args.notes {
        profile.notes = validate_notes(notes)?;
    }
    if let Some(group) = &args.group {
        profile.group = if group.is_empty() {
            None
        } else {
            Some(validate_group(group)?)
        };
    }
    if let Some(var) = &args.env_var {
        profile.env_var = if var.is_empty() {
            None
        } else {
            Some(validate_env_var(var)?)
        };
    }
    set_authorize_params(profile, &args.authorize_params);
    Ok(())
}

/// Sets each checked `KEY=VALUE` on `profile`; an empty value removes the key.
fn set_authorize_params(profile: &mut Profile, params: &[(String, String)]) {
    for (key, value) in params {
        if value.is_empty() {
            profile.authorize_params.remove(key);
        } else {
            profile.authorize_params.insert(key.clone(), value.clone());
        }
    }
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
