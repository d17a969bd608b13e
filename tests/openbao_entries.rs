//! A team vault laid out as entries (`tokdeck vault layout entries`): a descriptor and one
//! secret per profile, on OpenBao's production storage (raft, 1 MiB per entry) and on the
//! dev server with the README's policy. It holds more than one raft entry can, a refresh
//! writes one profile's entry and the descriptor, a second machine reads it, and it moves
//! back into one secret with nothing lost. A refresh holds its profile's lock alone.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::dot::Dot;
use common::mock::MockServer;
use common::openbao::OpenBao;
use common::{
    Env, assert_one_line_error, factorial_profiles, opens, public_key, readme_policy, stderr,
    stdout,
};
use serde_json::Value;

fn rows(env: &Env) -> Vec<Value> {
    let out = env.run(&["--no-agent", "status", "--json"]);
    let rows: Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    rows.as_array().unwrap().clone()
}

/// The descriptor's fields, and its size as OpenBao sends it.
fn descriptor(bao: &OpenBao, path: &str) -> (serde_json::Map<String, Value>, usize) {
    let raw = bao
        .api("GET", &format!("/v1/secret/data/{path}"), None)
        .body;
    let json: Value = serde_json::from_str(&raw).unwrap();
    (json["data"]["data"].as_object().unwrap().clone(), raw.len())
}

/// The ids the last commit recorded in the descriptor's log.
fn last_commit(fields: &serde_json::Map<String, Value>) -> (u64, usize) {
    let seq = fields["changes"]["seq"].as_u64().unwrap();
    let recent = fields["changes"]["recent"].as_array().unwrap();
    let count = recent
        .iter()
        .filter(|c| c["seq"].as_u64() == Some(seq))
        .count();
    (seq, count)
}

fn listed(bao: &OpenBao, path: &str) -> Vec<String> {
    listed_in(bao, &format!("{path}.entries"))
}

