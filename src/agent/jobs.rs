//! Jobs sent to the worker, each with a request waiting for its final event.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::worker::{Command, Event, Job, JobFailure, JobId};

/// The agent's way to the worker.
pub struct Jobs {
    /// Jobs go to the worker here; `None` once the agent is stopping (see [`Self::close`]).
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
    next_id: AtomicU64,
    in_flight: Mutex<InFlight>,
}

#[derive(Default)]
struct InFlight {
    /// Requests waiting for a job's final event.
    waiters: HashMap<JobId, oneshot::Sender<Event>>,
    /// Profiles with a job in flight.
    busy: HashSet<String>,
}

impl Jobs {
    pub fn new(commands: mpsc::UnboundedSender<Command>) -> Self {
        Self {
            commands: Mutex::new(Some(commands)),
            next_id: AtomicU64::new(1),
            in_flight: Mutex::new(InFlight::default()),
        }
    }

    fn in_flight(&self) -> MutexGuard<'_, InFlight> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `job` for `profile` to the worker and waits for its final event.
    pub async fn run(&self, profile: &str, job: Job) -> Result<Event, JobFailure> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut in_flight = self.in_flight();
            in_flight.waiters.insert(id, tx);
            in_flight.busy.insert(profile.to_string());
        }
        let command = Command {
            id,
            profile: profile.to_string(),
            job,
        };
        let sent = self
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|c| c.send(command).is_ok());
        if !sent {
            let mut in_flight = self.in_flight();
            in_flight.waiters.remove(&id);
            in_flight.busy.remove(profile);
            return Err(JobFailure::internal(
                "the agent is stopping: try again when it is back",
            ));
        }
        rx.await
            .map_err(|_| JobFailure::internal("the agent stopped before the job ended"))
    }

    /// Hands a job's final event to the request waiting for it; its profile is free again.
    pub fn finish(&self, id: JobId, profile: &str, event: Event) {
        let waiter = {
            let mut in_flight = self.in_flight();
            in_flight.busy.remove(profile);
            in_flight.waiters.remove(&id)
        };
        if let Some(waiter) = waiter {
            let _ = waiter.send(event);
        }
    }

    /// The profiles with a job in flight.
    pub fn busy(&self) -> HashSet<String> {
        self.in_flight().busy.clone()
    }

    /// Takes no more jobs: the worker ends once those in flight have (their new tokens saved).
    pub fn close(&self) {
        self.commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
