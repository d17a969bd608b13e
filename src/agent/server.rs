//! `tokdeck agent`: the socket, its permissions and peers, and one task per connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::keeper::Keeper;
use super::place::{self, Made, Occupant};
use super::protocol::{self, Info, LineError, Reply, Request};
use super::{AgentLock, canonical, socket_path};
use crate::context::Context;
use crate::duration::format_duration;
use crate::usable;
use crate::worker::{Job, WorkerHandle};

/// Most connections served at once; more wait in the kernel's queue. Each holds one
/// descriptor, and the vault, its lock and the worker's connections need theirs.
const MAX_CONNECTIONS: usize = 256;
/// Descriptors kept free for the vault, its lock, the log and the worker's HTTP connections.
const DESCRIPTOR_RESERVE: u64 = 128;
/// A connection with no request for this long is closed (clients reconnect before then).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// While an answer takes longer than this, a client that asked for them gets an empty line
/// this often, so that it can tell a working agent from a stalled socket.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Runs the agent in the foreground until `agent stop`, SIGTERM or Ctrl-C.
pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    harden();
    // Unlock once: any passphrase is asked now, and never again while the agent runs.
    let store = ctx.open_store()?;
    let vault = canonical(store.path());
    let _lock = AgentLock::acquire(store.path())?;
    let socket = socket_path();
    let (listener, made) = bind(&socket, &vault).await?;
    let WorkerHandle {
        commands,
        events,
        canceller,
        mut finished,
    } = ctx.worker(store.clone())?;
    let keeper = Arc::new(Keeper::new(store, ctx.clock.clone(), &ctx.config, commands));
    let pump = {
        let keeper = keeper.clone();
        tokio::spawn(async move { keeper.pump(events).await })
    };
    let schedule = tokio::spawn(keeper.clone().keep_alive(ctx.config.agent_interval));
    crate::note!(
        "tokdeck agent: keeping {vault} alive (every {}), listening on {}",
        format_duration(ctx.config.agent_interval),
        socket.display()
    );
    tracing::info!(vault = %vault, socket = %socket.display(), "agent started");
    let stop = CancellationToken::new();
    serve(&listener, &keeper, &vault, &stop).await;
    // Stop taking work, let refreshes in flight reach their save, then go.
    schedule.abort();
    drop(listener);
    // Only the socket this agent made: one that replaced it belongs to someone else.
    made.remove(&socket);
    canceller.cancel_all();
    keeper.close();
    finished.wait().await;
    pump.abort();
    tracing::info!("agent stopped");
    crate::note!("tokdeck agent: stopped");
    Ok(())
}

/// Keeps the agent's memory, which holds every secret of the vault for as long as it runs, out
/// of core dumps and away from other processes of the same user (`/proc/PID/mem`, ptrace),
/// as ssh-agent does. Best effort: a system that refuses is told about in the log.
fn harden() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot make the agent undumpable");
    }
    let no_core = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    if let Err(e) = no_core {
        tracing::warn!(error = %e, "cannot turn off core dumps");
    }
}

/// Accepts connections until asked to stop, at most [`connection_limit`] at a time.
async fn serve(
    listener: &UnixListener,
    keeper: &Arc<Keeper>,
    vault: &str,
    stop: &CancellationToken,
) {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let slots = Arc::new(Semaphore::new(connection_limit()));
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            accepted = accept(listener, &slots) => accepted,
            () = stop.cancelled() => return,
            _ = tokio::signal::ctrl_c() => return,
            Some(()) = async { match terminate.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => return,
        };
        let (stream, slot) = match accepted {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            Err(e) => {
                // Out of descriptors (EMFILE) stays so until a connection closes: trying again
                // at once would spin a core.
                tracing::warn!(error = %e, "cannot accept a connection; waiting");
                tokio::time::sleep(backoff.next()).await;
                continue;
            }
        };
        let (keeper, vault, stop) = (keeper.clone(), vault.to_string(), stop.clone());
        tokio::spawn(async move {
            connection(stream, &keeper, &vault, &stop).await;
            drop(slot);
        });
    }
}

