//! Sharing the apps, not the tokens: `tokdeck export` writes profiles without tokens (and
//! without client secrets unless `--with-secrets`, which encrypts the file to recipients);
//! `tokdeck import` adds them to this vault, where each person authorizes their own tokens.

use std::collections::BTreeSet;
use std::io::IsTerminal;

use age::secrecy::SecretString;
use anyhow::{Context as _, anyhow, bail};

use crate::cli::{ExportArgs, ImportArgs};
use crate::context::Context;
use crate::vault::model::FORMAT_VERSION;
use crate::vault::{IdentityFile, Location, Profile, Sealing, Unlock, VaultData, crypto};

/// What an exported profile keeps: the app, not what belongs to one person or one moment.
fn shareable(mut profile: Profile, with_secret: bool) -> Profile {
    profile.token = None;
    profile.pending = None;
    profile.last_error = None;
    profile.last_check = None;
    if !with_secret {
        profile.client_secret = SecretString::from(String::new());
    }
    profile
}

/// `tokdeck export [NAME...]`: every profile, or those named, on stdout.
pub fn export(ctx: &Context, args: &ExportArgs) -> anyhow::Result<()> {
    if args.with_secrets && args.recipients.is_empty() {
        bail!(
            "--with-secrets writes client secrets, so the file is encrypted: name who may read it with --recipient (age1... or \"ssh-ed25519 ...\")"
        );
    }
    if args.with_secrets && std::io::stdout().is_terminal() {
        bail!(
            "the encrypted export is binary: redirect it to a file (tokdeck export --with-secrets ... > apps.age)"
        );
    }
    let store = ctx.open_store()?;
    let data = store.snapshot()?;
    for name in &args.names {
        if data.profile(name).is_none() {
            return Err(data.missing(name).into());
        }
    }
    let profiles = data
        .profiles
        .into_iter()
        .filter(|p| args.names.is_empty() || args.names.contains(&p.name))
        .map(|p| shareable(p, args.with_secrets))
        .collect();
    let shared = VaultData {
        version: FORMAT_VERSION,
        profiles,
        ..VaultData::default()
    };
    let text = zeroize::Zeroizing::new(toml::to_string(&shared)?);
    if args.with_secrets {
        for r in &args.recipients {
            crypto::parse_recipient(r)?;
        }
        let sealed = crypto::encrypt(
            text.as_bytes(),
            &Sealing::Recipients(args.recipients.clone()),
        )?;
        crate::output::print_bytes(&sealed)?;
    } else {
        crate::output::print(&text)?;
    }
    Ok(())
}

/// `tokdeck import FILE [--replace]`: adds the file's profiles, without tokens. A name that is
/// taken is refused unless `--replace`, which keeps this vault's token and client secret
/// (when the file has none) for that profile.
pub fn import(ctx: &Context, args: &ImportArgs) -> anyhow::Result<()> {
    let location = Location::File(args.file.clone());
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let text = if bytes.starts_with(b"age-encryption.org/") || bytes.starts_with(b"-----BEGIN AGE")
    {
        crypto::decrypt(&bytes, &Unlock::Identity(identity(ctx)?), &location)?
    } else {
        zeroize::Zeroizing::new(bytes)
    };
    let shared = match crate::vault::parse::parse_vault(&text, &location) {
        Err(crate::vault::VaultError::BadContent { reason, .. }) => bail!(
            "{} is not a file `tokdeck export` makes ({reason}): nothing was imported",
            args.file.display()
        ),
        other => other?,
    };
    for p in &shared.profiles {
        if let Err(e) = crate::vault::validate::check_profile(p) {
            bail!(
                "{} holds a profile tokdeck would not accept ({e}): nothing was imported",
                args.file.display()
            );
        }
    }
    let store = ctx.open_store()?;
    let mode = Merge {
        replace: args.replace,
        new_origin: args.new_origin,
    };
    let report = store.update(|data| merge(data, shared.clone(), mode))??;
    for line in report {
        crate::note!("{line}");
    }
    Ok(())
}

