//! OAuth subcommands end to end: the built binary against the loopback mock server.

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Env, Fault, MockServer, assert_one_line_error, stderr, stdout};

fn fast_config(env: &Env) {
    env.write_config("http_timeout = \"1s\"\n");
}

#[test]
fn full_lifecycle_keeps_the_vault_current_after_every_step() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("acme", &server, &[]);

    // Exchange accepts the whole redirect URL, as pasted from a browser.
    let code = server.issue_code(false, "urn:ietf:wg:oauth:2.0:oob");
    let out = env.run(&["exchange", "acme", &format!("http://x/cb?code={code}")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let first_access = server.last_access_token().unwrap();
    assert!(env.vault_text().contains(&first_access));

    let out = env.run(&["status"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("1h 59m"), "{}", stdout(&out));

    // A valid token prints as is, with nothing else on stdout and no server call.
    let calls = server.token_requests();
    let out = env.run(&["token", "acme"]);
    assert_eq!(stdout(&out), first_access);
    assert_eq!(server.token_requests(), calls);

    let old_refresh = server.last_refresh_token().unwrap();
    let out = env.run(&["refresh", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("refreshed"));
    let second_access = server.last_access_token().unwrap();
    assert_ne!(first_access, second_access);
    assert!(!server.is_refresh_token_valid(&old_refresh), "rotation");
    let text = env.vault_text();
    let new_refresh = server.last_refresh_token().unwrap();
    assert!(text.contains(&second_access) && text.contains(&new_refresh));
    assert_eq!(stdout(&env.run(&["token", "acme"])), second_access);

    let out = env.run(&["check", "acme"]);
    assert!(stdout(&out).contains("ada@example.com"), "{}", stderr(&out));
    assert!(env.vault_text().contains("email = \"ada@example.com\""));
    let json = stdout(&env.run(&["status", "--json"]));
    assert!(
        json.contains("ada@example.com, company 42, employee 7"),
        "{json}"
    );

    let out = env.run(&["revoke", "acme"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // It says which tokens it revoked, and which it could not.
    let said = stderr(&out);
    assert!(
        said.contains("the refresh token and the current access token")
            && said.contains("issued before the last refresh are not revoked"),
        "{said}"
    );
    // ...and that the server, asked again, refuses the revoked access token.
    assert!(
        said.contains("verified: the server refuses the access token now"),
        "{said}"
    );
    assert!(
        server
            .state
            .lock()
            .unwrap()
            .revoked
            .contains(&second_access)
    );
    assert!(!env.vault_text().contains("[profile.token]"));
    assert!(stdout(&env.run(&["status"])).contains("no-token"));

    // No secret ever reached stderr or the log.
    let log = env.log_text();
    for secret in [
        common::CLIENT_SECRET,
        &first_access,
        &second_access,
        &new_refresh,
    ] {
        assert!(!log.contains(secret), "{secret} in log");
    }
}

#[test]
fn token_refreshes_an_expired_access_token_first() {
    let env = Env::new();
    let server = MockServer::start();
    // A 2 s token is refreshed once half its life is over (the margin is capped at half the
    // lifetime, so short tokens are not refreshed on every call).
    server.set_expires_in(2);
    env.authorized_profile("p", &server, &[]);
    let before = server.last_access_token().unwrap();
    server.set_expires_in(7200);
    std::thread::sleep(Duration::from_millis(1_500));
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = server.last_access_token().unwrap();
    assert_ne!(before, after);
    assert_eq!(stdout(&out), after, "stdout holds only the token");
    assert_eq!(server.refresh_requests(), 1);
}

#[test]
fn company_tokens_never_expire_and_refreshing_them_is_a_no_op() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("co", &server, &["--owner", "company"]);
    let text = stdout(&env.run(&["status"]));
    assert!(text.contains("never") && text.contains("company"), "{text}");
    let access = server.last_access_token().unwrap();
    assert_eq!(stdout(&env.run(&["token", "co"])), access);
    // Nothing to refresh is a success, and leaves no error behind.
    let out = env.run(&["refresh", "co"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not expire; nothing to refresh"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["refresh", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "skipped silently");
    let status = env.run(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", stdout(&status));
    assert!(!env.vault_text().contains("last_error"));
    assert_eq!(server.refresh_requests(), 0);
}

#[test]
fn local_preconditions_are_not_recorded_and_a_check_clears_a_stale_error() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("fresh", &server, &[]);
    let before = env.vault_bytes();
    let out = env.run(&["refresh", "fresh"]);
    assert_one_line_error(&out, "'fresh' has no token: run `tokdeck authorize fresh`");
    assert_eq!(env.vault_bytes(), before, "nothing recorded");
    let status = stdout(&env.run(&["status"]));
    assert!(
        status.contains("no-token") && !status.contains("error"),
        "{status}"
    );

    // A stale error from an earlier failure goes away with a successful check.
    env.authorized_profile("p", &server, &[]);
    let refresh = server.last_refresh_token().unwrap();
    server
        .state
        .lock()
        .unwrap()
        .refresh_tokens_clear_for_test(&refresh);
    assert!(!env.run(&["refresh", "p"]).status.success());
    assert!(env.vault_text().contains("last_error"));
    let out = env.run(&["check", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.vault_text().contains("last_error"));
}

#[test]
fn token_prints_a_still_valid_token_when_the_refresh_fails() {
    let env = Env::new();
    fast_config(&env);
    let server = MockServer::start();
    // A 6 s token is due for refresh after 3 s (half its life) and still valid until 6 s;
    // the failed refresh (three quick attempts) ends well inside that window.
    server.set_expires_in(6);
    env.authorized_profile("p", &server, &[]);
    std::thread::sleep(Duration::from_millis(3_300));
    let access = server.last_access_token().unwrap();
    server.fail_next(Fault::Status(503), 10);
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), access);
    let err = stderr(&out);
    assert!(
        err.contains("warning: refresh failed") && err.contains("HTTP 503"),
        "{err}"
    );
    // Server trouble is not the profile's condition: status is not "error".
    let status = env.run(&["status"]);
    assert!(!stdout(&status).contains("error"), "{}", stdout(&status));
    assert_eq!(status.status.code(), Some(0));
}

#[test]
fn reused_code_and_dead_refresh_token_explain_themselves() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("p", &server, &[]);
    let code = server.issue_code(false, "urn:ietf:wg:oauth:2.0:oob");
    assert!(env.run(&["exchange", "p", &code]).status.success());
    let before = env.vault_bytes();
    let again = env.run(&["exchange", "p", &code]);
    assert!(
        stderr(&again).contains("already used: authorize again"),
        "{}",
        stderr(&again)
    );
    assert!(!again.status.success());
    // The profile's token still works: a stale code puts nothing on it.
    let text = env.vault_text();
    assert!(!text.contains("last_error") && text.contains("access_token"));
    assert_eq!(env.vault_bytes(), before);
    assert_eq!(env.run(&["status"]).status.code(), Some(0));

    // Someone else used the refresh token: the server has rotated it away.
    let refresh = server.last_refresh_token().unwrap();
    server
        .state
        .lock()
        .unwrap()
        .refresh_tokens_clear_for_test(&refresh);
    let out = env.run(&["refresh", "p"]);
    assert!(
        stderr(&out).contains("refresh token expired or already used: authorize again"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.run(&["status"]).status.code(), Some(2));
}

#[test]
fn wrong_client_secret_is_named() {
    let env = Env::new();
    let server = MockServer::start();
    let base = server.base_url();
    let out = env.run_with_stdin(
        &[
            "add",
            "bad",
            "--client-id",
            common::CLIENT_ID,
            "--base-url",
            &base,
            "--redirect-uri",
            "urn:ietf:wg:oauth:2.0:oob",
        ],
        "not-the-secret",
    );
    assert!(out.status.success());
    let code = server.issue_code(false, "urn:ietf:wg:oauth:2.0:oob");
    let out = env.run(&["exchange", "bad", &code]);
    assert!(
        stderr(&out).contains("client id or secret wrong"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn transient_faults_are_retried_and_permanent_ones_reported() {
    let env = Env::new();
    fast_config(&env);
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);

    // One 503 then success: retried, refreshed.
    server.fail_next(Fault::Status(503), 1);
    let out = env.run(&["refresh", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // 429 with Retry-After: 1 is honoured.
    server.fail_next(Fault::RateLimited { retry_after: 1 }, 1);
    let start = Instant::now();
    let out = env.run(&["refresh", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(start.elapsed() >= Duration::from_secs(1));

    // Persistent failures: bounded retries, a clear message, tokens unchanged.
    for (fault, needle) in [
        (Fault::Status(500), "server error HTTP 500"),
        (Fault::Status(502), "server error HTTP 502"),
        (Fault::NotJson, "not a valid token response (not JSON)"),
        (Fault::MissingAccessToken, "not a valid token response"),
        (Fault::Huge, "larger than 256 KiB"),
        (Fault::Slow(Duration::from_secs(3)), "no answer from"),
        (Fault::Reset, "broke before the answer came"),
        // A redirect is never followed: the form carries the client secret.
        (Fault::Status(302), "unexpected HTTP 302"),
    ] {
        let token_before = stdout(&env.run(&["token", "p"]));
        let calls = server.token_requests();
        server.fail_next(fault, 10);
        let out = env.run(&["refresh", "p"]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{fault:?}");
        assert!(err.contains(needle), "{fault:?}: {err}");
        let attempts = server.token_requests() - calls;
        assert!(
            (1..=3).contains(&attempts),
            "{fault:?}: {attempts} attempts"
        );
        // A refresh token whose answer may have been lost is never sent twice: with strict
        // rotation a second use revokes the whole grant.
        if matches!(fault, Fault::Slow(_) | Fault::Reset) {
            assert_eq!(attempts, 1, "{fault:?} was retried");
        }
        server.fail_next(fault, 0);
        assert_eq!(stdout(&env.run(&["token", "p"])), token_before, "{fault:?}");
    }
}

#[test]
fn refresh_all_runs_fifty_profiles_concurrently_and_saves_each() {
    let env = Env::new();
    let server = MockServer::start();
    for i in 0..50 {
        env.authorized_profile(&format!("p{i:02}"), &server, &[]);
    }
    let before = server.refresh_requests();
    let out = env.run(&["refresh", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests() - before, 50);
    assert_eq!(stderr(&out).matches(": refreshed").count(), 50);
    // Every stored refresh token is the live one the server issued last.
    let text = env.vault_text();
    let live: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("refresh_token = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .collect();
    assert_eq!(live.len(), 50);
    assert!(live.iter().all(|t| server.is_refresh_token_valid(t)));
    // Only those ending soon: nothing to do now.
    let out = env.run(&["refresh", "--all", "--if-expiring-within", "10m"]);
    assert_eq!(stderr(&out).matches("not refreshed").count(), 50);
    assert_eq!(server.refresh_requests() - before, 50);
}

#[test]
fn a_reported_refresh_is_on_disk_before_the_command_returns() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    for _ in 0..5 {
        let out = env.run(&["refresh", "p"]);
        assert!(out.status.success());
        // Read the file with the age CLI, not through tokdeck.
        let newest = server.last_refresh_token().unwrap();
        assert!(env.vault_text().contains(&newest));
    }
}

fn listen_profile(env: &Env, server: &MockServer) -> u16 {
    env.add_loopback_profile("web", server, &[])
}

/// A GET that follows no redirect: (status, Location or body).
fn get_once(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = client.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        match r.headers().get("location") {
            Some(location) => (status, location.to_str().unwrap().to_string()),
            None => (status, r.text().await.unwrap()),
        }
    })
}

/// Where the server redirects the authorize URL to: (status, Location).
fn browse_location(authorize_url: &str) -> (u16, String) {
    get_once(authorize_url)
}

/// Acts as the browser: follows the authorize URL to the redirect (through `rewrite`) and
/// returns what the redirect target answered.
fn browse(authorize_url: &str, rewrite: impl Fn(&str) -> String) -> (u16, String) {
    let (_, location) = get_once(authorize_url);
    get_once(&rewrite(&location))
}

#[test]
fn authorize_listen_catches_the_redirect_and_rejects_a_wrong_state() {
    let env = Env::new();
    let server = MockServer::start();
    let port = listen_profile(&env, &server);
    let mut child = env
        .command(&[
            "authorize",
            "web",
            "--listen",
            "--no-browser",
            "--timeout",
            "20s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = lines.next().unwrap().unwrap();
    assert!(
        url.contains("/oauth/authorize?client_id=test-client"),
        "{url}"
    );
    assert!(url.contains(&format!("127.0.0.1%3A{port}")), "{url}");

    // Junk on another path, then a forged state: both refused, the listener keeps going.
    let (status, _) = browse(&url, |loc| loc.replace("/callback", "/other"));
    assert_eq!(status, 404);
    let (status, body) = browse(&url, |loc| {
        let (base, _) = loc.split_once("&state=").unwrap();
        format!("{base}&state=forged")
    });
    assert_eq!(status, 400);
    assert!(body.contains("Rejected"));
    let (status, body) = browse(&url, |loc| loc.to_string());
    assert_eq!(status, 200);
    assert!(body.contains("close this tab"));

    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("wrong or missing state"), "{err}");
    assert!(err.contains("authorized"), "{err}");
    // Exactly one code was exchanged.
    assert!(
        env.vault_text()
            .contains(&server.last_access_token().unwrap())
    );
    assert!(!env.vault_text().contains("[profile.pending]"));
    // The listener is gone.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn authorize_listen_times_out_cleanly() {
    let env = Env::new();
    let server = MockServer::start();
    listen_profile(&env, &server);
    let before = env.vault_bytes();
    let out = env.run(&[
        "authorize",
        "web",
        "--listen",
        "--no-browser",
        "--timeout",
        "1s",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no redirect arrived within 1s"),
        "{}",
        stderr(&out)
    );
    // The pending state was saved (so a later paste can be checked), the rest kept.
    assert_ne!(env.vault_bytes(), before);
    assert!(env.vault_text().contains("[profile.pending]"));
}

#[test]
fn authorize_without_listen_prints_the_url_and_exchange_checks_its_state() {
    let env = Env::new();
    let server = MockServer::start();
    // A redirect URI tokdeck does not listen on: the person copies the URL the browser
    // ended on, which carries the state.
    env.add_profile_redirecting(
        "p",
        &server,
        "http://127.0.0.1:9/cb",
        &["--owner", "company", "--pkce"],
    );
    let out = env.run(&["authorize", "p", "--no-browser"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let url = stdout(&out).trim().to_string();
    assert!(url.contains("resource_owner_type=company"));
    assert!(url.contains("code_challenge_method=S256"));
    assert!(stderr(&out).contains("tokdeck exchange p"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let location = rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = client.get(&url).send().await.unwrap();
        r.headers()["location"].to_str().unwrap().to_string()
    });
    let forged = format!("{}&state=nope", location.split("&state=").next().unwrap());
    let bad = env.run(&["exchange", "p", &forged]);
    assert_one_line_error(&bad, "state does not match");
    let good = env.run(&["exchange", "p", &location]);
    assert!(good.status.success(), "{}", stderr(&good));
    assert!(stderr(&good).contains("does not expire"));
}

#[test]
fn the_out_of_band_page_is_pasted_whole_without_state() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("p", &server, &[]);
    let out = env.run(&["authorize", "p", "--no-browser"]);
    let (_, landing) = browse_location(stdout(&out).trim());
    assert!(
        landing.contains("/oauth/authorize/native?code="),
        "{landing}"
    );
    let out = env.run(&["exchange", "p", &landing]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn listen_needs_a_loopback_redirect() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("p", &server, &[]);
    let out = env.run(&["authorize", "p", "--listen"]);
    assert_one_line_error(&out, "--listen needs a loopback redirect URI");
}

#[test]
fn proxies_never_see_requests_to_loopback() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    // A proxy that would see every request in clear text, were it used.
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let address = format!("http://{}", proxy.local_addr().unwrap());
    let out = env
        .command(&["refresh", "p"])
        .env("HTTP_PROXY", &address)
        .env("http_proxy", &address)
        .env("HTTPS_PROXY", &address)
        .env("ALL_PROXY", &address)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 1);
    assert!(
        proxy.accept().is_err(),
        "a request to a loopback server went through the proxy"
    );
}

#[test]
fn exchange_refuses_over_long_stdin_and_keeps_the_profile_as_it_was() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let before = env.stored("p", "access_token");
    let code = server.issue_code(false, "urn:ietf:wg:oauth:2.0:oob");
    // A real code, padded past the limit: it must not be cut to a shorter "code" and sent.
    let input = format!("{code}{}", " ".repeat(17 * 1024));
    let out = env.run_with_stdin(&["exchange", "p", "-"], &input);
    assert_one_line_error(&out, "longer than 16 KiB");
    assert_eq!(server.token_requests(), 1, "the cut input was sent");
    assert_eq!(env.stored("p", "access_token"), before);
}

#[test]
fn import_token_keeps_a_token_from_elsewhere_and_refreshes_it_later() {
    let env = Env::new();
    let server = MockServer::start();
    env.add_profile("p", &server, &[]);
    let before = env.vault_bytes();
    // What a server would refuse, tokdeck refuses too, and writes nothing.
    for (input, why) in [
        ("not json", "not a token answer"),
        (r#"{"token_type":"Bearer"}"#, "not a token answer"),
        (
            r#"{"access_token":"a\u001b[2Jb"}"#,
            "characters no token can have",
        ),
        (
            r#"{"access_token":"a","expires_in":"soon"}"#,
            "not a token answer",
        ),
        (
            r#"{"access_token":"a","expires_in":-5}"#,
            "expires_in is negative (-5)",
        ),
    ] {
        let out = env.run_with_stdin(&["import-token", "p"], input);
        assert_one_line_error(&out, why);
    }
    let out = env.run_with_stdin(
        &["import-token", "p", "--obtained-at", "yesterday"],
        r#"{"access_token":"a"}"#,
    );
    assert_one_line_error(&out, "is not a time");
    let out = env.run_with_stdin(
        &["import-token", "p", "--obtained-at", "2999-01-01T00:00:00Z"],
        r#"{"access_token":"a"}"#,
    );
    assert_one_line_error(&out, "in the future");
    let out = env.run_with_stdin(&["import-token", "nobody"], r#"{"access_token":"a"}"#);
    assert_one_line_error(&out, "no profile named 'nobody'");
    assert_eq!(
        env.vault_bytes(),
        before,
        "a refused import wrote the vault"
    );

    // A token with a refresh token the server knows, from a file, obtained a while ago.
    let seed = server.seed_refresh_token();
    let answer = env.home().join("answer.json");
    let json = format!(
        r#"{{"access_token":"imported-token","token_type":"Bearer","expires_in":"3600","refresh_token":"{seed}"}}"#
    );
    std::fs::write(&answer, json).unwrap();
    let obtained = (chrono::Utc::now() - chrono::Duration::minutes(58))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = env.run(&[
        "import-token",
        "p",
        "--file",
        answer.to_str().unwrap(),
        "--obtained-at",
        &obtained,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refreshes it from now on"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.stored("p", "access_token"), "imported-token");
    assert_eq!(env.stored("p", "obtained_at"), obtained);
    // Two minutes left, inside the refresh margin: the next token is a refreshed one.
    let out = env.run(&["token", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(server.refresh_requests(), 1);
    assert_eq!(Some(stdout(&out)), server.last_access_token());
    assert_ne!(stdout(&out), "imported-token");

    // An answer without a refresh token is a grant of its own: the one stored before is not
    // kept with it, and nothing promises a refresh.
    let out = env.run_with_stdin(
        &["import-token", "p"],
        r#"{"access_token":"no-refresh","expires_in":600}"#,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no refresh token: authorize again when it expires"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.stored("p", "refresh_token"), "");
}

/// A mistake in one profile (a string left open by a hand edit) does not stop `token` of
/// another, and the whole-file error names the line and what to do.
#[test]
fn a_string_left_open_in_one_profile_leaves_the_others_usable() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("loop", &server, &[]);
    env.add_profile("other", &server, &[]);
    let text = env.vault_text();
    let other = text.find("name = \"other\"").unwrap();
    let field = format!("client_id = \"{}\"", common::CLIENT_ID);
    let at = other + text[other..].find(&field).unwrap();
    let broken = format!(
        "{}client_id = \"x{}",
        &text[..at],
        &text[at + field.len()..]
    );
    env.write_vault_text(&broken);
    let out = env.run(&["token", "loop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), env.stored("loop", "access_token"));
    let out = env.run(&["token", "other"]);
    assert_one_line_error(&out, "fix it by hand (age -d, edit, age -e)");
    let said = stderr(&out);
    assert!(said.contains("line "), "{said}");
    assert!(!said.contains("or no backup exists"), "{said}");
}

#[test]
fn revoke_says_when_the_server_still_accepts_the_access_token() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    server.set_lazy_access_revocation(true);
    let out = env.run(&["revoke", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("but the server still accepts the access token until it expires at"),
        "{said}"
    );
    assert!(!said.contains("verified:"), "{said}");
}

#[test]
fn every_action_leaves_an_audit_line_with_fingerprints_and_no_secret() {
    let env = Env::new();
    let server = MockServer::start();
    env.authorized_profile("p", &server, &[]);
    let old_rt = env.stored("p", "refresh_token");
    assert!(env.run(&["refresh", "p"]).status.success());
    let new_rt = env.stored("p", "refresh_token");
    server.fail_next(Fault::Status(400), 1);
    assert!(!env.run(&["refresh", "p"]).status.success());
    let print = tokdeck::audit::fingerprint;
    let out = env.run(&["audit", "p"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[0].contains("cli p refresh failed"), "{}", lines[0]);
    assert!(
        lines[1].contains("cli p refresh ok")
            && lines[1].contains(&format!("RT {}.. -> {}..", print(&old_rt), print(&new_rt))),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("p exchange ok"), "{}", lines[2]);
    // The file holds fingerprints only, and is private.
    let file = env.home().join("state/tokdeck/audit.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    for secret in [old_rt.as_str(), new_rt.as_str(), common::CLIENT_SECRET] {
        assert!(!text.contains(secret), "the audit log holds a secret");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let json = stdout(&env.run(&["audit", "--json", "--since", "1h"]));
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["result"], "failed");
    assert_eq!(first["who"], "cli");
}
