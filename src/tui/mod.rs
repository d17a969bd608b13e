//! The full-screen app: state and pure transitions (`app`), rendering (`view`), the keymap,
//! themes, the profile form; this module is the runtime at the edge that does the I/O.

pub mod app;
pub mod auto_refresh;
pub mod form;
pub mod keymap;
pub mod osc52;
pub mod theme;
pub mod view;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Offset;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, Event as TermEvent};
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use crate::commands::context::Context;
use crate::config::Paths;
use crate::vault::{Profile, Store};
use crate::worker::WorkerHandle;
use app::{App, Effect, Msg, SaveOp, Settings};
use theme::Theme;

/// How long the input thread waits for a key before letting go of crossterm's reader.
const INPUT_POLL: Duration = Duration::from_millis(250);

/// Picks the theme: `NO_COLOR` wins, then --theme / config.
pub fn resolve_theme(ctx: &Context) -> anyhow::Result<Theme> {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return Ok(Theme::monochrome());
    }
    let name = ctx
        .global
        .theme
        .clone()
        .unwrap_or_else(|| ctx.config.theme.clone());
    let user_dir = Paths::config_dir().map(|d| d.join("themes"));
    Theme::load(&name, user_dir.as_deref())
}

/// Opens the TUI over the vault.
pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    // Unlock (and any passphrase prompt) happens before the screen is taken over.
    let store = ctx.open_store()?;
    let theme = resolve_theme(ctx)?;
    let handle = ctx.worker(store.clone())?;
    let settings = Settings {
        warn: ctx.config.warn,
        refresh_margin: ctx.config.refresh_margin,
        vault_label: home_relative(store.path()),
        utc_offset: chrono::Local::now().offset().fix(),
        read_only_reason: read_only_reason(store.path()),
    };
    let data = store.snapshot()?;
    let warnings = crate::commands::context::control_character_warnings(&data);
    let mut app = App::new(data.profiles, ctx.clock.now(), settings);
    for warning in warnings {
        app.warn(warning);
    }
    let mut terminal = ratatui::try_init().context("cannot open the terminal")?;
    let _ = crossterm::execute!(std::io::stdout(), EnableBracketedPaste);
    let result = event_loop(&mut terminal, app, &theme, store, handle, ctx).await;
    // Blank the alternate screen before leaving it: some terminals (tmux after a resize among
    // them) otherwise keep the last frame on screen after quitting.
    let _ = terminal.clear();
    let _ = crossterm::execute!(std::io::stdout(), DisableBracketedPaste);
    ratatui::restore();
    result
}

/// Why changes cannot be saved, when the vault's folder is not writable (a read-only mount, a
/// shared checkout): the app then shows the vault but refuses changes up front.
fn read_only_reason(vault: &std::path::Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let dir = vault
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: access only reads the NUL-terminated path we pass.
    let writable = unsafe { libc::access(c_dir.as_ptr(), libc::W_OK) } == 0;
    (!writable).then(|| {
        format!(
            "read-only: {} is not writable, so changes cannot be saved",
            dir.display()
        )
    })
}

/// `~/...` for paths under the home directory.
fn home_relative(path: &std::path::Path) -> String {
    match directories::BaseDirs::new().and_then(|b| {
        path.strip_prefix(b.home_dir())
            .ok()
            .map(|p| p.display().to_string())
    }) {
        Some(rest) => format!("~/{rest}"),
        None => path.display().to_string(),
    }
}

