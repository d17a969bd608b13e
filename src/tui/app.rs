//! App state and its pure transitions: `update(&mut App, Msg) -> Vec<Effect>`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use age::secrecy::SecretString;
use chrono::{DateTime, FixedOffset, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::auto_refresh::AutoRefresh;
use super::form::{Form, FormOutcome};
use super::keymap::{Action, action_for};
use crate::health::{Assessment, Health, refresh_due};
use crate::oauth::listener::loopback_target;
use crate::vault::Profile;
use crate::worker::{Command, Event, Job, JobId};

/// How long `v` shows secrets.
pub const REVEAL_FOR: i64 = 10;
/// How long a status-line message stays.
const FLASH_FOR: i64 = 6;
/// How long the authorize listener waits.
const LISTEN_FOR: Duration = Duration::from_secs(300);
const LOG_LINES: usize = 200;

/// Settings the app reads but never changes.
#[derive(Debug, Clone)]
pub struct Settings {
    pub warn: Duration,
    pub refresh_margin: Duration,
    pub vault_label: String,
    /// Local time offset for displayed times (fixed per run, so tests are stable).
    pub utc_offset: FixedOffset,
    pub read_only_reason: Option<String>,
}

/// Everything that can happen to the app.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Paste(String),
    Tick(DateTime<Utc>),
    Worker(Event),
    /// Another process changed the vault; these are its profiles now.
    Reloaded(Vec<Profile>),
    /// A save the app asked for finished.
    Saved(Result<Vec<Profile>, String>),
}

/// A change the app asks for; the runtime carries it out.
#[derive(Debug)]
pub enum Effect {
    Send(Command),
    /// Copy to the terminal's clipboard with OSC 52.
    Copy {
        text: SecretString,
        what: String,
    },
    OpenBrowser(String),
    Save(SaveOp),
    Quit,
    Suspend,
}

/// A vault change made from the UI.
#[derive(Debug)]
pub enum SaveOp {
    Upsert {
        original: Option<String>,
        profile: Box<Profile>,
    },
    Delete(String),
}

/// Ways to order the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Urgency,
    Name,
    Expiry,
}

impl SortKey {
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Urgency => "urgency",
            SortKey::Name => "name",
            SortKey::Expiry => "expiry",
        }
    }

    fn next(self) -> Self {
        match self {
            SortKey::Urgency => SortKey::Name,
            SortKey::Name => SortKey::Expiry,
            SortKey::Expiry => SortKey::Urgency,
        }
    }
}

/// Things that need a yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmKind {
    Delete,
    Revoke,
}

/// The authorize popup.
#[derive(Debug, Clone)]
pub struct AuthorizePopup {
    pub profile: String,
    pub job: JobId,
    pub url: Option<String>,
    pub listening_on: Option<SocketAddr>,
}

/// What has the keyboard.
#[derive(Debug, Clone)]
pub enum Mode {
    Normal,
    Filter,
    /// The key list, scrolled down by this many lines.
    Help {
        scroll: u16,
    },
    Authorize(AuthorizePopup),
    Paste {
        profile: String,
        input: String,
    },
    Confirm {
        kind: ConfirmKind,
        profile: String,
    },
    Form(Box<Form>),
}

/// Profile counts, one per state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub ok: usize,
    pub expiring: usize,
    pub stale: usize,
    pub expired: usize,
    pub error: usize,
    pub no_token: usize,
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at: DateTime<Utc>,
    pub text: String,
    pub error: bool,
}

/// A job in flight for a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    pub job: JobId,
    pub verb: &'static str,
}

/// The whole UI state.
pub struct App {
    pub settings: Settings,
    pub profiles: Vec<Profile>,
    /// `assessments[i]` judges `profiles[i]` at `now`.
    pub assessments: Vec<Assessment>,
    /// Indices into `profiles`, filtered and sorted: the table's rows.
    pub order: Vec<usize>,
    pub now: DateTime<Utc>,
    pub cursor: usize,
    pub sort: SortKey,
    pub filter: String,
    pub mode: Mode,
    pub busy: HashMap<String, Busy>,
    pub log: VecDeque<LogLine>,
    pub show_log: bool,
    pub flash: Option<(String, bool, DateTime<Utc>)>,
    pub reveal: Option<(String, DateTime<Utc>)>,
    pub last_url: Option<String>,
    pub spinner: usize,
    pub quitting: bool,
    /// Rows the table showed last frame, for paging.
    pub page_size: usize,
    /// When each auto-refresh profile was last tried, and its backoff after failures.
    auto: AutoRefresh,
    next_job: JobId,
}

