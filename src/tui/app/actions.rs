//! What the main view's keys do, and auto-refresh.

use age::secrecy::SecretString;

use super::{App, Effect, LISTEN_FOR, Mode, REVEAL_FOR};
use crate::health::renewal_due;
use crate::oauth::listener::loopback_target;
use crate::tui::keymap::Action;
use crate::tui::popup::authorize::Authorize;
use crate::tui::popup::confirm::{Confirm, ConfirmKind};
use crate::tui::popup::device::Device;
use crate::tui::popup::form::Form;
use crate::tui::popup::help::Help;
use crate::vault::{GrantType, Profile};
use crate::worker::Job;

/// What a profile lacks for a network action on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum Missing {
    #[error("no token yet: press a to authorize")]
    Token,
    #[error("no token to check: press a to authorize")]
    TokenToCheck,
    #[error("no refresh token: press a to authorize again")]
    RefreshToken,
}

impl App {
    /// One action of the main view (or a global one from any mode).
    pub(super) fn on_action(&mut self, action: Action) -> Vec<Effect> {
        match action {
            Action::Up => self.move_cursor(-1),
            Action::Down => self.move_cursor(1),
            Action::PageUp => self.move_cursor(-self.page()),
            Action::PageDown => self.move_cursor(self.page()),
            Action::Top => self.move_cursor(isize::MIN),
            Action::Bottom => self.move_cursor(isize::MAX),
            Action::Filter => self.open(Mode::Filter),
            Action::OnlyState(state) => self.only_state(state),
            Action::DetailDown => self.scroll_detail(1),
            Action::DetailUp => self.scroll_detail(-1),
            Action::CycleSort => self.cycle_sort(),
            Action::Help => self.open(Mode::Help(Help::default())),
            Action::ToggleLog => self.toggle_log(),
            Action::Suspend => vec![Effect::Suspend],
            Action::Quit => self.quit(),
            Action::Reveal => self.reveal_selected(),
            Action::CopyToken => self.copy_token(),
            Action::CopyUrl => self.copy_last_url(),
            Action::Authorize => self.if_writable(Self::authorize),
            Action::Exchange => self.if_writable(Self::paste_code),
            Action::Refresh => self.if_writable(Self::refresh_selected),
            Action::RefreshDue => self.if_writable(Self::refresh_due_ones),
            // A check stores the owner it finds, so it needs a writable vault too.
            Action::Check => self.if_writable(Self::check),
            Action::New => {
                self.if_writable(|app| app.open(Mode::Form(Box::new(Form::new_profile()))))
            }
            Action::Edit => self.if_writable(Self::edit_selected),
            Action::Delete => self.if_writable(|app| app.confirm(ConfirmKind::Delete)),
            Action::Revoke => self.if_writable(|app| app.confirm(ConfirmKind::Revoke)),
            _ => Vec::new(),
        }
    }

    /// Rows a page key moves: what the table showed last frame.
    fn page(&self) -> isize {
        isize::try_from(self.page_size.max(1)).unwrap_or(isize::MAX)
    }

    fn move_cursor(&mut self, by: isize) -> Vec<Effect> {
        let last = self.order.len().saturating_sub(1);
        self.cursor = self.cursor.saturating_add_signed(by).min(last);
        Vec::new()
    }

    /// The header's count keys: only the profiles in `state`, or all again when that is what
    /// shows already.
    fn only_state(&mut self, state: crate::health::Health) -> Vec<Effect> {
        let only = crate::filter::Filter::only(state).to_string();
        self.filter = if self.filter.trim() == only {
            String::new()
        } else {
            only
        };
        self.cursor = 0;
        Vec::new()
    }

    fn cycle_sort(&mut self) -> Vec<Effect> {
        self.sort = self.sort.next();
        let text = format!("sorted by {}", self.sort.label());
        self.flash(text, false);
        Vec::new()
    }

    fn toggle_log(&mut self) -> Vec<Effect> {
        self.show_log = !self.show_log;
        Vec::new()
    }

