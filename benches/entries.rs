//! A team vault of 10,000 profiles laid out as entries on a real OpenBao on raft storage
//! (the production layout, 1 MiB per entry): the move in (`vault copy --entries`), then
//! `token NAME` and `refresh NAME` without an agent, counted at a proxy in front of OpenBao
//! (requests, bytes each way), and `status --json` of every profile. The mock server on
//! loopback answers the refreshes.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::meter::Meter;
use tokdeck_testkit::mock::MockServer;
use tokdeck_testkit::openbao::OpenBao;

const PROFILES: usize = 10_000;

fn command(home: &Path, key: &Path, bao: &OpenBao, vault: &str, args: &[&str]) -> Command {
    let mut cmd = support::command(home, args);
    cmd.env("TOKDECK_VAULT", vault)
        .env("TOKDECK_IDENTITY", key)
        .env("TOKDECK_AGENT", "off")
        .env("BAO_TOKEN", &bao.token);
    cmd
}

/// Runs `cmd`, which must exit with one of `codes`; its wall time.
fn timed(mut cmd: Command, codes: &[i32]) -> Duration {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let wall = start.elapsed();
    assert!(
        codes.contains(&out.status.code().unwrap_or(-1)),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wall
}

/// The CPU time (user and system) of every child process waited for so far.
fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let secs = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    secs(usage.user_time()) + secs(usage.system_time())
}

fn median(mut walls: Vec<Duration>) -> Duration {
    walls.sort();
    walls[walls.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("entries: bench");
        return;
    }
    let bao = OpenBao::start_raft();
    let server = MockServer::start();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (file, key) = support::vault(
        home,
        PROFILES,
        &server.base_url(),
        chrono::Utc::now(),
        |_| server.seed_refresh_token(),
    );
    let meter = Meter::start(bao.port());
    let vault = format!(
        "openbao+http://127.0.0.1:{}/secret/bench/entries",
        meter.port()
    );
    let file = file.display().to_string();
    println!("{PROFILES} profiles in OpenBao on raft storage, laid out as entries:");

    let copy = timed(
        command(
            home,
            &key,
            &bao,
            &file,
            &["vault", "copy", &vault, "--entries"],
        ),
        &[0],
    );
    let passed = meter.take();
    println!(
        "  vault copy --entries: {copy:.2?}, {} requests, {:.1} MB written",
        passed.requests,
        passed.up as f64 / 1e6
    );

    let fresh = (PROFILES / 2..PROFILES)
        .find(|i| support::token_age_secs(*i) < 3_600)
        .map(support::profile_name)
        .unwrap();
    let token = || command(home, &key, &bao, &vault, &["token", &fresh]);
    timed(token(), &[0]);
    let once = meter.take();
    let walls = (0..30).map(|_| timed(token(), &[0])).collect();
    meter.take();
    println!(
        "  token NAME: {} requests, {:.1} KiB read, {:.1} KiB written; median of 30 {:.2?}",
        once.requests,
        once.down as f64 / 1024.0,
        once.up as f64 / 1024.0,
        median(walls)
    );

    let mut walls = Vec::new();
    let mut written = Vec::new();
    for _ in 0..5 {
        walls.push(timed(
            command(home, &key, &bao, &vault, &["refresh", &fresh]),
            &[0],
        ));
        written.push(meter.take());
    }
    let up: Vec<u64> = written.iter().map(|p| p.up).collect();
    let requests: Vec<u64> = written.iter().map(|p| p.requests).collect();
    println!(
        "  refresh NAME: {:.1}-{:.1} KiB written, {}-{} requests; median of 5 {:.2?}",
        *up.iter().min().unwrap() as f64 / 1024.0,
        *up.iter().max().unwrap() as f64 / 1024.0,
        requests.iter().min().unwrap(),
        requests.iter().max().unwrap(),
        median(walls)
    );

    let cpu = children_cpu();
    let walls = (0..3)
        .map(|_| {
            timed(
                command(home, &key, &bao, &vault, &["status", "--json"]),
                &[0, 1, 2],
            )
        })
        .collect();
    let passed = meter.take();
    println!(
        "  status --json: median of 3 {:.2?} ({:.1} MB read, {:.2?} of tokdeck's CPU a run)",
        median(walls),
        passed.down as f64 / 3e6,
        (children_cpu() - cpu) / 3
    );
}
