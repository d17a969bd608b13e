//! Refresh throughput: `refresh --all` of 1,000 profiles against the loopback mock server
//! through the worker (up to 16 requests at once), against the same refreshes one at a time; then
//! 200 against a real Doorkeeper over HTTP and HTTPS, tokdeck and one at a time beside
//! two plain clients that send 16 requests at once and save nothing (one in Rust on the same
//! runtime, and the Python one the performance issue measured), in interleaved runs.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

use tokdeck_testkit::{doorkeeper, mock};
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
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

/// A real Doorkeeper with live refresh tokens, carried from one run to the next: each run
/// spends them and keeps the new ones, so no run waits for tokens to be minted.
struct Real {
    /// Kept for as long as the runs go on: dropping it stops the server.
    _server: doorkeeper::Doorkeeper,
    base: String,
    roots: Vec<reqwest::Certificate>,
    app: doorkeeper::App,
    tokens: Vec<String>,
    /// The server's CA certificate, for the Python client (HTTPS only).
    ca_file: Option<std::path::PathBuf>,
}

impl Real {
    /// A server with `threads` puma threads and `profiles` refresh tokens.
    fn start(threads: u32, tls: bool, profiles: usize) -> Self {
        let server = doorkeeper::Doorkeeper::start_with(doorkeeper::Options {
            threads,
            tls,
            ..doorkeeper::Options::default()
        });
        let (base, roots, ca_file) = if tls {
            let roots = tokdeck::http::load_roots(&server.ca_file()).unwrap();
            (server.tls_base_url(), roots, Some(server.ca_file()))
        } else {
            (server.base_url(), Vec::new(), None)
        };
        let app = server.register("urn:ietf:wg:oauth:2.0:oob");
        let tokens = (0..profiles)
            .map(|_| doorkeeper_refresh_token(&server, &app))
            .collect();
        Self {
            _server: server,
            base,
            roots,
            app,
            tokens,
            ca_file,
        }
    }

