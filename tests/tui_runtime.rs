//! The real event loop, in-process on a ratatui TestBackend, against the loopback mock
//! server: keys go in through the input channel, the worker does real HTTP and real saves.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::KeyCode;
use tokdeck::tui::runtime::Host;

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

    let recorder = Recorder::default();
    let app = common::app::start(&env, recorder.clone());

    // The never-authorized profile sorts first. a: the listener binds, the URL is copied.
    app.press(KeyCode::Char('a'));
    until("the listener", || listening(port)).await;
    until("the URL copy", || {
        !recorder.copies.lock().unwrap().is_empty()
    })
    .await;
    // Esc stops the listener at once: the port is free again.
    app.press(KeyCode::Esc);
    until("the listener to stop", || !listening(port)).await;

    // r on the authorized profile refreshes it; the new token is saved.
    let before = server.refresh_requests();
    app.press(KeyCode::Char('j'));
    app.press(KeyCode::Char('r'));
    until("the refresh", || server.refresh_requests() == before + 1).await;
    let newest = server.last_refresh_token().unwrap();
    until("the save", || env.vault_text().contains(&newest)).await;

    // q: the loop ends once the worker is done.
    let runtime = app.quit().await;
    let screen = runtime.terminal.backend().to_string();
    assert!(screen.contains("billing"), "{screen}");
    let copied = recorder.copies.lock().unwrap().clone();
    assert!(copied[0].starts_with("\u{1b}]52;c;"), "OSC 52: {copied:?}");
}