/// The key that opens an encrypted export: --identity, config `identity`, or the default key.
fn identity(ctx: &Context) -> anyhow::Result<IdentityFile> {
    let path = ctx
        .identity_path()
        .or_else(crate::config::Paths::default_identity)
        .ok_or_else(|| {
            anyhow!("the file is encrypted: pass --identity FILE with a key it was exported to")
        })?;
    Ok(IdentityFile::load(&path, crate::prompt::Terminal)?)
}

/// How `import` treats profiles that exist already.
#[derive(Debug, Clone, Copy)]
struct Merge {
    /// Take the file's settings for them.
    replace: bool,
    /// Even when they move to other servers.
    new_origin: bool,
}

/// Where a profile sends its secrets: the origins of every URL it calls, and its issuer's.
fn origins(profile: &Profile) -> BTreeSet<String> {
    profile
        .endpoints
        .all()
        .chain(profile.issuer.as_deref())
        .map(crate::http::origin_of)
        .collect()
}

/// Puts `profile` in place of `existing`, keeping its token, and its client secret when the
/// file has none; both only while the profile stays with the same servers (`true`). Secrets
/// never follow a profile to other servers.
fn replace_keeping_token(
    data: &mut VaultData,
    existing: &str,
    mut profile: Profile,
) -> anyhow::Result<bool> {
    let mut kept = true;
    if let Some(mine) = data.profile(existing) {
        if origins(mine) == origins(&profile) {
            profile.token.clone_from(&mine.token);
            if age::secrecy::ExposeSecret::expose_secret(&profile.client_secret).is_empty() {
                profile.client_secret = mine.client_secret.clone();
            }
        } else {
            kept = false;
        }
    }
    data.replace(existing, profile)?;
    Ok(kept)
}

/// The profiles of `shared` that would move `data`'s profile of the same name to other
/// servers: one line each, naming both.
fn moves(data: &VaultData, shared: &VaultData) -> Vec<String> {
    shared
        .profiles
        .iter()
        .filter_map(|p| {
            let mine = data.name_clash(&p.name, None)?;
            let (from, to) = (origins(mine), origins(p));
            (from != to).then(|| {
                let list =
                    |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(" ");
                format!("'{}' from {} to {}", mine.name, list(&from), list(&to))
            })
        })
        .collect()
}

/// Adds `shared`'s profiles to `data`; one line a profile for people. Clashes without
/// `replace`, and moves to other servers without `new_origin`, refuse the whole import,
/// naming every one.
fn merge(data: &mut VaultData, shared: VaultData, mode: Merge) -> anyhow::Result<Vec<String>> {
    let replace = mode.replace;
    let clashes: Vec<String> = shared
        .profiles
        .iter()
        .filter_map(|p| {
            data.name_clash(&p.name, None)
                .map(|taken| taken.name.clone())
        })
        .collect();
    if !replace && !clashes.is_empty() {
        bail!(
            "these profiles exist already: {}; nothing was imported: pass --replace to take the file's settings for them (their tokens stay)",
            clashes.join(", ")
        );
    }
    let moving = moves(data, &shared);
    if !moving.is_empty() && !mode.new_origin {
        bail!(
            "the file moves profiles to other servers ({}); nothing was imported: check that this is meant, then pass --new-origin (their tokens and client secrets are dropped, not sent there)",
            moving.join("; ")
        );
    }
    let mut report = Vec::new();
    for imported in shared.profiles {
        let had_token = imported.token.is_some();
        let profile = shareable(imported, true);
        let name = profile.name.clone();
        if let Some(existing) = data.name_clash(&name, None).map(|p| p.name.clone()) {
            if replace_keeping_token(data, &existing, profile)? {
                report.push(format!(
                    "{name}: replaced by the file's settings; its token stays"
                ));
            } else {
                report.push(format!(
                    "{name}: moved to other servers; its token and client secret were dropped: authorize it again (`tokdeck edit {name} --new-client-secret` when the file had no secret)"
                ));
            }
        } else {
            data.insert(profile)?;
            report.push(format!(
                "{name}: imported; authorize it with `tokdeck authorize {name}`"
            ));
        }
        if had_token {
            report.push(format!(
                "{name}: the file held a token; it was left out (tokens stay personal)"
            ));
        }
    }
    Ok(report)
}
