//! `authorize`, `exchange`, `refresh`, `check`, `rediscover`, `revoke`: OAuth through a
//! worker of this process.

use std::io::{IsTerminal, Read};

use age::secrecy::SecretString;
use anyhow::{Context as _, bail};
use zeroize::Zeroizing;

use super::on_worker::{fail_if, run_jobs};
use crate::cli::{AuthorizeArgs, RefreshArgs};
use crate::context::Context;
use crate::duration::format_countdown;
use crate::oauth::listener::loopback_target;
use crate::vault::{Profile, StoreHandle};
use crate::worker::{Event, Job, Outcome};

async fn profile_named(store: &StoreHandle, name: &str) -> anyhow::Result<Profile> {
    let name = name.to_string();
    store
        .run(move |store| store.named(&name))
        .await
        .map_err(Into::into)
}

fn validity(profile: Option<&Profile>, now: chrono::DateTime<chrono::Utc>) -> String {
    match profile.and_then(|p| p.token.as_ref()).map(|t| t.expires_at) {
        Some(Some(at)) => format!(
            "access token valid for {}",
            format_countdown((at - now).num_seconds())
        ),
        Some(None) => "access token does not expire".into(),
        None => String::new(),
    }
}

/// After a login: the validity, and, when the server issued no refresh token for a token
/// that expires, that the profile needs a new login by then (and how to ask for one).
fn login_validity(profile: Option<&Profile>, now: chrono::DateTime<chrono::Utc>) -> String {
    let text = validity(profile, now);
    let Some((p, t)) = profile.and_then(|p| Some((p, p.token.as_ref()?))) else {
        return text;
    };
    if t.refresh_token.is_some() || t.expires_at.is_none() || p.renews_by_itself() {
        return text;
    }
    let hint = if p.asks_for("openid") && !p.asks_for("offline_access") {
        format!(
            " (an OpenID Connect server gives one for the offline_access scope: `tokdeck edit {} --scope \"{} offline_access\"`)",
            p.name,
            p.scope_string()
        )
    } else {
        String::new()
    };
    format!(
        "{text}; the server issued no refresh token, so `tokdeck authorize {}` is needed again by then{hint}",
        p.name
    )
}

/// The login address as a QR code on stderr, for a phone: only on a terminal, and only when
/// it fits (a note says what size it needs otherwise).
fn show_qr(address: &str) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let Some(qr) = crate::qr::Qr::of(address) else {
        return;
    };
    let fits = crossterm::terminal::size().is_ok_and(|(width, height)| {
        usize::from(width) >= qr.columns() && usize::from(height) > qr.rows() + 2
    });
    if fits {
        crate::output::note_raw(&qr.for_terminal());
    } else {
        crate::note!(
            "(a QR code of the address needs a terminal of {}x{}; --no-qr leaves it out)",
            qr.columns(),
            qr.rows() + 3
        );
    }
}

/// `tokdeck authorize`
pub async fn authorize(ctx: &Context, args: &AuthorizeArgs) -> anyhow::Result<()> {
    let store = ctx.store_handle().await?;
    let profile = profile_named(&store, &args.name).await?;
    let code_grant = profile.grant == crate::vault::GrantType::Code;
    if code_grant && args.listen && loopback_target(&profile.redirect_uri).is_none() {
        bail!(
            "--listen needs a loopback redirect URI such as http://127.0.0.1:8765/callback, and '{}' uses {}: open the URL, then `tokdeck exchange {} CODE`",
            args.name,
            profile.redirect_uri,
            args.name
        );
    }
    let job = Job::Authorize {
        listen: args.listen,
        timeout: args.timeout,
    };
    let mut new_token = false;
    let jobs = vec![(args.name.clone(), job)];
    let failures = run_jobs(ctx, store.clone(), jobs, |event| match event {
        Event::Succeeded {
            outcome: Outcome::NewToken,
            ..
        } => new_token = true,
        other => show_authorize_step(ctx, args, other),
    })
    .await?;
    fail_if(&failures, 1)?;
    if new_token {
        let saved = profile_named(&store, &args.name).await.ok();
        crate::note!(
            "{}: authorized; {}",
            args.name,
            login_validity(saved.as_ref(), ctx.clock.now())
        );
    }
    Ok(())
}

