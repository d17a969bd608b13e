//! `tokdeck import-token NAME [--file FILE] [--obtained-at TIME]`: a token obtained elsewhere
//! (another tool, a colleague's script, a provider's console), given as the token endpoint's
//! JSON answer (RFC 6749 5.1), checked exactly as a server's answer is, and kept like any other:
//! refreshed from then on.

use std::io::Read;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};

use crate::cli::ImportTokenArgs;
use crate::context::Context;
use crate::http::MAX_BODY_BYTES;
use crate::oauth::token::parse_token_response;
use crate::vault::ProfileError;

/// Reads, checks and saves the token; nothing is written when any of it fails.
pub fn run(ctx: &Context, args: &ImportTokenArgs) -> anyhow::Result<()> {
    let obtained_at = obtained_at(args.obtained_at.as_deref(), ctx.clock.now())?;
    let body = zeroize::Zeroizing::new(read_answer(args.file.as_deref())?);
    let response = parse_token_response(&body).map_err(|e| {
        anyhow::anyhow!("this is not a token answer tokdeck can keep ({e}): give the JSON a token endpoint sent, with access_token")
    })?;
    // A server's answer with a lifetime below zero counts as expired; a token given by hand
    // with one is a mistake.
    if let Some(secs) = response.expires_in.filter(|s| *s < 0) {
        bail!(
            "expires_in is negative ({secs}), which no token's lifetime is: give the seconds the token has left, or leave expires_in out for one that never expires"
        );
    }
    let store = ctx.open_store()?;
    let name = args.name.clone();
    let saved = store.update_profiles([(name.clone(), move |p: &mut crate::vault::Profile| {
        let before = crate::audit::prints_of(p);
        // A token obtained elsewhere is a grant of its own: nothing of the one stored before
        // (its refresh token) is kept with it.
        let token = response
            .clone()
            .into_token(obtained_at, p.refresh_window, None);
        p.token = Some(token);
        p.last_error = None;
        p.pending = None;
        (before, crate::audit::prints_of(p))
    })])?;
    let Some(Some((before, after))) = saved.into_iter().next() else {
        return Err(ProfileError::NotFound(name).into());
    };
    let refreshable = after.refresh.is_some();
    if let Some(log) = ctx.audit_log(crate::audit::Who::Cli) {
        let action = crate::audit::Action {
            profile: name.clone(),
            action: "import-token".into(),
            result: "ok".into(),
            detail: "token obtained elsewhere".into(),
            before,
            after,
        };
        if let Err(e) = log.record(ctx.clock.now(), action) {
            crate::note!("{name}: warning: the audit log cannot be written ({e})");
        }
    }
    crate::note!(
        "{name}: token imported{}",
        if refreshable {
            "; tokdeck refreshes it from now on"
        } else {
            " (no refresh token: authorize again when it expires)"
        }
    );
    Ok(())
}

/// `--obtained-at`: when the server issued the token (RFC 3339), not after now; else now.
fn obtained_at(given: Option<&str>, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let Some(text) = given else { return Ok(now) };
    let at = DateTime::parse_from_rfc3339(text.trim())
        .with_context(|| {
            format!("--obtained-at '{text}' is not a time: use RFC 3339, e.g. 2026-11-25T09:30:00Z")
        })?
        .with_timezone(&Utc);
    if at > now {
        bail!("--obtained-at {text} is in the future: give the time the server issued the token");
    }
    Ok(at)
}

/// The answer from `--file`, or stdin; at most as much as a server's answer may be.
fn read_answer(file: Option<&std::path::Path>) -> anyhow::Result<Vec<u8>> {
    let limit = MAX_BODY_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    match file {
        Some(path) => std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("cannot read the token answer from stdin")?,
    };
    if bytes.len() > MAX_BODY_BYTES {
        bail!(
            "the token answer is longer than {} KiB, more than any server sends: give the JSON the token endpoint answered",
            MAX_BODY_BYTES / 1024
        );
    }
    Ok(bytes)
}
