//! Refresh throughput: `refresh --all` of 1,000 profiles against the loopback mock server
//! through the worker (bounded concurrency), against the same refreshes one at a time.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

#[path = "../tests/common/doorkeeper.rs"]
mod doorkeeper;
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
    refresh_all(store, PROFILES, concurrency, runtime)
}

/// A refresh token for `app`, got the way a person would: authorize, then exchange the code.
fn doorkeeper_refresh_token(server: &doorkeeper::Doorkeeper, app: &doorkeeper::App) -> String {
    let url = format!(
        "{}/oauth/authorize?client_id={}&redirect_uri=urn%3Aietf%3Awg%3Aoauth%3A2.0%3Aoob&response_type=code&scope=read",
        server.base_url(),
        app.uid
    );
    let landing = server.approve(&url);
    let code = landing
        .rsplit_once("code=")
        .map(|(_, c)| c)
        .unwrap_or_default();
    let (status, body) = server.token_request(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", &app.uid),
        ("client_secret", &app.secret),
        ("redirect_uri", "urn:ietf:wg:oauth:2.0:oob"),
    ]);
    assert_eq!(status, 200, "{body}");
    body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `profiles` refreshes against a real Doorkeeper with `threads` puma threads.
fn run_doorkeeper(
    threads: u32,
    profiles: usize,
    concurrency: usize,
    runtime: &tokio::runtime::Runtime,
) -> Duration {
    let server = doorkeeper::Doorkeeper::start_with(doorkeeper::Options {
        threads,
        ..doorkeeper::Options::default()
    });
    let app = server.register("urn:ietf:wg:oauth:2.0:oob");
    let dir = tempfile::tempdir().unwrap();
    let (path, key) = support::vault_for_client(
        dir.path(),
        profiles,
        &server.base_url(),
        (&app.uid, &app.secret),
        |_| doorkeeper_refresh_token(&server, &app),
    );
    let store = Arc::new(support::open(&path, &key));
    refresh_all(store, profiles, concurrency, runtime)
}

/// Refreshes every profile of `store` through the worker; the time until all are saved.
fn refresh_all(
    store: Arc<tokdeck::vault::Store>,
    profiles: usize,
    concurrency: usize,
    runtime: &tokio::runtime::Runtime,
) -> Duration {
    let total = profiles;
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
        let batch = if concurrency == 1 { 1 } else { total };
        let mut sent = 0;
        let mut done = 0;
        while done < total {
            while sent < total && sent < done + batch {
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
    if std::env::var_os("TOKDECK_BENCH_NO_DOORKEEPER").is_some() {
        return;
    }
    const REAL: usize = 200;
    println!("refresh of {REAL} profiles against a real Doorkeeper 5.5 (Rails 6.1, SQLite, puma):");
    for threads in [1u32, 4] {
        let concurrent = run_doorkeeper(threads, REAL, jobs, &runtime);
        let sequential = run_doorkeeper(threads, REAL, 1, &runtime);
        println!("  puma threads {threads}:");
        println!(
            "    concurrent ({jobs} jobs): {:>9.2?}  {:>7.0} tokens/s",
            concurrent,
            REAL as f64 / concurrent.as_secs_f64()
        );
        println!(
            "    one at a time:        {:>9.2?}  {:>7.0} tokens/s",
            sequential,
            REAL as f64 / sequential.as_secs_f64()
        );
    }
}
