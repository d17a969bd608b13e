//! Jobs run on a worker of this process, for the commands that do OAuth without an agent:
//! the notes they print, and the failures they end with.

use anyhow::{anyhow, bail};

use crate::context::Context;
use crate::vault::StoreHandle;
use crate::worker::{Command, Event, Job, JobFailure};

/// A job that failed: its profile, and how.
pub(super) struct Failure {
    pub profile: String,
    pub error: JobFailure,
}

/// Runs `jobs` on a fresh worker, printing notes on stderr; returns the failures.
pub(super) async fn run_jobs(
    ctx: &Context,
    store: StoreHandle,
    jobs: Vec<(String, Job)>,
    mut on_event: impl FnMut(&Event),
) -> anyhow::Result<Vec<Failure>> {
    let mut worker = ctx.worker(store, crate::audit::Who::Cli)?;
    let total = jobs.len();
    for (i, (profile, job)) in jobs.into_iter().enumerate() {
        worker
            .commands
            .send(Command {
                id: i as u64,
                profile,
                job,
            })
            .map_err(|_| anyhow!("the worker stopped unexpectedly"))?;
    }
    let mut done = 0;
    let mut failures = Vec::new();
    while done < total {
        let Some(event) = worker.events.recv().await else {
            bail!("the worker stopped unexpectedly");
        };
        on_event(&event);
        match &event {
            Event::Note {
                profile, message, ..
            } => crate::note!("{profile}: {message}"),
            Event::Failed {
                profile,
                error,
                kind,
                ..
            } => failures.push(Failure {
                profile: profile.clone(),
                error: JobFailure {
                    kind: *kind,
                    message: error.clone(),
                },
            }),
            _ => {}
        }
        if event.is_final() {
            done += 1;
        }
    }
    Ok(failures)
}

/// One failure is the command's error, as is; several are listed, then counted.
pub(super) fn fail_if(failures: &[Failure], total: usize) -> anyhow::Result<()> {
    match failures {
        [] => Ok(()),
        [only] if total == 1 => Err(anyhow!("{}", only.error)),
        many => {
            for f in many {
                crate::note!("{}: {}", f.profile, f.error);
            }
            Err(anyhow!("{} of {total} profiles failed", many.len()))
        }
    }
}
