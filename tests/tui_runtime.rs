//! The real event loop, in-process on a ratatui TestBackend, against the loopback mock
//! server: keys go in through the input channel, the worker does real HTTP and real saves.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokdeck::clock::Clock;
use tokdeck::oauth::OAuthClient;
use tokdeck::tui::app::{App, Settings};
use tokdeck::tui::runtime::{Host, Runtime};
use tokdeck::tui::theme::Theme;
use tokdeck::vault::{IdentityFile, Store, Unlock};
use tokdeck::worker::{self, WorkerConfig};

use common::{Env, MockServer};

/// Records what the loop asks of the outside world.
#[derive(Clone, Default)]
struct Recorder {
    copies: Arc<Mutex<Vec<String>>>,
}

impl Host for Recorder {
    fn clipboard(&mut self, osc52: &str) {
        self.copies.lock().unwrap().push(osc52.to_string());
    }

    fn open_browser(&mut self, _url: &str) {}

    fn suspend(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

fn key(code: KeyCode) -> TermEvent {
    TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_loop_authorizes_cancels_refreshes_and_saves() {
    let server = MockServer::start();
    let env = Env::new();
    env.authorized_profile("billing", &server, &[]);
    let port = env.add_loopback_profile("a-new", &server, &[]);

    let unlock = Unlock::Identity(
        IdentityFile::load(&env.identity(), tokdeck::vault::crypto::NoPrompt).unwrap(),
    );
    let store = Arc::new(Store::open(&env.vault(), unlock).unwrap());
    let worker = worker::spawn(WorkerConfig {
        store: store.clone(),
        client: OAuthClient::new(Duration::from_secs(5), "2025-04-01").unwrap(),
        clock: Clock::System,
        audit: None,
        max_concurrent_jobs: 4,
    });
    let settings = Settings {
        warn: Duration::from_secs(86_400),
        refresh_margin: Duration::from_secs(300),
        vault_label: "vault.age".into(),
        utc_offset: Clock::System.utc_offset(),
        read_only_reason: None,
    };
    let app = App::new(
        store.snapshot().unwrap().profiles,
        Clock::System.now(),
        settings,
    );
    let recorder = Recorder::default();
    let runtime = Runtime {
        audit: None,
        terminal: Terminal::new(TestBackend::new(120, 40)).unwrap(),
        host: recorder.clone(),
        theme: Theme::built_in("default").unwrap(),
        store,
        clock: Clock::System,
    };
    let (keys, input) = tokio::sync::mpsc::unbounded_channel();
    let running = tokio::spawn(runtime.run(app, worker, input));

    // The never-authorized profile sorts first. a: the listener binds, the URL is copied.
    keys.send(key(KeyCode::Char('a'))).unwrap();
    until("the listener", || listening(port)).await;
    until("the URL copy", || {
        !recorder.copies.lock().unwrap().is_empty()
    })
    .await;
    // Esc stops the listener at once: the port is free again.
    keys.send(key(KeyCode::Esc)).unwrap();
    until("the listener to stop", || !listening(port)).await;

    // r on the authorized profile refreshes it; the new token is saved.
    let before = server.refresh_requests();
    keys.send(key(KeyCode::Char('j'))).unwrap();
    keys.send(key(KeyCode::Char('r'))).unwrap();
    until("the refresh", || server.refresh_requests() == before + 1).await;
    let newest = server.last_refresh_token().unwrap();
    until("the save", || env.vault_text().contains(&newest)).await;

    // q: the loop ends once the worker is done.
    keys.send(key(KeyCode::Char('q'))).unwrap();
    let runtime = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the loop ended")
        .unwrap()
        .unwrap();
    let screen = runtime.terminal.backend().to_string();
    assert!(screen.contains("billing"), "{screen}");
    let copied = recorder.copies.lock().unwrap().clone();
    assert!(copied[0].starts_with("\u{1b}]52;c;"), "OSC 52: {copied:?}");
}
