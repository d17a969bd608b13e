//! Groups and operators in a team vault laid out as entries, on a real OpenBao, with four
//! keys: a member, a member of group payroll, a member of group hiring and an operator. Each
//! opens exactly the entries it should (checked with `age -d` on what OpenBao holds), reads
//! every profile's status, and is told which group's key a token needs; a refresh keeps an
//! entry sealed to its group, and a change that would need entries this machine cannot open
//! is refused with nothing lost.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::time::{Duration, Instant};

use common::mock::MockServer;
use common::openbao::OpenBao;
use common::running::Agent;
use common::tmux::Tmux;
use common::{Env, assert_one_line_error, opens, public_key, stderr, stdout, tool};
use serde_json::{Value, json};

const PATH: &str = "team/groups";

/// A machine with a key of its own, which `admin` adds with `recipients add KEY <how>`.
fn machine(bao: &OpenBao, admin: &Env, how: &[&str]) -> Env {
    let location = bao.location(PATH);
    let env = Env::empty_with(&[
        ("TOKDECK_VAULT", location.as_str()),
        ("BAO_TOKEN", bao.token.as_str()),
    ]);
    std::fs::create_dir_all(env.identity().parent().unwrap()).unwrap();
    let out = tool("age-keygen")
        .arg("-o")
        .arg(env.identity())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let key = public_key(&env);
    let mut args = vec!["recipients", "add", key.as_str()];
    args.extend_from_slice(how);
    let out = admin.run(&args);
    assert!(
        out.status.success(),
        "recipients add {how:?}: {}",
        stderr(&out)
    );
    env
}