/// The next connection, once a slot is free.
async fn accept(
    listener: &UnixListener,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(UnixStream, OwnedSemaphorePermit)> {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let (stream, _) = listener.accept().await?;
    Ok((stream, slot))
}

/// How many connections to serve at once: [`MAX_CONNECTIONS`], fewer when the descriptor
/// limit would not leave [`DESCRIPTOR_RESERVE`] free.
fn connection_limit() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    let room = soft.saturating_sub(DESCRIPTOR_RESERVE).max(8);
    usize::try_from(room).map_or(MAX_CONNECTIONS, |room| room.min(MAX_CONNECTIONS))
}

/// Waits after failed accepts: 50 ms, doubling to 2 s.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let wait = Duration::from_millis(50) * 2u32.saturating_pow(self.failures.min(6) - 1);
        wait.min(Duration::from_secs(2))
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Binds the socket in a private folder, checked all the way up, with mode 0600. A socket of
/// this user's left by a killed agent is replaced; one that answers belongs to a running
/// agent, and is left alone; anything else at that path is never removed.
async fn bind(socket: &Path, vault: &str) -> anyhow::Result<(UnixListener, Made)> {
    place::prepare_folder(socket)?;
    if place::occupant(socket)? == Occupant::OwnSocket {
        if let Some(other) = super::client::Client::connect_to(socket).await {
            let who = other.map_or_else(
                || "another agent".to_string(),
                |info| {
                    format!(
                        "an agent (pid {}) for {}",
                        info.pid,
                        crate::display::untrusted(&info.vault)
                    )
                },
            );
            return Err(anyhow!(
                "{who} already listens on {}: stop it, or set TOKDECK_AGENT_SOCK for a second agent ({vault})",
                socket.display()
            ));
        }
        // Nobody answers: a killed agent left it behind.
        std::fs::remove_file(socket)
            .with_context(|| format!("cannot replace the stale socket {}", socket.display()))?;
    }
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    let made = Made::record(socket)?;
    Ok((listener, made))
}