    /// The first quit asks the runtime to wait for jobs that may hold a new token (the
    /// worker's shutdown decides which); a second one quits at once.
    fn quit(&mut self) -> Vec<Effect> {
        if self.quitting {
            return vec![Effect::QuitNow];
        }
        self.quitting = true;
        let pending = self.busy.values().filter(|b| !b.kind.cancellable()).count();
        if pending > 0 {
            self.flash(
                format!("finishing {pending} job(s) so no new token is lost; q again quits now"),
                false,
            );
        }
        vec![Effect::Quit]
    }

    fn reveal_selected(&mut self) -> Vec<Effect> {
        if let Some(name) = self.selected_name() {
            self.reveal = Some(super::Reveal {
                profile: name,
                until: self.now + chrono::Duration::seconds(REVEAL_FOR),
            });
        }
        Vec::new()
    }

    fn copy_token(&mut self) -> Vec<Effect> {
        match self.selected() {
            Some(Profile {
                name,
                token: Some(t),
                ..
            }) => {
                let (text, what) = (t.access_token.clone(), format!("{name}'s access token"));
                vec![self.copy(text, what)]
            }
            Some(p) => self.refuse(format!(
                "{}: no token to copy: press a to authorize",
                p.name
            )),
            None => Vec::new(),
        }
    }

    fn copy_last_url(&mut self) -> Vec<Effect> {
        match self.last_url.clone() {
            Some(url) => vec![self.copy(SecretString::from(url), "the authorize URL".into())],
            None => self.refuse("no authorize URL yet: press a first".into()),
        }
    }

    fn refuse(&mut self, why: String) -> Vec<Effect> {
        self.flash(why, true);
        Vec::new()
    }

    /// Runs `act` unless the vault is read-only, which is said instead.
    fn if_writable(&mut self, act: impl FnOnce(&mut Self) -> Vec<Effect>) -> Vec<Effect> {
        match self.settings.read_only_reason.clone() {
            Some(reason) => self.refuse(reason),
            None => act(self),
        }
    }

    fn authorize(&mut self) -> Vec<Effect> {
        let effects = self.job_on_selected(|p| {
            Ok(Job::Authorize {
                listen: loopback_target(&p.redirect_uri).is_some(),
                timeout: LISTEN_FOR,
            })
        });
        let grant = self.selected().map(|p| p.grant);
        if let (Some(Effect::Send(cmd)), Some(name)) = (effects.first(), self.selected_name()) {
            self.mode = match grant {
                Some(GrantType::Device) => Mode::Device(Device::new(name, cmd.id)),
                // The app's own token needs nobody: the row's spinner and the log tell.
                Some(GrantType::ClientCredentials) => Mode::Normal,
                _ => Mode::Authorize(Authorize::new(name, cmd.id)),
            };
        }
        effects
    }

    fn paste_code(&mut self) -> Vec<Effect> {
        match self.selected_name() {
            Some(profile) => self.open(Mode::Paste(crate::tui::popup::paste::Paste::new(profile))),
            None => Vec::new(),
        }
    }

    fn refresh_selected(&mut self) -> Vec<Effect> {
        self.job_on_selected(|p| match &p.token {
            _ if p.renews_by_itself() => Ok(Job::Refresh {
                if_expiring_within: None,
                force: false,
            }),
            Some(t) if t.refresh_token.is_some() => Ok(Job::Refresh {
                if_expiring_within: None,
                force: false,
            }),
            Some(_) => Err(Missing::RefreshToken),
            None => Err(Missing::Token),
        })
    }

    /// `R`: every profile that [`renewal_due`] names.
    fn refresh_due_ones(&mut self) -> Vec<Effect> {
        let (now, margin) = (self.now, self.settings.refresh_margin);
        let due: Vec<String> = self
            .profiles
            .iter()
            .filter(|p| !self.busy.contains_key(&p.name))
            .filter(|p| {
                p.token
                    .as_ref()
                    .is_some_and(|t| renewal_due(p, t, now, margin))
            })
            .map(|p| p.name.clone())
            .collect();
        if due.is_empty() {
            self.flash("nothing ends within the refresh margin", false);
        }
        due.into_iter()
            .map(|n| {
                self.command(
                    &n,
                    Job::Refresh {
                        if_expiring_within: None,
                        force: false,
                    },
                )
            })
            .collect()
    }

