//! Runs the async HTTP client for synchronous callers: a thread of its own with a
//! single-threaded runtime. The store is synchronous and is called both from plain threads
//! and from inside the worker's runtime; blocking on a runtime from inside another panics, so
//! the requests run on this thread, and callers wait on a plain channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;

use tokio::sync::mpsc as async_mpsc;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A handle to the runtime thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct RequestThread {
    jobs: async_mpsc::UnboundedSender<Job>,
}

/// The runtime thread could not be started, or is gone.
#[derive(Debug, thiserror::Error)]
#[error("the HTTP thread is gone: {0}")]
pub struct Gone(String);

impl RequestThread {
    /// Starts the thread.
    pub fn start() -> Result<Self, Gone> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Gone(e.to_string()))?;
        let (jobs, mut queue) = async_mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("tokdeck-openbao".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job);
                    }
                });
            })
            .map_err(|e| Gone(e.to_string()))?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the thread and waits for what it returns.
    pub fn run<T: Send + 'static>(
        &self,
        job: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Gone> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::pin(async move {
                let _ = reply.send(job.await);
            }))
            .map_err(|_| Gone("it stopped".into()))?;
        answer
            .recv()
            .map_err(|_| Gone("it dropped the request".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_futures_from_plain_threads_and_from_inside_a_runtime() {
        let thread = RequestThread::start().unwrap();
        assert_eq!(thread.run(async { 2 + 2 }).unwrap(), 4);
        let inside = thread.clone();
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let slept = outer.block_on(async move {
            inside
                .run(async {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    "slept"
                })
                .unwrap()
        });
        assert_eq!(slept, "slept");
    }
}