/// One client: only the agent's own user is served; each request line gets one reply line.
async fn connection(stream: UnixStream, keeper: &Keeper, vault: &str, stop: &CancellationToken) {
    let peer = stream.peer_cred().map(|c| c.uid()).ok();
    let (read, mut write) = stream.into_split();
    if peer != Some(place::uid()) {
        tracing::warn!(?peer, "refused a connection from another user");
        let _ = send(
            &mut write,
            &Reply::error("refused: this agent serves only its own user"),
        )
        .await;
        return;
    }
    let mut reader = BufReader::new(read);
    loop {
        let line = tokio::time::timeout(
            IDLE_TIMEOUT,
            protocol::read_line(&mut reader, protocol::MAX_REQUEST),
        );
        let reply = match line.await {
            Err(_) | Ok(Ok(None) | Err(LineError::Broken)) => return,
            Ok(Err(LineError::TooLong)) => {
                let too_long = format!(
                    "request longer than {} bytes: refused",
                    protocol::MAX_REQUEST
                );
                let _ = send(&mut write, &Reply::error(too_long)).await;
                // Closing with unread input would reset the connection and lose the answer:
                // say we are done, then swallow what is still coming (bounded).
                let _ = write.shutdown().await;
                drain(&mut reader).await;
                return;
            }
            Ok(Err(LineError::NotUtf8)) => {
                Reply::error("the request is not UTF-8: send one JSON object per line")
            }
            Ok(Ok(Some(line))) => match protocol::parse(&line) {
                Ok(envelope) if envelope.vault.as_deref().is_some_and(|v| v != vault) => Reply {
                    other_vault: true,
                    ..Reply::error(format!("this agent keeps {vault}"))
                },
                Ok(envelope) if envelope.heartbeat => {
                    let work = answer(envelope.request, keeper, vault, stop);
                    let Some(reply) = with_heartbeat(work, &mut write).await else {
                        return;
                    };
                    reply
                }
                Ok(envelope) => answer(envelope.request, keeper, vault, stop).await,
                Err(why) => Reply::error(why),
            },
        };
        if send(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

/// Runs `work`, writing an empty line every [`HEARTBEAT`] while it lasts; `None` when the
/// client has gone.
async fn with_heartbeat(
    work: impl std::future::Future<Output = Reply>,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> Option<Reply> {
    tokio::pin!(work);
    let start = tokio::time::Instant::now() + HEARTBEAT;
    let mut beats = tokio::time::interval_at(start, HEARTBEAT);
    loop {
        tokio::select! {
            reply = &mut work => return Some(reply),
            _ = beats.tick() => {
                if write.write_all(b"\n").await.is_err() {
                    return None;
                }
            }
        }
    }
}

/// Reads and drops what a refused client still sends: at most 4 MiB or 2 seconds.
async fn drain(reader: &mut (impl tokio::io::AsyncRead + Unpin)) {
    use tokio::io::AsyncReadExt;
    let mut sink = tokio::io::sink();
    let mut limited = reader.take(4 * 1024 * 1024);
    let bounded = tokio::io::copy(&mut limited, &mut sink);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), bounded).await;
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).unwrap_or_else(|_| br#"{"ok":false}"#.to_vec());
    line.push(b'\n');
    write.write_all(&line).await
}

async fn answer(request: Request, keeper: &Keeper, vault: &str, stop: &CancellationToken) -> Reply {
    match request {
        Request::Token { profile } => token(keeper, &profile).await,
        Request::Status { json, warn_secs } => status(keeper, json, warn_secs),
        Request::Refresh { profile } => refresh(keeper, profile).await,
        Request::Reload => reload(keeper).await,
        Request::Shutdown => {
            stop.cancel();
            Reply::ok()
        }
        Request::Info => info(keeper, vault),
    }
}

async fn token(keeper: &Keeper, name: &str) -> Reply {
    use age::secrecy::ExposeSecret;
    let refresh = |job: Job| keeper.refresh(name, job);
    let store = keeper.store.clone();
    match usable::usable_token(&store, name, &keeper.clock, keeper.refresh_margin, refresh).await {
        Ok(issued) => Reply {
            token: Some(issued.access_token.expose_secret().to_string()),
            expires_at: issued.expires_at,
            env_var: issued.env_var,
            api_base: Some(issued.api_base),
            warning: issued.warning,
            ..Reply::ok()
        },
        Err(e) => Reply::error(e.to_string()),
    }
}

fn status(keeper: &Keeper, json: bool, warn_secs: u64) -> Reply {
    let warn = std::time::Duration::from_secs(warn_secs);
    let now = keeper.clock.now();
    let rows = keeper
        .store
        .read(|data| crate::report::rows(data, now, warn));
    match rows {
        Ok(mut rows) => {
            let code = crate::report::exit_code(&rows);
            let text = if json {
                crate::report::json(&mut rows).map(|j| j + "\n")
            } else {
                Ok(crate::report::table(&rows))
            };
            match text {
                Ok(text) => Reply {
                    text: Some(text),
                    code: Some(code),
                    ..Reply::ok()
                },
                Err(e) => Reply::error(e.to_string()),
            }
        }
        Err(e) => Reply::error(e.to_string()),
    }
}

async fn refresh(keeper: &Keeper, profile: Option<String>) -> Reply {
    let names = match profile {
        Some(name) => vec![name],
        None => match keeper.store.read(|d| {
            d.profiles
                .iter()
                .filter(|p| p.token.as_ref().is_some_and(|t| t.refresh_token.is_some()))
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        }) {
            Ok(names) => names,
            Err(e) => return Reply::error(e.to_string()),
        },
    };
    let jobs = names.iter().map(|name| {
        keeper.refresh(
            name,
            Job::Refresh {
                if_expiring_within: None,
            },
        )
    });
    let failures: Vec<String> = futures_util::future::join_all(jobs)
        .await
        .into_iter()
        .zip(&names)
        .filter_map(|(r, name)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    if failures.is_empty() {
        Reply::ok()
    } else {
        Reply::error(failures.join("; "))
    }
}

async fn reload(keeper: &Keeper) -> Reply {
    let store = keeper.store.clone();
    let reload = move || {
        store.reload_if_changed()?;
        store.write_back_kept()
    };
    match tokio::task::spawn_blocking(reload).await {
        Ok(Ok(_)) => Reply::ok(),
        Ok(Err(e)) => Reply::error(e.to_string()),
        Err(e) => Reply::error(format!("internal error: {e}")),
    }
}

fn info(keeper: &Keeper, vault: &str) -> Reply {
    Reply {
        info: Some(Info {
            pid: std::process::id(),
            since: keeper.since,
            vault: vault.to_string(),
            last: keeper.last(),
        }),
        ..Reply::ok()
    }
}
