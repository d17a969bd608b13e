//! The agent (a real process on a real Unix socket) with `token`, `exec`, `api` and `status`
//! as its clients, against the loopback mock server; kills, stale sockets, bad requests.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Env, MockServer, assert_one_line_error, stderr, stdout};

/// A running agent, killed on drop.
struct Agent {
    child: Child,
}

impl Agent {
    fn start(env: &Env) -> Self {
        let child = env
            .command(&["agent"])
            .stdout(Stdio::null())
            // A line an action: a pipe nobody reads would fill and stop the agent.
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let agent = Self { child };
        wait_until("the agent's socket", || {
            ask(env, r#"{"v":1,"op":"info"}"#).is_some()
        });
        agent
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One raw request line on the agent's socket, and its reply.
fn ask(env: &Env, line: &str) -> Option<serde_json::Value> {
    env.ask_agent(line)
}

/// Runs the binary with no usable key: it cannot decrypt, so it must ask the agent.
fn keyless(env: &Env, args: &[&str]) -> std::process::Output {
    env.command(args)
        .env("TOKDECK_IDENTITY", env.home().join("no-such-key.txt"))
        .output()
        .unwrap()
}

fn fast_agent(env: &Env) {
    env.write_config("agent_interval = \"1s\"\nhttp_timeout = \"2s\"\n");
}

#[test]
fn clients_get_tokens_from_the_agent_without_unlocking() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let _agent = Agent::start(&env);
    let access = server.last_access_token().unwrap();
    // A client with no usable key: it must not decrypt, so it must ask the agent.
    let out = keyless(&env, &["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), access);
    let status = keyless(&env, &["status", "--json"]);
    assert!(
        stdout(&status).contains("\"name\": \"p\""),
        "{}",
        stdout(&status)
    );
    // The agent applies a filter, and the exit code is that of what it matched.
    let none = keyless(&env, &["status", "--json", "--filter", "state:error"]);
    assert_eq!(stdout(&none).trim(), "[]", "{}", stderr(&none));
    assert_eq!(none.status.code(), Some(0));
    let some = keyless(&env, &["status", "--filter", "-state:error p"]);
    assert!(stdout(&some).contains("p "), "{}", stderr(&some));
    // --no-agent opens the vault itself, and fails with that key.
    let out = keyless(&env, &["--no-agent", "token", "p"]);
    assert!(!out.status.success());
    // A command for another vault does not take this agent's answers: it opens its own.
    let other = env.home().join("other.age").display().to_string();
    assert!(env.run(&["--vault", &other, "init"]).status.success());
    let out = env.run(&["--vault", &other, "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("no profiles yet"), "{}", stdout(&out));
    // agent status says who it is; the socket is private.
    let out = env.run(&["agent", "status"]);
    assert!(
        stdout(&out).contains("agent pid") && stdout(&out).contains("vault.age"),
        "{}",
        stdout(&out)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.agent_socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn the_agent_keeps_tokens_alive_and_notices_changes() {
    let env = Env::new();
    fast_agent(&env);
    let server = MockServer::start();
    server.set_expires_in(4);
    env.authorized_profile("auto", &server, &["--auto-refresh"]);
    let _agent = Agent::start(&env);
    let before = server.refresh_requests();
    wait_until("a keep-alive refresh", || {
        server.refresh_requests() > before
    });
    let newest = server.last_refresh_token().unwrap();
    wait_until("the rotated token on disk", || {
        env.vault_text().contains(&newest)
    });
    // A profile added by another process is picked up and served.
    env.authorized_profile("later", &server, &[]);
    let reply = ask(&env, r#"{"v":1,"op":"token","profile":"later"}"#).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    // It says what it did last: the keep-alive refresh, or noticing that change.
    let info = ask(&env, r#"{"v":1,"op":"info"}"#).unwrap();
    let last = info["info"]["last"].as_str().unwrap_or_default();
    assert!(
        last.contains("auto:") || last.contains("the vault changed elsewhere"),
        "{info}"
    );
}

#[test]
fn bad_requests_get_an_error_and_the_agent_goes_on() {
    let env = Env::new();
    let _agent = Agent::start(&env);
    for (line, needle) in [
        ("garbage", "not a JSON request"),
        (r#"{"v":7,"op":"info"}"#, "version 7"),
        (r#"{"v":1,"op":"dance"}"#, "not a request"),
        (
            r#"{"v":1,"op":"token","profile":"nobody"}"#,
            "no profile named 'nobody'",
        ),
    ] {
        let reply = ask(&env, line).unwrap();
        assert_eq!(reply["ok"], false, "{line}");
        assert!(
            reply["error"].as_str().unwrap().contains(needle),
            "{line}: {reply}"
        );
    }
    let huge = "x".repeat(200 * 1024);
    let reply = ask(&env, &huge).unwrap();
    assert!(
        reply["error"].as_str().unwrap().contains("longer than"),
        "{reply}"
    );
    assert_eq!(
        ask(&env, r#"{"v":1,"op":"info"}"#).unwrap()["ok"],
        true,
        "still serving"
    );
}

#[test]
fn one_agent_per_vault_and_a_stale_socket_is_replaced() {
    let env = Env::new();
    let mut first = Agent::start(&env);
    let second = env
        .command(&["agent"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let said = stderr(&second);
    assert!(
        said.contains(&format!("pid {}", first.child.id())),
        "{said}"
    );
    first.kill();
    assert!(
        env.agent_socket().exists(),
        "a killed agent leaves its socket"
    );
    let mut again = Agent::start(&env);
    let out = env.run(&["agent", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // It really stops: exits 0 and takes its socket away.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = again.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the agent did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(!env.agent_socket().exists());
}

/// SIGKILL at random moments while the agent refreshes: every refresh it reported is on disk,
/// the vault always decrypts, and a restarted agent carries on.
#[test]
fn killed_mid_refresh_the_agent_loses_nothing_it_reported() {
    let env = Env::new();
    let server = MockServer::start();
    // Doorkeeper's lenient rotation: a refresh token lives until its successor is used.
    server.set_revoke_on_first_use(true);
    env.authorized_profile("p", &server, &[]);
    let mut jitter = common::Jitter::new(0xa9e7);
    for round in 0..15 {
        let mut agent = Agent::start(&env);
        let reply = ask(&env, r#"{"v":1,"op":"refresh","profile":"p"}"#).unwrap();
        assert_eq!(reply["ok"], true, "round {round}: {reply}");
        let reported = server.last_refresh_token().unwrap();
        assert!(
            env.vault_text().contains(&reported),
            "round {round}: reported but not on disk"
        );
        // A second refresh, killed at some point of its life.
        let socket = env.agent_socket();
        let pending = std::thread::spawn(move || {
            let mut s = UnixStream::connect(socket).ok()?;
            s.write_all(b"{\"v\":1,\"op\":\"refresh\",\"profile\":\"p\"}\n")
                .ok()?;
            let mut reply = String::new();
            BufReader::new(s).read_line(&mut reply).ok()?;
            Some(reply)
        });
        std::thread::sleep(Duration::from_millis(jitter.below(60)));
        agent.kill();
        let answered = pending
            .join()
            .unwrap()
            .is_some_and(|r| r.contains("\"ok\":true"));
        let text = env.vault_text();
        if answered {
            assert!(
                text.contains(&server.last_refresh_token().unwrap()),
                "round {round}"
            );
        }
    }
    let _agent = Agent::start(&env);
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.run(&["refresh", "p"]).status.success());
}

#[test]
fn exec_puts_the_token_in_the_childs_environment_only() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &["--env-var", "FACTORIAL_TOKEN"]);
    let access = server.last_access_token().unwrap();
    let out = env.run(&[
        "exec",
        "p",
        "--",
        "sh",
        "-c",
        r#"printf '%s|%s|%s' "$FACTORIAL_TOKEN" "$TOKDECK_PROFILE" "$TOKDECK_TOKEN_EXPIRES_AT""#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let parts: Vec<&str> = printed.split('|').collect();
    assert_eq!(parts[0], access);
    assert_eq!(parts[1], "p");
    assert!(
        chrono::DateTime::parse_from_rfc3339(parts[2]).is_ok(),
        "{printed}"
    );
    let out = env.run(&[
        "exec",
        "p",
        "--env",
        "OTHER",
        "--",
        "sh",
        "-c",
        r#"test -n "$OTHER" && exit 7"#,
    ]);
    assert_eq!(out.status.code(), Some(7), "the child's exit code");
    let out = env.run(&["exec", "p", "--", "sh", "-c", "cat /proc/$$/cmdline"]);
    assert!(!stdout(&out).contains(&access), "the token is not in argv");
    let out = env.run(&["exec", "p", "--", "no-such-program-xyz"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("cannot run no-such-program-xyz"));
}

#[test]
fn api_calls_the_profile_server_and_refreshes_once_on_401() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let path = "/api/2025-04-01/resources/api_public/credentials";
    let out = env.run(&["api", "p", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["data"][0]["email"], "ada@example.com");
    // The access token dies at the server: 401, refresh, retry.
    let access = server.last_access_token().unwrap();
    server.state.lock().unwrap().revoke_access_for_test(&access);
    let refreshes = server.refresh_requests();
    let out = env.run(&["api", "p", path, "-i"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), refreshes + 1);
    assert!(stdout(&out).starts_with("HTTP 200"), "{}", stdout(&out));
    // Errors: exit 1 with the status on stderr; other hosts are refused.
    // The body once, on stdout; one line on stderr that does not repeat it.
    let out = env.run(&["api", "p", "/nowhere"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("not found"), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("p: HTTP 404 Not Found from the API"), "{err}");
    assert!(!err.contains("not found"), "the body was repeated: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = env.run(&["api", "p", "http://127.0.0.2:1/x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("sends its token nowhere else"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_save_that_fails_for_a_while_loses_no_token() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let _agent = Agent::start(&env);
    let blocker = save_blocker(&env);

    let refresh = r#"{"v":1,"op":"refresh","profile":"p"}"#;
    let reply = ask(&env, refresh).unwrap();
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("keeps them"),
        "{reply}"
    );
    assert_eq!(server.refresh_requests(), 1);
    // Still failing: the dead refresh token is never sent, the new one is not thrown away.
    let reply = ask(&env, refresh).unwrap();
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("still waiting to be saved"),
        "{reply}"
    );
    assert_eq!(server.refresh_requests(), 1);
    // The agent's status says it waits to be saved.
    let out = env.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["unsaved"], true, "{rows}");

    std::fs::remove_dir_all(&blocker).unwrap();
    let reply = ask(&env, refresh).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(server.refresh_requests(), 2);
    let stored = env.stored("p", "refresh_token");
    assert_eq!(Some(stored.clone()), server.last_refresh_token());
    assert!(server.is_refresh_token_valid(&stored));
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_token_held_after_a_failed_save_never_overwrites_a_newer_login() {
    let env = Env::new();
    let server = MockServer::start();
    let (_agent, blocker) = agent_holding_an_unsaved_token(&env, &server);
    let refresh = r#"{"v":1,"op":"refresh","profile":"p"}"#;
    let held = server.last_refresh_token().unwrap();
    std::fs::remove_dir_all(&blocker).unwrap();
    // The user authorizes again, as the error told them to, from another process.
    let code = server.issue_code(false, "urn:ietf:wg:oauth:2.0:oob");
    let out = env.run(&["exchange", "p", &code, "--no-agent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let login = env.stored("p", "refresh_token");
    assert_ne!(login, held);

    // The agent's next action drops the held token rather than writing it over the login.
    let reply = ask(&env, refresh).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    // The refresh token sent was the login's, which the server then rotated.
    assert_eq!(server.refresh_requests(), 2);
    assert!(!server.is_refresh_token_valid(&login));
    let stored = env.stored("p", "refresh_token");
    assert_ne!(stored, held, "the held token overwrote the newer login");
    assert!(server.is_refresh_token_valid(&stored));
    let log = env.log_text();
    assert!(
        log.contains("dropped a new token whose save had failed"),
        "{log}"
    );
}

#[test]
fn a_refresh_token_whose_answer_another_process_holds_unsaved_is_not_sent_again() {
    let env = Env::new();
    let server = MockServer::start();
    let (agent, blocker) = agent_holding_an_unsaved_token(&env, &server);
    let refresh = r#"{"v":1,"op":"refresh","profile":"p"}"#;
    assert_eq!(server.refresh_requests(), 1);
    let spending = env.home().join("data/tokdeck/vault.age.spending");
    assert!(spending.exists(), "no record of the refresh on its way");

    // A process of this user finds the new token kept aside, and saves it first: it cannot
    // yet, and sends nothing.
    let out = env.run(&["refresh", "p", "--no-agent"]);
    assert_one_line_error(&out, "still waiting to be saved");
    assert!(
        stderr(&out).contains("nothing was sent"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.refresh_requests(), 1);
    // One that does not see it (another state folder) finds the spent token in the file, and
    // the record beside it.
    let out = env
        .command(&["refresh", "p", "--no-agent"])
        .env("XDG_STATE_HOME", env.home().join("elsewhere"))
        .output()
        .unwrap();
    assert_one_line_error(&out, "its answer is not saved yet");
    assert!(
        stderr(&out).contains(&format!("pid {}", agent.child.id())),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.refresh_requests(),
        1,
        "the spent refresh token was sent again"
    );

    // Once the agent saves what it holds, the record is gone and anyone may refresh.
    std::fs::remove_dir_all(&blocker).unwrap();
    let reply = ask(&env, refresh).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(!spending.exists());
    // What stays is the print of the newest refresh token, for the profile's key.
    let newest = env.home().join("data/tokdeck/vault.age.newest");
    assert_eq!(std::fs::read_dir(&newest).unwrap().count(), 1);
    let out = env.run(&["refresh", "p", "--no-agent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 3);
    assert!(server.is_refresh_token_valid(&env.stored("p", "refresh_token")));
}

#[test]
fn a_command_whose_save_fails_keeps_the_new_token_for_the_next_one() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let blocker = save_blocker(&env);
    let out = env.run(&["refresh", "p", "--no-agent"]);
    assert_one_line_error(&out, "keeps them, encrypted, in");
    assert!(
        stderr(&out).contains("saves them first"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.refresh_requests(), 1);
    // Kept aside, encrypted: the new tokens are nowhere in plain text.
    let spool = env.home().join("state/tokdeck/unsaved");
    let spooled: Vec<_> = walk(&spool);
    assert_eq!(spooled.len(), 1, "{spooled:?}");
    let new_access = server.last_access_token().unwrap();
    let bytes = std::fs::read(&spooled[0]).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(&new_access));
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    // `status` says so, and asks for attention.
    let out = env.run(&["status", "--json", "--no-agent"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["unsaved"], true, "{rows}");
    let out = env.run(&["status", "--no-agent"]);
    assert!(
        stdout(&out).contains("p: a new token waits to be saved"),
        "{}",
        stdout(&out)
    );

    // The next command saves them before it does anything else: it refreshes from the new
    // refresh token, not the dead one still in the file, and the grant lives on.
    std::fs::remove_dir_all(&blocker).unwrap();
    let out = env.run(&["refresh", "p", "--no-agent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 2);
    assert!(server.is_refresh_token_valid(&env.stored("p", "refresh_token")));
    assert!(
        walk(&spool).is_empty(),
        "the saved token stayed in the spool"
    );
    let out = env.run(&["status", "--json", "--no-agent"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows[0].get("unsaved").is_none(), "{rows}");
}

#[test]
fn an_agent_killed_while_holding_a_new_token_leaves_it_for_the_next_one() {
    let env = Env::new();
    let server = MockServer::start();
    let (mut agent, blocker) = agent_holding_an_unsaved_token(&env, &server);
    // SIGKILL: nothing of the agent's memory survives.
    agent.kill();
    std::fs::remove_dir_all(&blocker).unwrap();
    let _agent = Agent::start(&env);
    let reply = ask(&env, r#"{"v":1,"op":"refresh","profile":"p"}"#).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    // The new agent saved the kept token first, and refreshed from its refresh token.
    assert_eq!(server.refresh_requests(), 2);
    assert!(server.is_refresh_token_valid(&env.stored("p", "refresh_token")));
    assert!(walk(&env.home().join("state/tokdeck/unsaved")).is_empty());
}

/// The files below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn a_refresh_that_cannot_be_recorded_first_is_not_sent() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    // Where the record goes, a folder: it cannot be written, even by root.
    let spending = env.home().join("data/tokdeck/vault.age.spending");
    std::fs::create_dir(&spending).unwrap();
    std::fs::write(spending.join("x"), "x").unwrap();
    let out = env.run(&["refresh", "p", "--no-agent"]);
    assert_one_line_error(&out, "nothing was sent");
    assert_eq!(server.refresh_requests(), 0);
    std::fs::remove_dir_all(&spending).unwrap();
    let out = env.run(&["refresh", "p", "--no-agent"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 1);
}

/// Profile `p` on `server`, and an agent whose refresh of it got a new token it could not save
/// (it holds it): the agent, and what blocks the saves.
fn agent_holding_an_unsaved_token(env: &Env, server: &MockServer) -> (Agent, std::path::PathBuf) {
    env.authorized_profile("p", server, &[]);
    let agent = Agent::start(env);
    let blocker = save_blocker(env);
    let reply = ask(env, r#"{"v":1,"op":"refresh","profile":"p"}"#).unwrap();
    assert!(
        reply["error"].as_str().unwrap().contains("keeps them"),
        "{reply}"
    );
    (agent, blocker)
}

/// A folder where the vault's backup goes: every save fails, even for root, until the folder
/// is removed.
fn save_blocker(env: &Env) -> std::path::PathBuf {
    let mut blocker = env.vault().into_os_string();
    blocker.push(".bak");
    let blocker = std::path::PathBuf::from(blocker);
    let _ = std::fs::remove_file(&blocker);
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("x"), "x").unwrap();
    blocker
}

#[test]
fn an_older_vault_restored_under_the_agent_keeps_the_newer_tokens() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let old = env.vault_bytes();
    let _agent = Agent::start(&env);
    let reply = ask(&env, r#"{"v":1,"op":"refresh","profile":"p"}"#).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    let current = server.last_refresh_token().unwrap();
    // The older file put back, as a restore or `git pull` does.
    let staged = env.home().join("restored.age");
    std::fs::write(&staged, &old).unwrap();
    std::fs::rename(&staged, env.vault()).unwrap();
    let reply = ask(&env, r#"{"v":1,"op":"reload"}"#).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(env.stored("p", "refresh_token"), current);
    let reply = ask(&env, r#"{"v":1,"op":"refresh","profile":"p"}"#).unwrap();
    assert_eq!(reply["ok"], true, "the agent used a retired token: {reply}");
    assert_eq!(
        Some(env.stored("p", "refresh_token")),
        server.last_refresh_token()
    );
}

#[test]
fn a_large_token_and_odd_lines_get_answers() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    // 200 KiB: more than a request line may hold, less than a server's answer may.
    let big = "t".repeat(200 * 1024);
    let access = env.stored("p", "access_token");
    env.write_vault_text(&env.vault_text().replace(&access, &big));
    let _agent = Agent::start(&env);
    let out = keyless(&env, &["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), big);

    // A line that is not UTF-8 gets an error answer, and the connection serves the next one.
    let mut stream = UnixStream::connect(env.agent_socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"\xff\xfe\n{\"v\":1,\"op\":\"info\"}\n")
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("not UTF-8"), "{first}");
    let mut second = String::new();
    reader.read_line(&mut second).unwrap();
    assert!(second.contains("\"pid\""), "{second}");
}

#[test]
fn the_agent_says_each_action_on_stderr() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let child = env
        .command(&["agent"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the agent's socket", || {
        ask(&env, r#"{"v":1,"op":"info"}"#).is_some()
    });
    let reply = ask(&env, r#"{"v":1,"op":"refresh","profile":"p"}"#).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(env.run(&["agent", "stop"]).status.success());
    let out = child.wait_with_output().unwrap();
    let said = stderr(&out);
    let refreshed: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("tokdeck agent: ") && l.contains("p: "))
        .collect();
    assert_eq!(refreshed.len(), 1, "{said}");
    assert!(refreshed[0].contains("UTC p: "), "{said}");
    // The audit log says who did it.
    let audit = stdout(&env.run(&["audit", "p"]));
    assert!(
        audit
            .lines()
            .next()
            .unwrap_or_default()
            .contains(" agent p refresh ok"),
        "{audit}"
    );
}

#[test]
fn the_agent_writes_no_core_dump() {
    let env = Env::new();
    let agent = Agent::start(&env);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    let unit = stdout(&env.run(&["agent", "--systemd-unit"]));
    assert!(unit.contains("\nLimitCORE=0\n"), "{unit}");
}

/// `token --min-valid` and `--header`, run by `run` (with or without an agent).
fn min_valid_is_honoured(server: &MockServer, run: &dyn Fn(&[&str]) -> std::process::Output) {
    let before = server.refresh_requests();
    // Two hours left: ten minutes are there without a refresh.
    let out = run(&["token", "p", "--min-valid", "10m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), before);
    let first = stdout(&out);
    // Three hours cannot be had from a server that issues two: one refresh, then a clear no.
    let out = run(&["token", "p", "--min-valid", "3h"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("less than --min-valid 3h"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.refresh_requests(),
        before + 1,
        "refreshed more than once"
    );
    // A server that issues four hours: refreshed first, a new token handed out.
    server.set_expires_in(4 * 3600);
    let out = run(&["token", "p", "--min-valid", "3h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), before + 2);
    let fresh = stdout(&out);
    assert_ne!(fresh, first);
    assert_eq!(Some(fresh.clone()), server.last_access_token());
    let out = run(&["token", "p", "--header"]);
    assert_eq!(stdout(&out), format!("Authorization: Bearer {fresh}\n"));
    server.set_expires_in(7200);
    // exec asks the same: a command that needs five hours does not start with less.
    let out = run(&["exec", "p", "--min-valid", "5h", "--", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--min-valid 5h"), "{}", stderr(&out));
}

#[test]
fn token_min_valid_and_header_without_an_agent() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    min_valid_is_honoured(&server, &|args| env.run(&[&["--no-agent"], args].concat()));
}

#[test]
fn token_min_valid_and_header_through_the_agent() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let _agent = Agent::start(&env);
    min_valid_is_honoured(&server, &|args| keyless(&env, args));
}
