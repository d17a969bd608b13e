//! The agent's socket: binding it in a trusted place, the accept loop with its limits, and one
//! task per connection that reads request lines and writes answers (with heartbeats).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::handlers::answer;
use super::keeper::Keeper;
use super::place::{self, Made, Occupant};
use super::protocol::{self, HEARTBEAT, IDLE_TIMEOUT, LineError, Reply, Request};
use super::supervisor::Supervisor;

/// Most connections served at once; more wait in the kernel's queue. Each holds one
/// descriptor, and the vault, its lock and the worker's connections need theirs.
const MAX_CONNECTIONS: usize = 256;
/// Descriptors kept free for the vault, its lock, the log and the worker's HTTP connections.
const DESCRIPTOR_RESERVE: u64 = 128;
/// Accepts connections, at most [`connection_limit`] at a time, until the supervisor stops.
///
/// Meant to run as a task of the supervisor, on a worker thread: the thread that sees a
/// connection arrive accepts it and runs its task next, so a request is read and answered
/// without waking another thread.
pub async fn serve(
    listener: UnixListener,
    keeper: Arc<Keeper>,
    vault: String,
    supervisor: Supervisor,
) {
    let slots = Arc::new(Semaphore::new(connection_limit()));
    let mut backoff = Backoff::default();
    loop {
        let (stream, slot) = match accept(&listener, &slots).await {
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
        let (keeper, vault, stopper) = (keeper.clone(), vault.clone(), supervisor.clone());
        supervisor.spawn_until_stop(async move {
            connection(stream, &keeper, &vault, &stopper).await;
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
pub async fn bind(socket: &Path, vault: &str) -> anyhow::Result<(UnixListener, Made)> {
    place::prepare_folder(socket)?;
    if place::occupant(socket)? == Occupant::OwnSocket {
        if let Some(other) = super::ask::Client::connect_to(socket) {
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
async fn connection(stream: UnixStream, keeper: &Keeper, vault: &str, supervisor: &Supervisor) {
    let cred = stream.peer_cred().ok();
    let peer = cred.map(|c| c.uid());
    let reach = cred
        .and_then(|c| c.pid())
        .map_or(Reach::Local, Reach::of_peer);
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
            Err(_) | Ok(Ok(None) | Err(LineError::Broken | LineError::TimedOut)) => return,
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
            Ok(Ok(Some(line))) => {
                let serving = Serving {
                    keeper,
                    vault,
                    supervisor,
                    reach,
                };
                let Some(reply) = serving.reply(&line, &mut write).await else {
                    return;
                };
                reply
            }
        };
        if send(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

/// What one connection's requests are answered with.
struct Serving<'a> {
    keeper: &'a Keeper,
    vault: &'a str,
    supervisor: &'a Supervisor,
    reach: Reach,
}

impl Serving<'_> {
    /// The reply to one request line; `None` when the client has gone.
    async fn reply(
        &self,
        line: &str,
        write: &mut tokio::net::unix::OwnedWriteHalf,
    ) -> Option<Reply> {
        let (keeper, vault, supervisor, reach) =
            (self.keeper, self.vault, self.supervisor, self.reach);
        Some(match protocol::parse(line) {
            Ok(envelope) if envelope.vault.as_deref().is_some_and(|v| v != vault) => Reply {
                other_vault: true,
                ..Reply::error(format!("this agent keeps {vault}"))
            },
            Ok(envelope) if !reach.allows(&envelope.request) => Reply::error(
                "refused over a forwarded socket: the far end of `ssh -R` gets tokens and status only",
            ),
            Ok(envelope) if envelope.heartbeat => {
                let work = answer(reach.limit(envelope.request), keeper, vault, supervisor);
                with_heartbeat(work, write).await?
            }
            Ok(envelope) => answer(reach.limit(envelope.request), keeper, vault, supervisor).await,
            Err(why) => Reply::error(why.to_string()),
        })
    }
}

/// Where a client connects from. An `ssh -R` forward reaches the agent through the SSH client,
/// which runs as the user: its far end (another machine, whose root may use it) gets tokens and
/// status, and no more. It cannot stop the agent, reload it, or refresh at will: a token it
/// asks for is refreshed only when the agent would refresh it anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Local,
    Forwarded,
}

impl Reach {
    /// The peer process `pid` is the OpenSSH client: a forwarded socket.
    fn of_peer(pid: i32) -> Self {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let name = exe.as_deref().and_then(std::path::Path::file_name);
        if name.is_some_and(|n| n == "ssh") {
            Self::Forwarded
        } else {
            Self::Local
        }
    }

    fn allows(self, request: &Request) -> bool {
        self == Self::Local
            || matches!(
                request,
                Request::Token { .. } | Request::Status { .. } | Request::Info
            )
    }

    /// A forwarded client's `--min-valid` is not honoured: it would refresh at will.
    fn limit(self, request: Request) -> Request {
        match (self, request) {
            (Self::Forwarded, Request::Token { profile, .. }) => Request::Token {
                profile,
                min_valid_secs: None,
            },
            (_, request) => request,
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
