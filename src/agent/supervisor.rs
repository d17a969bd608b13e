//! Every task the agent starts, owned in one place: started through the supervisor, told to stop
//! through one token, and waited for at shutdown (mini-redis's shutdown, with tokio-util's
//! task tracker). The signals that stop the agent are handled here too.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The agent's tasks and their stop signal. Cheap to clone.
#[derive(Clone, Default)]
pub struct Supervisor {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Supervisor {
    /// Starts `task` and ends it when the agent stops, wherever it is.
    pub fn spawn_until_stop<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = task => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// Asks every task to stop.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Resolves once the agent is asked to stop.
    pub async fn stopping(&self) {
        self.stop.cancelled().await;
    }

    /// Waits for every task to end, at most `grace`; whether they all did.
    pub async fn wait(&self, grace: Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

/// Resolves at SIGTERM or Ctrl-C (SIGINT).
pub async fn stop_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match terminate.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_ends_every_task_and_waiting_says_so() {
        let supervisor = Supervisor::default();
        for _ in 0..3 {
            supervisor.spawn_until_stop(std::future::pending());
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        supervisor.spawn_until_stop(async move {
            let _ = tx.send(());
        });
        assert!(rx.await.is_ok(), "a task that ends by itself ran");
        // Not asked to stop: the tasks are still there when the grace runs out.
        let early = supervisor.clone();
        let waiting = tokio::spawn(async move { early.wait(Duration::from_millis(50)).await });
        assert!(!waiting.await.unwrap());
        supervisor.stop();
        assert!(supervisor.wait(Duration::from_secs(5)).await);
    }
}
