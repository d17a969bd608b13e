//! Saves of single profiles on content that is only located (a command that read one profile
//! of thousands): only the changed profiles are parsed and rendered, and the rest of the text
//! is encrypted as it was read, so one profile's change costs about one decryption and one
//! encryption of the file, whatever the number of profiles.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::Store;
use super::cache::Cache;
use crate::vault::crypto;
use crate::vault::error::VaultError;
use crate::vault::model::Profile;
use crate::vault::snapshot::Content;
use crate::vault::text::Text;

impl Store {
    /// Applies `changes` to located content and saves; `Ok(None)` when this content cannot be
    /// saved this way (it is parsed already, the head needs a members' secret, a changed
    /// profile does not parse alone), for the caller to parse it whole.
    pub(super) fn update_located<T, F>(
        &self,
        snap: &mut Cache,
        changes: &mut [(String, F)],
    ) -> Result<Option<Vec<Option<T>>>, VaultError>
    where
        F: FnMut(&mut Profile) -> T,
    {
        let Content::Located(located) = &snap.content else {
            return Ok(None);
        };
        let sealing = super::sealing_for_recipients(&snap.sealing, located.recipients());
        if located.members_secret().0.is_none() && matches!(sealing, crypto::Sealing::Recipients(_))
        {
            return Ok(None);
        }
        let Some((edited, outcomes)) = edit_located(located, changes) else {
            return Ok(None);
        };
        if edited.is_empty() {
            return Ok(Some(outcomes));
        }
        let parts = edited
            .values()
            .zip(edited.keys())
            .map(|(profile, &at)| Ok((at, Text::profile(profile)?)))
            .collect::<Result<Vec<(usize, Zeroizing<String>)>, VaultError>>()?;
        let names: Vec<&str> = edited.values().map(|p| p.name.as_str()).collect();
        let pieces = located.pieces(&parts);
        let committed = self.backend.commit_sealed(
            &mut |out| crypto::encrypt_pieces_into(&pieces, &sealing, out),
            snap.version,
        );
        let (version, stamp) = match committed {
            Err(conflict @ VaultError::Conflict(_)) => {
                self.reread_after_conflict(snap)?;
                return Err(conflict);
            }
            committed => committed?,
        };
        if self.spliced(snap, &parts, &names) {
            snap.stamp = stamp;
            snap.version = version;
        } else {
            // Read from the store next time, which says what is wrong with it.
            snap.stamp = crate::vault::backend::Stamp::of(&[]);
            snap.version = None;
            snap.fresh = None;
        }
        Ok(Some(outcomes))
    }

    /// Brings the content of `snap` up to the save of `parts` just made, the text changed in
    /// place; `false` when the text as saved does not read back.
    fn spliced(
        &self,
        snap: &mut Cache,
        parts: &[(usize, Zeroizing<String>)],
        names: &[&str],
    ) -> bool {
        let spliced = match &mut snap.content {
            Content::Located(located) => located.splice(parts, names, self.location()),
            Content::Whole(_) => Ok(None),
        };
        match spliced {
            Ok(None) => true,
            Ok(Some(read_again)) => {
                snap.content = Content::from(read_again);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "the vault as just saved does not read back");
                false
            }
        }
    }
}

/// Changed profiles by their position among the located ones.
type Edited = BTreeMap<usize, Profile>;

/// Applies `changes` to copies of the profiles they name, each parsed alone: the changed
/// profiles, and each change's outcome. `None` when one does not parse alone.
fn edit_located<T, F>(
    located: &crate::vault::parse::Located,
    changes: &mut [(String, F)],
) -> Option<(Edited, Vec<Option<T>>)>
where
    F: FnMut(&mut Profile) -> T,
{
    let mut edited = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(changes.len());
    for (name, change) in changes.iter_mut() {
        let Some(at) = located.position(name) else {
            outcomes.push(None);
            continue;
        };
        let profile = match edited.entry(at) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(located.profile_at(at)?)
            }
        };
        outcomes.push(Some(change(profile)));
    }
    Some((edited, outcomes))
}
