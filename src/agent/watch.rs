//! Noticing at once when another process replaces the vault file: the folder is watched
//! (inotify), since a save renames a new file into place, and an event that names the vault
//! wakes the keeper. A vault elsewhere (OpenBao) has no watch: the keeper's fallback poll
//! probes its version.

use std::sync::Arc;

use notify::{RecursiveMode, Watcher};

use super::keeper::Keeper;
use crate::vault::Location;

/// Watches the vault file's folder while it is kept; `None` for a vault that is not a file,
/// or when the system refuses a watch (the fallback poll then notices changes).
pub fn watch(vault: &Location, keeper: &Arc<Keeper>) -> Option<notify::RecommendedWatcher> {
    let file = vault.file()?.to_path_buf();
    let name = file.file_name()?.to_os_string();
    let folder = vault.folder()?.to_path_buf();
    let waker = Arc::downgrade(keeper);
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Opening or reading the file is no change (inotify reports every open, the keeper's
        // own reads among them: waking on those would spin).
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let names_the_vault = event
            .paths
            .iter()
            .any(|p| p.file_name() == Some(name.as_os_str()));
        if let (true, Some(keeper)) = (names_the_vault, waker.upgrade()) {
            keeper.wake();
        }
    };
    let started = notify::recommended_watcher(handler)
        .and_then(|mut w| w.watch(&folder, RecursiveMode::NonRecursive).map(|()| w));
    match started {
        Ok(watcher) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, folder = %folder.display(), "cannot watch the vault's folder; changes are noticed at the agent interval");
            None
        }
    }
}
