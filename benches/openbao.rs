//! The vault in OpenBao beside the same vault as a file: `status --json` and `token NAME` at
//! 1,000 profiles, without an agent and through one, `refresh --all` of 200 profiles against
//! the loopback mock server, and agents on several machines keeping one vault's tokens alive
//! (`cargo bench --bench openbao -- machines` for that one alone). A real `bao server -dev`.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokdeck_testkit::mock::MockServer;
use tokdeck_testkit::openbao::OpenBao;

const RUNS: usize = 30;

/// Where a benchmark's vault is: the file, or its copy in OpenBao.
struct Place<'a> {
    label: &'static str,
    vault: String,
    bao: Option<&'a OpenBao>,
}

fn command(home: &Path, key: &Path, place: &Place<'_>, args: &[&str]) -> Command {
    let mut cmd = support::command(home, args);
    cmd.env("TOKDECK_VAULT", &place.vault)
        .env("TOKDECK_IDENTITY", key)
        .env(
            "TOKDECK_AGENT_SOCK",
            home.join(format!("{}.sock", place.label)),
        );
    if let Some(bao) = place.bao {
        cmd.env("BAO_TOKEN", &bao.token);
    }
    cmd
}

/// The median wall time of `runs` runs; each must exit with one of `codes`.
fn median(runs: usize, codes: &[i32], make: impl Fn() -> Command) -> Duration {
    let mut walls: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let status = make().status().unwrap();
            let wall = start.elapsed();
            assert!(
                codes.contains(&status.code().unwrap_or(-1)),
                "{:?}: {status}",
                make()
            );
            wall
        })
        .collect();
    walls.sort();
    walls[runs / 2]
}

/// Copies the vault file at `file` into OpenBao at `path`, with tokdeck itself.
fn copied_in(home: &Path, key: &Path, file: &Path, bao: &OpenBao, path: &str) -> String {
    let location = bao.location(path);
    let place = Place {
        label: "file",
        vault: file.display().to_string(),
        bao: Some(bao),
    };
    // `TOKDECK_BENCH_ENTRIES=1`: the copy laid out as entries.
    let mut args = vec!["vault", "copy", location.as_str()];
    if std::env::var_os("TOKDECK_BENCH_ENTRIES").is_some() {
        args.push("--entries");
    }
    let status = command(home, key, &place, &args).status().unwrap();
    assert!(status.success());
    location
}

fn start_agent(home: &Path, key: &Path, place: &Place<'_>) -> std::process::Child {
    let child = command(home, key, place, &["agent"]).spawn().unwrap();
    let socket = home.join(format!("{}.sock", place.label));
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// `status --json` and `token NAME`, at 1,000 profiles, from each place, with and without an
/// agent.
fn reads(bao: &OpenBao) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    // Endpoints on a closed port: nothing here goes to an OAuth server.
    let (file, key) = support::vault(home, 1_000, "http://127.0.0.1:9", chrono::Utc::now(), |i| {
        format!("r{i}")
    });
    let location = copied_in(home, &key, &file, bao, "bench/reads");
    let places = [
        Place {
            label: "file",
            vault: file.display().to_string(),
            bao: None,
        },
        Place {
            label: "openbao",
            vault: location,
            bao: Some(bao),
        },
    ];
    let middle = (500..1_000)
        .find(|i| support::token_age_secs(*i) < 3_600)
        .map(support::profile_name)
        .unwrap();
    println!("1,000 profiles, median of {RUNS} runs:");
    // What one read costs by itself: the whole armored ciphertext, in one round trip.
    let target = "/v1/secret/data/bench/reads";
    let bytes = bao.api("GET", target, None).body.len();
    let mut reads: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            assert_eq!(bao.api("GET", target, None).status, 200);
            start.elapsed()
        })
        .collect();
    reads.sort();
    println!(
        "  one GET of the secret ({:.0} KB of JSON) on its own: {:.2?}",
        bytes as f64 / 1024.0,
        reads[RUNS / 2]
    );
    for place in &places {
        let no_agent = |args: &[&str]| {
            let mut cmd = command(home, &key, place, args);
            cmd.env("TOKDECK_AGENT", "off");
            cmd
        };
        let status = median(RUNS, &[0, 1, 2], || no_agent(&["status", "--json"]));
        let token = median(RUNS, &[0], || no_agent(&["token", &middle]));
        let mut agent = start_agent(home, &key, place);
        let status_agent = median(RUNS, &[0, 1, 2], || {
            command(home, &key, place, &["status", "--json"])
        });
        let token_agent = median(RUNS, &[0], || {
            command(home, &key, place, &["token", &middle])
        });
        let _ = agent.kill();
        let _ = agent.wait();
        println!(
            "  {:<8} status --json {status:>9.2?}  token {token:>9.2?}  | through the agent: status --json {status_agent:>9.2?}  token {token_agent:>9.2?}",
            place.label
        );
    }
}