impl App {
    /// A new app over `profiles` at `now`.
    pub fn new(profiles: Vec<Profile>, now: DateTime<Utc>, settings: Settings) -> Self {
        let mut app = Self {
            settings,
            profiles,
            assessments: Vec::new(),
            order: Vec::new(),
            now,
            cursor: 0,
            sort: SortKey::Urgency,
            filter: String::new(),
            mode: Mode::Normal,
            busy: HashMap::new(),
            log: VecDeque::new(),
            show_log: false,
            flash: None,
            reveal: None,
            last_url: None,
            spinner: 0,
            quitting: false,
            page_size: 10,
            auto: AutoRefresh::default(),
            next_job: 1,
        };
        app.recompute();
        if let Some(reason) = app.settings.read_only_reason.clone() {
            app.flash(reason, true);
        }
        app
    }

    /// The selected profile.
    pub fn selected(&self) -> Option<&Profile> {
        self.order.get(self.cursor).map(|&i| &self.profiles[i])
    }

    /// The selected profile's assessment.
    pub fn selected_assessment(&self) -> Option<&Assessment> {
        self.order.get(self.cursor).map(|&i| &self.assessments[i])
    }

    /// Whether secrets of `name` are shown right now.
    pub fn revealed(&self, name: &str) -> bool {
        self.reveal
            .as_ref()
            .is_some_and(|(n, until)| n == name && *until > self.now)
    }

