//! Asking a running agent: `token`, `exec`, `api` and `status` use it when its socket answers
//! for the same vault, so they neither decrypt nor prompt.
//!
//! Nothing the socket says is taken on trust: the way to it is checked (see
//! [`super::place`]), the process listening must run as this user or root, an answer must
//! come within `ANSWER_IDLE` of the request or of the agent's last heartbeat, and what an
//! answer holds is checked again by its user (`exec`'s variable, `api`'s base URL, escaped
//! text). When any of that fails the client opens the vault itself, with a warning.
//!
//! The client blocks, with a timeout on every wait: a request to a local socket needs no
//! async runtime, so `token` and `exec` start none when the agent answers.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};

use super::place;
use super::protocol::{
    self, Envelope, HEARTBEAT, IDLE_TIMEOUT, Info, LineError, Reply, Request, VERSION,
};
use super::{allowed, canonical, socket_path};
use crate::context::Context;

/// How long a request may take in all: a token may need a refresh first (with its retries).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long to wait for the first byte of an answer, and between heartbeats: an agent sends
/// one every [`HEARTBEAT`] while it works, so silence this long means a stalled socket.
const ANSWER_IDLE: Duration = Duration::from_secs(2).saturating_add(HEARTBEAT);

/// A connection to a running agent.
pub struct Client {
    stream: BufReader<UnixStream>,
    /// Where it was opened, to open it again after the agent closed it for idleness.
    socket: std::path::PathBuf,
    /// The vault every request names (absolute), when the client means one.
    vault: Option<String>,
    /// When the last answer came: a connection idle for nearly [`IDLE_TIMEOUT`] is opened anew
    /// rather than found closed halfway through a request.
    used: Instant,
}

/// The agent could not be asked: the caller does the work itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(String);

impl Client {
    /// A connection to the agent, if one listens and the agent is not switched off. Its
    /// requests name this run's vault (see [`Self::ask`]), unless this machine has none of
    /// its own: nothing named by `--vault`, `TOKDECK_VAULT` or the config, and no file at the
    /// default place. Then whatever vault the agent keeps is the one meant: an agent forwarded
    /// over SSH from another machine (`ssh -R`) serves a remote machine that holds no vault.
    pub fn for_vault(ctx: &Context) -> Option<Self> {
        if !allowed(ctx.options.no_agent) {
            return None;
        }
        let location = ctx.vault_location().ok()?;
        let named = ctx.options.vault.is_some() || ctx.config.vault.is_some();
        let own = named || location.file().is_none_or(std::path::Path::exists);
        // Worked out before connecting, so the request follows the connection at once and
        // the agent reads it when it wakes for the connection.
        let vault = own.then(|| canonical(&location));
        let mut client = Self::open(&socket_path())?;
        client.vault = vault;
        Some(client)
    }

    /// Asks about this run's vault in one round trip: `None` when the agent keeps another
    /// vault, or could not be asked (a warning says why): the caller then opens its own.
    pub fn ask(&mut self, request: Request) -> anyhow::Result<Option<Reply>> {
        let reply = match self.exchange(request) {
            Ok(reply) => reply,
            Err(e) => {
                crate::note!(
                    "tokdeck: warning: the agent at {} did not answer ({e}); opening the vault instead",
                    self.socket.display()
                );
                return Ok(None);
            }
        };
        if reply.other_vault {
            return Ok(None);
        }
        Self::accepted(reply).map(Some)
    }

    /// Whether something answers on `socket`: `Some(info)` for an agent (its info when it
    /// gives one), `None` when nobody listens.
    pub fn connect_to(socket: &Path) -> Option<Option<Info>> {
        let mut client = Self::open(socket)?;
        Some(client.request(Request::Info).ok().and_then(|r| r.info))
    }

