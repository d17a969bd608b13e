//! The agent: unlock the vault once, keep every token alive, serve tokens on a Unix socket.
//!
//! - `protocol`: the line-delimited JSON spoken on the socket.
//! - `server`: start and stop in order; `supervisor`: every task it starts, and the signals.
//! - `listen`: the socket, its limits and peer checks, one task per connection;
//!   `handlers`: the answer to each request.
//! - `keeper`: what the agent's tasks share, and the keep-alive loop; `schedule`: its
//!   decisions (which profile is due, how long to sleep); `jobs`: the worker and the requests
//!   waiting for its results; `journal`: one line per action; `watch`: the vault file's
//!   changes, which wake the loop.
//! - `metrics`: the Prometheus series; `scrape`: the `/metrics` endpoint that serves them.
//! - `publish`: access tokens written where services read them (`--publish`).
//! - `announce`: the agent's heartbeat beside a vault a team shares ([`crate::team`]).
//! - `ask`: how `token`, `exec`, `api` and `status` find and ask a running agent.
//! - `place`: where the socket lives, and whether that place can be trusted.

mod announce;
pub mod ask;
mod handlers;
mod jobs;
mod journal;
mod keeper;
mod listen;
pub mod metrics;
pub mod place;
pub mod protocol;
pub mod publish;
mod schedule;
mod scrape;
pub mod server;
mod supervisor;
mod watch;

pub use place::socket_path;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};

use crate::vault::Location;

/// Whether the agent may be used: not with `--no-agent` or `TOKDECK_AGENT=off`.
pub fn allowed(no_agent_flag: bool) -> bool {
    let off =
        std::env::var("TOKDECK_AGENT").is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "no"));
    !no_agent_flag && !off
}

/// The vault as the agent and its clients compare it ([`Location::canonical`]).
pub fn canonical(vault: &Location) -> String {
    vault.canonical()
}

/// One agent per vault on this machine: an exclusive lock on `<vault>.agent` beside a vault
/// file, or on a file named after the vault's address in the state folder, holding the
/// agent's pid. (Agents on other machines share a vault in OpenBao through its lease.)
pub struct AgentLock {
    _file: File,
}

impl AgentLock {
    /// Takes the lock, or says which process holds it.
    pub fn acquire(vault: &Location) -> anyhow::Result<Self> {
        let path = lock_file(vault)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if file.try_lock().is_err() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(anyhow!(
                "an agent (pid {}) already keeps {}: use it, or stop it with `tokdeck agent stop`",
                holder.trim(),
                vault
            ));
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()))
            .and_then(|()| file.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

/// Where the agent of `vault` keeps its lock.
fn lock_file(vault: &Location) -> anyhow::Result<PathBuf> {
    if let Some(file) = vault.file() {
        let mut name = file.as_os_str().to_owned();
        name.push(".agent");
        return Ok(PathBuf::from(name));
    }
    let dir = crate::config::Paths::state_dir()
        .ok_or_else(|| anyhow!("no home directory for the agent's lock file"))?;
    crate::vault::disk::ensure_private_dir(&dir)?;
    let named = crate::audit::fingerprint(&canonical(vault));
    Ok(dir.join(format!("agent-{named}.lock")))
}

/// A systemd user unit that runs the agent for the current vault and identity: `Type=notify`
/// (the agent says when its socket listens), and the sandboxing that fits a process that only
/// reads its key, writes its vault folder, its state folder and its socket, and talks HTTPS.
/// `writable` is the vault's folder, for a vault kept in a file.
pub fn systemd_unit(
    exe: &Path,
    vault: &str,
    identity: Option<&Path>,
    writable: Option<&Path>,
) -> String {
    let mut exec = format!("{} --vault {vault}", exe.display());
    if let Some(identity) = identity {
        exec.push_str(" --identity ");
        exec.push_str(&identity.display().to_string());
    }
    // The token stays out of the unit, which anyone on the machine may read.
    let openbao = if vault.starts_with("openbao") {
        "# The OpenBao token: ~/.vault-token (bao login), or a file of your own (mode 0600)\n\
         # holding BAO_TOKEN=..., named here:\n\
         # EnvironmentFile=%h/.config/tokdeck/openbao.env\n"
    } else {
        ""
    };
    let vault_folder = writable.map_or(String::new(), |dir| {
        format!("ReadWritePaths={}\n", dir.display())
    });
    format!(
        "# ~/.config/systemd/user/tokdeck-agent.service\n\
         # systemctl --user daemon-reload && systemctl --user enable --now tokdeck-agent\n\
         [Unit]\n\
         Description=tokdeck agent: keeps OAuth tokens alive\n\
         \n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n\
         ExecStart={exec} agent\n\
         {openbao}\
         Restart=on-failure\n\
         RestartSec=30\n\
         # The agent holds every secret of the vault in memory: no core dumps of it.\n\
         LimitCORE=0\n\
         UMask=0077\n\
         # What it may write: the vault's folder, its state folder (audit log, lock), its socket.\n\
         ProtectSystem=strict\n\
         {vault_folder}\
         ReadWritePaths=-%h/.local/state/tokdeck\n\
         ReadWritePaths=-%t/tokdeck\n\
         PrivateTmp=yes\n\
         NoNewPrivileges=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         RestrictRealtime=yes\n\
         RestrictNamespaces=yes\n\
         SystemCallArchitectures=native\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n"
    )
}
