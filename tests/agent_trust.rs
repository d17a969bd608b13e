//! Nothing on the agent's socket is taken on trust: a folder another user can write in, a
//! listener run by another user, hostile answers from a listener that passes both checks, a
//! socket that never answers, and a flood of idle connections. The impersonation tests run a
//! stand-in agent as a second user, created here with `useradd` (they need root, as CI has).

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Env, MockServer, stderr, stdout};

const INTRUDER: &str = "tokdeck-intruder";

/// The second user's uid, created once; `None` (with a note) when not root.
fn intruder() -> Option<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    *UID.get_or_init(|| {
        if nix_uid() != 0 {
            eprintln!("skipped: creating a second user needs root (CI runs as root)");
            return None;
        }
        let id = |name: &str| {
            Command::new("id")
                .args(["-u", name])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        };
        if let Some(uid) = id(INTRUDER) {
            return Some(uid);
        }
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(INTRUDER)
            .status()
            .unwrap();
        assert!(made.success(), "useradd {INTRUDER} failed");
        Some(id(INTRUDER).expect("the user just made"))
    })
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    })
}

/// The stand-in agent of `tests/fixtures/fake_agent/agent.py`, killed on drop.
struct FakeAgent {
    child: Child,
}

impl FakeAgent {
    fn start(socket: &Path, reply: &str, uid: Option<u32>) -> Self {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake_agent/agent.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg(socket)
            .arg(reply)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let mut child = cmd.spawn().unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "the stand-in agent did not start");
        Self { child }
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a hostile listener answers to everything.
fn hostile_reply() -> String {
    serde_json::json!({
        "ok": true,
        "token": "attacker-token",
        "env_var": "LD_PRELOAD",
        "api_base": "http://attacker.invalid",
        "text": "\u{1b}]52;c;aGFja2Vk\u{7}\u{1b}[2Jfake status\n",
        "code": 0,
    })
    .to_string()
}

/// A folder only root can write in, that others may pass through (to reach a folder below).
fn passable(env: &Env) -> PathBuf {
    let base = env.home().join("run");
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(env.home(), std::fs::Permissions::from_mode(0o711)).unwrap();
    base
}

fn authorized(env: &Env) -> (MockServer, String) {
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let token = server.last_access_token().unwrap();
    (server, token)
}

#[test]
fn a_socket_folder_another_user_owns_is_refused_by_the_agent_and_its_clients() {
    let Some(uid) = intruder() else { return };
    let env = Env::new();
    let (_server, real) = authorized(&env);
    let shared = passable(&env).join("shared");
    std::fs::create_dir(&shared).unwrap();
    chown(&shared, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let socket = shared.join("agent.sock");
    let sock = socket.to_str().unwrap();

    let _fake = FakeAgent::start(&socket, &hostile_reply(), Some(uid));
    let out = env
        .command(&["token", "p"])
        .env("TOKDECK_AGENT_SOCK", sock)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), real, "the token came from the intruder");
    let err = stderr(&out);
    assert!(
        err.contains("not asking the agent") && err.contains(&format!("uid {uid}")),
        "{err}"
    );

    // exec through the vault: the intruder's variable is never set.
    let marker = env.home().join("preload");
    let out = env
        .command(&[
            "exec",
            "p",
            "--",
            "sh",
            "-c",
            "printf %s \"$LD_PRELOAD\" > \"$1\"",
            "sh",
        ])
        .arg(&marker)
        .env("TOKDECK_AGENT_SOCK", sock)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "");

    // The agent will not listen there.
    let started = Instant::now();
    let out = env
        .command(&["agent"])
        .env("TOKDECK_AGENT_SOCK", sock)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("shared") && err.contains(&format!("uid {uid}")),
        "{err}"
    );
    assert!(err.contains("TOKDECK_AGENT_SOCK"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_listener_run_by_another_user_is_not_believed_even_in_a_trusted_folder() {
    let Some(uid) = intruder() else { return };
    let env = Env::new();
    let (_server, real) = authorized(&env);
    let dir = passable(&env).join("sock");
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, Some(uid), Some(uid)).unwrap();
    let socket = dir.join("agent.sock");
    let _fake = FakeAgent::start(&socket, &hostile_reply(), Some(uid));
    // The folder is root's again and private: only the peer check is left to catch it.
    chown(&dir, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = socket.to_str().unwrap();
    for args in [&["token", "p"][..], &["status"][..]] {
        let out = env
            .command(args)
            .env("TOKDECK_AGENT_SOCK", sock)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            !stdout(&out).contains("attacker") && !stdout(&out).contains("fake"),
            "{}",
            stdout(&out)
        );
        let err = stderr(&out);
        // Said once: the whole program, handed the work, does not ask again.
        assert_eq!(
            err.matches(&format!("served by uid {uid}")).count(),
            1,
            "{err}"
        );
    }
    let out = env
        .command(&["token", "p"])
        .env("TOKDECK_AGENT_SOCK", sock)
        .output()
        .unwrap();
    assert_eq!(stdout(&out), real);
}

#[test]
fn what_a_trusted_listener_says_is_still_checked() {
    let env = Env::new();
    let (_server, _real) = authorized(&env);
    let _fake = FakeAgent::start(&env.agent_socket(), &hostile_reply(), None);

    let out = env.run(&["status"]);
    let text = stdout(&out);
    assert!(text.contains("fake status"), "{text}");
    assert!(
        !text.contains('\u{1b}') && text.contains("\\x1b]52"),
        "{text:?}"
    );

    let marker = env.home().join("ran");
    let out = env
        .command(&["exec", "p", "--", "touch"])
        .arg(&marker)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("never puts a token in LD_PRELOAD"),
        "{}",
        stderr(&out)
    );
    assert!(
        !marker.exists(),
        "exec ran its command with the intruder's variable"
    );

    // A base URL that is not a profile's: api refuses to send anything there.
    let other = env.home().join("other.sock");
    let reply = r#"{"ok":true,"token":"attacker-token","api_base":"http://attacker.invalid"}"#;
    let _other = FakeAgent::start(&other, reply, None);
    let out = env
        .command(&["api", "p", "/upload", "-d", "payload"])
        .env("TOKDECK_AGENT_SOCK", &other)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("refused") && err.contains("attacker.invalid"),
        "{err}"
    );
}

