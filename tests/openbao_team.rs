//! The team view against a real OpenBao server: two agents on two "machines" announce
//! themselves beside the vault, `status` (table, JSON, `--filter machine:`), the metrics and
//! the app in a real terminal show who keeps what and who saved it last; an agent that stops
//! withdraws, and an announcement planted by someone who cannot open the vault is ignored.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::time::{Duration, Instant};

use common::fixture::{free_port, http};
use common::openbao::OpenBao;
use common::running::Agent;
use common::tmux::Tmux;
use common::{Env, MockServer, stderr, stdout};

/// `status --json` without the agent, and its exit code.
fn status(env: &Env, extra: &[&str]) -> (serde_json::Value, i32) {
    let mut args = vec!["--no-agent", "status", "--json"];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    let json = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&out), stderr(&out)));
    (json, out.status.code().unwrap())
}

/// The `team` part of `name`'s row.
fn team_of(rows: &serde_json::Value, name: &str) -> serde_json::Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {rows}"))["team"]
        .clone()
}

/// Waits until `name`'s row is kept by exactly `hosts`.
fn wait_kept_by(env: &Env, name: &str, hosts: &[&str], agents: &[&Agent]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (rows, _) = status(env, &[]);
        let team = team_of(&rows, name);
        if team["kept_by"] == serde_json::json!(hosts) {
            return;
        }
        let said: Vec<String> = agents.iter().map(|a| a.said()).collect();
        assert!(
            Instant::now() < deadline,
            "{name} not kept by {hosts:?}: {team}\n{said:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Two machines of a team on `bao`, named `laptop` and `build-3`.
fn two_machines(bao: &OpenBao) -> (Env, Env) {
    let mut laptop = Env::team(bao, "teams/ops");
    laptop
        .vars
        .push(("TOKDECK_MACHINE".into(), "laptop".into()));
    let mut build = Env::second_machine(bao, "teams/ops", &laptop);
    build
        .vars
        .push(("TOKDECK_MACHINE".into(), "build-3".into()));
    (laptop, build)
}

#[test]
fn two_agents_show_in_status_metrics_and_the_app_and_leave_when_they_stop() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    server.set_expires_in(3600);
    let (laptop, build) = two_machines(&bao);
    laptop.authorized_profile("kept", &server, &["--auto-refresh"]);
    laptop.authorized_profile("manual", &server, &[]);
    let out = laptop.run(&["--no-agent", "refresh", "kept"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // No agent yet: the auto-refresh profile is kept by nobody, which needs attention.
    let (rows, code) = status(&build, &[]);
    let kept = team_of(&rows, "kept");
    assert_eq!(kept["unkept"], true, "{kept}");
    assert_eq!(kept["last_refresh"]["host"], "laptop", "{kept}");
    assert_eq!(team_of(&rows, "manual")["unkept"], serde_json::Value::Null);
    assert_eq!(code, 1, "an unkept profile warns");
    let (only, _) = status(&build, &["--filter", "machine:none"]);
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
    let table = stdout(&build.run(&["--no-agent", "status"]));
    assert!(
        table.contains("team: no agent keeps this vault; lease free")
            && table.contains("1 profile with auto-refresh but no agent keeping them"),
        "{table}"
    );

    // Two agents, one serving metrics.
    let port = free_port();
    let first = Agent::start(&laptop, &["--metrics", &port.to_string()]);
    let second = Agent::start(&build, &[]);
    wait_kept_by(&laptop, "kept", &["build-3", "laptop"], &[&first, &second]);
    let (rows, code) = status(&laptop, &[]);
    assert_eq!(code, 0, "{rows}");
    assert!(team_of(&rows, "manual")["kept_by"] == serde_json::json!([]));
    let (only, _) = status(&laptop, &["--filter", "machine:build"]);
    assert_eq!(only[0]["name"], "kept", "{only}");
    // From the running agent, the same.
    let out = laptop.run(&["status"]);
    assert!(
        stdout(&out).contains("team: 2 agents keep this vault (build-3, laptop)"),
        "{}",
        stdout(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = http(port, "GET", "/metrics", None).unwrap().body;
        if metrics.contains("tokdeck_team_agents{state=\"keeping\"} 2") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // An announcement planted by a writer who cannot open the vault counts for nothing.
    let planted = serde_json::json!({ "data": {
        "beat": "{\"host\":\"evil\",\"pid\":1,\"version\":\"9\",\"started_at\":\"2026-01-01T00:00:00Z\",\"keeps\":2}",
        "tag": "AAAA",
    }});
    let reply = bao.api(
        "POST",
        "/v1/secret/data/teams/ops.agents/00000000deadbeef",
        Some(&planted),
    );
    assert!(reply.status < 300, "{}", reply.body);
    let table = stdout(&laptop.run(&["--no-agent", "status"]));
    assert!(
        table.contains("2 agents keep this vault (build-3, laptop); 1 announcement(s) not signed by a member, ignored"),
        "{table}"
    );

    // The app in a real terminal: the header counts the agents, the detail pane names them
    // and the machine that saved the token last.
    let script = format!("sh -c '{} --no-agent; exec sh -i'", common::bin().display());
    let token = laptop.var("BAO_TOKEN").unwrap().to_string();
    std::fs::write(laptop.home().join(".vault-token"), token).unwrap();
    let tmux = Tmux::start(&laptop, 120, 40, &script);
    tmux.wait_for("the team in the header", |s| s.contains("team: 2 agents"));
    let screen = tmux.wait_for("the detail pane", |s| {
        s.contains("kept by") && s.contains("agents on build-3, laptop")
    });
    assert!(screen.contains("on laptop"), "last saved: {screen}");
    tmux.keys(&["q"]);

    // An agent that stops withdraws at once; with none left, the profile is unkept again.
    stop(&build, second);
    let (rows, _) = status(&laptop, &[]);
    assert_eq!(
        team_of(&rows, "kept")["kept_by"],
        serde_json::json!(["laptop"])
    );
    stop(&laptop, first);
    let (rows, code) = status(&laptop, &[]);
    assert_eq!(team_of(&rows, "kept")["unkept"], true);
    assert_eq!(code, 1);
}

/// Stops `env`'s `agent` with `tokdeck agent stop`, and waits for it to end.
fn stop(env: &Env, mut agent: Agent) {
    let out = env.run(&["agent", "stop"]);
    assert!(out.status.success(), "agent stop: {}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop: {}", agent.said());
        std::thread::sleep(Duration::from_millis(50));
    }
}