    /// A connection to `socket` when one can be trusted; a warning when something listens
    /// there that cannot be.
    fn open(socket: &Path) -> Option<Self> {
        // Nothing there: no agent, and nothing to warn about.
        std::fs::symlink_metadata(socket).ok()?;
        match Self::connect(socket) {
            Ok(stream) => Some(Self {
                stream: BufReader::new(stream),
                socket: socket.to_path_buf(),
                vault: None,
                used: Instant::now(),
            }),
            Err(Unreachable(why)) => {
                crate::note!(
                    "tokdeck: warning: not asking the agent at {}: {why}; opening the vault instead",
                    socket.display()
                );
                None
            }
        }
    }

    /// Connects after checking the way to `socket`, and checks who listens.
    fn connect(socket: &Path) -> Result<UnixStream, Unreachable> {
        use socket2::{Domain, SockAddr, Socket, Type};
        place::check_folder(&place::folder_of(socket)).map_err(|e| Unreachable(e.to_string()))?;
        let cannot = |e: std::io::Error| Unreachable(format!("cannot connect ({e})"));
        let address = SockAddr::unix(socket).map_err(cannot)?;
        let stream = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(cannot)?;
        stream
            .connect_timeout(&address, CONNECT_TIMEOUT)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut => {
                    Unreachable("it did not accept the connection in time".into())
                }
                _ => cannot(e),
            })?;
        let stream = UnixStream::from(std::os::fd::OwnedFd::from(stream));
        let peer =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .map_err(|e| Unreachable(format!("cannot tell who listens ({e})")))?;
        if !place::trusted_owner(peer.uid()) {
            return Err(Unreachable(format!(
                "it is served by uid {}, not by you (uid {}) or root",
                peer.uid(),
                place::uid()
            )));
        }
        Ok(stream)
    }

    /// Sends one request and reads its reply; a reply with `ok: false` is an error.
    pub fn request(&mut self, request: Request) -> anyhow::Result<Reply> {
        let reply = self.exchange(request)?;
        Self::accepted(reply)
    }

    fn accepted(reply: Reply) -> anyhow::Result<Reply> {
        if reply.ok {
            Ok(reply)
        } else {
            let why = reply.error.unwrap_or_else(|| "the agent refused".into());
            Err(anyhow!("{why}"))
        }
    }

    fn exchange(&mut self, request: Request) -> anyhow::Result<Reply> {
        if self.used.elapsed() + HEARTBEAT * 5 > IDLE_TIMEOUT {
            let stream = Self::connect(&self.socket)?;
            self.stream = BufReader::new(stream);
        }
        let envelope = Envelope {
            v: VERSION,
            vault: self.vault.clone(),
            heartbeat: true,
            request,
        };
        let mut line = serde_json::to_vec(&envelope)?;
        line.push(b'\n');
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let stream = self.stream.get_mut();
        stream.set_write_timeout(Some(ANSWER_IDLE))?;
        stream.write_all(&line).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                anyhow!("it took no request for {}s", ANSWER_IDLE.as_secs())
            }
            _ => anyhow!("cannot send the request ({e})"),
        })?;
        let answer = self.answer(deadline)?;
        self.used = Instant::now();
        serde_json::from_str(&answer).context("its answer is not JSON")
    }

    /// The answer line, past any heartbeats.
    fn answer(&mut self, deadline: Instant) -> anyhow::Result<String> {
        loop {
            let wait = ANSWER_IDLE.min(deadline.saturating_duration_since(Instant::now()));
            if wait.is_zero() {
                return Err(anyhow!("no answer within {}s", REQUEST_TIMEOUT.as_secs()));
            }
            self.stream.get_ref().set_read_timeout(Some(wait))?;
            match protocol::read_line_blocking(&mut self.stream, protocol::MAX_REPLY) {
                Ok(Some(line)) if !line.is_empty() => return Ok(line),
                Ok(Some(_)) => {}
                Ok(None) => return Err(anyhow!("it closed the connection")),
                Err(LineError::TimedOut) if Instant::now() >= deadline => {
                    return Err(anyhow!("no answer within {}s", REQUEST_TIMEOUT.as_secs()));
                }
                Err(LineError::TimedOut) => {
                    return Err(anyhow!("it said nothing for {}s", wait.as_secs()));
                }
                Err(e) => return Err(anyhow!("its answer is unreadable ({e:?})")),
            }
        }
    }
}
