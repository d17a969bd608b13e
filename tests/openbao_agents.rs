//! Two agents on two "machines" (two homes, two age keys, both recipients) keeping one vault
//! in a real OpenBao server alive against a real Doorkeeper server: one rotation chain under
//! strict rotation with both refreshing at once, and the lease holder killed mid-refresh.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::time::{Duration, Instant};

use common::doorkeeper::{App, Doorkeeper, Options, Rotation};
use common::openbao::OpenBao;
use common::running::Agent;
use common::write_faults::WriteFaults;
use common::{Env, stderr};

const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";
const PROFILES: [&str; 3] = ["a", "b", "c"];

/// Short timeouts: a lease of 10 s (see `LeaseTiming`), refreshes 4 s before the 6 s access
/// tokens end, and the agent looking every second.
const CONFIG: &str = "http_timeout = \"2s\"\nrefresh_margin = \"4s\"\nagent_interval = \"1s\"\n";

/// The laptop (which creates the vault) and a second machine with a key of its own.
fn two_machines(bao: &OpenBao, path: &str) -> (Env, Env) {
    let laptop = Env::team(bao, path);
    let other = Env::second_machine(bao, path, &laptop);
    for env in [&laptop, &other] {
        env.write_config(CONFIG);
    }
    (laptop, other)
}

/// Adds and authorizes every profile from `env`.
fn authorized(env: &Env, server: &Doorkeeper, app: &App) {
    for name in PROFILES {
        env.doorkeeper_profile(server, app, name, &["--auto-refresh"]);
    }
}

