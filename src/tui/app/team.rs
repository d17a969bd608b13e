//! What the app shows of the team sharing its vault ([`crate::team`]).

use super::App;
use crate::team::ProfileTeam;
use crate::vault::Profile;

impl App {
    /// What the team says of `profile`, when a team shares the vault and was read.
    pub fn team_of(&self, profile: &Profile) -> Option<ProfileTeam> {
        let view = self.team.as_ref()?.as_ref().ok()?;
        Some(view.for_profile(
            &profile.name,
            profile.group.as_deref(),
            profile.auto_refresh,
        ))
    }

    /// How many profiles renew by auto-refresh with no agent keeping them.
    pub fn unkept(&self) -> usize {
        self.profiles
            .iter()
            .filter(|p| self.team_of(p).is_some_and(|t| t.unkept))
            .count()
    }
}