/// What `authorize` prints while its job runs. The URL to open is the command's result and
/// goes to stdout (a closed stdout only ends the printing); what to do with it goes to stderr.
fn show_authorize_step(ctx: &Context, args: &AuthorizeArgs, event: &Event) {
    let open = |url: &str| {
        let _ = crate::output::println(url);
        !args.no_browser && crate::platform::open_browser(url)
    };
    match event {
        Event::AuthorizeUrl {
            url, listening_on, ..
        } => {
            let opened = open(url);
            match listening_on {
                Some(addr) => crate::note!(
                    "{}waiting for the redirect on {addr} (Ctrl-C to stop)",
                    if opened {
                        "opened the browser; "
                    } else {
                        "open the URL above; "
                    }
                ),
                None => crate::note!(
                    "open the URL, approve, then: tokdeck exchange {} '<code or redirect URL>'",
                    args.name
                ),
            }
        }
        Event::DeviceCode {
            user_code,
            verification_uri,
            uri_to_open,
            expires_at,
            ..
        } => {
            let opened = open(uri_to_open);
            crate::note!(
                "{}enter the code {} at {} on any device; waiting for approval (the code ends in {}; Ctrl-C stops)",
                if opened { "opened the browser; " } else { "" },
                crate::display::untrusted(user_code),
                crate::display::untrusted(verification_uri),
                format_countdown((*expires_at - ctx.clock.now()).num_seconds())
            );
            if !args.no_qr {
                show_qr(uri_to_open);
            }
        }
        _ => {}
    }
}

/// The longest code or redirect URL read from stdin.
const MAX_PASTED_INPUT: usize = 16 * 1024;

/// `tokdeck exchange`; `-` reads the code or URL from stdin.
pub async fn exchange(ctx: &Context, name: &str, code: &str) -> anyhow::Result<()> {
    let input = if code == "-" {
        let mut text = Zeroizing::new(String::new());
        let limit = MAX_PASTED_INPUT as u64 + 1;
        std::io::stdin()
            .take(limit)
            .read_to_string(&mut text)
            .context(
                "cannot read the code from stdin: paste the code or the whole redirect URL as text",
            )?;
        if text.len() > MAX_PASTED_INPUT {
            bail!(
                "the input on stdin is longer than {} KiB, which no code or redirect URL is: pipe only the code or the URL the browser landed on",
                MAX_PASTED_INPUT / 1024
            );
        }
        SecretString::from(text.trim().to_string())
    } else {
        SecretString::from(code.to_string())
    };
    let store = ctx.store_handle().await?;
    profile_named(&store, name).await?;
    let job = Job::Exchange { input };
    let failures = run_jobs(ctx, store.clone(), vec![(name.to_string(), job)], |_| {}).await?;
    fail_if(&failures, 1)?;
    let saved = profile_named(&store, name).await.ok();
    crate::note!(
        "{name}: code exchanged; {}",
        login_validity(saved.as_ref(), ctx.clock.now())
    );
    Ok(())
}

/// Whether `refresh --all` renews `p`; says why when it passes one by.
fn refreshed_by_all(p: &Profile, force: bool) -> bool {
    match &p.token {
        _ if p.renews_by_itself() => true,
        // A token that never expires is renewed only when forced.
        Some(t) if crate::health::refresh_passes_by(t, force) => {
            if t.refresh_token.is_some() {
                crate::note!("{}: skipped (does not expire; --force renews it)", p.name);
            }
            false
        }
        Some(t) if t.refresh_token.is_some() => true,
        Some(_) => {
            crate::note!(
                "{}: skipped (no refresh token: authorize again when it expires)",
                p.name
            );
            false
        }
        None => {
            crate::note!("{}: skipped (no token yet: authorize first)", p.name);
            false
        }
    }
}

