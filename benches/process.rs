//! Whole-process figures: `tokdeck status --json` and `tokdeck token NAME` on 1,000- and
//! 10,000-profile vaults (wall time, peak memory), beside `age -d` of the same file, and the
//! TUI's idle CPU over 30 s (from /proc).

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 30;

fn env_command(
    home: &std::path::Path,
    vault: &std::path::Path,
    key: &std::path::Path,
    args: &[&str],
) -> Command {
    let mut cmd = support::command(home, args);
    cmd.env("TOKDECK_VAULT", vault).env("TOKDECK_IDENTITY", key);
    cmd
}

/// Median wall time and the largest peak RSS (KiB) of `RUNS` runs, each child measured alone;
/// every run must exit with one of `codes`.
// Each child is reaped by `wait4` (which also yields its own rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
#[expect(
    unsafe_code,
    reason = "wait4 is the only way to get one child's own peak RSS"
)]
fn measure(codes: &[i32], make: impl Fn() -> Command) -> (Duration, i64) {
    let mut walls = Vec::new();
    let mut peak = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let child = make().spawn().unwrap();
        let mut status = 0;
        // SAFETY: wait4 writes only into the two out-parameters we own.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
        walls.push(start.elapsed());
        assert_eq!(pid, child.id() as libc::pid_t);
        assert!(libc::WIFEXITED(status), "the child did not exit normally");
        let code = libc::WEXITSTATUS(status);
        assert!(codes.contains(&code), "{:?} exited with {code}", make());
        peak = peak.max(usage.ru_maxrss);
    }
    walls.sort();
    (walls[RUNS / 2], peak)
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[expect(
    unsafe_code,
    reason = "sysconf(_SC_CLK_TCK) converts /proc ticks to seconds"
)]
fn idle_cpu(
    home: &std::path::Path,
    vault: &std::path::Path,
    key: &std::path::Path,
    secs: u64,
) -> Option<f64> {
    let socket = format!("tokdeck-bench-{}", std::process::id());
    let script = format!(
        "env HOME={h} XDG_STATE_HOME={h}/state TOKDECK_VAULT={v} TOKDECK_IDENTITY={k} {b}",
        h = home.display(),
        v = vault.display(),
        k = key.display(),
        b = support::bin().display()
    );
    let ok = Command::new("tmux")
        .args([
            "-L",
            &socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "50",
            &script,
        ])
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid: u32 = String::from_utf8(
        Command::new("tmux")
            .args(["-L", &socket, "display", "-p", "#{pane_pid}"])
            .output()
            .ok()?
            .stdout,
    )
    .ok()?
    .trim()
    .parse()
    .ok()?;
    let before = cpu_ticks(pid)?;
    std::thread::sleep(Duration::from_secs(secs));
    let after = cpu_ticks(pid)?;
    let _ = Command::new("tmux")
        .args(["-L", &socket, "kill-server"])
        .status();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((after - before) as f64 / hz / secs as f64 * 100.0)
}