/// The names in the KV folder `folder`.
fn listed_in(bao: &OpenBao, folder: &str) -> Vec<String> {
    let reply = bao.api("LIST", &format!("/v1/secret/metadata/{folder}/"), None);
    if reply.status == 404 {
        return Vec::new();
    }
    let json: Value = serde_json::from_str(&reply.body).unwrap();
    json["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn on_raft_entries_hold_more_than_one_entry_can_and_a_refresh_writes_one() {
    let bao = OpenBao::start_raft();
    let server = Dot::start();
    let laptop = Env::team(&bao, "team/big");
    let other = Env::second_machine(&bao, "team/big", &laptop);
    laptop.authorize_on_dot(&server, "live", "read", &[]);
    let out = laptop.run(&["vault", "layout", "entries"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("one entry per profile"),
        "{}",
        stderr(&out)
    );

    // 1,400 profiles of 1 KB: more than raft takes in one entry.
    laptop.imported(&factorial_profiles(1_400));
    assert_eq!(rows(&other).len(), 1_401);
    let (fields, size) = descriptor(&bao, "team/big");
    let mut names: Vec<&String> = fields.keys().collect();
    names.sort();
    assert_eq!(names, ["changes", "head"]);
    assert!(size < 16 * 1024, "a descriptor of {size} bytes");
    let ids = listed(&bao, "team/big");
    assert_eq!(ids.len(), 1_401);
    assert!(
        ids.iter().all(|id| id.len() == 32 && !id.contains("p0")),
        "{ids:?}"
    );

    // A refresh writes the profile's entry and the descriptor's log, nothing else.
    let before = stdout(&other.run(&["--no-agent", "token", "live"]));
    let (seq, _) = last_commit(&fields);
    let out = laptop.run(&["refresh", "live"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
    let (fields, _) = descriptor(&bao, "team/big");
    assert_eq!(last_commit(&fields), (seq + 1, 1));
    let after = stdout(&other.run(&["--no-agent", "token", "live"]));
    assert!(!after.trim().is_empty());
    assert_ne!(before, after, "the other machine reads the new token");
    // The rotated refresh token works: django-oauth-toolkit revokes the grant on a reuse.
    let out = other.run(&["refresh", "live"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));

    // Out into a file, which holds any number.
    let file = laptop.home().join("all.age");
    let out = laptop.run(&["vault", "copy", file.to_str().unwrap()]);
    assert!(out.status.success(), "copy: {}", stderr(&out));

    // Back into one secret: too large, refused, and nothing lost.
    let out = laptop.run(&["vault", "layout", "single"]);
    assert_one_line_error(&out, "too large for one entry");
    assert_eq!(rows(&laptop).len(), 1_401);
    assert!(descriptor(&bao, "team/big").0.contains_key("head"));
}

/// The README's policy, a move into entries and back, and a copy refused while in entries.
#[test]
fn a_vault_moves_into_entries_and_back_with_the_readme_policy() {
    let policy = readme_policy();
    let bao = OpenBao::start();
    bao.put_policy("tokdeck-payroll", &policy);
    let member = bao.token_with(&["tokdeck-payroll"], "1h");
    let env = Env::team_at(&bao.location("teams/payroll"), &member);
    let server = MockServer::start();
    env.authorized_profile("payroll", &server, &[]);
    env.authorized_profile("billing", &server, &[]);
    let out = env.run(&["vault", "layout", "entries"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(listed(&bao, "teams/payroll").len(), 2);
    let out = env.run(&["vault", "layout", "entries"]);
    assert!(
        stderr(&out).contains("already stored as one entry per profile"),
        "{}",
        stderr(&out)
    );

    let out = env.run(&["refresh", "payroll"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
    let fresh = server.last_access_token().unwrap();
    let out = env.run(&["--no-agent", "token", "payroll"]);
    assert_eq!(stdout(&out).trim(), fresh, "{}", stderr(&out));
    env.add_profile("added", &server, &[]);
    let out = env.run(&["remove", "billing"]);
    assert!(out.status.success(), "remove: {}", stderr(&out));
    let names: Vec<String> = rows(&env)
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["added", "payroll"]);
    assert_eq!(listed(&bao, "teams/payroll").len(), 2);

    // What is stored names nothing: no token, secret or name in any secret.
    let raw = bao.api("GET", "/v1/secret/data/teams/payroll", None).body;
    for id in listed(&bao, "teams/payroll") {
        let entry = bao
            .api(
                "GET",
                &format!("/v1/secret/data/teams/payroll.entries/{id}"),
                None,
            )
            .body;
        for secret in [&fresh, "payroll\"", common::CLIENT_ID] {
            assert!(
                !entry.contains(secret) && !raw.contains(secret),
                "{secret} readable"
            );
        }
    }

    // A copy out of entries is made with the key: one file, which `age -d` opens.
    let copy = env.home().join("copy.age");
    let out = env.run(&["vault", "copy", copy.to_str().unwrap()]);
    assert!(out.status.success(), "copy: {}", stderr(&out));
    let out = env
        .command(&[
            "--vault",
            copy.to_str().unwrap(),
            "--no-agent",
            "token",
            "payroll",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), fresh, "{}", stderr(&out));
    let out = env.run(&["vault", "copy", copy.to_str().unwrap()]);
    assert_one_line_error(&out, "a vault already exists at");

    let out = env.run(&["vault", "layout", "single"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(listed(&bao, "teams/payroll").is_empty());
    let out = env.run(&["--no-agent", "token", "payroll"]);
    assert_eq!(stdout(&out).trim(), fresh, "{}", stderr(&out));
    assert_eq!(rows(&env).len(), 2);
    assert!(env.vault_text().contains(&fresh));
}

/// A vault file too large for one raft entry moves into OpenBao as entries in one command,
/// and a copy over a vault already there is refused.
#[test]
fn a_large_vault_file_moves_into_raft_as_entries() {
    let bao = OpenBao::start_raft();
    let env = Env::new();
    env.imported(&factorial_profiles(1_200));
    let location = bao.location("team/moved");
    let copy = |extra: &[&str]| {
        let mut args = vec!["vault", "copy", location.as_str()];
        args.extend(extra);
        env.command(&args)
            .env("BAO_TOKEN", &bao.token)
            .output()
            .unwrap()
    };
    let out = copy(&[]);
    assert_one_line_error(&out, "too large for one entry");
    let out = copy(&["--entries"]);
    assert!(out.status.success(), "copy: {}", stderr(&out));
    assert_eq!(listed(&bao, "team/moved").len(), 1_200);
    let team = Env::empty_with(&[("TOKDECK_VAULT", &location), ("BAO_TOKEN", &bao.token)]);
    std::fs::create_dir_all(team.identity().parent().unwrap()).unwrap();
    std::fs::copy(env.identity(), team.identity()).unwrap();
    let names = rows(&team);
    assert_eq!(names.len(), 1_200);
    assert_eq!(names[0]["name"], "p00000");
    let out = copy(&["--entries"]);
    assert_one_line_error(&out, "a vault already exists at");
}

/// Every version KV keeps of the secret at `path`, as armored age files (destroyed ones
/// hold none).
fn kept_versions(bao: &OpenBao, path: &str) -> Vec<String> {
    let metadata = bao.api("GET", &format!("/v1/secret/metadata/{path}"), None);
    if metadata.status == 404 {
        return Vec::new();
    }
    let json: Value = serde_json::from_str(&metadata.body).unwrap();
    let versions = json["data"]["versions"].as_object().unwrap();
    versions
        .keys()
        .filter_map(|n| {
            let read = bao.api("GET", &format!("/v1/secret/data/{path}?version={n}"), None);
            let json: Value = serde_json::from_str(&read.body).ok()?;
            let fields = &json["data"]["data"];
            fields["age"]
                .as_str()
                .or_else(|| fields["head"].as_str())
                .map(String::from)
        })
        .collect()
}

#[test]
fn a_removed_key_opens_no_entry_no_shard_and_no_older_version_of_them() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let admin = Env::team(&bao, "team/leaving");
    admin.authorized_profile("payroll", &server, &[]);
    admin.authorized_profile("billing", &server, &[]);
    let leaver = Env::second_machine(&bao, "team/leaving", &admin);
    let out = admin.run(&["vault", "layout", "entries"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = admin.run(&["refresh", "payroll"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = leaver.run(&["--no-agent", "token", "payroll"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before: Vec<String> = listed(&bao, "team/leaving");
    assert!(
        before
            .iter()
            .flat_map(|id| kept_versions(&bao, &format!("team/leaving.entries/{id}")))
            .any(|armored| opens(&leaver, &armored)),
        "the leaver opened the entries before"
    );

    let out = admin.run(&["recipients", "remove", &public_key(&leaver)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("destroyed in OpenBao"),
        "{}",
        stderr(&out)
    );
    let out = leaver.run(&["--no-agent", "token", "payroll"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let mut paths = vec!["team/leaving".to_string()];
    for id in before.iter().chain(&listed(&bao, "team/leaving")) {
        paths.push(format!("team/leaving.entries/{id}"));
    }
    let shards = bao.api("LIST", "/v1/secret/metadata/team/leaving.status/", None);
    let json: Value = serde_json::from_str(&shards.body).unwrap();
    for shard in json["data"]["keys"].as_array().unwrap() {
        paths.push(format!("team/leaving.status/{}", shard.as_str().unwrap()));
    }
    let mut checked = 0;
    for path in &paths {
        for armored in kept_versions(&bao, path) {
            assert!(!opens(&leaver, &armored), "the removed key opens {path}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "{checked} versions checked");
    // The one who stays reads every profile still.
    assert_eq!(rows(&admin).len(), 2);
    let out = admin.run(&["--no-agent", "token", "payroll"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A vault file stays one file: a move into entries is refused, with where entries can be.
#[test]
fn a_vault_file_is_not_laid_out_as_entries() {
    let env = Env::new();
    env.imported(&factorial_profiles(2));
    let out = env.run(&["vault", "layout", "entries"]);
    assert_one_line_error(&out, "is a file, which holds a vault in one piece");
    assert!(
        stderr(&out).contains("vault copy openbao://... --entries"),
        "{}",
        stderr(&out)
    );
    assert_eq!(rows(&env).len(), 2);
}

/// Writes the lock of entry `id` of the vault at `path` as held by a machine `desk` for a
/// minute (`state` "held"), or as released.
fn plant_lock(bao: &OpenBao, path: &str, id: &str, state: &str) {
    let body = serde_json::json!({
        "data": {"holder": "desk pid 7 00000000", "ttl_ms": 60_000, "state": state}
    });
    let reply = bao.api(
        "POST",
        &format!("/v1/secret/data/{path}.locks/{id}"),
        Some(&body),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// A refresh holds the lock of its profile's entry alone: while another machine refreshes
/// `x`, `y` refreshes at once, and `x` waits for that machine's lock, then goes on.
#[test]
fn a_refresh_waits_only_for_a_refresh_of_the_same_profile() {
    let bao = OpenBao::start();
    let server = Dot::start();
    let mut laptop = Env::team(&bao, "team/locks");
    laptop
        .vars
        .push(("TOKDECK_MACHINE".into(), "laptop".into()));
    laptop.authorize_on_dot(&server, "x", "read", &[]);
    laptop.authorize_on_dot(&server, "y", "read", &[]);
    let out = laptop.run(&["vault", "layout", "entries"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A refresh of `x` takes its lock, and leaves there the record of its newest token.
    let lease = || bao.read("team/locks.lock")["metadata"]["version"].clone();
    let lease_before = lease();
    let out = laptop.run(&["--no-agent", "refresh", "x"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
    let locks = listed_in(&bao, "team/locks.locks");
    assert_eq!(locks.len(), 1, "{locks:?}");
    let x = locks[0].clone();
    let record = bao.read(&format!("team/locks.locks/{x}"))["data"].clone();
    assert_eq!(record["state"], "released", "{record}");
    assert!(
        record["newest"].as_str().unwrap().contains("obtained_at"),
        "{record}"
    );
    assert_eq!(lease(), lease_before, "the vault's lease untouched");

    // Another machine refreshes `x` now.
    plant_lock(&bao, "team/locks", &x, "held");
    let before = stdout(&laptop.run(&["--no-agent", "token", "x"]));
    let mut waiting = laptop
        .command(&["--no-agent", "refresh", "x"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `y` does not wait for it.
    let out = laptop.run(&["--no-agent", "refresh", "y"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
    assert_eq!(listed_in(&bao, "team/locks.locks").len(), 2);
    // The team view says which machine saved it: the status shards record it.
    let y = rows(&laptop)
        .into_iter()
        .find(|r| r["name"] == "y")
        .unwrap();
    assert_eq!(y["team"]["last_refresh"]["host"], "laptop", "{y}");
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "the refresh of x waits for the other machine"
    );
    assert_eq!(stdout(&laptop.run(&["--no-agent", "token", "x"])), before);
    // The other machine is done: `x` goes on, and its rotated token works.
    plant_lock(&bao, "team/locks", &x, "released");
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "refresh: {}", stderr(&out));
    assert_ne!(stdout(&laptop.run(&["--no-agent", "token", "x"])), before);
    let out = laptop.run(&["--no-agent", "refresh", "x"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
}
