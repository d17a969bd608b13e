//! What a save shares, whatever the layout: the whole vault rendered and sealed, a new
//! vault stored, and tries again when another writer's version turns up.

use std::time::Duration;

use super::super::backend::Backend;
use super::super::crypto::{self, Sealing};
use super::super::error::VaultError;
use super::super::model::VaultData;
use super::super::trust::give_members_secret;

/// Saves tried in all when other writers' versions keep turning up.
pub(super) const CONFLICT_TRIES: u32 = 6;

/// Runs `attempt` again while it meets another writer's version, with a growing random pause
/// between tries, up to [`CONFLICT_TRIES`]; then the conflict is the caller's.
pub(super) fn retrying_conflicts<R>(
    mut attempt: impl FnMut() -> Result<R, VaultError>,
) -> Result<R, VaultError> {
    let mut tried = 1;
    loop {
        match attempt() {
            Err(VaultError::Conflict(location)) if tried < CONFLICT_TRIES => {
                tracing::info!(%location, tried, "another writer saved first: applying the change to its version");
                let ceiling = 50u64 << tried.min(5);
                let pause = rand::random_range(ceiling / 2..=ceiling);
                std::thread::sleep(Duration::from_millis(pause));
                tried += 1;
            }
            other => return other,
        }
    }
}

/// Stores a new vault holding `data` in `backend`, sealed as `sealing` (whose recipients it
/// records); refuses to replace an existing one. Returns the ciphertext written and its
/// version. `init` uses it directly: a vault for a team need not be openable by the one who
/// creates it.
pub fn create_in(
    backend: &dyn Backend,
    data: &mut VaultData,
    sealing: &Sealing,
) -> Result<(Vec<u8>, Option<super::super::backend::Version>), VaultError> {
    // Refused before sealing, which can take a second with a passphrase.
    if backend.probe().is_some() {
        return Err(VaultError::AlreadyExists(backend.location().clone()));
    }
    if let Sealing::Recipients(list) = sealing {
        data.recipients.clone_from(list);
    }
    give_members_secret(data, sealing);
    let ciphertext = seal(data, sealing)?;
    let version = backend.create(&ciphertext)?;
    Ok((ciphertext, version))
}

/// Renders `data` whole and encrypts it. Rendering the document in one piece is faster than
/// in parts ([`crate::vault::text::Text`]), which only pay when later saves change a few profiles.
pub(super) fn seal(data: &VaultData, sealing: &Sealing) -> Result<Vec<u8>, VaultError> {
    let text = zeroize::Zeroizing::new(
        toml::to_string(data).map_err(|e| VaultError::Encrypt(e.to_string()))?,
    );
    crypto::encrypt(text.as_bytes(), sealing)
}

/// How each part of a vault in entries is sealed ([`crate::vault::groups`]): the head and
/// the status to every reader, each entry to its profile's readers.
pub(crate) struct Seals {
    /// Members, every group's recipients and operators.
    pub readers: Sealing,
    members: Sealing,
    groups: std::collections::HashMap<String, Sealing>,
}

impl Seals {
    /// The sealing of `data`'s parts, each recipient list made a sealing by `sealing`.
    pub fn of(data: &VaultData, sealing: impl Fn(&[String]) -> Sealing) -> Self {
        Self {
            readers: sealing(&data.all_readers()),
            members: sealing(&data.recipients),
            groups: data
                .groups
                .iter()
                .map(|g| (g.name.clone(), sealing(&g.recipients)))
                .collect(),
        }
    }

    /// How the entry of `profile` is sealed: to its group when the head defines it.
    pub fn entry(&self, profile: &super::super::model::Profile) -> &Sealing {
        profile
            .group
            .as_deref()
            .and_then(|name| self.groups.get(name))
            .unwrap_or(&self.members)
    }

    /// How the vault's members' entries are sealed.
    pub fn members(&self) -> &Sealing {
        &self.members
    }
}

/// The refusal to keep in one piece a vault whose head divides its readers.
pub(super) fn divided_stays_in_entries() -> VaultError {
    VaultError::Remote(
        "a vault with groups or operators stays laid out as entries, where each is sealed to its readers: remove the groups and operators first (`tokdeck recipients remove --group ...`, `--operator`)".into(),
    )
}
