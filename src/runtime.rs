//! The async runtime, and the log file that comes with it: started for commands that do
//! network work or run the app, and by `token` and `exec` only when no agent answered for
//! them.

use std::future::Future;

use anyhow::Context as _;

use crate::cli::Command;

/// How many threads a command's runtime has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// One: a one-shot client asks, prints and exits, and starts faster on one thread
    /// (`api`, and `refresh` of one profile).
    One,
    /// Two workers: the app, the agent, and commands that refresh many tokens at once.
    Workers,
}

impl Threads {
    /// What `command` needs from the start (`None`: the app). `token`, `exec` and `status`
    /// start no runtime up front; when `token` or `exec` needs one, [`block_on`] gives it one
    /// thread.
    pub fn for_command(command: Option<&Command>) -> Self {
        match command {
            Some(Command::Api(_)) => Self::One,
            // One profile's refresh waits on one request: a second thread only costs memory.
            Some(Command::Refresh(args)) if !args.all => Self::One,
            _ => Self::Workers,
        }
    }
}

/// Starts a runtime, with file logging on.
pub fn start(threads: Threads) -> anyhow::Result<tokio::runtime::Runtime> {
    let _logging = crate::logging::init();
    let runtime = match threads {
        // One-shot clients wait on no signal (`exec` hands its process over to the command).
        Threads::One => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build(),
        Threads::Workers => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    };
    runtime.context("cannot start the async runtime")
}

/// Runs `future` to its end on a one-thread runtime, for code outside the runtime that has
/// async work to do after all.
pub fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    Ok(start(Threads::One)?.block_on(future))
}