/// `tokdeck refresh`
pub async fn refresh(ctx: &Context, args: &RefreshArgs) -> anyhow::Result<()> {
    // One profile is read alone: at thousands, parsing every one would cost most of the run.
    let store = match &args.name {
        Some(_) => ctx.vault_handle().await?,
        None => ctx.store_handle().await?,
    };
    let names: Vec<String> = if let Some(name) = &args.name {
        let profile = profile_named(&store, name).await?;
        for line in crate::context::profile_control_character_warnings(&profile) {
            crate::note!("{line}");
        }
        vec![name.clone()]
    } else {
        let force = args.force;
        store
            .run(move |store| {
                store.read(|data| {
                    data.profiles
                        .iter()
                        .filter(|p| refreshed_by_all(p, force))
                        .map(|p| p.name.clone())
                        .collect()
                })
            })
            .await?
    };
    let total = names.len();
    let jobs = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                Job::Refresh {
                    if_expiring_within: args.if_expiring_within,
                    force: args.force,
                },
            )
        })
        .collect();
    let failures = run_jobs(ctx, store, jobs, |event| {
        if let Event::Succeeded {
            profile,
            outcome,
            saved,
            ..
        } = event
        {
            match outcome {
                Outcome::Unchanged(why) => crate::note!("{profile}: not refreshed ({why})"),
                _ => crate::note!(
                    "{profile}: refreshed; {}",
                    validity(saved.as_deref(), ctx.clock.now())
                ),
            }
        }
    })
    .await?;
    fail_if(&failures, total)
}

/// `tokdeck check`
pub async fn check(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let store = ctx.store_handle().await?;
    profile_named(&store, name).await?;
    let mut owner = None;
    let failures = run_jobs(ctx, store, vec![(name.to_string(), Job::Check)], |event| {
        if let Event::Succeeded {
            outcome: Outcome::Checked(result),
            ..
        } = event
        {
            owner = Some(result.owner_line());
        }
    })
    .await?;
    fail_if(&failures, 1)?;
    let owner = owner.unwrap_or_default();
    crate::output::println(&format!(
        "{name}: token valid; owner {}",
        crate::display::untrusted(&owner)
    ))?;
    Ok(())
}

/// `tokdeck rediscover`: the profile's endpoints and capabilities, read again from its
/// issuer's metadata. Its settings (client authentication, grant, PKCE) stay as chosen.
pub async fn rediscover(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let store = ctx.store_handle().await?;
    if profile_named(&store, name).await?.issuer.is_none() {
        bail!(
            "'{name}' was not added with --issuer, so there is no metadata to read: set its endpoints with `tokdeck edit {name} --issuer URL` or --token-url and kin"
        );
    }
    let mut changed = false;
    let jobs = vec![(name.to_string(), Job::Rediscover)];
    let failures = run_jobs(ctx, store, jobs, |event| {
        if let Event::Succeeded {
            outcome: Outcome::Rediscovered { changed: c },
            ..
        } = event
        {
            changed = *c;
        }
    })
    .await?;
    fail_if(&failures, 1)?;
    crate::note!(
        "{name}: {}",
        if changed {
            "endpoints read again from the issuer's metadata; they changed"
        } else {
            "the issuer's metadata is unchanged"
        }
    );
    Ok(())
}

/// `tokdeck revoke`
pub async fn revoke(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let store = ctx.store_handle().await?;
    profile_named(&store, name).await?;
    let mut verdict = None;
    let failures = run_jobs(ctx, store, vec![(name.to_string(), Job::Revoke)], |event| {
        if let Event::Succeeded {
            outcome: Outcome::Revoked(v),
            ..
        } = event
        {
            verdict = Some(v.clone());
        }
    })
    .await?;
    fail_if(&failures, 1)?;
    let verdict = verdict.map(|v| v.describe()).unwrap_or_default();
    crate::note!(
        "{name}: revoked at the server: the refresh token and the current access token, both removed from the vault; {verdict}. Access tokens issued before the last refresh are not revoked and work until they expire"
    );
    Ok(())
}
