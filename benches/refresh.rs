//! Refresh throughput: `refresh --all` of 1,000 profiles against the loopback mock server
//! through the worker (adaptive concurrency), against the same refreshes one at a time; then
//! 200 against a real Doorkeeper over HTTP and HTTPS, beside a plain 16-thread client.

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
    let client = OAuthClient::new(Duration::from_secs(10), "2025-04-01").unwrap();
    refresh_all(store, client, PROFILES, concurrency, runtime)
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
    tls: bool,
    profiles: usize,
    concurrency: usize,
    runtime: &tokio::runtime::Runtime,
) -> Duration {
    let server = doorkeeper::Doorkeeper::start_with(doorkeeper::Options {
        threads,
        tls,
        ..doorkeeper::Options::default()
    });
    let (base, roots) = if tls {
        let roots = tokdeck::oauth::client::load_roots(&server.ca_file()).unwrap();
        (server.tls_base_url(), roots)
    } else {
        (server.base_url(), Vec::new())
    };
    let app = server.register("urn:ietf:wg:oauth:2.0:oob");
    let dir = tempfile::tempdir().unwrap();
    let (path, key) =
        support::vault_for_client(dir.path(), profiles, &base, (&app.uid, &app.secret), |_| {
            doorkeeper_refresh_token(&server, &app)
        });
    let store = Arc::new(support::open(&path, &key));
    // SQLite makes a writer wait up to 5 s for another one (the fixture's busy timeout).
    let client = OAuthClient::trusting(Duration::from_secs(30), "2025-04-01", &roots).unwrap();
    refresh_all(store, client, profiles, concurrency, runtime)
}

/// Refreshes every profile of `store` through the worker; the time until all are saved.
fn refresh_all(
    store: Arc<tokdeck::vault::Store>,
    client: OAuthClient,
    profiles: usize,
    concurrency: usize,
    runtime: &tokio::runtime::Runtime,
) -> Duration {
    let total = profiles;
    runtime.block_on(async move {
        let mut handle = worker::spawn(WorkerConfig {
            store,
            client,
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
            "    adaptive (ceiling {jobs}): {:>9.2?}  {:>7.0} tokens/s",
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
    println!(
        "refresh of {REAL} profiles against a real Doorkeeper 5.5 (Rails 6.1, SQLite, puma 5.6):"
    );
    let secs = |d: Duration| format!("{:>6.2} s", d.as_secs_f64());
    // TOKDECK_BENCH_PUMA_THREADS=1 runs only the one-thread server.
    let only: Option<u32> = std::env::var("TOKDECK_BENCH_PUMA_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    for threads in [1u32, 4] {
        if only.is_some_and(|o| o != threads) {
            continue;
        }
        println!("  puma threads {threads}:");
        for tls in [false, true] {
            let scheme = if tls { "HTTPS" } else { "HTTP " };
            let adaptive = run_doorkeeper(threads, tls, REAL, jobs, &runtime);
            let sequential = run_doorkeeper(threads, tls, REAL, 1, &runtime);
            println!(
                "    {scheme} tokdeck, adaptive (ceiling {jobs}): {}   one at a time: {}",
                secs(adaptive),
                secs(sequential)
            );
        }
        let plain = plain_client(threads, REAL, 16);
        println!(
            "    HTTP  plain client, 16 threads, a new connection per request: {}",
            secs(plain)
        );
    }
}

/// The simplest fast client, for comparison: `threads` threads sending refresh requests, each
/// on a new connection, saving nothing.
fn plain_client(puma_threads: u32, profiles: usize, threads: usize) -> Duration {
    let server = doorkeeper::Doorkeeper::start_with(doorkeeper::Options {
        threads: puma_threads,
        ..doorkeeper::Options::default()
    });
    let app = server.register("urn:ietf:wg:oauth:2.0:oob");
    let tokens: Vec<String> = (0..profiles)
        .map(|_| doorkeeper_refresh_token(&server, &app))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(token) = tokens.get(i) else { break };
                    // SQLite answers 500 ("database is locked") under concurrent writes and
                    // rolls back: asked again, like tokdeck does.
                    for attempt in 0.. {
                        let (status, body) = server.token_request(&[
                            ("grant_type", "refresh_token"),
                            ("refresh_token", token),
                            ("client_id", &app.uid),
                            ("client_secret", &app.secret),
                        ]);
                        if status == 200 {
                            break;
                        }
                        assert!(status >= 500 && attempt < 20, "{status} {body}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            });
        }
    });
    start.elapsed()
}