/// Starts an agent on `vault` with its socket in `home`; waits until it answers.
fn start_agent(
    home: &std::path::Path,
    vault: &std::path::Path,
    key: &std::path::Path,
) -> std::process::Child {
    let child = env_command(home, vault, key, &["agent"])
        .env("TOKDECK_AGENT_SOCK", home.join("agent.sock"))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(home.join("agent.sock")).is_err() {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Resident memory of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `token` through an agent at 10,000 profiles; the agent's idle CPU and memory at 1,000.
fn agent_figures(secs: u64) {
    // Endpoints on a closed loopback port: whatever the keeper tries stays on this machine.
    let base = "http://127.0.0.1:9";
    for (n, idle) in [(10_000usize, false), (1_000, true)] {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let (vault, key) = vault_in_child(home, n, base);
        let mut agent = start_agent(home, &vault, &key);
        if !idle {
            let (base, _) = measure(&[0], || env_command(home, &vault, &key, &["--version"]));
            println!(
                "process start alone (--version, which tokdeck hands to tokdeck-core): median {base:.2?}"
            );
            let (wall, rss) = measure(&[0], || {
                // A profile in the middle, so a lookup by scanning would show.
                let mut cmd = env_command(home, &vault, &key, &["token", "profile-05000"]);
                cmd.env("TOKDECK_AGENT_SOCK", home.join("agent.sock"));
                cmd
            });
            println!(
                "token NAME through the agent, {n} profiles: median {wall:.2?}, peak {:.1} MB",
                rss as f64 / 1024.0
            );
        } else {
            // Let start-up settle, then measure a quiet stretch.
            std::thread::sleep(Duration::from_secs(2));
            let before = cpu_ticks(agent.id()).unwrap_or(0);
            std::thread::sleep(Duration::from_secs(secs));
            let after = cpu_ticks(agent.id()).unwrap_or(0);
            let hz = clock_ticks();
            let pct = (after - before) as f64 / hz / secs as f64 * 100.0;
            let rss = rss_kib(agent.id()).unwrap_or(0) as f64 / 1024.0;
            println!(
                "agent idle over {secs} s, {n} profiles: {pct:.2}% of one core, {rss:.1} MB resident"
            );
        }
        let _ = agent.kill();
        let _ = agent.wait();
    }
}

#[expect(
    unsafe_code,
    reason = "sysconf(_SC_CLK_TCK) converts /proc ticks to seconds"
)]
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Builds a vault of `n` profiles in `home` in a child process, so that this process stays
/// small: Linux counts a spawned child's peak memory from its parent's at the time.
fn vault_in_child(
    home: &std::path::Path,
    n: usize,
    base: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let made = Command::new(std::env::current_exe().unwrap())
        .arg("--make-vault")
        .arg(home)
        .arg(n.to_string())
        .arg(base)
        .status()
        .unwrap();
    assert!(made.success());
    (home.join("vault.age"), home.join("key.txt"))
}

fn make_vault(home: &str, n: &str, base: &str) {
    let (vault, key) = support::vault(
        std::path::Path::new(home),
        n.parse().unwrap(),
        base,
        chrono::Utc::now(),
        |i| format!("r{i}"),
    );
    assert!(vault.ends_with("vault.age") && key.ends_with("key.txt"));
}

/// `status --json` and `token NAME` on `n` profiles, and `age -d` of the same file.
fn vault_figures(n: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (vault, key) = vault_in_child(home, n, "https://api.factorialhr.com");
    let mb = |kib: i64| kib as f64 / 1024.0;
    // Some tokens of the spread have expired, so status exits 2 (broken) as it should.
    let (wall, rss) = measure(&[0, 1, 2], || {
        env_command(home, &vault, &key, &["status", "--json"])
    });
    println!(
        "status --json, {n} profiles: median {wall:.2?}, peak {:.1} MB",
        mb(rss)
    );
    // A profile in the middle whose token is valid, so a lookup by scanning would show.
    let middle = (n / 2..n)
        .find(|i| support::token_age_secs(*i) < 3_600)
        .unwrap();
    let middle = support::profile_name(middle);
    let (wall, rss) = measure(&[0], || {
        env_command(home, &vault, &key, &["token", &middle])
    });
    println!(
        "token NAME (valid), {n} profiles: median {wall:.2?}, peak {:.1} MB",
        mb(rss)
    );
    // With no agent, tokdeck hands the work to the whole program: what that costs.
    let (direct, _) = measure(&[0], || {
        let mut cmd = support::command_of(&support::core_bin(), home, &["token", &middle]);
        cmd.env("TOKDECK_VAULT", &vault)
            .env("TOKDECK_IDENTITY", &key);
        cmd
    });
    println!("  the same from tokdeck-core directly: median {direct:.2?}");
    let (wall, rss) = measure(&[0], || age_decrypt(&key, &vault));
    println!(
        "  age -d of the same file: median {wall:.2?}, peak {:.1} MB",
        mb(rss)
    );
    (dir, vault, key)
}