fn spawn_input_reader() -> mpsc::UnboundedReceiver<TermEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        // Wait with `poll` and a timeout rather than blocking in `read`: crossterm's reader
        // lock is then free between waits, so a cursor-position query (ratatui makes one on
        // clear, e.g. after Ctrl-Z) is not starved. Four wake-ups a second cost next to nothing.
        loop {
            match crossterm::event::poll(INPUT_POLL) {
                Ok(false) => {
                    if tx.is_closed() {
                        break;
                    }
                }
                Ok(true) => match crossterm::event::read() {
                    Ok(event) => {
                        if tx.send(event).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Err(_) => break,
            }
        }
    });
    rx
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    mut app: App,
    theme: &Theme,
    store: Arc<Store>,
    handle: WorkerHandle,
    ctx: &Context,
) -> anyhow::Result<()> {
    let WorkerHandle {
        commands,
        mut events,
    } = handle;
    let mut input = spawn_input_reader();
    let (msg_tx, mut msg_rx) = mpsc::unbounded_channel::<Msg>();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ticks: u64 = 0;
    loop {
        app.page_size = terminal
            .size()
            .map(|s| view::table_rows(s.into(), app.show_log))
            .unwrap_or(10);
        terminal.draw(|frame| view::draw(frame, &app, theme))?;
        let msg = tokio::select! {
            Some(event) = input.recv() => match event {
                TermEvent::Key(key) => Msg::Key(key),
                TermEvent::Paste(text) => Msg::Paste(text),
                // A resize only needs the redraw at the top of the loop.
                _ => continue,
            },
            Some(event) = events.recv() => Msg::Worker(event),
            Some(msg) = msg_rx.recv() => msg,
            _ = tick.tick() => {
                ticks += 1;
                if ticks.is_multiple_of(2) {
                    watch_vault(store.clone(), msg_tx.clone());
                }
                Msg::Tick(ctx.clock.now())
            }
        };
        for effect in app.update(msg) {
            match effect {
                Effect::Send(command) => {
                    if commands.send(command).is_err() {
                        anyhow::bail!("the OAuth worker stopped unexpectedly");
                    }
                }
                Effect::Copy { text, .. } => {
                    use age::secrecy::ExposeSecret;
                    let seq = osc52::sequence(text.expose_secret());
                    let mut out = std::io::stdout();
                    let _ = out.write_all(seq.as_bytes()).and_then(|_| out.flush());
                }
                Effect::OpenBrowser(url) => {
                    crate::commands::oauth::open_browser(&url);
                }
                Effect::Save(op) => save(store.clone(), op, msg_tx.clone()),
                Effect::Quit => return Ok(()),
                Effect::Suspend => {
                    ratatui::restore();
                    // SAFETY: raising a signal on our own process has no memory-safety
                    // preconditions; the process stops here until SIGCONT.
                    unsafe {
                        libc::raise(libc::SIGTSTP);
                    }
                    // Back in the foreground: re-enter raw mode and the alternate screen on
                    // the same Terminal. A new Terminal would query the cursor position,
                    // whose reply the input thread consumes.
                    crossterm::terminal::enable_raw_mode().context("cannot reopen the terminal")?;
                    crossterm::execute!(
                        std::io::stdout(),
                        crossterm::terminal::EnterAlternateScreen,
                        EnableBracketedPaste
                    )
                    .context("cannot reopen the terminal")?;
                    terminal.clear()?;
                }
            }
        }
    }
}

/// Tells the app when another process changed the vault.
fn watch_vault(store: Arc<Store>, tx: mpsc::UnboundedSender<Msg>) {
    tokio::task::spawn_blocking(move || {
        if let Ok(Some(data)) = store.reload_if_changed() {
            let _ = tx.send(Msg::Reloaded(data.profiles));
        }
    });
}

/// Saves a UI change through the same locked, atomic path as the CLI.
fn save(store: Arc<Store>, op: SaveOp, tx: mpsc::UnboundedSender<Msg>) {
    tokio::task::spawn_blocking(move || {
        let result = store.update(|data| -> Result<Vec<Profile>, String> {
            let changed = match op {
                SaveOp::Delete(name) => data.remove(&name).map(|_| ()),
                SaveOp::Upsert {
                    original: None,
                    profile,
                } => data.insert(*profile),
                SaveOp::Upsert {
                    original: Some(original),
                    profile,
                } => data.replace(&original, *profile),
            };
            changed.map_err(|e| e.to_string())?;
            Ok(data.profiles.clone())
        });
        let msg = match result {
            Ok(Ok(profiles)) => Msg::Saved(Ok(profiles)),
            Ok(Err(e)) => Msg::Saved(Err(e)),
            Err(e) => Msg::Saved(Err(e.to_string())),
        };
        let _ = tx.send(msg);
    });
}
