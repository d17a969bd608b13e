//! Refresh throughput: `refresh --all` of 1,000 profiles against the loopback mock server
//! through the worker (bounded concurrency), against the same refreshes one at a time.

#[path = "../tests/common/mock.rs"]
mod mock;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokdeck::clock::Clock;
use tokdeck::oauth::OAuthClient;
use tokdeck::worker::{self, Command, Event, Job, WorkerConfig};

const PROFILES: usize = 1_000;

fn run(concurrency: usize, latency: Duration, runtime: &tokio::runtime::Runtime) -> Duration {
    let server = mock::MockServer::start();
    server.set_latency(latency);
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = support::vault(
        dir.path(),
        PROFILES,
        &server.base_url(),
        chrono::Utc::now(),
        |_| server.seed_refresh_token(),
    );
    let store = Arc::new(support::open(&path, &key));
    runtime.block_on(async move {
        let mut handle = worker::spawn(WorkerConfig {
            store,
            client: OAuthClient::new(Duration::from_secs(10), "2025-04-01").unwrap(),
            clock: Clock::System,
            max_concurrent_jobs: concurrency,
        });
        let start = Instant::now();
        // Concurrent: all commands at once, the worker bounds the requests. One at a time:
        // each command is sent only when the previous one has finished.
        let batch = if concurrency == 1 { 1 } else { PROFILES };
        let mut sent = 0;
        let mut done = 0;
        while done < PROFILES {
            while sent < PROFILES && sent < done + batch {
                handle
                    .commands
                    .send(Command {
                        id: sent as u64,
                        profile: format!("profile-{sent:05}"),
                        job: Job::Refresh {
                            if_expiring_within: None,
                        },
                    })
                    .unwrap();
                sent += 1;
            }
            match handle.events.recv().await.unwrap() {
                Event::Succeeded {
                    outcome: tokdeck::worker::Outcome::NewToken,
                    ..
                } => done += 1,
                Event::Succeeded { outcome, .. } => panic!("no refresh happened: {outcome:?}"),
                Event::Failed { error, .. } => panic!("refresh failed: {error}"),
                _ => {}
            }
        }
        start.elapsed()
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("refresh_1000: bench");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let jobs = tokdeck::config::Config::default().max_concurrent_jobs;
    let rate = |d: Duration| PROFILES as f64 / d.as_secs_f64();
    println!("refresh of {PROFILES} profiles on loopback, every new token saved before success:");
    for latency_ms in [0u64, 20] {
        let latency = Duration::from_millis(latency_ms);
        let concurrent = run(jobs, latency, &runtime);
        let sequential = run(1, latency, &runtime);
        println!("  server latency {latency_ms} ms:");
        println!(
            "    concurrent ({jobs} jobs): {:>9.2?}  {:>7.0} tokens/s",
            concurrent,
            rate(concurrent)
        );
        println!(
            "    one at a time:        {:>9.2?}  {:>7.0} tokens/s",
            sequential,
            rate(sequential)
        );
        println!(
            "    speed-up: {:.1}x",
            sequential.as_secs_f64() / concurrent.as_secs_f64()
        );
    }
}