/// `age -d` of `vault` with `key`, the plaintext thrown away.
fn age_decrypt(key: &std::path::Path, vault: &std::path::Path) -> Command {
    let mut age = Command::new("age");
    age.arg("-d")
        .arg("-i")
        .arg(key)
        .arg("-o")
        .arg("/dev/null")
        .arg(vault)
        .stdout(Stdio::null());
    age
}

/// `refresh NAME` of one profile among `n` (a vault file), against the loopback mock server,
/// beside `age -d` and `age -e` of the same file: what one profile's change costs next to
/// reading and writing the whole file once.
fn refresh_figures(n: usize) {
    let server = tokdeck_testkit::mock::MockServer::start();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let (vault, key) = vault_in_child(home, n, &server.base_url());
    let name = support::profile_name(n / 2);
    let answer = format!(
        r#"{{"access_token":"a","refresh_token":"{}","token_type":"Bearer","expires_in":60}}"#,
        server.seed_refresh_token()
    );
    let mut import = env_command(home, &vault, &key, &["import-token", &name]);
    let mut child = import.stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), answer.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "import-token");
    let (wall, rss) = measure(&[0], || {
        env_command(home, &vault, &key, &["refresh", &name])
    });
    let plain = home.join("plain.toml");
    let decrypted = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key)
        .arg("-o")
        .arg(&plain)
        .arg(&vault)
        .status()
        .unwrap();
    assert!(decrypted.success());
    let plain_mb = std::fs::metadata(&plain).unwrap().len() as f64 / 1_048_576.0;
    let (read, _) = measure(&[0], || age_decrypt(&key, &vault));
    let recipients: String = std::fs::read_to_string(&key)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# public key: "))
        .collect();
    assert!(!recipients.is_empty());
    std::fs::write(home.join("recipients.txt"), recipients).unwrap();
    let (write, _) = measure(&[0], || {
        let mut age = Command::new("age");
        age.arg("-e")
            .arg("-R")
            .arg(home.join("recipients.txt"))
            .arg("-o")
            .arg("/dev/null")
            .arg(&plain);
        age
    });
    let both = read + write;
    println!(
        "refresh NAME, {n} profiles (file vault): median {wall:.2?}, peak {:.1} MB; age -d + age -e: {read:.2?} + {write:.2?} = {both:.2?} ({:.2}x); plaintext {plain_mb:.1} MB (peak {:.2}x)",
        rss as f64 / 1024.0,
        wall.as_secs_f64() / both.as_secs_f64(),
        rss as f64 / 1024.0 / plain_mb,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("process: bench");
        return;
    }
    if let [_, flag, home, n, base] = &args[..]
        && flag == "--make-vault"
    {
        make_vault(home, n, base);
        return;
    }
    if args.iter().any(|a| a == "refresh") {
        // TOKDECK_BENCH_PROFILES=10 gives the fixed part: process, runtime, client, save.
        let n = std::env::var("TOKDECK_BENCH_PROFILES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000);
        refresh_figures(n);
        return;
    }
    let (dir, vault, key) = vault_figures(1_000);
    let home = dir.path();
    drop(vault_figures(10_000));
    let secs = std::env::var("TOKDECK_IDLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    match idle_cpu(home, &vault, &key, secs) {
        Some(pct) => println!("TUI idle CPU over {secs} s, 1,000 profiles: {pct:.2}% of one core"),
        None => println!("TUI idle CPU: tmux not available, skipped"),
    }
    agent_figures(secs);
    for bin in [support::bin(), support::core_bin()] {
        let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
        println!(
            "binary: {:.1} MB ({})",
            size as f64 / 1_048_576.0,
            bin.display()
        );
    }
}
