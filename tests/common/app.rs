//! The app's real event loop, in-process on a ratatui TestBackend over a test home's vault:
//! keys go in through the input channel, the worker does real HTTP and real saves.

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokdeck::clock::Clock;
use tokdeck::oauth::OAuthClient;
use tokdeck::tui::app::{App, Settings};
use tokdeck::tui::runtime::{Host, Runtime};
use tokdeck::tui::theme::Theme;
use tokdeck::vault::{IdentityFile, Store, StoreHandle, Unlock};
use tokdeck::worker::{self, WorkerConfig};

use super::Env;

/// A running loop: its keys, and the task that hands the runtime back when it ends.
pub struct RunningApp<H: Host> {
    keys: tokio::sync::mpsc::UnboundedSender<TermEvent>,
    running: tokio::task::JoinHandle<anyhow::Result<Runtime<TestBackend, H>>>,
}

/// Starts the loop on `env`'s vault at 120x40, with `host` for clipboard and browser.
pub fn start<H: Host + Send + 'static>(env: &Env, host: H) -> RunningApp<H> {
    let unlock = Unlock::Identity(
        IdentityFile::load(&env.identity(), tokdeck::vault::crypto::NoPrompt).unwrap(),
    );
    let opened = Arc::new(Store::open(&env.vault(), unlock).unwrap());
    let profiles = opened.snapshot().unwrap().profiles;
    let store = StoreHandle::new(opened);
    let worker = worker::spawn(WorkerConfig {
        store: store.clone(),
        client: OAuthClient::new(Duration::from_secs(5), "2025-04-01").unwrap(),
        clock: Clock::System,
        audit: None,
        one_shot: false,
        spool: None,
        max_concurrent_jobs: 4,
    });
    let settings = Settings {
        warn: Duration::from_secs(86_400),
        refresh_margin: Duration::from_secs(300),
        vault_label: "vault.age".into(),
        utc_offset: Clock::System.utc_offset(),
        read_only_reason: None,
    };
    let app = App::new(profiles, Clock::System.now(), settings);
    let runtime = Runtime {
        audit: None,
        terminal: Terminal::new(TestBackend::new(120, 40)).unwrap(),
        host,
        theme: Theme::built_in("default").unwrap(),
        store,
        clock: Clock::System,
    };
    let (keys, input) = tokio::sync::mpsc::unbounded_channel();
    let running = tokio::spawn(runtime.run(app, worker, input));
    RunningApp { keys, running }
}

impl<H: Host + Send + 'static> RunningApp<H> {
    /// Presses `code`.
    pub fn press(&self, code: KeyCode) {
        self.keys
            .send(TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
            .unwrap();
    }

    /// Presses q and waits (15 s at most) for the loop to end once the worker is done.
    pub async fn quit(self) -> Runtime<TestBackend, H> {
        self.press(KeyCode::Char('q'));
        tokio::time::timeout(Duration::from_secs(15), self.running)
            .await
            .expect("the loop ended")
            .unwrap()
            .unwrap()
    }
}
