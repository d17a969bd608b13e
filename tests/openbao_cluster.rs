//! A team vault on a three-node OpenBao raft cluster behind HAProxy, as production runs it,
//! with the active node killed mid-work: commands wait the election out instead of failing,
//! and two agents refreshing against a server that revokes the grant when a refresh token
//! comes back twice lose no token and send none twice.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::time::{Duration, Instant};

use common::dot::{Dot, Options};
use common::openbao_cluster::Cluster;
use common::running::Agent;
use common::{Env, MockServer, stderr, stdout};

/// Refreshes 4 s before the 6 s access tokens end. The HTTP timeout leaves django-oauth-toolkit
/// room on a busy machine: a refresh whose answer is given up on has rotated the refresh token
/// all the same, and that grant is lost (the server refuses the old one, and revokes the grant
/// when it comes back).
const CONFIG: &str = "http_timeout = \"5s\"\nrefresh_margin = \"4s\"\nagent_interval = \"1s\"\n";

#[test]
fn commands_wait_out_an_election_and_send_a_refresh_token_once() {
    let mut cluster = Cluster::start();
    let env = Env::team_at(&cluster.location("ha/cli"), &cluster.token);
    env.write_config(CONFIG);
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);

    let killed = cluster.kill_active();
    let started = Instant::now();
    let out = env.run(&["--no-agent", "refresh", "p"]);
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "refresh during an election: {}",
        stderr(&out)
    );
    assert_eq!(server.refresh_requests(), 1, "{}", stderr(&out));
    assert!(server.is_refresh_token_valid(&env.stored("p", "refresh_token")));
    let out = env.run(&["--no-agent", "status", "--json"]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["state"], "ok", "{rows}");
    eprintln!("refresh across the election took {took:?}");

    // The killed node comes back as a standby; the vault is the same through it.
    cluster.restart(killed);
    let out = env.run(&["--no-agent", "token", "p"]);
    assert_eq!(stdout(&out).trim(), env.stored("p", "access_token"));
}

/// Two machines, three profiles of 6-second tokens kept alive by an agent on each, against
/// django-oauth-toolkit, which rotates every refresh token and revokes the whole grant when a
/// retired one comes back. The active node is killed mid-burst: `token` through either agent
/// fails for no longer than the election, and every grant is still alive at the end, so no
/// refresh token was sent twice, and none was lost.
#[test]
fn two_agents_keep_every_grant_through_the_leader_being_killed() {
    keep_every_grant_through_a_failover(false);
}

/// The same with the vault laid out as entries: each refresh holds its profile's lock, and
/// the locks, entries, shards and descriptor all come through the election.
#[test]
fn two_agents_keep_every_grant_in_entries_through_the_leader_being_killed() {
    keep_every_grant_through_a_failover(true);
}

fn keep_every_grant_through_a_failover(entries: bool) {
    let mut cluster = Cluster::start();
    let server = Dot::start_with(Options {
        ttl: 6,
        ..Options::default()
    });
    let location = cluster.location("ha/fleet");
    let laptop = Env::team_at(&location, &cluster.token);
    let other = Env::second_machine_with(&location, &cluster.token, &laptop);
    for env in [&laptop, &other] {
        env.write_config(CONFIG);
    }
    let profiles = ["a", "b", "c"];
    for name in profiles {
        laptop.authorize_on_dot(&server, name, "read", &["--auto-refresh"]);
    }
    if entries {
        let out = laptop.run(&["vault", "layout", "entries"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let agents = [Agent::start(&laptop, &[]), Agent::start(&other, &[])];

    let mut calls: Vec<(Instant, bool, String)> = Vec::new();
    let call_all = |calls: &mut Vec<(Instant, bool, String)>| {
        for env in [&laptop, &other] {
            for name in profiles {
                let out = env.run(&["token", name]);
                calls.push((Instant::now(), out.status.success(), stderr(&out)));
            }
        }
    };
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        call_all(&mut calls);
        std::thread::sleep(Duration::from_millis(200));
    }
    let killed_at = Instant::now();
    let killed = cluster.kill_active();
    let election = cluster.wait_for_leader();
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        call_all(&mut calls);
        std::thread::sleep(Duration::from_millis(200));
    }
    cluster.restart(killed);

    // The longest stretch in which `token` failed is within the election (and the moment the
    // proxy needs to see the new leader).
    let mut longest = Duration::ZERO;
    let mut failing_since: Option<Instant> = None;
    for (at, ok, said) in &calls {
        match (ok, failing_since) {
            (false, None) => failing_since = Some(*at),
            (true, Some(since)) => {
                longest = longest.max(*at - since);
                failing_since = None;
            }
            _ => {}
        }
        assert!(
            !said.contains("authorize again"),
            "{said}\n--- the agents said\n{}\n{}",
            agents[0].said(),
            agents[1].said()
        );
    }
    assert!(failing_since.is_none(), "token still fails at the end");
    assert!(
        longest <= election + Duration::from_secs(2),
        "token failed for {longest:?}; the election took {election:?}"
    );
    let mut saved = 0;
    for agent in &agents {
        let said = agent.said();
        assert!(!said.contains("authorize again"), "{said}");
        saved += said.matches(": new token saved").count();
    }
    assert!(saved >= 10, "the agents saved only {saved} tokens");
    let said = [agents[0].said(), agents[1].said()];
    drop(agents);
    // Every grant is whole: one more refresh of each is accepted.
    for name in profiles {
        let out = other.run(&["--no-agent", "refresh", name]);
        assert!(
            out.status.success(),
            "{name}: {}\n{}\n--- the agents said\n{}\n{}",
            stderr(&out),
            server.log(),
            said[0],
            said[1]
        );
    }
    eprintln!(
        "election {election:?} after the kill at {:?}; token failed at most {longest:?}; {} calls, {saved} saves",
        killed_at.elapsed(),
        calls.len()
    );
}
