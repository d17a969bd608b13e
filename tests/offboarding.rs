//! Offboarding that protects, against real servers: a member's key removed from a team vault
//! in OpenBao leaves them nothing to open (every earlier KV version destroyed), and
//! `--rotate` renews every refresh token they could read at a real Doorkeeper, revoking the
//! old refresh and access tokens, while a django-oauth-toolkit that keeps refresh tokens is
//! listed as not rotatable, and the command says the offboarding is not done.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::doorkeeper::Doorkeeper;
use common::dot::{self, Dot};
use common::openbao::OpenBao;
use common::{Env, opens, public_key, stderr};

const OOB: &str = "urn:ietf:wg:oauth:2.0:oob";

#[test]
fn a_removed_key_opens_no_version_and_its_refresh_tokens_are_rotated_where_they_can_be() {
    let bao = OpenBao::start();
    let admin = Env::team(&bao, "team/leaving");
    let rotating = Doorkeeper::start();
    let app = rotating.register(OOB);
    admin.doorkeeper_profile(&rotating, &app, "payroll", &[]);
    let keeping = Dot::start_with(dot::Options {
        refresh: dot::Refresh::Keep,
        ..dot::Options::default()
    });
    admin.authorize_on_dot(&keeping, "ats", "read", &[]);
    let leaver = Env::second_machine(&bao, "team/leaving", &admin);
    assert!(leaver.run(&["token", "payroll"]).status.success());
    let old_access = admin.stored("payroll", "access_token");
    let old_refresh = admin.stored("payroll", "refresh_token");
    let kept_refresh = admin.stored("ats", "refresh_token");

    let out = admin.run(&["recipients", "remove", &public_key(&leaver), "--rotate"]);
    let said = stderr(&out);
    // The server that keeps refresh tokens cannot be rotated by a refresh: the command fails,
    // naming it, and says what to do.
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("earlier versions destroyed in OpenBao"),
        "{said}"
    );
    assert!(
        said.contains(
            "payroll: rotated: a new refresh token saved, the old one and its access token revoked"
        ),
        "{said}"
    );
    assert!(
        said.contains("ats: not rotated: the server keeps refresh tokens")
            && said.contains("tokdeck revoke ats"),
        "{said}"
    );
    assert!(
        said.contains("1 of 2 refresh tokens are not fully rotated (ats)"),
        "{said}"
    );

    // At the rotating server the old tokens are dead, the new ones work.
    let new_access = admin.stored("payroll", "access_token");
    assert_ne!(new_access, old_access);
    assert!(!rotating.token_works(&old_access), "the old access token");
    let (status, body) = rotating.token_request(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &old_refresh),
        ("client_id", &app.uid),
        ("client_secret", &app.secret),
    ]);
    assert_eq!(status, 400, "the old refresh token: {body}");
    assert!(rotating.token_works(&new_access), "the new access token");
    // The kept one still works, as before.
    assert_eq!(admin.stored("ats", "refresh_token"), kept_refresh);
    let out = admin.run(&["--no-agent", "refresh", "ats"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The removed key opens neither the vault nor any version KV kept of it.
    let out = leaver.run(&["token", "payroll"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let metadata = bao.api("GET", "/v1/secret/metadata/team/leaving", None);
    let json: serde_json::Value = serde_json::from_str(&metadata.body).unwrap();
    let versions = json["data"]["versions"].as_object().unwrap();
    let destroyed = versions
        .values()
        .filter(|v| v["destroyed"].as_bool() == Some(true))
        .count();
    assert!(
        destroyed >= 3,
        "the history before the removal: {versions:?}"
    );
    for n in versions.keys() {
        let read = bao.api(
            "GET",
            &format!("/v1/secret/data/team/leaving?version={n}"),
            None,
        );
        let json: serde_json::Value = serde_json::from_str(&read.body).unwrap();
        let Some(armored) = json["data"]["data"]["age"].as_str() else {
            continue;
        };
        assert!(
            !opens(&leaver, armored),
            "the removed key opens version {n}"
        );
    }
    // Each rotation is in the audit log.
    let audit = std::fs::read_to_string(admin.home().join("state/tokdeck/audit.jsonl")).unwrap();
    let rotations: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"action\":\"rotate\""))
        .collect();
    assert_eq!(rotations.len(), 2, "{audit}");
}