/// The names `status` shows.
fn status_names(env: &Env) -> Vec<String> {
    let out = env.run(&["--no-agent", "status", "--json"]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let mut names: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The armored ciphertexts of the KV folder `folder`'s secrets.
fn ciphertexts(bao: &OpenBao, folder: &str) -> Vec<String> {
    let reply = bao.api("LIST", &format!("/v1/secret/metadata/{folder}/"), None);
    let keys: Value = serde_json::from_str(&reply.body).unwrap();
    keys["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let path = format!("/v1/secret/data/{folder}/{}", k.as_str().unwrap());
            let secret: Value = serde_json::from_str(&bao.api("GET", &path, None).body).unwrap();
            secret["data"]["data"]["age"].as_str().unwrap().to_string()
        })
        .collect()
}

/// How many of the profiles' entries `env`'s key opens, and whether it opens every shard.
fn opened_by(bao: &OpenBao, env: &Env) -> (usize, bool) {
    let entries = ciphertexts(bao, &format!("{PATH}.entries"));
    assert_eq!(entries.len(), 3);
    let shards = ciphertexts(bao, &format!("{PATH}.status"));
    assert!(!shards.is_empty());
    (
        entries.iter().filter(|c| opens(env, c)).count(),
        shards.iter().all(|c| opens(env, c)),
    )
}

fn token_ok(env: &Env, name: &str) -> String {
    let out = env.run(&["--no-agent", "token", name]);
    assert!(out.status.success(), "token {name}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn each_key_reads_its_group_every_status_and_is_told_which_key_a_token_needs() {
    let bao = OpenBao::start();
    let admin = Env::team(&bao, PATH);
    let server = MockServer::start();
    admin.authorized_profile("shared", &server, &[]);
    admin.authorized_profile("pay", &server, &["--group", "payroll"]);
    admin.authorized_profile("ats", &server, &["--group", "hiring"]);

    // Groups need entries.
    let out = admin.run(&["recipients", "add", &public_key(&admin), "--operator"]);
    assert_one_line_error(&out, "vault layout entries");
    let out = admin.run(&["vault", "layout", "entries"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let payroll = machine(&bao, &admin, &["--group", "payroll"]);
    let hiring = machine(&bao, &admin, &["--group", "hiring"]);
    let operator = machine(&bao, &admin, &["--operator"]);
    let everyone = ["ats", "pay", "shared"];

    // What each key opens of what OpenBao holds: its own entries and every status shard.
    for (env, entries) in [(&admin, 1), (&payroll, 1), (&hiring, 1), (&operator, 0)] {
        assert_eq!(opened_by(&bao, env), (entries, true));
        assert_eq!(status_names(env), everyone);
    }

    // Tokens: each machine its own, and an error naming the key the others need.
    assert!(!token_ok(&admin, "shared").trim().is_empty());
    assert!(!token_ok(&payroll, "pay").trim().is_empty());
    assert!(!token_ok(&hiring, "ats").trim().is_empty());
    let out = admin.run(&["--no-agent", "token", "pay"]);
    assert_one_line_error(&out, "sealed to group payroll");
    assert!(stderr(&out).contains("recipients add --group payroll"));
    let out = payroll.run(&["--no-agent", "token", "ats"]);
    assert_one_line_error(&out, "sealed to group hiring");
    let out = hiring.run(&["--no-agent", "token", "shared"]);
    assert_one_line_error(&out, "sealed to the vault's members");
    for name in everyone {
        let out = operator.run(&["--no-agent", "token", name]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("no key here is one of"),
            "{}",
            stderr(&out)
        );
    }
    let listed = stdout(&admin.run(&["recipients", "list"]));
    assert!(
        listed.contains("group payroll (its profiles' entries):"),
        "{listed}"
    );
    assert!(listed.contains("operators (status only):"), "{listed}");

    // A refresh by a member of payroll keeps the entry sealed to payroll alone.
    let before = token_ok(&payroll, "pay");
    let out = payroll.run(&["refresh", "pay"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
    assert_ne!(token_ok(&payroll, "pay"), before);
    for (env, entries) in [(&admin, 1), (&payroll, 1), (&hiring, 1), (&operator, 0)] {
        assert_eq!(opened_by(&bao, env), (entries, true));
    }

    // Only a holder of a group's key changes its list, as its entries are sealed again.
    let spare = common::keygen(admin.home(), "spare.txt").1;
    let out = admin.run(&["recipients", "add", &spare, "--group", "payroll"]);
    assert_one_line_error(&out, "no key here is one of group payroll's");
    let out = payroll.run(&["recipients", "add", &spare, "--group", "payroll"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("group payroll is now encrypted to 2 recipients"));
    // Every other machine refuses the vault until a person accepts the new reader.
    let out = operator.run(&["--no-agent", "status"]);
    assert_one_line_error(&out, "recipients accept");
    for env in [&admin, &hiring, &operator] {
        let out = env.run(&["recipients", "accept", "--yes"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // A save by a machine that cannot open every entry keeps those it cannot open.
    let out = admin.run(&["edit", "shared", "--notes", "kept"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(status_names(&operator), everyone);

    // Removing the operator draws a new members' secret, which would need every entry
    // sealed again: refused where entries of other groups are, and nothing is lost.
    let out = admin.run(&["recipients", "remove", &public_key(&operator), "--operator"]);
    assert_one_line_error(&out, "a key of every group");
    assert_eq!(status_names(&operator), everyone);
    assert!(!token_ok(&payroll, "pay").trim().is_empty());
    assert!(!token_ok(&hiring, "ats").trim().is_empty());
    assert_eq!(opened_by(&bao, &admin), (1, true));
}

/// The `team` part of `name`'s row in `env`'s `status --json`.
fn kept_by(env: &Env, name: &str) -> Value {
    let out = env.run(&["--no-agent", "status", "--json"]);
    let rows: Value = serde_json::from_str(&stdout(&out)).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {rows}"))["team"]["kept_by"]
        .clone()
}

#[test]
fn an_agent_keeps_and_serves_only_what_its_key_opens_and_the_team_view_says_so() {
    let bao = OpenBao::start();
    let mut admin = Env::team(&bao, PATH);
    admin
        .vars
        .push(("TOKDECK_MACHINE".into(), "admin-box".into()));
    let server = MockServer::start();
    server.set_expires_in(3600);
    admin.authorized_profile("shared", &server, &["--auto-refresh"]);
    admin.authorized_profile("pay", &server, &["--group", "payroll", "--auto-refresh"]);
    admin.authorized_profile("ats", &server, &["--group", "hiring", "--auto-refresh"]);
    let out = admin.run(&["vault", "layout", "entries"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut payroll = machine(&bao, &admin, &["--group", "payroll"]);
    payroll
        .vars
        .push(("TOKDECK_MACHINE".into(), "payroll-box".into()));
    let mut hiring = machine(&bao, &admin, &["--group", "hiring"]);
    hiring
        .vars
        .push(("TOKDECK_MACHINE".into(), "hiring-box".into()));

    let first = Agent::start(&payroll, &[]);
    let second = Agent::start(&hiring, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = [
        ("pay", json!(["payroll-box"])),
        ("ats", json!(["hiring-box"])),
        ("shared", json!([])),
    ];
    while want
        .iter()
        .any(|(name, hosts)| kept_by(&admin, name) != *hosts)
    {
        let now: Vec<Value> = want.iter().map(|(n, _)| kept_by(&admin, n)).collect();
        assert!(
            Instant::now() < deadline,
            "kept by {now:?}\n{}\n{}",
            first.said(),
            second.said()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Through the agent: its own group's token, and a clear word for another's.
    assert!(!stdout(&payroll.run(&["token", "pay"])).trim().is_empty());
    let out = payroll.run(&["token", "ats"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("group hiring"), "{}", stderr(&out));

    // The app in a real terminal: the profiles its key opens, and a count of the others.
    let script = format!("sh -c '{} --no-agent; exec sh -i'", common::bin().display());
    std::fs::write(hiring.home().join(".vault-token"), &bao.token).unwrap();
    let tmux = Tmux::start(&hiring, 120, 40, &script);
    let screen = tmux.wait_for("the profiles sealed away counted", |s| {
        s.contains("2 sealed to other groups")
    });
    assert!(screen.contains("ats"), "{screen}");
    assert!(!screen.contains("shared"), "{screen}");
}