    fn check(&mut self) -> Vec<Effect> {
        self.job_on_selected(|p| match p.token {
            Some(_) => Ok(Job::Check),
            None => Err(Missing::TokenToCheck),
        })
    }

    fn edit_selected(&mut self) -> Vec<Effect> {
        match self.selected() {
            Some(p) => {
                let form = Form::edit(p);
                self.open(Mode::Form(Box::new(form)))
            }
            None => Vec::new(),
        }
    }

    fn confirm(&mut self, kind: ConfirmKind) -> Vec<Effect> {
        match self.selected_name() {
            Some(profile) => self.open(Mode::Confirm(Confirm { kind, profile })),
            None => Vec::new(),
        }
    }

    pub(super) fn selected_name(&self) -> Option<String> {
        self.selected().map(|p| p.name.clone())
    }

    /// A network action on the selected profile, unless it is busy, there is none, or it
    /// lacks what the action needs.
    fn job_on_selected(
        &mut self,
        job: impl FnOnce(&Profile) -> Result<Job, Missing>,
    ) -> Vec<Effect> {
        let Some(profile) = self.selected().cloned() else {
            return self.refuse("no profile selected: press n to add one".into());
        };
        if let Some(b) = self.busy.get(&profile.name) {
            let text = format!("{}: {} still running", profile.name, b.kind.verb());
            return self.refuse(text);
        }
        match job(&profile) {
            Ok(job) => vec![self.command(&profile.name, job)],
            Err(why) => self.refuse(format!("{}: {why}", profile.name)),
        }
    }

    /// Auto-refresh: profiles that ask for it are refreshed when [`renewal_due`] says so.
    /// Each token is refreshed at most once (the next attempt waits for a new token), a
    /// failure backs off exponentially, and profiles with a recorded error are left alone
    /// until someone looks, so a dead token is never hammered.
    pub(super) fn auto_refresh(&mut self) -> Vec<Effect> {
        let (now, margin) = (self.now, self.settings.refresh_margin);
        let due: Vec<(String, chrono::DateTime<chrono::Utc>)> = self
            .profiles
            .iter()
            .filter(|p| {
                p.auto_refresh && p.last_error.is_none() && !self.busy.contains_key(&p.name)
            })
            .filter_map(|p| p.token.as_ref().map(|t| (p, t)))
            .filter(|(p, t)| {
                renewal_due(p, t, now, margin) && self.auto.may_try(&p.name, t.obtained_at, now)
            })
            .map(|(p, t)| (p.name.clone(), t.obtained_at))
            .collect();
        due.into_iter()
            .map(|(name, obtained)| {
                self.auto.tried(&name, obtained, now);
                self.log(format!("{name}: auto-refresh"), false);
                self.command(
                    &name,
                    Job::Refresh {
                        if_expiring_within: None,
                        force: false,
                    },
                )
            })
            .collect()
    }

    /// How far the detail pane is scrolled for the selected profile.
    pub fn detail_scroll(&self) -> u16 {
        match (&self.detail_scrolled, self.selected()) {
            (Some((name, by)), Some(p)) if *name == p.name => *by,
            _ => 0,
        }
    }

    /// Scrolls the detail pane by `by` lines, within what it showed last frame.
    pub(super) fn scroll_detail(&mut self, by: i32) -> Vec<Effect> {
        let Some(name) = self.selected().map(|p| p.name.clone()) else {
            return Vec::new();
        };
        let now = i32::from(self.detail_scroll());
        let next = (now + by).clamp(0, i32::from(self.detail_room));
        self.detail_scrolled = Some((name, u16::try_from(next).unwrap_or(0)));
        Vec::new()
    }
}
