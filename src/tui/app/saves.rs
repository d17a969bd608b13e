//! What a save or a reload of the vault does to the app.

use super::{App, Effect, SaveFailed};
use crate::vault::Profile;
use crate::worker::Job;

impl App {
    pub(super) fn on_reloaded(&mut self, profiles: Vec<Profile>) -> Vec<Effect> {
        self.profiles = profiles;
        self.log("the vault changed on disk: reloaded", false);
        Vec::new()
    }

    pub(super) fn on_saved(&mut self, result: Result<Vec<Profile>, SaveFailed>) -> Vec<Effect> {
        match result {
            Ok(profiles) => {
                self.profiles = profiles;
                self.flash("saved", false);
                self.select_saved();
            }
            Err(e) => {
                self.saving = None;
                self.log(format!("save failed: {e}"), true);
                self.flash(format!("save failed: {e}"), true);
                return Vec::new();
            }
        }
        // A profile saved with a new issuer has no endpoints yet: read them now.
        let undiscovered: Vec<String> = self
            .profiles
            .iter()
            .filter(|p| p.issuer.is_some() && p.endpoints.token_url.is_none())
            .filter(|p| !self.busy.contains_key(&p.name))
            .map(|p| p.name.clone())
            .collect();
        undiscovered
            .iter()
            .map(|name| self.command(name, Job::Rediscover))
            .collect()
    }

    /// Selects the profile the form just saved, when the filter shows it.
    fn select_saved(&mut self) {
        let Some(name) = self.saving.take() else {
            return;
        };
        self.recompute();
        if let Some(at) = self
            .order
            .iter()
            .position(|&i| self.profiles[i].name == name)
        {
            self.cursor = at;
        }
    }
}
