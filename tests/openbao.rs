//! The vault in a real OpenBao server's KV version 2 engine (`bao server -dev`, started by the
//! tests): the whole flow, what the server stores, hand edits with the `bao` and `age` CLIs,
//! two machines with two keys on one vault, the lease across machines, and every bad input.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::openbao::OpenBao;
use common::{CLIENT_SECRET, Env, MockServer, assert_one_line_error, stderr, stdout, tool};

fn json_status(env: &Env) -> serde_json::Value {
    let out = env.run(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)))
}

fn lock_entry(bao: &OpenBao, path: &str) -> serde_json::Value {
    bao.read(&format!("{path}.lock"))["data"].clone()
}

#[test]
fn the_whole_flow_with_the_vault_in_openbao_stores_only_ciphertext() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let env = Env::team(&bao, "team/payroll");
    env.authorized_profile("payroll", &server, &[]);
    let access = server.last_access_token().unwrap();
    let out = env.run(&["token", "payroll"]);
    assert_eq!(stdout(&out).trim(), access, "{}", stderr(&out));
    let out = env.run(&["refresh", "payroll"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
    let refreshed = server.last_access_token().unwrap();
    assert_ne!(refreshed, access);
    assert_eq!(stdout(&env.run(&["token", "payroll"])).trim(), refreshed);
    let status = json_status(&env);
    assert_eq!(status[0]["name"], "payroll", "{status}");

    // What OpenBao holds: one field, the armored age file; nothing in the clear.
    let stored = bao.read("team/payroll");
    let fields = stored["data"].as_object().unwrap();
    assert_eq!(fields.keys().collect::<Vec<_>>(), ["age"]);
    let armored = fields["age"].as_str().unwrap();
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let raw = bao.api("GET", "/v1/secret/data/team/payroll", None).body;
    for secret in [
        CLIENT_SECRET,
        &refreshed,
        &access,
        common::CLIENT_ID,
        "payroll\"",
    ] {
        assert!(!raw.contains(secret), "{secret} readable in OpenBao");
    }
    // Every save is a new KV version; the lease was released after each command.
    assert!(
        stored["metadata"]["version"].as_u64().unwrap() >= 4,
        "{stored}"
    );
    assert_eq!(lock_entry(&bao, "team/payroll")["state"], "released");
    // The reference age CLI opens it with the member's key.
    assert!(env.vault_text().contains(&refreshed));
    // The agent's unit names the location, and says where the token comes from without it.
    let unit = stdout(&env.run(&["agent", "--systemd-unit"]));
    assert!(
        unit.contains(&format!("--vault {}", bao.location("team/payroll"))),
        "{unit}"
    );
    assert!(
        unit.contains("EnvironmentFile") && !unit.contains(&bao.token),
        "{unit}"
    );
}

#[test]
fn two_machines_with_two_keys_share_one_vault() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let laptop = Env::team(&bao, "shared");
    let server_box = Env::second_machine(&bao, "shared", &laptop);
    laptop.authorized_profile("made-on-laptop", &server, &[]);
    let seen = json_status(&server_box);
    assert_eq!(seen[0]["name"], "made-on-laptop", "{seen}");
    // A refresh on one machine is what the other reads next.
    let out = server_box.run(&["refresh", "made-on-laptop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fresh = server.last_access_token().unwrap();
    assert_eq!(
        stdout(&laptop.run(&["token", "made-on-laptop"])).trim(),
        fresh
    );
    server_box.add_profile("made-on-server", &server, &[]);
    let names: Vec<String> = json_status(&laptop)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["made-on-laptop", "made-on-server"]);
}

/// The two commands the README gives for a hand edit: `bao kv get -field=age | age -d`, then
/// `age -e -a | bao kv put -cas=N PATH age=-`.
#[test]
fn hand_edits_through_the_bao_and_age_commands() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let env = Env::team(&bao, "edited");
    env.add_profile("p", &server, &["--notes", "before"]);
    let out = bao
        .cli(&["kv", "get", "-field=age", "secret/edited"])
        .output()
        .unwrap();
    assert!(out.status.success(), "bao kv get: {}", stderr(&out));
    let mut age = tool("age")
        .args(["-d", "-i"])
        .arg(env.identity())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    age.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let text = String::from_utf8(age.wait_with_output().unwrap().stdout).unwrap();
    let edited = text.replace("before", "after by hand");
    assert_ne!(edited, text);
    let version = bao.read("edited")["metadata"]["version"].as_u64().unwrap();
    let mut age = tool("age")
        .args(["-e", "-a", "-i"])
        .arg(env.identity())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    age.stdin
        .take()
        .unwrap()
        .write_all(edited.as_bytes())
        .unwrap();
    let armored = age.wait_with_output().unwrap().stdout;
    let mut put = bao
        .cli(&[
            "kv",
            "put",
            &format!("-cas={version}"),
            "secret/edited",
            "age=-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin.take().unwrap().write_all(&armored).unwrap();
    let out = put.wait_with_output().unwrap();
    assert!(out.status.success(), "bao kv put: {}", stderr(&out));
    // tokdeck reads the edit, and a save of its own keeps it.
    env.add_profile("q", &server, &[]);
    let text = env.vault_text();
    assert!(
        text.contains("after by hand") && text.contains("name = \"q\""),
        "{text}"
    );
}

#[test]
fn a_lease_left_by_a_dead_holder_is_taken_over_once_it_expired_and_never_before() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let env = Env::team(&bao, "orphan");
    env.authorized_profile("p", &server, &[]);
    // A holder that died holding the lease: it said 4 s and never renewed.
    let reply = bao.api(
        "POST",
        "/v1/secret/data/orphan.lock",
        Some(&serde_json::json!({ "data": { "holder": "gone-host pid 1 dead", "ttl_ms": 4000, "state": "held" } })),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let started = Instant::now();
    let out = env.run(&["refresh", "p"]);
    let waited = started.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    // Expiry is judged on the server's clock, in whole seconds: never before the 4 s.
    assert!(
        waited >= Duration::from_secs(4),
        "taken over after {waited:?}"
    );
    assert_eq!(lock_entry(&bao, "orphan")["state"], "released");
}

#[test]
fn bad_locations_and_server_failures_get_one_line_each_and_lose_nothing() {
    let bao = OpenBao::start();
    // A home with a key (and a vault file) of its own, so every command below says one line.
    let env = Env::new();
    let cwd = tempfile::tempdir().unwrap();
    // A scheme tokdeck does not know is refused by name; no folder appears.
    let out = env
        .command(&["--vault", "s3://bucket/team", "status"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_one_line_error(&out, "'s3://' is not a kind of vault location");
    let out = env
        .command(&[
            "--vault",
            "openbao+http://bao.example.com/secret/team",
            "init",
        ])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_one_line_error(&out, "to this machine only");
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);

    // No token anywhere.
    let location = bao.location("bad");
    let out = env.run(&["--vault", &location, "status"]);
    assert_one_line_error(&out, "no OpenBao token: set BAO_TOKEN");
    // Nothing listening: the address is named, and no local vault appears.
    let closed = format!(
        "openbao+http://127.0.0.1:{}/secret/bad",
        common::fixture::free_port()
    );
    let out = env
        .command(&["--vault", &closed, "status"])
        .env("BAO_TOKEN", &bao.token)
        .output()
        .unwrap();
    assert_one_line_error(&out, "cannot reach OpenBao at 127.0.0.1:");
    assert!(!cwd.path().join("openbao+http:").exists());
    // A token OpenBao does not know.
    let out = env
        .command(&["--vault", &location, "init"])
        .env("BAO_TOKEN", "not-a-token")
        .output()
        .unwrap();
    assert_one_line_error(&out, "refused the token for secret/bad");
    assert!(stderr(&out).contains("read, create and update on secret/data/bad"));
}

#[test]
fn what_is_not_a_vault_a_version_1_engine_and_a_read_only_token_are_refused_by_name() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    // A path that holds someone else's secret.
    let reply = bao.api(
        "POST",
        "/v1/secret/data/other",
        Some(&serde_json::json!({ "data": { "password": "hunter2" } })),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let vars = [
        ("TOKDECK_VAULT", bao.location("other")),
        ("BAO_TOKEN", bao.token.clone()),
    ];
    let env = Env::empty_with(
        &vars
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    );
    let out = env.run(&["status"]);
    assert_one_line_error(
        &out,
        "holds a secret that is not a tokdeck vault (its fields: password)",
    );
    assert!(!stderr(&out).contains("hunter2"));
    let out = env.run(&["init"]);
    assert_one_line_error(&out, "a vault already exists");
    assert_eq!(
        bao.read("other")["data"]["password"],
        "hunter2",
        "untouched"
    );

    // A KV version 1 engine: check-and-set needs version 2.
    let reply = bao.api(
        "POST",
        "/v1/sys/mounts/kv1",
        Some(&serde_json::json!({ "type": "kv", "options": { "version": "1" } })),
    );
    assert!(reply.status == 204 || reply.status == 200, "{}", reply.body);
    let v1 = format!("openbao+http://127.0.0.1:{}/kv1/team", bao.port());
    let out = env.run(&["--vault", &v1, "status"]);
    assert_one_line_error(&out, "is a KV version 1 engine");

    // A token that may read but not write: the save is refused, naming what it needs.
    let admin = Env::team(&bao, "guarded");
    admin.add_profile("p", &server, &[]);
    bao.put_policy(
        "read-only",
        r#"path "secret/data/guarded" { capabilities = ["read"] }
path "secret/metadata/guarded" { capabilities = ["read"] }"#,
    );
    let reader = bao.token_with(&["read-only"], "10m");
    let out = admin
        .command(&["edit", "p", "--notes", "x"])
        .env("BAO_TOKEN", &reader)
        .output()
        .unwrap();
    assert_one_line_error(&out, "lacks a capability");
    let out = admin
        .command(&["status", "--json"])
        .env("BAO_TOKEN", &reader)
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("\"name\": \"p\""),
        "reading works: {}",
        stderr(&out)
    );
}

#[test]
fn a_sealed_server_is_named_as_sealed() {
    let bao = OpenBao::start();
    let env = Env::team(&bao, "sealed");
    let reply = bao.api("PUT", "/v1/sys/seal", None);
    assert!(reply.status == 204 || reply.status == 200, "{}", reply.body);
    let out = env.run(&["status"]);
    assert_one_line_error(&out, "is sealed: unseal it");
}

/// `vault copy` moves a vault file into OpenBao and back out, still encrypted, and never
/// over an existing vault.
#[test]
fn a_vault_file_moves_into_openbao_and_back_out() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let env = Env::new();
    env.authorized_profile("p", &server, &[]);
    let location = bao.location("moved/in");
    let out = env
        .command(&["vault", "copy", &location])
        .env("BAO_TOKEN", &bao.token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("then remove"), "{}", stderr(&out));
    let token = server.last_access_token().unwrap();
    let team = |args: &[&str]| {
        env.command(args)
            .env("TOKDECK_VAULT", &location)
            .env("BAO_TOKEN", &bao.token)
            .output()
            .unwrap()
    };
    assert_eq!(stdout(&team(&["token", "p"])).trim(), token);
    // Copying again, onto what is there now, is refused.
    let out = env
        .command(&["vault", "copy", &location])
        .env("BAO_TOKEN", &bao.token)
        .output()
        .unwrap();
    assert_one_line_error(&out, "a vault already exists");
    // And back out, to a file.
    let back = env.home().join("back/vault.age");
    let out = team(&["vault", "copy", back.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .command(&["--vault", back.to_str().unwrap(), "token", "p"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), token, "{}", stderr(&out));
}

/// The policy the README gives a team member works for everything a member does: init, add,
/// exchange, refresh (lease included), token and status, and nothing needs more.
#[test]
fn the_readme_policy_is_all_a_member_needs() {
    let policy = common::readme_policy();
    assert!(
        policy.contains("secret/data/teams/payroll.lock"),
        "{policy}"
    );
    let bao = OpenBao::start();
    bao.put_policy("tokdeck-payroll", &policy);
    let member = bao.token_with(&["tokdeck-payroll"], "1h");
    let location = bao.location("teams/payroll");
    let env = Env::empty_with(&[("TOKDECK_VAULT", &location), ("BAO_TOKEN", &member)]);
    let out = env.run(&["init"]);
    assert!(out.status.success(), "init: {}", stderr(&out));
    let server = MockServer::start();
    env.authorized_profile("payroll", &server, &[]);
    let out = env.run(&["refresh", "payroll"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
    let out = env.run(&["token", "payroll"]);
    assert_eq!(
        stdout(&out).trim(),
        server.last_access_token().unwrap(),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["--no-agent", "status"]);
    assert!(out.status.success(), "status: {}", stderr(&out));
    assert!(
        stdout(&out).contains("team: no agent keeps this vault"),
        "{}",
        stdout(&out)
    );
    // An agent announces itself beside the vault, and withdraws when it stops.
    let agent = common::running::Agent::start(&env, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.run(&["--no-agent", "status"]);
        if stdout(&out).contains("team: 1 agent keeps this vault") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            stdout(&out),
            agent.said()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        !agent.said().contains("cannot announce"),
        "{}",
        agent.said()
    );
    let out = env.run(&["agent", "stop"]);
    assert!(out.status.success(), "agent stop: {}", stderr(&out));
    let mut agent = agent;
    let deadline = Instant::now() + Duration::from_secs(20);
    while agent.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop: {}", agent.said());
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed = bao.api("LIST", "/v1/secret/metadata/teams/payroll.agents/", None);
    assert_eq!(listed.status, 404, "withdrawn: {}", listed.body);
    // Removing a recipient needs more than a member has: destroying the history, which the
    // removed key still opens, is refused by name, after the removal itself.
    let (_key, other) = common::keygen(env.home(), "other.txt");
    assert!(env.run(&["recipients", "add", &other]).status.success());
    let out = env.run(&["recipients", "remove", &other]);
    assert_one_line_error(&out, "its earlier versions are not destroyed: OpenBao at");
    assert!(
        stderr(&out).contains("needs update on secret/destroy/teams/payroll"),
        "{}",
        stderr(&out)
    );
    let listed = stdout(&env.run(&["recipients", "list"]));
    assert!(!listed.contains(&other), "removed all the same: {listed}");
    // Elsewhere in the mount, the same token is refused, by name.
    let out = env
        .command(&["--vault", &bao.location("teams/other"), "init"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "refused the token for secret/teams/other");
}

/// OpenBao refuses a request body of more than 1,000 JSON strings: the lease entry, which
/// records the newest refresh token of every profile refreshed, stays a handful of strings
/// however many there are, so a team keeps refreshing past a few hundred profiles.
#[test]
fn a_team_vault_keeps_refreshing_past_hundreds_of_recorded_profiles() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let location = bao.location("team/many");
    let env = Env::empty_with(&[("TOKDECK_VAULT", &location), ("BAO_TOKEN", &bao.token)]);
    let now = chrono::Utc::now();
    let profiles = (0..300)
        .map(|i| {
            let (hour, days) = (chrono::Duration::hours(1), chrono::Duration::days(6));
            let token = common::library_token(server.seed_refresh_token(), now + hour, now + days);
            common::library_profile(&format!("p{i:03}"), &server.base_url(), Some(token))
        })
        .collect();
    let file = env.home().join("many.age");
    common::library_vault(&file, &env.identity(), profiles);
    let out = env.run(&[
        "--vault",
        file.to_str().unwrap(),
        "vault",
        "copy",
        &location,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = env.run(&["refresh", "--all", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 300);
    let newest = bao.read("team/many.lock")["data"]["newest"].clone();
    let recorded: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(newest.as_str().unwrap()).unwrap();
    assert_eq!(recorded.len(), 300);
    // And the next refresh of one goes through under that record.
    let out = env.run(&["refresh", "p007"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 301);
}
