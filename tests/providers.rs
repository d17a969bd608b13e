//! Any OAuth 2 provider, against a real second server: django-oauth-toolkit (not Doorkeeper),
//! with PKCE required, rotation with reuse protection, RFC 9207 `iss`, OpenID Connect,
//! introspection and the device grant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::Read;
use std::process::Child;

use common::dot::Dot;
use common::fixture::deliver;
use common::{Env, assert_one_line_error, stderr, stdout};

fn stored(env: &Env, name: &str, field: &str) -> String {
    env.stored(name, field)
}

/// `tokdeck add NAME ARGS`, the secret (if any) on stdin.
fn add(env: &Env, name: &str, args: &[&str], secret: &str) {
    let mut line = vec!["add", name];
    line.extend_from_slice(args);
    let out = env.run_with_stdin(&line, secret);
    assert!(out.status.success(), "add {name}: {}", stderr(&out));
}

fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    (out.status.success(), stderr(&out))
}

#[test]
fn discovery_basic_auth_listener_pkce_iss_and_strict_rotation() {
    let server = Dot::start();
    let env = Env::new();
    let port = common::free_port();
    let redirect = format!("http://127.0.0.1:{port}/cb");
    let app = server.register("confidential", "authorization-code", &redirect);
    let issuer = server.issuer();
    add(
        &env,
        "dot",
        &[
            "--issuer",
            &issuer,
            "--client-id",
            &app.client_id,
            "--redirect-uri",
            &redirect,
            "--scope",
            "read openid",
        ],
        &app.secret,
    );
    // Discovery read both documents: RFC 8414's (introspection, revocation) and OpenID
    // Connect's (userinfo); basic auth and PKCE follow from what the server lists.
    assert_eq!(stored(&env, "dot", "issuer"), issuer);
    assert_eq!(stored(&env, "dot", "token_url"), server.endpoint("token/"));
    assert_eq!(
        stored(&env, "dot", "userinfo_url"),
        server.endpoint("userinfo/")
    );
    assert_eq!(
        stored(&env, "dot", "introspect_url"),
        server.endpoint("introspect/")
    );
    assert_eq!(stored(&env, "dot", "auth_method"), "basic");
    assert!(env.vault_text().contains("pkce = true"));
    assert!(env.vault_text().contains("iss_parameter = true"));

    let (child, url) = env.start_authorize(&["dot", "--listen"]);
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let callback = server.approve(&url);
    assert!(callback.contains("iss="), "RFC 9207: {callback}");
    let reply = deliver(port, &callback).expect("the listener answers");
    assert_eq!(reply.status, 200);
    let (ok, err) = finish(child);
    assert!(ok, "authorize --listen: {err}\n{}", server.log());

    // Two refreshes in a row under reuse protection: each new refresh token is the one sent
    // next, so the grant survives.
    let mut seen = vec![stored(&env, "dot", "refresh_token")];
    for _ in 0..2 {
        let out = env.run(&["refresh", "dot"]);
        assert!(out.status.success(), "refresh: {}", stderr(&out));
        let now = stored(&env, "dot", "refresh_token");
        assert!(!seen.contains(&now), "the refresh token was not rotated");
        seen.push(now);
    }
    // Inspect: the access token is opaque, the ID token a JWT naming this issuer and client,
    // kept across the refreshes; neither token is ever printed.
    let out = env.run(&["inspect", "dot"]);
    assert!(out.status.success(), "inspect: {}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("access token: opaque token"), "{said}");
    assert!(said.contains("id token: JWT (RS256"), "{said}");
    assert!(
        said.lines()
            .any(|l| l.trim_start().starts_with("exp ") && l.contains(" UTC (in ")),
        "exp as a date and a countdown: {said}"
    );
    let id_token = stored(&env, "dot", "id_token");
    assert_eq!(id_token.split('.').count(), 3, "no ID token kept");
    for secret in [stored(&env, "dot", "access_token"), id_token.clone()] {
        assert!(!said.contains(&secret), "a token was printed: {said}");
    }
    let signature = id_token.rsplit('.').next().unwrap();
    let out = env.run(&["inspect", "dot", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let claims = &json["id_token"]["claims"];
    assert_eq!(json["access_token"]["kind"], "opaque", "{json}");
    assert_eq!(claims["aud"], app.client_id.as_str(), "{json}");
    assert!(
        claims["iss"]
            .as_str()
            .unwrap()
            .starts_with(issuer.trim_end_matches('/')),
        "{json}"
    );
    assert!(claims["exp"].as_i64() > claims["iat"].as_i64(), "{json}");
    assert!(
        !stdout(&out).contains(signature),
        "the signature was printed"
    );

    // Check through userinfo (the scope has openid).
    let out = env.run(&["check", "dot"]);
    assert!(out.status.success(), "check: {}", stderr(&out));
    assert!(
        stdout(&out).contains("token valid; owner sub "),
        "{}",
        stdout(&out)
    );
    let token = stdout(&env.run(&["token", "dot"]));
    assert_eq!(token, stored(&env, "dot", "access_token"));

    // Revoke (RFC 7009, with hints): the token stops working at the server.
    let out = env.run(&["revoke", "dot"]);
    assert!(out.status.success(), "revoke: {}", stderr(&out));
    // Asked again (userinfo, as `check` would), the server refuses the token: verified.
    assert!(
        stderr(&out).contains("verified"),
        "revoke: {}",
        stderr(&out)
    );
    let userinfo = common::fixture::http_with(
        server.port,
        "GET",
        "/o/userinfo/",
        None,
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .unwrap();
    assert_eq!(userinfo.status, 401, "the revoked token still works");
    assert!(stored(&env, "dot", "access_token").is_empty());

    // Rediscover: nothing changed at the server.
    let out = env.run(&["rediscover", "dot"]);
    assert!(stderr(&out).contains("unchanged"), "{}", stderr(&out));
}

#[test]
fn post_and_public_clients_with_explicit_endpoints_and_pasted_redirects() {
    let server = Dot::start();
    let env = Env::new();
    let redirect = "http://127.0.0.1:9/cb";
    // A confidential client, its secret in the form body, endpoints given one by one.
    let app = server.register("confidential", "authorization-code", redirect);
    add(
        &env,
        "post",
        &[
            "--token-url",
            &server.endpoint("token/"),
            "--authorize-url",
            &server.endpoint("authorize/"),
            "--revoke-url",
            &server.endpoint("revoke_token/"),
            "--introspect-url",
            &server.endpoint("introspect/"),
            "--auth-method",
            "post",
            "--pkce",
            "--client-id",
            &app.client_id,
            "--redirect-uri",
            redirect,
        ],
        &app.secret,
    );
    let (child, url) = env.start_authorize(&["post"]);
    finish(child);
    let callback = server.approve(&url);
    let out = env.run(&["exchange", "post", &callback]);
    assert!(out.status.success(), "exchange: {}", stderr(&out));
    // Check through introspection (no openid scope, and the profile names no userinfo).
    let out = env.run(&["check", "post"]);
    assert!(out.status.success(), "check: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("client {}", app.client_id)),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["refresh", "post"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));

    // A public client: no secret asked for, PKCE always.
    let public = server.register("public", "authorization-code", redirect);
    add(
        &env,
        "public",
        &[
            "--issuer",
            &server.issuer(),
            "--auth-method",
            "none",
            "--no-pkce",
            "--client-id",
            &public.client_id,
            "--redirect-uri",
            redirect,
        ],
        "",
    );
    let (child, url) = env.start_authorize(&["public"]);
    finish(child);
    assert!(
        url.contains("code_challenge="),
        "a public client without PKCE: {url}"
    );
    let callback = server.approve(&url);
    let out = env.run_with_stdin(&["exchange", "public", "-"], &callback);
    assert!(out.status.success(), "exchange: {}", stderr(&out));
    let out = env.run(&["refresh", "public"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
}

#[test]
fn a_redirect_from_another_issuer_is_refused_and_nothing_is_exchanged() {
    let server = Dot::start();
    let env = Env::new();
    let redirect = "http://127.0.0.1:9/cb";
    let app = server.register("confidential", "authorization-code", redirect);
    add(
        &env,
        "dot",
        &[
            "--issuer",
            &server.issuer(),
            "--client-id",
            &app.client_id,
            "--redirect-uri",
            redirect,
        ],
        &app.secret,
    );
    let (child, url) = env.start_authorize(&["dot"]);
    finish(child);
    let callback = server.approve(&url);
    let mut forged = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "iss" {
                "https://evil.example".into()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let out = env.run(&["exchange", "dot", forged.as_str()]);
    assert_one_line_error(
        &out,
        "names issuer 'https://evil.example', not this profile's",
    );
    assert!(stored(&env, "dot", "access_token").is_empty());
    // Without the iss the server promised, the redirect is refused too.
    let stripped = callback
        .split('&')
        .filter(|p| !p.starts_with("iss="))
        .collect::<Vec<_>>()
        .join("&");
    let out = env.run(&["exchange", "dot", &stripped]);
    assert_one_line_error(&out, "carries no 'iss'");
    // The genuine redirect still works: the code was never sent.
    let out = env.run(&["exchange", "dot", &callback]);
    assert!(out.status.success(), "exchange: {}", stderr(&out));
}

/// Reads stderr of a running `authorize` until the device code shows.
fn user_code_from(child: &mut Child) -> (String, String) {
    let mut err = child.stderr.take().unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 256];
    while !text.contains(" at ") {
        let n = err.read(&mut buf).unwrap();
        assert!(n > 0, "authorize ended without a code: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let code = text
        .split("enter the code ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .expect("a user code")
        .to_string();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut err, &mut std::io::sink());
    });
    (code, text)
}

/// Adds `name`, a public client of `server` that logs in with the device grant.
fn add_device_profile(env: &Env, server: &Dot, name: &str) {
    let app = server.register("public", "device", "");
    add(
        env,
        name,
        &[
            "--issuer",
            &server.issuer(),
            "--device-url",
            &server.endpoint("device-authorization/"),
            "--grant",
            "device",
            "--auth-method",
            "none",
            "--client-id",
            &app.client_id,
        ],
        "",
    );
}

#[test]
fn device_login_approved_and_denied_on_the_servers_own_pages() {
    let server = Dot::start();
    let env = Env::new();
    add_device_profile(&env, &server, "tv");
    let (mut child, uri) = env.start_authorize(&["tv"]);
    assert!(
        uri.starts_with(&server.endpoint("device/?user_code=")),
        "the first line is the address to open: {uri}"
    );
    let (code, said) = user_code_from(&mut child);
    assert!(uri.ends_with(&code), "{uri} vs {said}");
    server.answer_device(&code, true);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "device login: {}", server.log());
    assert!(!stored(&env, "tv", "access_token").is_empty());
    let out = env.run(&["token", "tv"]);
    assert!(out.status.success());

    // Denied: a clear message, and the token from before stays.
    let before = stored(&env, "tv", "access_token");
    let (mut child, _) = env.start_authorize(&["tv"]);
    let (code, _) = user_code_from(&mut child);
    server.answer_device(&code, false);
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_eq!(stored(&env, "tv", "access_token"), before);
}

#[test]
fn client_credentials_need_no_authorize_step() {
    let server = Dot::start();
    let env = Env::new();
    let app = server.register("confidential", "client-credentials", "");
    add(
        &env,
        "robot",
        &[
            "--issuer",
            &server.issuer(),
            "--grant",
            "client-credentials",
            "--client-id",
            &app.client_id,
            "--scope",
            "read",
        ],
        &app.secret,
    );
    let out = env.run(&["token", "robot"]);
    assert!(out.status.success(), "token: {}", stderr(&out));
    let first = stdout(&out);
    assert!(!first.is_empty());
    let status = stdout(&env.run(&["status", "--json"]));
    assert!(status.contains(r#""owner": "app""#), "{status}");
    let out = env.run(&["refresh", "robot"]);
    assert!(out.status.success(), "refresh: {}", stderr(&out));
    assert_ne!(stdout(&env.run(&["token", "robot"])), first);
    let out = env.run(&["check", "robot"]);
    assert!(out.status.success(), "check: {}", stderr(&out));
}

#[test]
fn bad_servers_and_settings_are_refused_and_leave_the_vault_alone() {
    let server = Dot::start();
    let mock = common::MockServer::start();
    let env = Env::new();
    let before = env.vault_bytes();
    let app = server.register(
        "confidential",
        "authorization-code",
        "http://127.0.0.1:9/cb",
    );
    let base = [
        "add",
        "x",
        "--client-id",
        &app.client_id,
        "--redirect-uri",
        "http://127.0.0.1:9/cb",
    ];
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--issuer".into(),
                format!("http://localhost:{}/o", server.port),
            ],
            "names issuer",
        ),
        // django-oauth-toolkit answers its own metadata under any issuer path: the
        // issuer check is what catches a wrong one.
        (
            vec![
                "--issuer".into(),
                format!("http://127.0.0.1:{}/nothing", server.port),
            ],
            "names issuer",
        ),
        (vec!["--issuer".into(), mock.base_url()], "no metadata at"),
        (
            vec![
                "--issuer".into(),
                server.issuer(),
                "--grant".into(),
                "device".into(),
            ],
            "no device authorization endpoint (none in its metadata)",
        ),
        (
            vec!["--token-url".into(), "http://auth.example.com/token".into()],
            "refusing http://",
        ),
        (
            vec!["--authorize-url".into(), server.endpoint("authorize/")],
            "--token-url",
        ),
    ];
    for (extra, needle) in cases {
        let mut line: Vec<&str> = base.to_vec();
        line.extend(extra.iter().map(String::as_str));
        let out = env.run_with_stdin(&line, &app.secret);
        assert_one_line_error(&out, needle);
        assert_eq!(env.vault_bytes(), before, "{needle}: the vault changed");
    }
    let out = env.run(&["add", "x", "--client-id", "c", "--auth-method", "secret"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("basic, post, none"),
        "{}",
        stderr(&out)
    );
}

/// Reads back the QR code drawn on a terminal screen (light modules inked with half-blocks).
fn qr_on_screen(screen: &str) -> Option<String> {
    let is_qr = |l: &str| {
        let t = l.trim_end();
        t.chars().count() >= 21 && t.starts_with("██") && t.chars().all(|c| "█▀▄ ".contains(c))
    };
    let rows: Vec<Vec<(bool, bool)>> = screen
        .lines()
        .filter(|l| is_qr(l))
        .map(|l| l.chars().map(common::qr::cell_of).collect())
        .collect();
    common::qr::decode(&rows)
}

#[test]
fn device_login_draws_a_qr_code_of_the_address_in_a_real_terminal() {
    let server = Dot::start();
    let env = Env::new();
    add_device_profile(&env, &server, "tv");
    let bin = common::bin().display().to_string();
    let tmux = common::tmux::Tmux::start(
        &env,
        100,
        50,
        &format!("{bin} authorize tv --no-browser; sleep 60"),
    );
    tmux.wait_for("the device code", |s| s.contains("enter the code"));
    let screen = tmux.wait_for("the QR code", |s| {
        qr_on_screen(s).is_some() || s.contains("needs a terminal")
    });
    let address = qr_on_screen(&screen).unwrap_or_else(|| panic!("no readable QR code:\n{screen}"));
    assert!(
        address.starts_with(&server.endpoint("device/?user_code=")),
        "{address}"
    );
    // --no-qr leaves it out.
    let quiet = common::tmux::Tmux::start(
        &env,
        100,
        50,
        &format!("{bin} authorize tv --no-browser --no-qr; sleep 60"),
    );
    let screen = quiet.wait_for("the device code", |s| s.contains("enter the code"));
    assert!(qr_on_screen(&screen).is_none(), "{screen}");
    assert!(!screen.contains("██"), "{screen}");
}
