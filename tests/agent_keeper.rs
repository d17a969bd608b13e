//! The agent's keeper driven by deadlines: with 6-second access tokens from a real Doorkeeper
//! server and default settings the stored token is always valid; another process's change
//! wakes it at once; tokens that never fall due, or whose refresh keeps failing, never make it
//! spin (its wake-ups are counted).

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::time::{Duration, Instant};

use common::doorkeeper::{Doorkeeper, Options, Rotation};
use common::running::Agent;
use common::{Env, MockServer, stderr, stdout};

const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";

/// The number the agent's status gives for its wake-ups.
fn wakeups(env: &Env) -> u64 {
    let out = env.run(&["agent", "status"]);
    let text = stdout(&out);
    text.lines()
        .find_map(|l| l.strip_prefix("wakeups "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no wake-ups in: {text}{}", stderr(&out)))
}

/// Default settings, 6-second tokens: sampled every half second for 30 s, the token in the
/// vault works every time (the polling keeper it replaces had it dead in most samples).
#[test]
fn with_six_second_tokens_the_stored_token_always_works() {
    let server = Doorkeeper::start_with(Options {
        rotation: Rotation::Previous,
        ttl: 6,
        ..Options::default()
    });
    let env = Env::new();
    let app = server.register(OOB);
    env.doorkeeper_profile(&server, &app, "short", &["--auto-refresh"]);
    let _agent = Agent::start(&env, &[]);
    let (mut good, mut samples) = (0, 0);
    let mut failed = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        let token = env.stored("short", "access_token");
        samples += 1;
        if server.token_works(&token) {
            good += 1;
        } else {
            failed.push(samples);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(good, samples, "dead in samples {failed:?}");
    assert!(samples >= 50, "{samples} samples");
}

/// A profile added by another process is what the agent answers with at once; the change
/// wakes the keeper (no poll: the interval here is an hour).
#[test]
fn another_process_change_is_seen_at_once() {
    let server = MockServer::start();
    let env = Env::new();
    env.write_config("agent_interval = \"1h\"\n");
    env.authorized_profile("first", &server, &[]);
    let _agent = Agent::start(&env, &[]);
    let before = wakeups(&env);
    env.authorized_profile("second", &server, &["--auto-refresh"]);
    let started = Instant::now();
    loop {
        let out = env.run(&["status", "--json"]);
        if stdout(&out).contains("\"second\"") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not seen within 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while wakeups(&env) == before {
        assert!(
            Instant::now() < deadline,
            "the change did not wake the keeper"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tokens that never fall due (no expiry), a window already over, and a refresh that keeps
/// failing (the server is gone): over 5 s the keeper wakes a handful of times, not a busy
/// loop's thousands.
#[test]
fn deadlines_in_the_past_and_tokens_without_expiry_never_spin() {
    let server = MockServer::start();
    let env = Env::new();
    env.write_config("agent_interval = \"1h\"\n");
    env.authorized_profile("failing", &server, &["--auto-refresh"]);
    let forever = r#"{"access_token":"never-expires","token_type":"Bearer"}"#;
    env.add_profile("forever", &server, &["--auto-refresh"]);
    let out = env.run_with_stdin(&["import-token", "forever"], forever);
    assert!(out.status.success(), "{}", stderr(&out));
    // The failing profile's token is due now, and its server refuses every refresh.
    server.set_expires_in(1);
    let out = env.run(&["refresh", "failing"]);
    assert!(out.status.success(), "{}", stderr(&out));
    server.fail_next(common::Fault::Status(500), 1_000);
    std::thread::sleep(Duration::from_secs(1));
    let _agent = Agent::start(&env, &[]);
    std::thread::sleep(Duration::from_secs(1));
    let start = wakeups(&env);
    std::thread::sleep(Duration::from_secs(5));
    let woke = wakeups(&env) - start;
    assert!(woke <= 5, "woke {woke} times in 5 s");
}

/// A vault file cut short under a running agent (a sync tool, a bad hand edit): the agent
/// says so once on stderr, tries again with a growing pause (its own reads no longer wake
/// it), serves the token it holds in memory, and recovers once the file is whole again. It
/// used to wake thousands of times a second and grow its log by a megabyte a second.
#[test]
fn an_unreadable_vault_is_told_once_backed_off_and_recovered_from() {
    let server = MockServer::start();
    let env = Env::new();
    env.authorized_profile("p", &server, &["--auto-refresh"]);
    let token = env.stored("p", "access_token");
    let agent = Agent::start(&env, &[]);
    let whole = std::fs::read(env.vault()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (log_before, woke_before) = (env.log_text().len(), wakeups(&env));
    // In place, as `cat x > vault.age` does.
    std::fs::write(env.vault(), &whole[..100]).unwrap();
    std::thread::sleep(Duration::from_secs(6));
    let woke = wakeups(&env) - woke_before;
    let grown = env.log_text().len().saturating_sub(log_before);
    let said = agent.said();
    eprintln!("unreadable vault: {woke} wake-ups and {grown} log bytes in 6 s");
    assert!(woke <= 10, "woke {woke} times in 6 s\n{said}");
    assert!(grown < 16_384, "the log grew by {grown} bytes in 6 s");
    assert_eq!(said.matches("cannot read the vault").count(), 1, "{said}");

    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), token);
    assert!(stderr(&out).contains("held in memory"), "{}", stderr(&out));

    std::fs::write(env.vault(), &whole).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !agent.said().contains("the vault is readable again") {
        assert!(
            Instant::now() < deadline,
            "not recovered within 5 s: {}",
            agent.said()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("held in memory"), "{}", stderr(&out));
}