/// Every profile's chain is whole: the stored access token works, and a refresh from `env`
/// (without its agent) is accepted.
fn every_chain_is_whole(env: &Env, server: &Doorkeeper) {
    for name in PROFILES {
        let out = env.run(&["--no-agent", "refresh", name]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let access = env.stored(name, "access_token");
        assert!(
            server.token_works(&access),
            "{name}'s stored token is refused"
        );
    }
}

/// Under strict rotation (the old refresh token dies the moment a new one is issued), two
/// agents keeping every token alive, and both machines forcing refreshes of one profile, all
/// at once for 25 s: every refresh request is sent under the lease, with the token the last
/// save left, so no chain ever forks.
#[test]
fn two_agents_and_two_machines_refreshing_at_once_keep_one_chain_under_strict_rotation() {
    let server = Doorkeeper::start_with(Options {
        rotation: Rotation::Immediate,
        ttl: 6,
        ..Options::default()
    });
    let bao = OpenBao::start();
    let (laptop, other) = two_machines(&bao, "fleet");
    let app = server.register(OOB);
    authorized(&laptop, &server, &app);
    let agents = [Agent::start(&laptop, &[]), Agent::start(&other, &[])];
    let until = Instant::now() + Duration::from_secs(25);
    let mut forced = Vec::new();
    while Instant::now() < until {
        for env in [&laptop, &other] {
            forced.push(env.run(&["--no-agent", "refresh", "a"]));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for out in &forced {
        assert!(
            !stderr(out).contains("authorize again"),
            "a chain forked: {}",
            stderr(out)
        );
    }
    let refreshed: usize = forced
        .iter()
        .map(|out| stderr(out).matches(": refreshed").count())
        .sum();
    assert!(
        refreshed >= 20,
        "only {refreshed} forced refreshes went through"
    );
    // Only the agents keep b and c alive; which of them wins the lease each time is theirs.
    let mut saved_by_agents = 0;
    for agent in &agents {
        let said = agent.said();
        assert!(!said.contains("authorize again"), "{said}");
        saved_by_agents += said.matches(": new token saved").count();
    }
    assert!(
        saved_by_agents >= 4,
        "the agents saved {saved_by_agents} tokens"
    );
    // Status through either agent: no profile failed.
    for env in [&laptop, &other] {
        let out = env.run(&["status", "--json"]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for profile in status.as_array().unwrap() {
            let state = profile["state"].as_str().unwrap();
            assert!(["ok", "expiring", "stale"].contains(&state), "{profile}");
            assert!(profile["last_error"].is_null(), "{profile}");
        }
    }
    drop(agents);
    every_chain_is_whole(&other, &server);
}

/// The agent holding the lease is killed (most likely mid-refresh: with 6 s tokens and a
/// 4 s margin one is always under way); the other agent takes over once the lease ran out
/// and keeps every token alive.
#[test]
fn killing_the_lease_holder_mid_refresh_the_other_machine_carries_on() {
    let server = Doorkeeper::start_with(Options {
        rotation: Rotation::Previous,
        ttl: 6,
        ..Options::default()
    });
    let bao = OpenBao::start();
    let (laptop, other) = two_machines(&bao, "failover");
    let app = server.register(OOB);
    authorized(&laptop, &server, &app);
    let mut agents = vec![Agent::start(&laptop, &[]), Agent::start(&other, &[])];
    // Wait until one of them holds the lease, then kill that one.
    let deadline = Instant::now() + Duration::from_secs(30);
    let holder = loop {
        assert!(
            Instant::now() < deadline,
            "no agent took the lease: {}\n{}",
            agents[0].said(),
            agents[1].said()
        );
        let lock = &bao.read("failover.lock")["data"];
        let held_by = lock["holder"].as_str().unwrap_or_default().to_string();
        let holding = agents
            .iter()
            .position(|a| held_by.contains(&format!(" pid {} ", a.pid())));
        if let (true, Some(at)) = (lock["state"] == "held", holding) {
            break at;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let killed_at = chrono::Utc::now();
    let mut dead = agents.remove(holder);
    let _ = dead.child.kill();
    let _ = dead.child.wait();
    let survivor = &agents[0];
    let env = if holder == 0 { &other } else { &laptop };
    // Within the lease (10 s) plus a token's life, every token is renewed after the kill.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = env.vault_text();
        let renewed = PROFILES.iter().all(|name| {
            let at = env.stored(name, "obtained_at");
            chrono::DateTime::parse_from_rfc3339(&at).is_ok_and(|at| at > killed_at)
        });
        if renewed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the survivor did not carry on:\n{}\n{text}",
            survivor.said()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !survivor.said().contains("authorize again"),
        "{}",
        survivor.said()
    );
    drop(agents);
    every_chain_is_whole(env, &server);
}

/// An agent's keep-alive is judged again under the lease. Another machine has obtained a new
/// token, and its save is slow: the agent, planning from the vault as it was, finds the token
/// due and waits for the lease; once it has it, the stored token is the other machine's, which
/// it leaves alone rather than renew a second time.
#[test]
fn an_agent_leaves_alone_a_token_another_machine_renewed_while_it_waited() {
    let bao = OpenBao::start();
    let server = common::MockServer::start();
    let laptop = Env::team(&bao, "planned");
    let slow = WriteFaults::start(bao.port());
    let location = format!("openbao+http://127.0.0.1:{}/secret/planned", slow.port());
    let other = Env::second_machine_at(&bao, &location, &laptop);
    // The agent looks at the vault every 30 s only; its access token is due 6 s after login.
    laptop
        .write_config("http_timeout = \"2s\"\nrefresh_margin = \"4s\"\nagent_interval = \"30s\"\n");
    other.write_config("http_timeout = \"10s\"\n");
    server.set_expires_in(10);
    laptop.authorized_profile("p", &server, &["--auto-refresh"]);
    let agent = Agent::start(&laptop, &[]);
    // The other machine renews it for an hour, and its save reaches OpenBao 7 s later, after
    // the agent's token fell due.
    server.set_expires_in(3600);
    slow.delay_next_write_to("/v1/secret/data/planned", Duration::from_secs(7));
    let out = other.run(&["--no-agent", "refresh", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent.said().contains("renewed elsewhere") {
        assert!(
            Instant::now() < deadline && server.refresh_requests() == 1,
            "the agent renewed it again: {}",
            agent.said()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        server.refresh_requests(),
        1,
        "renewed twice: {}",
        agent.said()
    );
    assert!(server.is_refresh_token_valid(&other.stored("p", "refresh_token")));
}
