//! App state and its pure transitions: `update(&mut App, Msg) -> Vec<Effect>`.
//!
//! The dispatchers here are matches of one-line arms: keys go to the mode's layer of the
//! keymap and then to the popup that owns the mode ([`super::popup`]) or to the main view's
//! actions (`actions.rs`); worker events go to `worker_events.rs`.

mod actions;
mod notices;
mod saves;
mod team;
mod worker_events;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use age::secrecy::SecretString;
use chrono::{DateTime, FixedOffset, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind};

pub use notices::{Flash, Reveal};

use super::keymap::{self, Action, Layer};
use super::popup::authorize::Authorize;
use super::popup::confirm::Confirm;
use super::popup::device::Device;
use super::popup::form::Form;
use super::popup::help::Help;
use super::popup::paste::Paste;
use super::popup::{Card, Reply, Request, filter};
use super::theme::Theme;
use crate::filter::Filter;
use crate::health::{Assessment, Health};
use crate::pacing::AutoRefresh;
use crate::vault::{Profile, VaultError};
use crate::worker::{Command, Event, Job, JobId, JobKind};

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
    /// A save the app asked for finished: the profiles as saved.
    Saved(Result<Vec<Profile>, SaveFailed>),
    /// The audit log's latest entries, newest first.
    Audited(Vec<crate::audit::Entry>),
    /// The team beside a vault a team shares, as read again, or why it could not be.
    Team(Result<crate::vault::TeamView, VaultError>),
}

