//! The runtime at the edge: it owns the terminal, feeds input, ticks, worker events and vault
//! changes to the pure app, and carries out the effects the app returns. It is generic over
//! the ratatui backend and takes its input as a channel, so tests run the real loop on a
//! `TestBackend` with keys they send.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, Event as TermEvent};
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::layout::Rect;
use tokio::sync::mpsc;

use super::app::{App, Effect, Msg, SaveFailed, SaveOp};
use super::theme::Theme;
use super::{osc52, view};
use crate::clock::Clock;
use crate::vault::{Profile, Store, StoreHandle};
use crate::worker::{Canceller, Command, Event, WorkerHandle};

/// How long the input thread waits for a key before letting go of crossterm's reader.
const INPUT_POLL: Duration = Duration::from_millis(250);

/// The outside world the loop acts on besides the screen: the clipboard, a browser, the
/// shell's job control. The terminal implementation does the real thing; tests record.
pub trait Host {
    /// Sends an OSC 52 sequence to the terminal.
    fn clipboard(&mut self, osc52: &str);
    fn open_browser(&mut self, url: &str);
    /// Stops the process until the shell continues it, leaving the terminal usable meanwhile.
    fn suspend(&mut self) -> anyhow::Result<()>;
}

/// The real terminal.
pub struct TerminalHost;

impl Host for TerminalHost {
    fn clipboard(&mut self, osc52: &str) {
        let mut out = std::io::stdout();
        let _ = out.write_all(osc52.as_bytes()).and_then(|()| out.flush());
    }

    fn open_browser(&mut self, url: &str) {
        crate::platform::open_browser(url);
    }

    fn suspend(&mut self) -> anyhow::Result<()> {
        ratatui::restore();
        crate::platform::suspend().context("cannot suspend")?;
        // Back in the foreground: re-enter raw mode and the alternate screen on the same
        // terminal. A new Terminal would query the cursor position, whose reply the input
        // thread would consume.
        crossterm::terminal::enable_raw_mode().context("cannot reopen the terminal")?;
        crossterm::execute!(
            std::io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            EnableBracketedPaste
        )
        .context("cannot reopen the terminal")
    }
}