    /// tokdeck's worker refreshes every token, at most `concurrency` at once.
    fn tokdeck(&mut self, concurrency: usize, runtime: &tokio::runtime::Runtime) -> Run {
        // TOKDECK_BENCH_VAULT_DIR puts the vault elsewhere than the server's database (a
        // tmpfs shows what the fsyncs on a disk shared with the server cost).
        let dir = match std::env::var_os("TOKDECK_BENCH_VAULT_DIR") {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .unwrap();
        let (path, key) = support::vault_for_client(
            dir.path(),
            self.tokens.len(),
            &self.base,
            (&self.app.uid, &self.app.secret),
            |i| self.tokens[i].clone(),
        );
        let store = Arc::new(support::open(&path, &key));
        // SQLite makes a writer wait up to 5 s for another one (the fixture's busy timeout).
        let client = OAuthClient::trusting(TIMEOUT, "2025-04-01", &self.roots).unwrap();
        let cpu = cpu_time();
        let wall = refresh_all(
            store.clone(),
            client,
            self.tokens.len(),
            concurrency,
            runtime,
        );
        let took = Run {
            wall,
            cpu: cpu_time() - cpu,
        };
        let data = store.snapshot().unwrap();
        for (i, token) in self.tokens.iter_mut().enumerate() {
            let profile = data.profile(&support::profile_name(i)).unwrap();
            let refresh = profile.token.as_ref().unwrap().refresh_token.as_ref();
            *token = refresh.unwrap().expose_secret().to_string();
        }
        took
    }

    /// The simplest fast client, for comparison: `tasks` requests at once, each on a new
    /// connection, saving nothing.
    fn plain(&mut self, tasks: usize, runtime: &tokio::runtime::Runtime) -> Run {
        let http = tokdeck::http::http_builder(TIMEOUT, &self.roots)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let url = format!("{}/oauth/token", self.base);
        let old = Arc::new(std::mem::take(&mut self.tokens));
        let new = Arc::new(std::sync::Mutex::new(vec![String::new(); old.len()]));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (uid, secret) = (self.app.uid.clone(), self.app.secret.clone());
        let cpu = cpu_time();
        let wall = runtime.block_on(async {
            let start = Instant::now();
            let workers: Vec<_> = (0..tasks)
                .map(|_| {
                    let (http, url, old, new, next) = (
                        http.clone(),
                        url.clone(),
                        old.clone(),
                        new.clone(),
                        next.clone(),
                    );
                    let (uid, secret) = (uid.clone(), secret.clone());
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(token) = old.get(i) else { break };
                            let form = [
                                ("grant_type", "refresh_token"),
                                ("refresh_token", token),
                                ("client_id", &uid),
                                ("client_secret", &secret),
                            ];
                            // SQLite answers 500 ("database is locked") under concurrent
                            // writes and rolls back, and a TLS listener with 16 handshakes
                            // waiting may reset a new connection before the request: both
                            // are asked again, like tokdeck does.
                            for attempt in 0.. {
                                let reply = match http.post(&url).form(&form).send().await {
                                    Ok(reply) => reply,
                                    Err(e) if e.is_connect() && attempt < 20 => {
                                        tokio::time::sleep(Duration::from_millis(50)).await;
                                        continue;
                                    }
                                    Err(e) => panic!("{e}"),
                                };
                                let status = reply.status();
                                let body: serde_json::Value =
                                    reply.json().await.unwrap_or_default();
                                if status.is_success() {
                                    let fresh = body["refresh_token"].as_str().unwrap();
                                    new.lock().unwrap()[i] = fresh.to_string();
                                    break;
                                }
                                assert!(
                                    status.is_server_error() && attempt < 20,
                                    "{status} {body}"
                                );
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.await.unwrap();
            }
            start.elapsed()
        });
        let took = Run {
            wall,
            cpu: cpu_time() - cpu,
        };
        self.tokens = std::mem::take(&mut *new.lock().unwrap());
        took
    }

    /// The Python client of `benches/support/plain_client.py` (16 threads, a new connection
    /// per request, nothing saved). Its wall time is its own measure, without the
    /// interpreter's start; its CPU time is the child's.
    fn python(&mut self) -> Run {
        use std::io::Write;
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/support/plain_client.py"
        );
        let mut command = std::process::Command::new("python3");
        command
            .arg(script)
            .args([&self.base, &self.app.uid, &self.app.secret])
            .args(self.ca_file.iter())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let cpu = children_cpu_time();
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(self.tokens.join("\n").as_bytes()).unwrap();
        drop(stdin);
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "the Python client failed");
        let cpu = children_cpu_time() - cpu;
        let text = String::from_utf8(output.stdout).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        let seconds: f64 = lines.pop().unwrap().parse().unwrap();
        assert_eq!(lines.len(), self.tokens.len());
        self.tokens = lines.into_iter().map(str::to_string).collect();
        Run {
            wall: Duration::from_secs_f64(seconds),
            cpu,
        }
    }
}

/// The clients of the Doorkeeper half, in the order of `main`'s match.
const CLIENTS: [&str; 4] = [
    "tokdeck",
    "tokdeck one at a time",
    "plain Rust, 16 at once",
    "plain Python, 16 threads",
];

/// Whether `python3` runs here.
fn python_runs() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One client's run: its wall time, and the CPU time the bench process spent in it (the
/// client's own work: the server is another process).
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: Duration,
}

/// CPU time this process has used (user and system), from `/proc/self/stat`, in the kernel's
/// clock ticks of 10 ms.
fn cpu_time() -> Duration {
    // utime and stime: the 14th and 15th fields.
    stat_ticks(11)
}

/// CPU time of the children this process has waited for (user and system).
fn children_cpu_time() -> Duration {
    // cutime and cstime: the 16th and 17th fields.
    stat_ticks(13)
}

/// The sum of field `i` of `/proc/self/stat` and the one after it (a user and a system time),
/// counting from the first field after the command name (the 3rd), in clock ticks of 10 ms.
fn stat_ticks(i: usize) -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields[i].parse::<u64>().unwrap();
    Duration::from_millis((ticks(i) + ticks(i + 1)) * 10)
}

