//! What the agent answers to each request: a usable token, the status, refreshes, a reload,
//! shutdown, and who it is.

use std::time::Duration;

use super::keeper::Keeper;
use super::protocol::{Info, Reply, Request};
use super::supervisor::Supervisor;
use crate::usable;
use crate::vault::{Store, VaultError};
use crate::worker::Job;

pub async fn answer(
    request: Request,
    keeper: &Keeper,
    vault: &str,
    supervisor: &Supervisor,
) -> Reply {
    match request {
        Request::Token {
            profile,
            min_valid_secs,
        } => token(keeper, &profile, min_valid_secs.map(Duration::from_secs)).await,
        Request::Status {
            json,
            warn_secs,
            filter,
        } => status(keeper, json, warn_secs, filter.as_deref()).await,
        Request::Refresh { profile } => refresh(keeper, profile).await,
        Request::Reload => reload(keeper).await,
        Request::Shutdown => {
            supervisor.stop();
            Reply::ok()
        }
        Request::Info => info(keeper, vault),
    }
}

async fn token(keeper: &Keeper, name: &str, min_valid: Option<Duration>) -> Reply {
    use age::secrecy::ExposeSecret;
    let refresh = |job: Job| keeper.refresh(name, job);
    let wanted = usable::Wanted {
        margin: keeper.timetable.schedule.margin,
        min_valid,
    };
    match usable::usable_token(&keeper.store, name, &keeper.clock, wanted, refresh).await {
        Ok(issued) => Reply {
            token: Some(issued.access_token.expose_secret().to_string()),
            expires_at: issued.expires_at,
            env_var: issued.env_var,
            api_base: Some(issued.api_base),
            warning: issued.warning,
            ..Reply::ok()
        },
        Err(e) => Reply::error(e.to_string()),
    }
}

async fn status(keeper: &Keeper, json: bool, warn_secs: u64, filter: Option<&str>) -> Reply {
    let warn = std::time::Duration::from_secs(warn_secs);
    let filter = match filter.map(crate::filter::Filter::parse).transpose() {
        Ok(filter) => filter.unwrap_or_default(),
        Err(e) => return Reply::error(e.to_string()),
    };
    let now = keeper.clock.now();
    let shown = keeper.store.run(move |store| {
        let asked = crate::report::Asked {
            now,
            warn,
            filter: &filter,
            json,
        };
        crate::report::status_of(store, asked)
    });
    match shown.await {
        Ok(shown) => Reply {
            text: Some(shown.text),
            code: Some(shown.code),
            ..Reply::ok()
        },
        Err(e) => Reply::error(e.to_string()),
    }
}

async fn refresh(keeper: &Keeper, profile: Option<String>) -> Reply {
    let names = match profile {
        Some(name) => vec![name],
        None => match keeper.store.run(refreshable_names).await {
            Ok(names) => names,
            Err(e) => return Reply::error(e.to_string()),
        },
    };
    let jobs = names.iter().map(|name| {
        keeper.refresh(
            name,
            Job::Refresh {
                if_expiring_within: None,
                force: false,
            },
        )
    });
    let failures: Vec<String> = futures_util::future::join_all(jobs)
        .await
        .into_iter()
        .zip(&names)
        .filter_map(|(r, name)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    if failures.is_empty() {
        Reply::ok()
    } else {
        Reply::error(failures.join("; "))
    }
}

async fn reload(keeper: &Keeper) -> Reply {
    let reloaded = keeper.store.run(|store| {
        store.reload_if_changed()?;
        store.write_back_kept()
    });
    match reloaded.await {
        Ok(_) => Reply::ok(),
        Err(e) => Reply::error(e.to_string()),
    }
}

/// The profiles with a refresh token: what `refresh` without a name renews.
fn refreshable_names(store: &Store) -> Result<Vec<String>, VaultError> {
    store.read(|d| {
        d.profiles
            .iter()
            .filter(|p| p.token.as_ref().is_some_and(|t| t.refresh_token.is_some()))
            .map(|p| p.name.clone())
            .collect()
    })
}

fn info(keeper: &Keeper, vault: &str) -> Reply {
    Reply {
        info: Some(Info {
            pid: std::process::id(),
            since: keeper.since,
            vault: vault.to_string(),
            last: keeper.last(),
            wakeups: keeper.wakeups(),
        }),
        ..Reply::ok()
    }
}
