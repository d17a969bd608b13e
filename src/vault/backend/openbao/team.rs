//! The team beside a vault in OpenBao: each agent's announcement in a secret of its own under
//! `PATH.agents/`, named by a random id of the process, and read back with the lease entry
//! ([`super::lease::peek`]). The age of an announcement is judged on the server's clock, as
//! the lease's is: its version's creation time against the `Date` of the answer.

use std::time::Duration;

use serde_json::{Value, json};

use super::api::{Api, Found};
use crate::team::{Announcement, MAX_AGENTS};
use crate::vault::backend::TeamEntries;
use crate::vault::error::VaultError;
use crate::vault::location::KvPath;

/// The folder of the announcements beside the vault at `kv`.
pub fn folder(kv: &KvPath) -> KvPath {
    kv.sibling(format!("{}.agents", kv.path))
}

/// The announcement `id` in `folder`.
fn entry(folder: &KvPath, id: &str) -> KvPath {
    folder.sibling(format!("{}/{id}", folder.path))
}

/// Every announcement in `folder` (at most [`MAX_AGENTS`]), and what the lease entry `lock`
/// says.
pub fn read(api: &Api, folder: &KvPath, lock: &KvPath) -> Result<TeamEntries, VaultError> {
    let (lease, newest) = super::lease::peek(api, lock)?;
    let mut announcements = Vec::new();
    for id in api.list(folder)?.into_iter().take(MAX_AGENTS) {
        // A sub-folder, or a name no agent writes: not an announcement.
        if !is_id(&id) {
            continue;
        }
        if let Found::Secret(secret) = api.read(&entry(folder, &id))? {
            let text = |name: &str| {
                secret
                    .fields
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let age = secret
                .created
                .zip(secret.server_now)
                .map(|(created, now)| (now - created).to_std().unwrap_or(Duration::ZERO));
            announcements.push(Announcement {
                text: text("beat"),
                tag: text("tag"),
                age,
                id,
            });
        }
    }
    Ok(TeamEntries {
        announcements,
        lease,
        newest,
    })
}

/// Writes this process's announcement `id` in `folder`.
pub fn announce(
    api: &Api,
    folder: &KvPath,
    id: &str,
    text: &str,
    tag: &str,
) -> Result<(), VaultError> {
    let mut fields = serde_json::Map::new();
    fields.insert("beat".into(), json!(text));
    fields.insert("tag".into(), json!(tag));
    api.put(&entry(folder, id), &fields).map(|_| ())
}

/// Removes the announcement `id` from `folder`, every version of it.
pub fn withdraw(api: &Api, folder: &KvPath, id: &str) -> Result<(), VaultError> {
    if !is_id(id) {
        return Ok(());
    }
    api.destroy(&entry(folder, id))
}

/// Whether `id` is an announcement's name as agents write them: hex digits.
fn is_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A new id for this process's announcement.
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hex_names_are_announcements() {
        assert!(is_id(&new_id()));
        assert!(!is_id("../vault"));
        assert!(!is_id("sub/"));
        assert!(!is_id(""));
    }
}