/// `refresh --all` of 200 profiles, from each place: every new token saved before success.
fn refreshes(bao: &OpenBao) {
    let server = MockServer::start();
    println!("refresh --all of 200 profiles (mock server on loopback), median of 3 runs:");
    for label in ["file", "openbao"] {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let (file, key) = support::vault(home, 200, &server.base_url(), chrono::Utc::now(), |_| {
            server.seed_refresh_token()
        });
        let place = match label {
            "file" => Place {
                label,
                vault: file.display().to_string(),
                bao: None,
            },
            _ => Place {
                label,
                vault: copied_in(home, &key, &file, bao, "bench/refresh"),
                bao: Some(bao),
            },
        };
        let wall = median(3, &[0], || {
            let mut cmd = command(home, &key, &place, &["refresh", "--all"]);
            cmd.env("TOKDECK_AGENT", "off");
            cmd
        });
        println!("  {label:<8} {wall:>9.2?}");
    }
}

/// Agents on 1, 2 and 4 machines (homes of their own, each its own agent) keeping 200
/// auto-refresh profiles of 20-second tokens alive for 60 s in one vault in OpenBao: the
/// OAuth refreshes they make, against one machine's. A machine that takes the lease judges
/// the stored token again under it, so the count stays one machine's.
fn machines(bao: &OpenBao) {
    const PROFILES: usize = 200;
    const LIFE: i64 = 20;
    let window = Duration::from_secs(60);
    println!(
        "{PROFILES} auto-refresh profiles of {LIFE} s tokens kept alive for {window:?} (mock server):"
    );
    let mut alone = None;
    for machines in [1, 2, 4] {
        let server = MockServer::start();
        server.set_expires_in(LIFE);
        let dir = tempfile::tempdir().unwrap();
        let (file, key) =
            support::keepalive_vault(dir.path(), PROFILES, &server.base_url(), LIFE, |_| {
                server.seed_refresh_token()
            });
        let vault = copied_in(
            dir.path(),
            &key,
            &file,
            bao,
            &format!("bench/machines-{machines}"),
        );
        let mut agents = Vec::new();
        for m in 0..machines {
            let home = dir.path().join(format!("machine-{m}"));
            std::fs::create_dir_all(home.join("config/tokdeck")).unwrap();
            std::fs::write(
                home.join("config/tokdeck/config.toml"),
                "refresh_margin = \"10s\"\nagent_interval = \"1s\"\n",
            )
            .unwrap();
            let place = Place {
                label: "openbao",
                vault: vault.clone(),
                bao: Some(bao),
            };
            agents.push(start_agent(&home, &key, &place));
        }
        let before = server.refresh_requests();
        std::thread::sleep(window);
        let made = server.refresh_requests() - before;
        for mut agent in agents {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        let one = *alone.get_or_insert(made);
        println!(
            "  {machines} machine(s): {made:>5} refreshes, {:.2}x one machine's",
            f64::from(made) / f64::from(one.max(1))
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("openbao: bench");
        return;
    }
    let bao = OpenBao::start();
    if std::env::args().any(|a| a == "machines") {
        machines(&bao);
        return;
    }
    reads(&bao);
    refreshes(&bao);
    machines(&bao);
}
