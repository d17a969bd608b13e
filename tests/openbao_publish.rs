//! `tokdeck agent --publish`: the access tokens of profiles that opted in are written to a
//! real OpenBao server's KV where services read them, with the four fields promised and no
//! refresh token, client secret or id token; a failed publish never fails a refresh; an
//! unreachable or forbidden OpenBao is refused at start.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::fixture::{free_port, http};
use common::openbao::OpenBao;
use common::running::Agent;
use common::{CLIENT_SECRET, Env, MockServer, assert_one_line_error, stderr};

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The published secret of `profile`, if there is one.
fn published(bao: &OpenBao, profile: &str) -> Option<serde_json::Value> {
    let reply = bao.api("GET", &format!("/v1/secret/data/services/{profile}"), None);
    (reply.status == 200).then(|| {
        serde_json::from_str::<serde_json::Value>(&reply.body).unwrap()["data"]["data"].clone()
    })
}

fn refresh_through_agent(env: &Env, profile: &str) -> String {
    let mut socket = UnixStream::connect(env.agent_socket()).unwrap();
    let line = format!("{{\"v\":1,\"op\":\"refresh\",\"profile\":\"{profile}\"}}\n");
    socket.write_all(line.as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(socket).read_line(&mut reply).unwrap();
    reply
}

#[test]
fn opted_in_access_tokens_are_published_and_nothing_else() {
    let bao = OpenBao::start();
    let server = MockServer::start();
    let mut env = Env::new();
    env.vars.push(("BAO_TOKEN".into(), bao.token.clone()));
    env.authorized_profile("shared", &server, &["--publish"]);
    env.authorized_profile("personal", &server, &[]);
    let metrics = free_port();
    let services = bao.location("services");
    let _agent = Agent::start(
        &env,
        &["--publish", &services, "--metrics", &metrics.to_string()],
    );
    wait_until("the publish", || published(&bao, "shared").is_some());
    let secret = published(&bao, "shared").unwrap();
    let mut keys: Vec<&str> = secret
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["access_token", "expires_at", "scope", "token_type"]);
    assert_eq!(secret["access_token"], env.stored("shared", "access_token"));
    assert_eq!(secret["token_type"], "Bearer");
    assert!(chrono::DateTime::parse_from_rfc3339(secret["expires_at"].as_str().unwrap()).is_ok());
    assert!(published(&bao, "personal").is_none(), "not opted in");
    let raw = bao.api("GET", "/v1/secret/data/services/shared", None).body;
    for secret in [CLIENT_SECRET, &env.stored("shared", "refresh_token")] {
        assert!(!raw.contains(secret), "{secret} published");
    }
    // A new token is published in place of the old one.
    let reply = refresh_through_agent(&env, "shared");
    assert!(reply.contains("\"ok\":true"), "{reply}");
    let fresh = env.stored("shared", "access_token");
    wait_until("the new token published", || {
        published(&bao, "shared").is_some_and(|s| s["access_token"] == fresh.as_str())
    });
    // OpenBao sealed: the refresh still succeeds; the failed publish is counted.
    let reply = bao.api("PUT", "/v1/sys/seal", None);
    assert!(reply.status == 204 || reply.status == 200, "{}", reply.body);
    let reply = refresh_through_agent(&env, "shared");
    assert!(
        reply.contains("\"ok\":true"),
        "a failed publish failed the refresh: {reply}"
    );
    wait_until("the failure counted", || {
        http(metrics, "GET", "/metrics", None).is_some_and(|r| {
            r.body
                .contains("tokdeck_publishes_total{profile=\"shared\",result=\"failure\"}")
        })
    });
}

#[test]
fn an_unreachable_or_forbidden_openbao_is_refused_at_start() {
    let bao = OpenBao::start();
    let env = Env::new();
    let closed = format!("openbao+http://127.0.0.1:{}/secret/services", free_port());
    let out = env
        .command(&["agent", "--publish", &closed])
        .env("BAO_TOKEN", &bao.token)
        .output()
        .unwrap();
    assert_one_line_error(&out, "cannot reach OpenBao at 127.0.0.1:");
    bao.put_policy(
        "read-only",
        r#"path "secret/data/services/*" { capabilities = ["read"] }"#,
    );
    let reader = bao.token_with(&["read-only"], "10m");
    let out = env
        .command(&["agent", "--publish", &bao.location("services")])
        .env("BAO_TOKEN", &reader)
        .output()
        .unwrap();
    assert_one_line_error(&out, "may not write under secret/services");
    let out = env.run(&["agent", "--publish", "/tmp/services"]);
    assert_one_line_error(&out, "--publish takes openbao://");
    assert!(!env.agent_socket().exists(), "{}", stderr(&out));
}
