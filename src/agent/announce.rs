//! The agent's announcement beside a shared vault ([`crate::team`]): written every
//! [`BEAT_EVERY`] while it runs, with what it keeps and whether it can; the team read back
//! each time for the metrics, and announcements lapsed for a day removed. Withdrawn when the
//! agent stops. A store that refuses announcements (a policy without the `.agents/` folder)
//! is told of once: keeping tokens alive does not depend on it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::keeper::Keeper;
use crate::team::{BEAT_EVERY, Beat};
use crate::vault::{Store, VaultError};

/// The agent's announcement: beaten until withdrawn, never after.
pub struct Announcer {
    keeper: Arc<Keeper>,
    /// Set once withdrawn; held while a beat writes, so none lands after the withdrawal.
    withdrawn: Mutex<bool>,
}

impl Announcer {
    pub fn new(keeper: Arc<Keeper>) -> Arc<Self> {
        Arc::new(Self {
            keeper,
            withdrawn: Mutex::new(false),
        })
    }

    /// One beat, unless withdrawn.
    async fn beat(self: &Arc<Self>) -> Result<(), VaultError> {
        let this = self.clone();
        self.keeper
            .store
            .run(move |store| this.beat_on(store))
            .await
    }

    fn beat_on(&self, store: &Store) -> Result<(), VaultError> {
        let withdrawn = self
            .withdrawn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *withdrawn {
            return Ok(());
        }
        beat_once(&self.keeper, store)
    }

    /// Withdraws the announcement as the agent stops, within `wait`: an agent that cannot
    /// leaves it to lapse.
    pub async fn withdraw(self: &Arc<Self>, wait: Duration) {
        let this = self.clone();
        let withdrawing = self.keeper.store.run(move |store| {
            let mut withdrawn = this
                .withdrawn
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *withdrawn = true;
            store.withdraw(None)
        });
        match tokio::time::timeout(wait, withdrawing).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "cannot withdraw the announcement"),
            Err(_) => tracing::debug!("withdrawing the announcement took too long; it lapses"),
        }
    }
}

/// Announces the agent until it stops.
pub async fn beat_until_stopped(announcer: Arc<Announcer>) {
    let mut failing = false;
    loop {
        match announcer.beat().await {
            Ok(()) if failing => {
                failing = false;
                crate::note!("tokdeck agent: announcing itself beside the vault again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                crate::note!(
                    "tokdeck agent: cannot announce itself beside the vault ({e}); it keeps the tokens alive all the same, but the team view will not show it: allow create, update, read, list and delete on PATH.agents/* in its policy"
                );
            }
            Err(e) => tracing::debug!(error = %e, "cannot announce the agent"),
        }
        tokio::time::sleep(BEAT_EVERY).await;
    }
}

/// One beat: the announcement written, the team read back.
fn beat_once(keeper: &Keeper, store: &Store) -> Result<(), VaultError> {
    let keeps = store
        .read(|data| data.profiles.iter().filter(|p| p.auto_refresh).count())
        .unwrap_or_default();
    let beat = Beat {
        host: crate::platform::host_name(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: keeper.since,
        keeps,
        problem: keeper.problem(),
        reads: store.readers_held(),
    };
    store.announce(&beat)?;
    if let Some(view) = store.team()? {
        keeper.metrics.set_team(&view.team);
        for id in &view.forgotten {
            if let Err(e) = store.withdraw(Some(id)) {
                tracing::debug!(error = %e, "cannot remove a lapsed announcement");
            }
        }
    }
    Ok(())
}
