//! What the worker's events do to the app.

use std::net::SocketAddr;

use age::secrecy::SecretString;

use super::{App, Effect, Mode};
use crate::tui::popup::device::Shown;
use crate::vault::Profile;
use crate::worker::{Event, FailureKind, JobId, JobKind, Outcome};

impl App {
    pub(super) fn on_worker(&mut self, event: Event) -> Vec<Effect> {
        match event {
            Event::Started { profile, kind, .. } => self.on_started(&profile, kind),
            Event::AuthorizeUrl {
                id,
                profile,
                url,
                listening_on,
            } => self.on_authorize_url(id, &profile, url, listening_on),
            Event::DeviceCode {
                id,
                profile,
                user_code,
                verification_uri,
                uri_to_open,
                expires_at,
            } => self.on_device_code(
                id,
                &profile,
                Shown {
                    user_code,
                    verification_uri,
                    uri_to_open,
                    expires_at,
                },
            ),
            Event::Note {
                profile, message, ..
            } => self.on_note(&profile, &message),
            Event::Succeeded {
                id,
                profile,
                outcome,
                saved,
            } => self.on_succeeded(id, &profile, &outcome, saved),
            Event::Failed {
                id,
                profile,
                error,
                kind,
                saved,
            } => self.on_failed(id, &profile, &error, kind, saved),
        }
    }

    fn on_started(&mut self, profile: &str, kind: JobKind) -> Vec<Effect> {
        self.log(format!("{profile}: {} started", kind.verb()), false);
        Vec::new()
    }

    fn on_note(&mut self, profile: &str, message: &str) -> Vec<Effect> {
        self.log(format!("{profile}: {message}"), false);
        Vec::new()
    }

    /// The URL is ready: shown in the popup (if it is still this job's), sent to the
    /// clipboard, and opened in a browser where there is one.
    fn on_authorize_url(
        &mut self,
        id: JobId,
        profile: &str,
        url: String,
        listening_on: Option<SocketAddr>,
    ) -> Vec<Effect> {
        if let Mode::Authorize(popup) = &mut self.mode
            && popup.job == id
        {
            popup.url = Some(url.clone());
            popup.listening_on = listening_on;
        }
        self.last_url = Some(url.clone());
        let how = match listening_on {
            Some(addr) => format!("listening on {addr}"),
            None => "paste the code with e".into(),
        };
        self.log(format!("{profile}: authorize URL ready ({how})"), false);
        let copy = self.copy(SecretString::from(url.clone()), "the authorize URL".into());
        vec![copy, Effect::OpenBrowser(url)]
    }

    /// A device login waits: the code shows in its popup, and the address goes to the
    /// clipboard (a browser opens where there is one).
    fn on_device_code(&mut self, id: JobId, profile: &str, shown: Shown) -> Vec<Effect> {
        let url = shown.uri_to_open.clone();
        self.log(
            format!(
                "{profile}: enter code {} at {}",
                shown.user_code, shown.verification_uri
            ),
            false,
        );
        if let Mode::Device(popup) = &mut self.mode
            && popup.job == id
        {
            popup.shown = Some(shown);
        }
        let copy = self.copy(SecretString::from(url.clone()), "the login address".into());
        vec![copy, Effect::OpenBrowser(url)]
    }

    fn on_succeeded(
        &mut self,
        id: JobId,
        profile: &str,
        outcome: &Outcome,
        saved: Option<Box<Profile>>,
    ) -> Vec<Effect> {
        self.end_job(id, profile, saved);
        self.auto.succeeded(profile);
        // A listener that caught its redirect has done the popup's work.
        let popup_done = match &self.mode {
            Mode::Authorize(popup) => popup.job == id && popup.listening_on.is_some(),
            Mode::Device(popup) => popup.job == id,
            _ => false,
        };
        if popup_done {
            self.mode = Mode::Normal;
        }
        let text = format!("{profile}: {}", outcome.describe());
        self.log(text.clone(), false);
        self.flash(text, false);
        Vec::new()
    }

    fn on_failed(
        &mut self,
        id: JobId,
        profile: &str,
        error: &str,
        kind: FailureKind,
        saved: Option<Box<Profile>>,
    ) -> Vec<Effect> {
        self.end_job(id, profile, saved);
        if kind == FailureKind::Cancelled {
            self.log(format!("{profile}: {error}"), false);
            return Vec::new();
        }
        self.auto.failed(profile, self.now);
        let text = format!("{profile}: {error}");
        self.log(text.clone(), true);
        self.flash(text, true);
        Vec::new()
    }

    fn end_job(&mut self, id: JobId, profile: &str, saved: Option<Box<Profile>>) {
        self.finish(profile, id);
        if let Some(saved) = saved {
            self.replace_profile(*saved);
        }
    }
}