/// Why a save the app asked for did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SaveFailed {
    /// The change does not fit the profiles (a name taken, a profile gone).
    #[error(transparent)]
    Refused(#[from] crate::vault::ProfileError),
    #[error(transparent)]
    Store(#[from] VaultError),
}

/// A change the app asks for; the runtime carries it out.
#[derive(Debug)]
pub enum Effect {
    Send(Command),
    /// Stop a job that may stop (the authorize listener).
    Cancel(JobId),
    /// Copy to the terminal's clipboard with OSC 52.
    Copy {
        text: SecretString,
        what: String,
    },
    OpenBrowser(String),
    Save(SaveOp),
    /// Quit once the worker has finished the jobs that may hold a new token.
    Quit,
    /// Quit now, whatever is running.
    QuitNow,
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

/// What has the keyboard.
#[derive(Debug, Clone)]
pub enum Mode {
    Normal,
    Filter,
    Help(Help),
    Authorize(Authorize),
    Device(Device),
    Paste(Paste),
    Confirm(Confirm),
    Form(Box<Form>),
}

impl Mode {
    /// The keymap layer of this mode.
    pub fn layer(&self) -> &'static Layer {
        match self {
            Mode::Normal => &keymap::NORMAL,
            Mode::Filter => &keymap::FILTER,
            Mode::Help(_) => &keymap::HELP,
            Mode::Authorize(_) => &keymap::AUTHORIZE,
            Mode::Device(_) => &keymap::DEVICE,
            Mode::Paste(_) => &keymap::PASTE,
            Mode::Confirm(_) => &keymap::CONFIRM,
            Mode::Form(_) => &keymap::FORM,
        }
    }

    /// The popup to draw over the main view, if any.
    pub fn card(&self, theme: &Theme, now: DateTime<Utc>, room: (u16, u16)) -> Option<Card> {
        match self {
            Mode::Normal | Mode::Filter => None,
            Mode::Help(help) => Some(help.card(theme)),
            Mode::Authorize(popup) => Some(popup.card(theme)),
            Mode::Device(popup) => Some(popup.card(theme, now, room)),
            Mode::Paste(popup) => Some(popup.card(theme)),
            Mode::Confirm(popup) => Some(popup.card(theme)),
            Mode::Form(form) => Some(form.card(theme)),
        }
    }
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
    pub kind: JobKind,
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
    /// The status-line message, while it shows.
    pub flash: Option<Flash>,
    /// The profile whose secrets show, and until when.
    pub reveal: Option<Reveal>,
    pub last_url: Option<String>,
    pub spinner: usize,
    /// Set by the first quit: the runtime is waiting for the worker to finish.
    pub quitting: bool,
    /// Rows the table showed last frame, for paging.
    pub page_size: usize,
    /// How far the detail pane could scroll last frame: J goes no further.
    pub detail_room: u16,
    /// The detail pane scrolled down, and for which profile: another one starts at the top.
    detail_scrolled: Option<(String, u16)>,
    /// When each auto-refresh profile was last tried, and its backoff after failures.
    auto: AutoRefresh,
    next_job: JobId,
    /// The audit log's latest entries, newest first; the detail pane shows the selected
    /// profile's.
    pub audit: Vec<crate::audit::Entry>,
    /// The profile the form saved, selected once the save lands.
    saving: Option<String>,
    /// The team sharing the vault, as last read; `None` for a vault no team shares.
    pub team: Option<Result<crate::vault::TeamView, VaultError>>,
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
            detail_room: 0,
            detail_scrolled: None,
            auto: AutoRefresh::default(),
            next_job: 1,
            audit: Vec::new(),
            saving: None,
            team: None,
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
            .is_some_and(|r| r.profile == name && r.until > self.now)
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
        let until = self.now + chrono::Duration::seconds(FLASH_FOR);
        self.flash = Some(Flash {
            text: text.into(),
            error,
            until,
        });
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
        self.order = self.sorted_rows();
        self.cursor = keep
            .and_then(|name| {
                self.order
                    .iter()
                    .position(|&i| self.profiles[i].name == name)
            })
            .unwrap_or(self.cursor)
            .min(self.order.len().saturating_sub(1));
    }

    /// The filter as typed, read; one that does not read (yet) lets everything through, and
    /// the header says why ([`Self::filter_error`]).
    pub fn parsed_filter(&self) -> Filter {
        Filter::parse(&self.filter).unwrap_or_default()
    }

    /// Why the filter as typed does not read, if it does not.
    pub fn filter_error(&self) -> Option<String> {
        Filter::parse(&self.filter).err().map(|e| e.to_string())
    }

    /// The rows the filter lets through, in the chosen order.
    fn sorted_rows(&self) -> Vec<usize> {
        let filter = self.parsed_filter();
        let with_environment = filter.asks_about_environment();
        let mut order: Vec<usize> = (0..self.profiles.len())
            .filter(|&i| {
                if filter.is_empty() {
                    return true;
                }
                let p = &self.profiles[i];
                // Reordered at every tick: a server's URL is parsed only when a word asks.
                let environment = if with_environment {
                    p.environment()
                } else {
                    String::new()
                };
                let team = self.team_of(p);
                let machines = team.as_ref().map(|t| t.machines()).unwrap_or_default();
                filter.matches(&crate::filter::Row {
                    name: &p.name,
                    state: self.assessments[i].health,
                    owner: &p.owner.to_string(),
                    environment: &environment,
                    group: p.group.as_deref(),
                    machines: &machines,
                    unkept: team.as_ref().is_some_and(|t| t.unkept),
                })
            })
            .collect();
        let (profiles, assessments) = (&self.profiles, &self.assessments);
        let expiry = |i: usize| assessments[i].access_left.unwrap_or(i64::MAX);
        let name = |a: usize, b: usize| profiles[a].name.cmp(&profiles[b].name);
        match self.sort {
            SortKey::Urgency => order.sort_by(|&a, &b| {
                (assessments[a].health.cmp(&assessments[b].health))
                    .then(expiry(a).cmp(&expiry(b)))
                    .then_with(|| name(a, b))
            }),
            SortKey::Name => order.sort_by(|&a, &b| name(a, b)),
            SortKey::Expiry => {
                order.sort_by(|&a, &b| expiry(a).cmp(&expiry(b)).then_with(|| name(a, b)));
            }
        }
        order
    }

    /// A job for the worker; the profile shows busy until its final event.
    fn command(&mut self, profile: &str, job: Job) -> Effect {
        let id = self.next_job;
        self.next_job += 1;
        let kind = job.kind();
        self.busy
            .insert(profile.to_string(), Busy { job: id, kind });
        Effect::Send(Command {
            id,
            profile: profile.to_string(),
            job,
        })
    }

    fn copy(&mut self, text: SecretString, what: String) -> Effect {
        self.flash(
            format!("sent {what} to the terminal's clipboard (OSC 52)"),
            false,
        );
        Effect::Copy { text, what }
    }

    fn replace_profile(&mut self, saved: Profile) {
        match self.profiles.iter_mut().find(|p| p.name == saved.name) {
            Some(p) => *p = saved,
            None => self.profiles.push(saved),
        }
    }

    /// Applies one message.
    pub fn update(&mut self, msg: Msg) -> Vec<Effect> {
        let effects = match msg {
            Msg::Key(key) => self.on_key(key),
            Msg::Paste(text) => self.on_paste(&text),
            Msg::Tick(now) => self.on_tick(now),
            Msg::Worker(event) => self.on_worker(event),
            Msg::Reloaded(profiles) => self.on_reloaded(profiles),
            Msg::Saved(result) => self.on_saved(result),
            Msg::Audited(entries) => {
                self.audit = entries;
                Vec::new()
            }
            Msg::Team(team) => {
                self.team = Some(team);
                Vec::new()
            }
        };
        self.recompute();
        effects
    }

    fn on_tick(&mut self, now: DateTime<Utc>) -> Vec<Effect> {
        self.now = now;
        self.spinner = self.spinner.wrapping_add(1);
        if self.flash.as_ref().is_some_and(|flash| flash.until <= now) {
            self.flash = None;
        }
        if self.reveal.as_ref().is_some_and(|r| r.until <= now) {
            self.reveal = None;
        }
        self.auto_refresh()
    }

    fn on_paste(&mut self, text: &str) -> Vec<Effect> {
        match &mut self.mode {
            Mode::Paste(popup) => popup.paste(text),
            Mode::Filter => self.filter.push_str(text.trim()),
            Mode::Form(form) => form.paste(text),
            _ => {}
        }
        Vec::new()
    }

    /// Keys go to the mode's layer; quitting and suspending work in every mode.
    fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let layer = self.mode.layer();
        let action = keymap::action_for(layer, &key);
        let typed = keymap::typed_char(layer, &key);
        if let Some(global @ (Action::Quit | Action::Suspend)) = action {
            return self.on_action(global);
        }
        let reply = match &mut self.mode {
            Mode::Normal => return self.on_normal_key(action, &key),
            Mode::Filter => self.on_filter_key(action, typed),
            Mode::Help(help) => help.on_action(action),
            Mode::Authorize(popup) => popup.on_action(action),
            Mode::Device(popup) => popup.on_action(action),
            Mode::Paste(popup) => popup.on_key(action, typed),
            Mode::Confirm(popup) => popup.on_action(action),
            Mode::Form(form) => form.on_key(action, typed, &self.profiles),
        };
        self.apply(reply)
    }

    fn on_normal_key(&mut self, action: Option<Action>, key: &KeyEvent) -> Vec<Effect> {
        match action {
            Some(action) => self.on_action(action),
            // Esc in the main view clears a kept filter.
            None if key.code == KeyCode::Esc => {
                self.filter.clear();
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    fn on_filter_key(&mut self, action: Option<Action>, typed: Option<char>) -> Reply {
        self.cursor = 0;
        filter::on_key(&mut self.filter, action, typed)
    }

    /// Carries out a popup's reply.
    fn apply(&mut self, reply: Reply) -> Vec<Effect> {
        match reply {
            Reply::Stay => Vec::new(),
            Reply::Close => self.close_popup(),
            Reply::Then(request) => self.on_request(request),
        }
    }

    fn close_popup(&mut self) -> Vec<Effect> {
        self.mode = Mode::Normal;
        Vec::new()
    }

    fn on_request(&mut self, request: Request) -> Vec<Effect> {
        if !matches!(request, Request::CopyUrl(_) | Request::Copy { .. }) {
            self.mode = Mode::Normal;
        }
        match request {
            Request::Exchange { profile, input } => {
                vec![self.command(&profile, Job::Exchange { input })]
            }
            Request::CopyUrl(url) => {
                vec![self.copy(SecretString::from(url), "the authorize URL".into())]
            }
            Request::Copy { text, what } => vec![self.copy(SecretString::from(text), what)],
            Request::Paste { profile } => self.open(Mode::Paste(Paste::new(profile))),
            Request::StopListener { profile, job } => self.stop_listener(&profile, job),
            Request::Delete(profile) => vec![Effect::Save(SaveOp::Delete(profile))],
            Request::Revoke(profile) => vec![self.command(&profile, Job::Revoke)],
            Request::Rediscover(profile) => vec![self.command(&profile, Job::Rediscover)],
            Request::Save { original, profile } => {
                self.saving = Some(profile.name.clone());
                vec![Effect::Save(SaveOp::Upsert { original, profile })]
            }
        }
    }

    fn open(&mut self, mode: Mode) -> Vec<Effect> {
        self.mode = mode;
        Vec::new()
    }

    /// Esc on a listening authorize popup: the listener stops and the profile is free at
    /// once (the worker's "cancelled" event follows).
    fn stop_listener(&mut self, profile: &str, job: JobId) -> Vec<Effect> {
        self.finish(profile, job);
        let text = format!("{profile}: stopped listening for the redirect");
        self.log(text.clone(), false);
        self.flash(text, false);
        vec![Effect::Cancel(job)]
    }

    fn finish(&mut self, profile: &str, id: JobId) {
        if self.busy.get(profile).is_some_and(|b| b.job == id) {
            self.busy.remove(profile);
        }
    }
}

#[cfg(test)]
mod tests;
