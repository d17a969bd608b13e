//! A team vault on OpenBao's production storage: a real server on integrated raft storage
//! (a config file, `operator init`, `unseal`; no dev mode), which refuses any entry over
//! 1 MiB. A vault that no longer fits is refused with advice that says retrying will not
//! help, and nothing already stored is lost.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use common::openbao::OpenBao;
use common::{Env, assert_one_line_error, factorial_profiles, stderr, stdout};

/// `vault copy` of `env`'s vault file to `location` in `bao`.
fn copied_into(env: &Env, bao: &OpenBao, location: &str) -> std::process::Output {
    env.command(&["vault", "copy", location])
        .env("BAO_TOKEN", &bao.token)
        .output()
        .unwrap()
}

fn kv_status(bao: &OpenBao, path: &str) -> u16 {
    bao.api("GET", &format!("/v1/secret/data/{path}"), None)
        .status
}

#[test]
fn a_vault_too_large_for_one_raft_entry_is_refused_and_loses_nothing() {
    let bao = OpenBao::start_raft();

    // Too large to move in: refused, with advice that does not say "try again".
    let big = Env::new();
    big.imported(&factorial_profiles(1_400));
    let location = bao.location("team/big");
    let out = copied_into(&big, &bao, &location);
    assert_one_line_error(&out, "too large for one entry");
    let said = stderr(&out);
    assert!(said.contains("will not succeed"), "{said}");
    assert!(!said.contains("try again in a moment"), "{said}");
    assert_eq!(kv_status(&bao, "team/big"), 404, "something was stored");

    // One that fits is stored; growing it past the limit is refused, and it stays as it was.
    let small = Env::new();
    small.imported(&factorial_profiles(500));
    let location = bao.location("team/small");
    let out = copied_into(&small, &bao, &location);
    assert!(out.status.success(), "{}", stderr(&out));
    let team = |args: &[&str]| {
        small
            .command(args)
            .env("TOKDECK_VAULT", &location)
            .env("BAO_TOKEN", &bao.token)
            .output()
            .unwrap()
    };
    let version = |bao: &OpenBao| bao.read("team/small")["metadata"]["version"].as_u64();
    let before = version(&bao);
    let file = small.home().join("more.toml");
    std::fs::write(
        &file,
        factorial_profiles(1_400).replace("name = \"p", "name = \"q"),
    )
    .unwrap();
    let out = team(&["import", file.to_str().unwrap()]);
    assert_one_line_error(&out, "too large for one entry");
    assert_eq!(version(&bao), before, "a new version was stored");
    let out = team(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 500, "{}", stderr(&out));
}