/// How long a request to Doorkeeper may take (SQLite makes writers wait up to 5 s).
const TIMEOUT: Duration = Duration::from_secs(30);

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
            store: tokdeck::vault::StoreHandle::new(store),
            client,
            clock: Clock::System,
            audit: None,
            one_shot: false,
            spool: None,
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
                        profile: support::profile_name(sent),
                        job: Job::Refresh {
                            if_expiring_within: None,
                            force: false,
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
    // TOKDECK_LOG=tokdeck::http::window=debug shows each window change on stderr.
    if let Ok(filter) = std::env::var("TOKDECK_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let jobs = tokdeck::config::Config::default().max_concurrent_jobs;
    let rate = |d: Duration| PROFILES as f64 / d.as_secs_f64();
    println!("refresh of {PROFILES} profiles on loopback, every new token saved before success:");
    let mock_latencies: &[u64] = if std::env::var_os("TOKDECK_BENCH_NO_MOCK").is_some() {
        &[]
    } else {
        &[0, 20]
    };
    for &latency_ms in mock_latencies {
        let latency = Duration::from_millis(latency_ms);
        let concurrent = run(jobs, latency, &runtime);
        let sequential = run(1, latency, &runtime);
        println!("  server latency {latency_ms} ms:");
        println!(
            "    up to {jobs} at once:   {:>9.2?}  {:>7.0} tokens/s",
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
        "refresh of {REAL} profiles against a real Doorkeeper 5.5 (Rails 6.1, SQLite, puma 5.6),"
    );
    let repeat = repeats();
    // The Python client's column is left out where there is no `python3`.
    let clients = &CLIENTS[..if python_runs() { 4 } else { 3 }];
    println!(
        "median of {repeat} interleaved runs (fastest-slowest), tokdeck up to {jobs} at once:"
    );
    println!("  {}", clients.join(" | "));
    // TOKDECK_BENCH_PUMA_THREADS=1 runs only the one-thread server.
    let only: Option<u32> = std::env::var("TOKDECK_BENCH_PUMA_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    for threads in [1u32, 4] {
        if only.is_some_and(|o| o != threads) {
            continue;
        }
        for tls in [false, true] {
            let mut real = Real::start(threads, tls, REAL);
            let mut runs: Vec<Vec<Run>> = vec![Vec::new(); clients.len()];
            for round in 0..repeat {
                // Each round starts with a different client, so a drift in the machine's
                // speed does not always fall on the same one.
                for k in 0..clients.len() {
                    let which = (round + k) % clients.len();
                    let took = match which {
                        0 => real.tokdeck(jobs, &runtime),
                        1 => real.tokdeck(1, &runtime),
                        2 => real.plain(16, &runtime),
                        _ => real.python(),
                    };
                    runs[which].push(took);
                }
            }
            let scheme = if tls { "HTTPS" } else { "HTTP " };
            let walls: Vec<String> = runs
                .iter()
                .map(|r| spread(r.iter().map(|run| run.wall)))
                .collect();
            println!("  puma threads {threads}, {scheme}: {}", walls.join(" | "));
            // Runs of one round are next to each other in time: their ratio is steadier than
            // a ratio of medians when the machine's speed drifts.
            for (plain, name) in clients.iter().enumerate().skip(2) {
                let ratios = runs[0]
                    .iter()
                    .zip(&runs[plain])
                    .map(|(a, p)| a.wall.as_secs_f64() / p.wall.as_secs_f64())
                    .collect();
                println!(
                    "      tokdeck / {name}, round by round: {}",
                    spread_of(ratios, "")
                );
            }
            let cpu: Vec<String> = runs
                .iter()
                .map(|r| {
                    let total: Duration = r.iter().map(|run| run.cpu).sum();
                    format!(
                        "{:.2}",
                        total.as_secs_f64() * 1000.0 / (r.len() * REAL) as f64
                    )
                })
                .collect();
            println!("      client CPU per token: {} ms", cpu.join(" | "));
        }
    }
}

/// Runs of each client in the Doorkeeper comparison: 3, or `TOKDECK_BENCH_REPEAT`.
fn repeats() -> usize {
    std::env::var("TOKDECK_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

/// "median s (fastest-slowest)".
fn spread(times: impl Iterator<Item = Duration>) -> String {
    spread_of(times.map(|d| d.as_secs_f64()).collect(), " s")
}

/// "median unit (least-most)".
fn spread_of(mut values: Vec<f64>, unit: &str) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "{:.2}{unit} ({:.2}-{:.2})",
        values[values.len() / 2],
        values[0],
        values[values.len() - 1]
    )
}