#[test]
fn a_socket_that_never_answers_costs_seconds_not_minutes() {
    let env = Env::new();
    let (_server, real) = authorized(&env);
    let _fake = FakeAgent::start(&env.agent_socket(), "stall", None);
    let started = Instant::now();
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), real);
    // Waited for once: the whole program, handed the work, does not ask again.
    assert_eq!(
        stderr(&out).matches("did not answer").count(),
        1,
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let out = env.run(&["agent"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already listens"), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_agent_never_removes_what_is_not_its_own_socket() {
    let env = Env::new();
    let (_server, _real) = authorized(&env);
    // A regular file where the socket would go stays as it is.
    let file = env.home().join("precious.txt");
    std::fs::write(&file, "keep me").unwrap();
    let out = env
        .command(&["agent"])
        .env("TOKDECK_AGENT_SOCK", &file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a socket"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    // A socket that replaced the agent's outlives the agent's shutdown.
    let mut agent = env
        .command(&["agent"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| env.run(&["agent", "status"]).status.success());
    let other = env.home().join("other.sock");
    let _fake = FakeAgent::start(
        &other,
        r#"{"ok":true,"text":"replacement\n","code":0}"#,
        None,
    );
    std::fs::rename(&other, env.agent_socket()).unwrap();
    Command::new("kill")
        .arg("-TERM")
        .arg(agent.id().to_string())
        .status()
        .unwrap();
    let code = agent.wait().unwrap();
    assert!(code.success(), "{code:?}");
    assert!(
        env.agent_socket().exists(),
        "the agent removed a socket it did not make"
    );
    assert!(stdout(&env.run(&["status"])).contains("replacement"));
}

#[test]
fn a_flood_of_idle_connections_neither_spins_nor_locks_out_the_user() {
    let env = Env::new();
    let (_server, real) = authorized(&env);
    // Few descriptors, as a busy machine might leave: without a cap the agent runs out.
    let template = env.command(&[]);
    let mut agent = common::tool("prlimit");
    agent.env_clear();
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            agent.env(key, value);
        }
    }
    let mut agent = agent
        .arg("--nofile=160:160")
        .arg(common::bin())
        .arg("agent")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| env.run(&["agent", "status"]).status.success());
    let mut idle = Vec::new();
    for _ in 0..400 {
        match std::os::unix::net::UnixStream::connect(env.agent_socket()) {
            Ok(stream) => idle.push(stream),
            Err(_) => break,
        }
    }
    assert!(idle.len() >= 200, "only {} connections", idle.len());
    let before = cpu_ticks(agent.id());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(agent.id()) - before;
    // Ticks are 1/100 s: a spinning accept loop burns about 200 in two seconds.
    assert!(
        spent < 40,
        "the agent used {spent} ticks of CPU in 2 s while flooded"
    );
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), real);
    drop(idle);
    wait_for(|| {
        let out = env.run(&["token", "p"]);
        out.status.success() && !stderr(&out).contains("warning")
    });
    let _ = agent.kill();
    let _ = agent.wait();
}

/// Utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let mut stat = String::new();
    std::fs::File::open(format!("/proc/{pid}/stat"))
        .unwrap()
        .read_to_string(&mut stat)
        .unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
}