    /// Counts for the summary line.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for a in &self.assessments {
            match a.health {
                Health::Ok => s.ok += 1,
                Health::Expiring => s.expiring += 1,
                Health::Stale => s.stale += 1,
                Health::Expired => s.expired += 1,
                Health::Error => s.error += 1,
                Health::NoToken => s.no_token += 1,
            }
        }
        s
    }

    /// Puts a warning in the log and on the status line.
    pub fn warn(&mut self, text: String) {
        self.log(text.clone(), true);
        self.flash(text, true);
    }

    fn flash(&mut self, text: impl Into<String>, error: bool) {
        self.flash = Some((
            text.into(),
            error,
            self.now + chrono::Duration::seconds(FLASH_FOR),
        ));
    }

    fn log(&mut self, text: impl Into<String>, error: bool) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(LogLine {
            at: self.now,
            text: text.into(),
            error,
        });
    }

    /// Re-judges every profile and rebuilds the visible order, keeping the selection.
    pub fn recompute(&mut self) {
        let keep = self.selected().map(|p| p.name.clone());
        self.assessments = self
            .profiles
            .iter()
            .map(|p| Assessment::of(p, self.now, self.settings.warn))
            .collect();
        let needle = self.filter.to_lowercase();
        let mut order: Vec<usize> = (0..self.profiles.len())
            .filter(|&i| {
                needle.is_empty() || self.profiles[i].name.to_lowercase().contains(&needle)
            })
            .collect();
        let (profiles, assessments) = (&self.profiles, &self.assessments);
        let expiry = |i: usize| assessments[i].access_left.unwrap_or(i64::MAX);
        match self.sort {
            SortKey::Urgency => order.sort_by(|&a, &b| {
                assessments[a]
                    .health
                    .cmp(&assessments[b].health)
                    .then(expiry(a).cmp(&expiry(b)))
                    .then_with(|| profiles[a].name.cmp(&profiles[b].name))
            }),
            SortKey::Name => order.sort_by(|&a, &b| profiles[a].name.cmp(&profiles[b].name)),
            SortKey::Expiry => order.sort_by(|&a, &b| {
                expiry(a)
                    .cmp(&expiry(b))
                    .then_with(|| profiles[a].name.cmp(&profiles[b].name))
            }),
        }
        self.order = order;
        self.cursor = keep
            .and_then(|name| {
                self.order
                    .iter()
                    .position(|&i| self.profiles[i].name == name)
            })
            .unwrap_or(self.cursor)
            .min(self.order.len().saturating_sub(1));
    }

    fn command(&mut self, profile: &str, job: Job) -> Effect {
        let id = self.next_job;
        self.next_job += 1;
        self.busy.insert(
            profile.to_string(),
            Busy {
                job: id,
                verb: job.verb(),
            },
        );
        Effect::Send(Command {
            id,
            profile: profile.to_string(),
            job,
        })
    }

    fn replace_profile(&mut self, saved: Profile) {
        match self.profiles.iter_mut().find(|p| p.name == saved.name) {
            Some(p) => *p = saved,
            None => self.profiles.push(saved),
        }
    }

    /// Jobs whose loss could lose a token: everything but a listener waiting for a browser.
    fn jobs_that_must_finish(&self) -> usize {
        self.busy.values().filter(|b| b.verb != "authorize").count()
    }

    /// Applies one message.
    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        let effects = match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::Paste(text) => self.on_paste(&text),
            Msg::Tick(now) => self.on_tick(now),
            Msg::Worker(event) => self.on_worker(event),
            Msg::Reloaded(profiles) => {
                self.profiles = profiles;
                self.log("the vault changed on disk: reloaded", false);
                Vec::new()
            }
            Msg::Saved(Ok(profiles)) => {
                self.profiles = profiles;
                self.flash("saved", false);
                Vec::new()
            }
            Msg::Saved(Err(e)) => {
                self.log(format!("save failed: {e}"), true);
                self.flash(format!("save failed: {e}"), true);
                Vec::new()
            }
        };
        for effect in &effects {
            if let Effect::Copy { what, .. } = effect {
                self.flash(
                    format!("sent {what} to the terminal's clipboard (OSC 52)"),
                    false,
                );
            }
        }
        self.recompute();
        effects
    }

    fn on_tick(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        self.now = now;
        self.spinner = self.spinner.wrapping_add(1);
        if self
            .flash
            .as_ref()
            .is_some_and(|(_, _, until)| *until <= now)
        {
            self.flash = None;
        }
        if self.reveal.as_ref().is_some_and(|(_, until)| *until <= now) {
            self.reveal = None;
        }
        self.auto_refresh()
    }

    /// Auto-refresh: profiles that ask for it are refreshed when [`refresh_due`] says so.
    /// Each token is refreshed at most once (the next attempt waits for a new token), a
    /// failure backs off exponentially, and profiles with a recorded error are left alone
    /// until someone looks, so a dead token is never hammered.
    fn auto_refresh(&mut self) -> Vec<Effect> {
        let now = self.now;
        let margin = self.settings.refresh_margin;
        let due: Vec<String> = self
            .profiles
            .iter()
            .filter(|p| {
                p.auto_refresh && p.last_error.is_none() && !self.busy.contains_key(&p.name)
            })
            .filter(|p| {
                p.token.as_ref().is_some_and(|t| {
                    refresh_due(t, now, margin) && self.auto.may_try(&p.name, t.obtained_at, now)
                })
            })
            .map(|p| p.name.clone())
            .collect();
        due.into_iter()
            .map(|name| {
                if let Some(t) = self.profile(&name).and_then(|p| p.token.as_ref()) {
                    let obtained = t.obtained_at;
                    self.auto.tried(&name, obtained, now);
                }
                self.log(format!("{name}: auto-refresh"), false);
                self.command(
                    &name,
                    Job::Refresh {
                        if_expiring_within: None,
                    },
                )
            })
            .collect()
    }

    fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    fn on_worker(&mut self, event: Event) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            Event::Started { profile, verb, .. } => {
                self.log(format!("{profile}: {verb} started"), false)
            }
            Event::AuthorizeUrl {
                id,
                profile,
                url,
                listening_on,
            } => {
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
                effects.push(Effect::Copy {
                    text: SecretString::from(url.clone()),
                    what: "authorize URL".into(),
                });
                effects.push(Effect::OpenBrowser(url));
            }
            Event::Note {
                profile, message, ..
            } => self.log(format!("{profile}: {message}"), false),
            Event::Succeeded {
                id,
                profile,
                outcome,
                saved,
            } => {
                self.finish(&profile, id);
                self.auto.succeeded(&profile);
                if let Some(saved) = saved {
                    self.replace_profile(*saved);
                }
                let text = format!("{profile}: {}", outcome.describe());
                if let Mode::Authorize(popup) = &self.mode
                    && popup.job == id
                    && popup.listening_on.is_some()
                {
                    self.mode = Mode::Normal;
                }
                self.log(text.clone(), false);
                self.flash(text, false);
            }
            Event::Failed {
                id,
                profile,
                error,
                saved,
            } => {
                self.finish(&profile, id);
                self.auto.failed(&profile, self.now);
                if let Some(saved) = saved {
                    self.replace_profile(*saved);
                }
                let text = format!("{profile}: {error}");
                self.log(text.clone(), true);
                self.flash(text, true);
            }
        }
        if self.quitting && self.jobs_that_must_finish() == 0 {
            effects.push(Effect::Quit);
        }
        effects
    }

    fn finish(&mut self, profile: &str, id: JobId) {
        if self.busy.get(profile).is_some_and(|b| b.job == id) {
            self.busy.remove(profile);
        }
    }

    fn on_paste(&mut self, text: &str) -> Vec<Effect> {
        match &mut self.mode {
            Mode::Paste { input, .. } => input.push_str(text.trim()),
            Mode::Filter => self.filter.push_str(text.trim()),
            Mode::Form(form) => form.paste(text),
            _ => {}
        }
        Vec::new()
    }

    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.kind == crossterm::event::KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl_c =
            key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        match std::mem::replace(&mut self.mode, Mode::Normal) {
            Mode::Normal => self.on_action_key(key),
            _ if ctrl_c => self.on_action_key(key),
            Mode::Help { scroll } => self.on_help_key(key, scroll),
            Mode::Filter => {
                match key.code {
                    KeyCode::Esc => self.filter.clear(),
                    KeyCode::Enter => {}
                    KeyCode::Backspace => {
                        self.filter.pop();
                        self.mode = Mode::Filter;
                    }
                    KeyCode::Char(c) => {
                        self.filter.push(c);
                        self.mode = Mode::Filter;
                    }
                    _ => self.mode = Mode::Filter,
                }
                self.cursor = 0;
                Vec::new()
            }
            Mode::Authorize(popup) => match key.code {
                KeyCode::Esc | KeyCode::Char('q') => Vec::new(),
                KeyCode::Char('e') | KeyCode::Enter if popup.listening_on.is_none() => {
                    self.mode = Mode::Paste {
                        profile: popup.profile,
                        input: String::new(),
                    };
                    Vec::new()
                }
                KeyCode::Char('u') | KeyCode::Char('y') => {
                    let url = popup.url.clone();
                    self.mode = Mode::Authorize(popup);
                    url.map(|u| Effect::Copy {
                        text: SecretString::from(u),
                        what: "authorize URL".into(),
                    })
                    .into_iter()
                    .collect()
                }
                _ => {
                    self.mode = Mode::Authorize(popup);
                    Vec::new()
                }
            },
            Mode::Paste { profile, mut input } => match key.code {
                KeyCode::Esc => Vec::new(),
                KeyCode::Enter if !input.trim().is_empty() => {
                    let job = Job::Exchange {
                        input: SecretString::from(input.trim().to_string()),
                    };
                    vec![self.command(&profile, job)]
                }
                KeyCode::Backspace => {
                    input.pop();
                    self.mode = Mode::Paste { profile, input };
                    Vec::new()
                }
                KeyCode::Char(c) => {
                    input.push(c);
                    self.mode = Mode::Paste { profile, input };
                    Vec::new()
                }
                _ => {
                    self.mode = Mode::Paste { profile, input };
                    Vec::new()
                }
            },
            Mode::Confirm { kind, profile } => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => match kind {
                    ConfirmKind::Delete => vec![Effect::Save(SaveOp::Delete(profile))],
                    ConfirmKind::Revoke => vec![self.command(&profile, Job::Revoke)],
                },
                _ => Vec::new(),
            },
            Mode::Form(mut form) => match form.handle_key(&key, &self.profiles) {
                FormOutcome::Editing => {
                    self.mode = Mode::Form(form);
                    Vec::new()
                }
                FormOutcome::Cancelled => Vec::new(),
                FormOutcome::Submitted(profile) => vec![Effect::Save(SaveOp::Upsert {
                    original: form.original,
                    profile,
                })],
            },
        }
    }

    /// j/k, arrows and paging scroll the key list (the view stops at its end); any other
    /// key closes it.
    fn on_help_key(&mut self, key: KeyEvent, scroll: u16) -> Vec<Effect> {
        let limit = super::keymap::BINDINGS.len() as u16;
        let next = match key.code {
            KeyCode::Char('j') | KeyCode::Down => Some(scroll.saturating_add(1)),
            KeyCode::Char('k') | KeyCode::Up => Some(scroll.saturating_sub(1)),
            KeyCode::PageDown | KeyCode::Char(' ') => Some(scroll.saturating_add(10)),
            KeyCode::PageUp => Some(scroll.saturating_sub(10)),
            _ => None,
        };
        if let Some(scroll) = next {
            self.mode = Mode::Help {
                scroll: scroll.min(limit),
            };
        }
        Vec::new()
    }

    fn selected_name(&self) -> Option<String> {
        self.selected().map(|p| p.name.clone())
    }

    /// A network action on the selected profile, unless it is busy or there is none.
    fn job_on_selected(
        &mut self,
        job: impl FnOnce(&Profile) -> Result<Job, String>,
    ) -> Vec<Effect> {
        let Some(profile) = self.selected().cloned() else {
            self.flash("no profile selected: press n to add one", true);
            return Vec::new();
        };
        if let Some(b) = self.busy.get(&profile.name) {
            let text = format!("{}: {} still running", profile.name, b.verb);
            self.flash(text, true);
            return Vec::new();
        }
        match job(&profile) {
            Ok(job) => vec![self.command(&profile.name, job)],
            Err(why) => {
                self.flash(format!("{}: {why}", profile.name), true);
                Vec::new()
            }
        }
    }

    fn read_only(&mut self) -> bool {
        if let Some(reason) = self.settings.read_only_reason.clone() {
            self.flash(reason, true);
            return true;
        }
        false
    }

    fn on_action_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(action) = action_for(&key) else {
            if key.code == KeyCode::Esc {
                self.filter.clear();
            }
            return Vec::new();
        };
        let last = self.order.len().saturating_sub(1);
        let page = self.page_size.max(1);
        match action {
            Action::Up => self.cursor = self.cursor.saturating_sub(1),
            Action::Down => self.cursor = (self.cursor + 1).min(last),
            Action::PageUp => self.cursor = self.cursor.saturating_sub(page),
            Action::PageDown => self.cursor = (self.cursor + page).min(last),
            Action::Top => self.cursor = 0,
            Action::Bottom => self.cursor = last,
            Action::Filter => self.mode = Mode::Filter,
            Action::CycleSort => {
                self.sort = self.sort.next();
                let text = format!("sorted by {}", self.sort.label());
                self.flash(text, false);
            }
            Action::Help => self.mode = Mode::Help { scroll: 0 },
            Action::ToggleLog => self.show_log = !self.show_log,
            Action::Suspend => return vec![Effect::Suspend],
            Action::Quit => {
                let pending = self.jobs_that_must_finish();
                if pending == 0 || self.quitting {
                    return vec![Effect::Quit];
                }
                self.quitting = true;
                self.flash(
                    format!(
                        "finishing {pending} job(s) so no new token is lost; q again to quit now"
                    ),
                    false,
                );
            }
            Action::Reveal => {
                if let Some(name) = self.selected_name() {
                    self.reveal = Some((name, self.now + chrono::Duration::seconds(REVEAL_FOR)));
                }
            }
            Action::CopyToken => match self.selected() {
                Some(Profile {
                    name,
                    token: Some(t),
                    ..
                }) => {
                    return vec![Effect::Copy {
                        text: t.access_token.clone(),
                        what: format!("{name}'s access token"),
                    }];
                }
                Some(p) => {
                    let text = format!("{}: no token to copy: press a to authorize", p.name);
                    self.flash(text, true);
                }
                None => {}
            },
            Action::CopyUrl => match self.last_url.clone() {
                Some(url) => {
                    return vec![Effect::Copy {
                        text: SecretString::from(url),
                        what: "authorize URL".into(),
                    }];
                }
                None => self.flash("no authorize URL yet: press a first", true),
            },
            Action::Authorize => {
                if self.read_only() {
                    return Vec::new();
                }
                let effects = self.job_on_selected(|p| {
                    Ok(Job::Authorize {
                        listen: loopback_target(&p.redirect_uri).is_some(),
                        timeout: LISTEN_FOR,
                    })
                });
                if let (Some(Effect::Send(cmd)), Some(name)) =
                    (effects.first(), self.selected_name())
                {
                    self.mode = Mode::Authorize(AuthorizePopup {
                        profile: name,
                        job: cmd.id,
                        url: None,
                        listening_on: None,
                    });
                }
                return effects;
            }
            Action::Exchange => {
                if self.read_only() {
                    return Vec::new();
                }
                if let Some(name) = self.selected_name() {
                    self.mode = Mode::Paste {
                        profile: name,
                        input: String::new(),
                    };
                }
            }
            Action::Refresh => {
                if self.read_only() {
                    return Vec::new();
                }
                return self.job_on_selected(|p| match &p.token {
                    Some(t) if t.refresh_token.is_some() => Ok(Job::Refresh {
                        if_expiring_within: None,
                    }),
                    Some(_) => Err("no refresh token: press a to authorize again".into()),
                    None => Err("no token yet: press a to authorize".into()),
                });
            }
            Action::RefreshDue => {
                if self.read_only() {
                    return Vec::new();
                }
                let margin = self.settings.refresh_margin;
                let now = self.now;
                let due: Vec<String> = self
                    .profiles
                    .iter()
                    .filter(|p| {
                        !self.busy.contains_key(&p.name)
                            && p.token
                                .as_ref()
                                .is_some_and(|t| refresh_due(t, now, margin))
                    })
                    .map(|p| p.name.clone())
                    .collect();
                if due.is_empty() {
                    self.flash("nothing ends within the refresh margin", false);
                }
                return due
                    .into_iter()
                    .map(|n| {
                        self.command(
                            &n,
                            Job::Refresh {
                                if_expiring_within: None,
                            },
                        )
                    })
                    .collect();
            }
            Action::Check => {
                // A check stores the owner it finds, so it needs a writable vault too.
                if self.read_only() {
                    return Vec::new();
                }
                return self.job_on_selected(|p| match p.token {
                    Some(_) => Ok(Job::Check),
                    None => Err("no token to check: press a to authorize".into()),
                });
            }
            Action::New => {
                if !self.read_only() {
                    self.mode = Mode::Form(Box::new(Form::new_profile()));
                }
            }
            Action::Edit => {
                if !self.read_only()
                    && let Some(p) = self.selected()
                {
                    self.mode = Mode::Form(Box::new(Form::edit(p)));
                }
            }
            Action::Delete | Action::Revoke => {
                if self.read_only() {
                    return Vec::new();
                }
                if let Some(name) = self.selected_name() {
                    let kind = if action == Action::Delete {
                        ConfirmKind::Delete
                    } else {
                        ConfirmKind::Revoke
                    };
                    self.mode = Mode::Confirm {
                        kind,
                        profile: name,
                    };
                }
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{Endpoints, Provider, Token};
    use crate::worker::Outcome;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn profile(name: &str, expires_in: Option<i64>) -> Profile {
        let mut p = Profile::new(
            name.into(),
            Provider::Factorial,
            Endpoints::at("https://api.factorialhr.com"),
            "cid".into(),
            SecretString::from("s"),
            "urn:ietf:wg:oauth:2.0:oob".into(),
        );
        p.token = expires_in.map(|e| Token {
            access_token: SecretString::from(format!("access-{name}")),
            refresh_token: Some(SecretString::from("r")),
            token_type: "Bearer".into(),
            scope: None,
            obtained_at: at(-100),
            expires_at: Some(at(e)),
            refresh_expires_at: Some(at(7 * 86_400)),
        });
        p
    }

    fn app(profiles: Vec<Profile>) -> App {
        App::new(
            profiles,
            at(0),
            Settings {
                warn: Duration::from_secs(86_400),
                refresh_margin: Duration::from_secs(300),
                vault_label: "vault.age".into(),
                utc_offset: FixedOffset::east_opt(0).unwrap(),
                read_only_reason: None,
            },
        )
    }

    fn key(c: char) -> Msg {
        Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    fn code(c: KeyCode) -> Msg {
        Msg::Key(KeyEvent::new(c, KeyModifiers::NONE))
    }

    fn sent(effects: &[Effect]) -> Vec<(&str, &'static str)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send(c) => Some((c.profile.as_str(), c.job.verb())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn sorted_by_urgency_and_cursor_follows_the_profile() {
        let mut app = app(vec![
            profile("fine", Some(7200)),
            profile("stale", Some(-60)),
            profile("new", None),
        ]);
        let names: Vec<_> = app
            .order
            .iter()
            .map(|&i| app.profiles[i].name.as_str())
            .collect();
        assert_eq!(names, ["new", "stale", "fine"]);
        app.update(key('j'));
        assert_eq!(app.selected().unwrap().name, "stale");
        app.update(key('s'));
        assert_eq!(app.sort, SortKey::Name);
        assert_eq!(
            app.selected().unwrap().name,
            "stale",
            "selection kept across re-sort"
        );
    }

    #[test]
    fn refresh_sends_a_job_marks_busy_and_the_event_updates_the_row() {
        let mut app = app(vec![profile("p", Some(10))]);
        let effects = app.update(key('r'));
        assert_eq!(sent(&effects), [("p", "refresh")]);
        assert!(app.busy.contains_key("p"));
        // A second r while busy sends nothing.
        assert!(sent(&app.update(key('r'))).is_empty());
        let Effect::Send(cmd) = &effects[0] else {
            unreachable!()
        };
        let saved = profile("p", Some(7200));
        app.update(Msg::Worker(Event::Succeeded {
            id: cmd.id,
            profile: "p".into(),
            outcome: Outcome::NewToken,
            saved: Some(Box::new(saved)),
        }));
        assert!(app.busy.is_empty());
        assert_eq!(app.selected_assessment().unwrap().access_left, Some(7200));
        assert!(app.log.back().unwrap().text.contains("new token saved"));
    }

    #[test]
    fn failures_flash_and_log_as_errors() {
        let mut app = app(vec![profile("p", Some(10))]);
        let effects = app.update(key('r'));
        let Effect::Send(cmd) = &effects[0] else {
            unreachable!()
        };
        app.update(Msg::Worker(Event::Failed {
            id: cmd.id,
            profile: "p".into(),
            error: "refresh token expired or already used: authorize again".into(),
            saved: None,
        }));
        let (text, error, _) = app.flash.clone().unwrap();
        assert!(error && text.contains("authorize again"));
        assert!(app.log.back().unwrap().error);
    }

    #[test]
    fn authorize_opens_a_popup_that_fills_copies_and_leads_to_paste() {
        let mut app = app(vec![profile("p", None)]);
        let effects = app.update(key('a'));
        assert_eq!(sent(&effects), [("p", "authorize")]);
        let Effect::Send(cmd) = &effects[0] else {
            unreachable!()
        };
        let effects = app.update(Msg::Worker(Event::AuthorizeUrl {
            id: cmd.id,
            profile: "p".into(),
            url: "https://x/oauth/authorize?state=1".into(),
            listening_on: None,
        }));
        assert!(matches!(&effects[0], Effect::Copy { .. }));
        assert!(matches!(&effects[1], Effect::OpenBrowser(_)));
        let Mode::Authorize(popup) = &app.mode else {
            panic!("no popup")
        };
        assert!(popup.url.is_some());
        app.update(key('e'));
        assert!(matches!(app.mode, Mode::Paste { .. }));
        app.update(Msg::Paste("http://cb?code=abc".into()));
        let effects = app.update(code(KeyCode::Enter));
        assert_eq!(sent(&effects), [("p", "exchange")]);
        assert!(matches!(app.mode, Mode::Normal));
    }

    #[test]
    fn delete_and_revoke_need_confirmation() {
        let mut app = app(vec![profile("p", Some(100))]);
        app.update(key('d'));
        assert!(app.update(key('n')).is_empty());
        app.update(key('d'));
        let effects = app.update(key('y'));
        assert!(matches!(&effects[0], Effect::Save(SaveOp::Delete(n)) if n == "p"));
        app.update(key('x'));
        assert_eq!(sent(&app.update(key('y'))), [("p", "revoke")]);
    }

    #[test]
    fn filter_narrows_rows_and_escape_clears() {
        let mut app = app(vec![
            profile("alpha", Some(100)),
            profile("beta", Some(100)),
        ]);
        app.update(key('/'));
        app.update(key('b'));
        assert_eq!(app.order.len(), 1);
        app.update(code(KeyCode::Enter));
        assert_eq!(app.order.len(), 1, "Enter keeps the filter");
        app.update(key('/'));
        app.update(code(KeyCode::Esc));
        assert_eq!(app.order.len(), 2);
    }

    #[test]
    fn countdowns_tick_and_reveal_expires() {
        let mut app = app(vec![profile("p", Some(100))]);
        app.update(key('v'));
        assert!(app.revealed("p"));
        app.update(Msg::Tick(at(11)));
        assert!(!app.revealed("p"));
        assert_eq!(app.selected_assessment().unwrap().access_left, Some(89));
    }

    #[test]
    fn auto_refresh_fires_once_inside_the_margin() {
        let mut p = profile("auto", Some(600));
        p.auto_refresh = true;
        let mut app = app(vec![p, profile("manual", Some(10))]);
        assert!(
            sent(&app.update(Msg::Tick(at(1)))).is_empty(),
            "600 s left > 5 min margin"
        );
        assert_eq!(sent(&app.update(Msg::Tick(at(301)))), [("auto", "refresh")]);
        assert!(
            sent(&app.update(Msg::Tick(at(302)))).is_empty(),
            "busy: not twice"
        );
    }

    #[test]
    fn a_token_shorter_than_the_margin_is_refreshed_once_then_backs_off() {
        let mut p = profile("short", Some(60));
        if let Some(t) = p.token.as_mut() {
            t.obtained_at = at(0);
        }
        p.auto_refresh = true;
        let mut app = app(vec![p]);
        let mut sends = Vec::new();
        for s in 1..=40 {
            for e in app.update(Msg::Tick(at(s))) {
                if let Effect::Send(cmd) = e {
                    sends.push((s, cmd.id));
                }
            }
        }
        assert_eq!(sends.len(), 1, "one refresh in 40 s: {sends:?}");
        assert_eq!(sends[0].0, 30, "half-way through a 60 s token");
        app.update(Msg::Worker(Event::Failed {
            id: sends[0].1,
            profile: "short".into(),
            error: "server error HTTP 503 from h: try again later".into(),
            saved: None,
        }));
        let retries: Vec<i64> = (41..=100)
            .filter(|&s| !sent(&app.update(Msg::Tick(at(s)))).is_empty())
            .collect();
        assert_eq!(retries, [70], "one retry after a 30 s backoff");
    }

    #[test]
    fn refresh_due_picks_only_profiles_inside_the_margin() {
        let mut app = app(vec![
            profile("soon", Some(60)),
            profile("later", Some(7200)),
            profile("none", None),
        ]);
        assert_eq!(sent(&app.update(key('R'))), [("soon", "refresh")]);
    }

    #[test]
    fn quit_waits_for_refreshes_in_flight() {
        let mut app = app(vec![profile("p", Some(10))]);
        let effects = app.update(key('r'));
        let Effect::Send(cmd) = &effects[0] else {
            unreachable!()
        };
        assert!(app.update(key('q')).is_empty());
        assert!(app.quitting);
        let effects = app.update(Msg::Worker(Event::Succeeded {
            id: cmd.id,
            profile: "p".into(),
            outcome: Outcome::NewToken,
            saved: None,
        }));
        assert!(matches!(effects.last(), Some(Effect::Quit)));
    }

    #[test]
    fn copy_token_flashes_and_missing_token_explains() {
        // "q" has no token and sorts first.
        let mut app = app(vec![profile("p", Some(100)), profile("q", None)]);
        assert!(app.update(key('y')).is_empty());
        assert!(app.flash.as_ref().unwrap().0.contains("press a"));
        app.update(key('j'));
        let effects = app.update(key('y'));
        assert!(matches!(&effects[0], Effect::Copy { .. }));
        assert!(app.flash.as_ref().unwrap().0.contains("OSC 52"));
    }

    #[test]
    fn read_only_vault_refuses_changes_but_still_copies() {
        let mut app = App::new(
            vec![profile("p", Some(100))],
            at(0),
            Settings {
                read_only_reason: Some("read-only: /v is not writable".into()),
                ..app(vec![]).settings
            },
        );
        assert!(app.flash.as_ref().unwrap().0.contains("read-only"));
        for k in ['r', 'a', 'e', 'n', 'E', 'd', 'x', 'R', 'c'] {
            assert!(
                app.update(key(k)).is_empty(),
                "{k} acted on a read-only vault"
            );
            assert!(matches!(app.mode, Mode::Normal), "{k} opened a dialog");
        }
        assert!(matches!(&app.update(key('y'))[0], Effect::Copy { .. }));
    }

    #[test]
    fn new_profile_form_submits_a_save() {
        let mut app = app(vec![]);
        app.update(key('n'));
        for c in "acme".chars() {
            app.update(key(c));
        }
        for _ in 0..3 {
            app.update(code(KeyCode::Tab));
        }
        app.update(key('c'));
        app.update(code(KeyCode::Tab));
        app.update(Msg::Paste("secret\n".into()));
        let effects = app.update(code(KeyCode::Enter));
        assert!(
            matches!(&effects[0], Effect::Save(SaveOp::Upsert { original: None, profile }) if profile.name == "acme")
        );
    }
}