/// Reads terminal input on a thread of its own and sends it on.
pub fn spawn_input_reader() -> mpsc::UnboundedReceiver<TermEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        // Wait with `poll` and a timeout rather than blocking in `read`: crossterm's reader
        // lock is then free between waits, so a cursor-position query (ratatui makes one on
        // clear, e.g. after Ctrl-Z) is not starved. Four wake-ups a second cost next to nothing.
        loop {
            match crossterm::event::poll(INPUT_POLL) {
                Ok(false) if tx.is_closed() => break,
                Ok(false) => {}
                Ok(true) => {
                    let sent = crossterm::event::read().map(|event| tx.send(event));
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

/// Everything the loop works with.
pub struct Runtime<B: Backend, H: Host> {
    /// The screen; handed back when the loop ends (tests read its last frame).
    pub terminal: Terminal<B>,
    /// Clipboard, browser and suspend.
    pub host: H,
    pub theme: Theme,
    /// The vault: saves from the app, and the watch for changes made by others.
    pub store: StoreHandle,
    /// "Now" for the countdowns.
    pub clock: Clock,
    /// The audit log, read again after each job ends, for the detail pane.
    pub audit: Option<std::path::PathBuf>,
}

/// What the loop is doing with the worker.
enum Phase {
    Running(mpsc::UnboundedSender<Command>),
    /// Quitting: no new jobs; waiting for the worker to finish those that may hold a token.
    Draining,
}

impl<B, H> Runtime<B, H>
where
    B: Backend,
    B::Error: std::error::Error + Send + Sync + 'static,
    H: Host,
{
    /// Asks for the audit log's latest entries, when it is kept.
    fn read_audit(&self, tx: &mpsc::UnboundedSender<Msg>) {
        if let Some(path) = &self.audit {
            read_audit_into(path.clone(), tx.clone());
        }
    }

    /// Runs until the app quits; returns the runtime (with its terminal) for inspection.
    pub async fn run(
        mut self,
        mut app: App,
        worker: WorkerHandle,
        mut input: mpsc::UnboundedReceiver<TermEvent>,
    ) -> anyhow::Result<Self> {
        let WorkerHandle {
            commands,
            mut events,
            canceller,
            mut finished,
        } = worker;
        let mut phase = Phase::Running(commands);
        let (msg_tx, mut msg_rx) = mpsc::unbounded_channel::<Msg>();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut ticks: u64 = 0;
        let mut audit_stale = false;
        let team_reading = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.read_audit(&msg_tx);
        loop {
            self.draw(&mut app)?;
            let msg = tokio::select! {
                Some(event) = input.recv() => match event {
                    TermEvent::Key(key) => Msg::Key(key),
                    TermEvent::Paste(text) => Msg::Paste(text),
                    // A resize only needs the redraw at the top of the loop.
                    _ => continue,
                },
                Some(event) = events.recv() => {
                    // Read again at the next tick, once however many jobs ended meanwhile.
                    audit_stale |= matches!(event, Event::Succeeded { .. } | Event::Failed { .. });
                    Msg::Worker(event)
                }
                Some(msg) = msg_rx.recv() => msg,
                () = finished.wait(), if matches!(phase, Phase::Draining) => return Ok(self),
                _ = tick.tick() => {
                    ticks += 1;
                    if ticks.is_multiple_of(2) {
                        watch_vault(self.store.clone(), msg_tx.clone());
                    }
                    if ticks % TEAM_EVERY_TICKS == 1 {
                        read_team(&self.store, &team_reading, &msg_tx);
                    }
                    if std::mem::take(&mut audit_stale) {
                        self.read_audit(&msg_tx);
                    }
                    Msg::Tick(self.clock.now())
                }
            };
            for effect in app.update(msg) {
                match self.perform(effect, &mut phase, &canceller, &msg_tx)? {
                    Flow::Continue => {}
                    Flow::Stop => return Ok(self),
                }
            }
        }
    }

    fn draw(&mut self, app: &mut App) -> anyhow::Result<()> {
        let size = self.terminal.size().ok().map(Rect::from);
        app.page_size = size.map_or(10, |s| view::table_rows(s, app.show_log));
        app.detail_room = size.map_or(0, |s| view::detail_overflow(s, app, &self.theme));
        self.terminal
            .draw(|frame| view::draw(frame, app, &self.theme))
            .context("cannot draw")?;
        Ok(())
    }

    /// Carries out one effect.
    fn perform(
        &mut self,
        effect: Effect,
        phase: &mut Phase,
        canceller: &Canceller,
        msg_tx: &mpsc::UnboundedSender<Msg>,
    ) -> anyhow::Result<Flow> {
        match effect {
            Effect::Send(command) => send(phase, command)?,
            Effect::Cancel(job) => canceller.cancel(job),
            Effect::Copy { text, .. } => {
                use age::secrecy::ExposeSecret;
                self.host.clipboard(&osc52::sequence(text.expose_secret()));
            }
            Effect::OpenBrowser(url) => self.host.open_browser(&url),
            Effect::Save(op) => save(self.store.clone(), op, msg_tx.clone()),
            Effect::Quit => {
                // The worker's shutdown stops listeners and lets token-bearing jobs finish;
                // the loop ends when it is done (see `Phase::Draining`).
                canceller.cancel_all();
                *phase = Phase::Draining;
            }
            Effect::QuitNow => return Ok(Flow::Stop),
            Effect::Suspend => {
                self.host.suspend()?;
                self.terminal.clear()?;
            }
        }
        Ok(Flow::Continue)
    }
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Stop,
}

fn send(phase: &Phase, command: Command) -> anyhow::Result<()> {
    match phase {
        Phase::Running(commands) => commands
            .send(command)
            .map_err(|_| anyhow::anyhow!("the OAuth worker stopped unexpectedly")),
        // While quitting, new jobs are not started.
        Phase::Draining => Ok(()),
    }
}

/// Tells the app when another process changed the vault.
/// Reads the audit log's latest entries off the loop and sends them to the app.
fn read_audit_into(path: std::path::PathBuf, tx: mpsc::UnboundedSender<Msg>) {
    tokio::task::spawn_blocking(move || {
        let mut entries = crate::audit::read_tail(&path, AUDIT_TAIL_BYTES);
        entries.truncate(AUDIT_SHOWN);
        let _ = tx.send(Msg::Audited(entries));
    });
}

/// How often, in ticks of a second, the team beside a shared vault is read again.
const TEAM_EVERY_TICKS: u64 = 10;

/// Reads the team beside the vault off the loop, one read at a time (a slow store must not
/// pile them up); a vault no team shares sends nothing.
fn read_team(
    store: &StoreHandle,
    reading: &Arc<std::sync::atomic::AtomicBool>,
    tx: &mpsc::UnboundedSender<Msg>,
) {
    use std::sync::atomic::Ordering;
    if store.location().file().is_some() || reading.swap(true, Ordering::SeqCst) {
        return;
    }
    let (store, reading, tx) = (store.clone(), reading.clone(), tx.clone());
    tokio::spawn(async move {
        let team = match store.run(Store::team).await {
            Ok(Some(view)) => Some(Ok(view)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        };
        reading.store(false, Ordering::SeqCst);
        if let Some(team) = team {
            let _ = tx.send(Msg::Team(team));
        }
    });
}

fn watch_vault(store: StoreHandle, tx: mpsc::UnboundedSender<Msg>) {
    tokio::spawn(async move {
        if let Ok(Some(data)) = store.run(Store::reload_if_changed).await {
            let _ = tx.send(Msg::Reloaded(data.profiles));
        }
    });
}

/// Saves a UI change through the same locked, atomic path as the CLI.
fn save(store: StoreHandle, op: SaveOp, tx: mpsc::UnboundedSender<Msg>) {
    tokio::spawn(async move {
        let saving = store.run(move |store| {
            store.update(|data| -> Result<Vec<Profile>, SaveFailed> {
                let changed = match &op {
                    SaveOp::Delete(name) => data.remove(name).map(|_| ()),
                    SaveOp::Upsert {
                        original: None,
                        profile,
                    } => data.insert(Profile::clone(profile)),
                    SaveOp::Upsert {
                        original: Some(original),
                        profile,
                    } => data.replace(original, Profile::clone(profile)),
                };
                changed?;
                Ok(data.profiles.clone())
            })
        });
        let _ = tx.send(Msg::Saved(saving.await.unwrap_or_else(|e| Err(e.into()))));
    });
}

/// The audit lines the detail pane can show: the latest, across profiles.
const AUDIT_SHOWN: usize = 500;
/// How much of the audit log's end is read for them.
const AUDIT_TAIL_BYTES: u64 = 256 * 1024;

/// Opens the app in the real terminal: unlock first (any passphrase prompt happens before the
/// screen is taken over), run, and restore the terminal however it ends.
pub async fn run_in_terminal(
    app: App,
    theme: Theme,
    store: StoreHandle,
    worker: WorkerHandle,
    clock: Clock,
    audit: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let terminal = ratatui::try_init().context("cannot open the terminal")?;
    let _ = crossterm::execute!(std::io::stdout(), EnableBracketedPaste);
    let runtime = Runtime {
        terminal,
        host: TerminalHost,
        theme,
        store,
        clock,
        audit,
    };
    let result = match runtime.run(app, worker, spawn_input_reader()).await {
        Ok(mut runtime) => {
            // Blank the alternate screen before leaving it: some terminals (tmux after a
            // resize among them) otherwise keep the last frame on screen after quitting.
            let _ = runtime.terminal.clear();
            Ok(())
        }
        Err(e) => Err(e),
    };
    let _ = crossterm::execute!(std::io::stdout(), DisableBracketedPaste);
    ratatui::restore();
    result
}
