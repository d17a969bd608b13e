//! A team vault of 10,000 profiles laid out as entries on a real OpenBao on raft storage
//! (the production layout, 1 MiB per entry): the move in (`vault copy --entries`), then
//! `token NAME` and `refresh NAME` without an agent, counted at a proxy in front of OpenBao
//! (requests, bytes each way), and `status --json` of every profile. The mock server on
//! loopback answers the refreshes. Then machines refreshing different profiles at once, the
//! vault in entries against the same vault in one secret (`cargo bench --bench entries --
//! throughput` for that one alone).

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

/// Profiles each machine refreshes in [`throughput`].
const EACH: usize = 10;

/// 1 and 4 machines (homes of their own) each refreshing its own profiles of one vault, one
/// `refresh NAME` after another as a script or a cron job of that machine would, against the
/// mock server answering each refresh after 200 ms and many at once: the refreshes all made
/// in 15 s, against one machine's. The vault laid out as entries (each refresh holds its
/// profile's lock), then the same vault in one secret (each holds the vault's lease).
fn throughput(bao: &OpenBao) {
    let window = Duration::from_secs(15);
    let server = MockServer::start();
    server.set_latency(Duration::from_millis(200));
    println!(
        "machines refreshing {EACH} profiles each, one after another, for {window:?} (a 200 ms token endpoint):"
    );
    for (layout, path, extra) in [
        ("entries", "bench/throughput-entries", Some("--entries")),
        ("one secret", "bench/throughput-single", None),
    ] {
        // Refresh tokens of its own: the server rotates every one it is sent.
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let (file, key) = support::vault(
            home,
            4 * EACH,
            &server.base_url(),
            chrono::Utc::now(),
            |_| server.seed_refresh_token(),
        );
        let file = file.display().to_string();
        let vault = bao.location(path);
        let mut args = vec!["vault", "copy", vault.as_str()];
        args.extend(extra);
        timed(command(home, &key, bao, &file, &args), &[0]);
        let mut alone = None;
        for machines in [1, 4] {
            let before = server.refresh_requests();
            let start = Instant::now();
            std::thread::scope(|scope| {
                for m in 0..machines {
                    let (key, vault) = (&key, &vault);
                    let home = home.join(format!("machine-{m}"));
                    scope.spawn(move || {
                        for i in (0..EACH).cycle() {
                            if start.elapsed() >= window {
                                break;
                            }
                            let name = support::profile_name(m * EACH + i);
                            timed(command(&home, key, bao, vault, &["refresh", &name]), &[0]);
                        }
                    });
                }
            });
            let made = server.refresh_requests() - before;
            let rate = f64::from(made) / start.elapsed().as_secs_f64();
            let one = *alone.get_or_insert(rate);
            println!(
                "  {layout:<10} {machines} machine(s): {made:>4} refreshes, {rate:>5.1}/s, {:.2}x one machine's",
                rate / one
            );
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("entries: bench");
        return;
    }
    let bao = OpenBao::start_raft();
    if std::env::args().any(|a| a == "throughput") {
        throughput(&bao);
        return;
    }
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
    throughput(&bao);
}
