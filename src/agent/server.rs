//! `tokdeck agent`: unlock once, start the worker, the keeper and the socket under one
//! supervisor, and stop in order: no new work, refreshes in flight saved, every task ended.

use std::sync::Arc;
use std::time::Duration;

use super::announce::{Announcer, beat_until_stopped};
use super::keeper::Keeper;
use super::listen::{bind, serve};
use super::supervisor::{Supervisor, stop_signal};
use super::{AgentLock, canonical, socket_path};
use crate::context::Context;
use crate::duration::format_duration;
use crate::worker::WorkerHandle;

/// How long the agent waits at shutdown for its tasks once the worker has finished.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the agent was asked to run.
#[derive(Default)]
pub struct Options {
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// Where to publish opted-in access tokens, if anywhere.
    pub publisher: Option<super::publish::Publisher>,
}

/// Runs the agent in the foreground until `agent stop`, SIGTERM or Ctrl-C.
pub async fn run(ctx: &Context, options: Options) -> anyhow::Result<()> {
    harden();
    // A metrics address that cannot be served is an error before anything starts.
    let metrics = match options.metrics {
        Some(address) => Some(super::scrape::bind(address).await?),
        None => None,
    };
    // Unlock once: any passphrase is asked now, and never again while the agent runs.
    let store = ctx.store_handle().await?;
    let vault = canonical(store.location());
    let location = store.location().clone();
    let _lock = crate::vault::handle::on_the_pool(move || AgentLock::acquire(&location)).await??;
    let socket = socket_path();
    let (listener, made) = bind(&socket, &vault).await?;
    let WorkerHandle {
        commands,
        events,
        canceller,
        mut finished,
    } = ctx.worker(store.clone(), crate::audit::Who::Agent)?;
    let mut keeper = Keeper::new(store, ctx.clock.clone(), &ctx.config, commands);
    keeper.publisher = options.publisher.map(Arc::new);
    let keeper = Arc::new(keeper);
    let supervisor = Supervisor::default();
    // The worker's events flow until the worker has finished, after the agent stopped.
    let pumping = Supervisor::default();
    {
        let keeper = keeper.clone();
        pumping.spawn_until_stop(async move { keeper.pump(events).await });
    }
    let watcher = start_keeping(ctx, &keeper, &supervisor, metrics);
    let announcer = announce_beside_a_shared_vault(&keeper, &supervisor);
    crate::note!("tokdeck agent: listening on {}", socket.display());
    tracing::info!(vault = %vault, socket = %socket.display(), "agent started");
    // Under systemd (Type=notify): ready once the socket listens and the keeper runs.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::debug!(error = %e, "cannot tell the service manager the agent is ready");
    }
    serve_until_stopped(listener, &keeper, &vault, &supervisor).await;
    // Stop taking work, let refreshes in flight reach their save, then go. The listener
    // closes as its task ends.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    drop(watcher);
    // Only the socket this agent made: one that replaced it belongs to someone else.
    made.remove(&socket);
    canceller.cancel_all();
    keeper.close();
    finished.wait().await;
    if let Some(announcer) = &announcer {
        announcer.withdraw(SHUTDOWN_GRACE).await;
    }
    pumping.stop();
    let all_ended = supervisor.wait(SHUTDOWN_GRACE).await && pumping.wait(SHUTDOWN_GRACE).await;
    if !all_ended {
        tracing::warn!("some tasks did not end within {SHUTDOWN_GRACE:?}; stopping anyway");
    }
    tracing::info!("agent stopped");
    crate::note!("tokdeck agent: stopped");
    Ok(())
}

/// Serves the socket from a task of `supervisor` (see [`serve`]) until the agent is asked
/// to stop: by `agent stop`, SIGTERM or Ctrl-C.
async fn serve_until_stopped(
    listener: tokio::net::UnixListener,
    keeper: &Arc<Keeper>,
    vault: &str,
    supervisor: &Supervisor,
) {
    let (keeper, vault, stopper) = (keeper.clone(), vault.to_string(), supervisor.clone());
    supervisor.spawn_until_stop(serve(listener, keeper, vault, stopper));
    let stopper = supervisor.clone();
    supervisor.spawn_until_stop(async move {
        stop_signal().await;
        stopper.stop();
    });
    supervisor.stopping().await;
}

/// Starts the keep-alive loop, the watch on the vault file and the metrics endpoint; the
/// watch lasts as long as what this returns.
fn start_keeping(
    ctx: &Context,
    keeper: &Arc<Keeper>,
    supervisor: &Supervisor,
    metrics: Option<tokio::net::TcpListener>,
) -> Option<notify::RecommendedWatcher> {
    {
        let (keeper, tasks) = (keeper.clone(), supervisor.clone());
        let interval = ctx.config.agent_interval;
        supervisor.spawn_until_stop(async move { keeper.keep_alive(interval, &tasks).await });
    }
    if let Some(listener) = metrics {
        if let Ok(address) = listener.local_addr() {
            crate::note!("tokdeck agent: metrics at http://{address}/metrics");
        }
        let (keeper, tasks, warn) = (keeper.clone(), supervisor.clone(), ctx.config.warn);
        supervisor.spawn_until_stop(async move {
            super::scrape::serve(listener, keeper, warn, tasks).await;
        });
    }
    let watcher = super::watch::watch(keeper.store.location(), keeper);
    let noticed = match &watcher {
        Some(_) => "changes to the file at once".to_string(),
        None => format!(
            "changes every {}",
            format_duration(ctx.config.agent_interval)
        ),
    };
    crate::note!(
        "tokdeck agent: keeping {} alive (each token when it falls due; {noticed})",
        canonical(keeper.store.location())
    );
    watcher
}

/// Starts announcing the agent beside a vault a team shares (in OpenBao, not in a file).
fn announce_beside_a_shared_vault(
    keeper: &Arc<Keeper>,
    supervisor: &Supervisor,
) -> Option<Arc<Announcer>> {
    if keeper.store.location().file().is_some() {
        return None;
    }
    let announcer = Announcer::new(keeper.clone());
    supervisor.spawn_until_stop(beat_until_stopped(announcer.clone()));
    Some(announcer)
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
