//! A vault put back to an older version (`bao kv rollback`, a restored file, an old commit)
//! holds refresh tokens the server has retired. Against a real server that rotates on every
//! refresh and revokes the grant when a retired refresh token comes back
//! (django-oauth-toolkit), no process on any machine sends one: the grant outlives the
//! rollback. A server that keeps its refresh token is not refused.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::dot::{Dot, Options, Refresh};
use common::openbao::OpenBao;
use common::{Env, assert_one_line_error, stderr};

const ROLLED_BACK: &str = "put back to an older version";

fn refresh(env: &Env, name: &str) {
    let out = env.run(&["refresh", name]);
    assert!(out.status.success(), "refresh {name}: {}", stderr(&out));
}

/// The current version of the KV secret at `secret/PATH`.
fn kv_version(bao: &OpenBao, path: &str) -> u64 {
    bao.read(path)["metadata"]["version"].as_u64().unwrap()
}

fn kv_rollback(bao: &OpenBao, path: &str, version: u64) {
    let out = bao
        .cli(&[
            "kv",
            "rollback",
            "-mount=secret",
            &format!("-version={version}"),
            path,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "bao kv rollback: {}", stderr(&out));
}

#[test]
fn a_file_vault_put_back_to_an_older_copy_sends_no_retired_refresh_token() {
    let server = Dot::start();
    let env = Env::new();
    env.authorize_on_dot(&server, "p", "read", &[]);
    let older = std::fs::read(env.vault()).unwrap();
    refresh(&env, "p");
    let newest = std::fs::read(env.vault()).unwrap();

    // A backup restored over the vault.
    std::fs::write(env.vault(), &older).unwrap();
    let out = env.run(&["refresh", "p"]);
    assert_one_line_error(&out, ROLLED_BACK);
    assert!(
        stderr(&out).contains("authorize 'p' again"),
        "{}",
        stderr(&out)
    );

    // Nothing was sent: once the newest copy is back, the grant still works.
    std::fs::write(env.vault(), &newest).unwrap();
    refresh(&env, "p");
    refresh(&env, "p");

    // A new login over the old copy starts afresh.
    std::fs::write(env.vault(), &older).unwrap();
    env.reauthorize_on_dot(&server, "p", redirect_port(&env));
    refresh(&env, "p");
}

/// The loopback port of the redirect URI of the vault's only profile.
fn redirect_port(env: &Env) -> u16 {
    let text = env.vault_text();
    let (_, after) = text
        .split_once("redirect_uri = \"http://127.0.0.1:")
        .unwrap();
    after.split('/').next().unwrap().parse().unwrap()
}

#[test]
fn a_server_that_keeps_its_refresh_token_is_refreshed_from_an_older_copy() {
    let server = Dot::start_with(Options {
        refresh: Refresh::Keep,
        ..Options::default()
    });
    let env = Env::new();
    env.authorize_on_dot(&server, "p", "read", &[]);
    let older = std::fs::read(env.vault()).unwrap();
    refresh(&env, "p");
    std::fs::write(env.vault(), &older).unwrap();
    // The refresh token is the same in both: it is good, and is sent.
    refresh(&env, "p");
}

#[test]
fn a_team_vault_rolled_back_in_openbao_sends_no_retired_token_from_any_machine() {
    let bao = OpenBao::start();
    let server = Dot::start();
    let alice = Env::team(&bao, "team/back");
    alice.authorize_on_dot(&server, "p", "read", &[]);
    let bob = Env::second_machine(&bao, "team/back", &alice);
    let before = kv_version(&bao, "team/back");
    refresh(&bob, "p");
    let after = kv_version(&bao, "team/back");
    assert!(after > before);

    // An operator rolls the secret back, as the README shows for a bad save.
    kv_rollback(&bao, "team/back", before);
    for machine in [&alice, &bob] {
        let out = machine.run(&["refresh", "p"]);
        assert_one_line_error(&out, ROLLED_BACK);
    }
    let out = alice.run(&["token", "p", "--min-valid", "2h"]);
    assert!(
        !out.status.success(),
        "a token from the retired refresh token"
    );

    // Rolled forward again, the grant is alive: the retired token was never sent.
    kv_rollback(&bao, "team/back", after);
    refresh(&alice, "p");
    refresh(&bob, "p");
}
