//! Servers unlike the ones that rotate on every refresh: one that hands back the same refresh
//! token (django-oauth-toolkit with `ROTATE_REFRESH_TOKEN = False`), one that answers a refresh
//! with no refresh token at all (keep the one you have), a strict OpenID Connect server that
//! gives no refresh token without `prompt=consent`, and company tokens that never expire but
//! come with a refresh token (Doorkeeper's default).

// Tests fail loudly on purpose, and are held to correctness rather than pedantic style.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::doorkeeper::{self, Doorkeeper};
use common::dot::{Dot, Options, Refresh};
use common::fixture::http_with;
use common::running::Agent;
use common::{Env, stderr, stdout};

/// Whether the server takes `token` (userinfo, which the `openid` scope opens).
fn works(server: &Dot, token: &str) -> bool {
    http_with(
        server.port,
        "GET",
        "/o/userinfo/",
        None,
        &[("Authorization", &format!("Bearer {token}"))],
    )
    .is_some_and(|r| r.status == 200)
}

/// One server that keeps its refresh token and one that sends none back, each kept alive by
/// an agent for 24 s with 6-second tokens: the refresh token never changes, the agent
/// refreshes every few seconds, and the stored access token works in every sample (the agent
/// used to refuse the second refresh, taking the same refresh token for a spent one).
#[test]
fn the_agent_keeps_tokens_alive_on_servers_that_do_not_rotate() {
    struct Case {
        server: Dot,
        env: Env,
        refresh_token: String,
        seen: HashSet<String>,
        dead: Vec<usize>,
    }
    let cases: Vec<Case> = [Refresh::Keep, Refresh::Omit]
        .into_iter()
        .map(|refresh| {
            let server = Dot::start_with(Options {
                refresh,
                ttl: 6,
                ..Options::default()
            });
            let env = Env::new();
            env.authorize_on_dot(&server, "p", "read openid", &["--auto-refresh"]);
            let refresh_token = env.stored("p", "refresh_token");
            assert!(!refresh_token.is_empty());
            Case {
                server,
                env,
                refresh_token,
                seen: HashSet::new(),
                dead: Vec::new(),
            }
        })
        .collect();
    /// Whether a token other than `dead` is stored within a second, and works.
    fn successor_works(case: &Case, dead: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            let now = case.env.stored("p", "access_token");
            if now != dead {
                return works(&case.server, &now);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
    let agents: Vec<Agent> = cases.iter().map(|c| Agent::start(&c.env, &[])).collect();
    // Sampling starts once each agent has renewed its token (a slow setup may have let the
    // first one lapse before its agent started).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !agents.iter().all(|a| a.said().contains("new token saved")) {
        assert!(Instant::now() < deadline, "no agent refreshed within 15 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut cases = cases;
    let end = Instant::now() + Duration::from_secs(24);
    let mut samples = 0;
    while Instant::now() < end {
        samples += 1;
        for case in &mut cases {
            let token = case.env.stored("p", "access_token");
            // The server retires the old access token the moment it answers a refresh, a few
            // milliseconds before the agent's save lands: a failed check counts as dead only
            // when no working successor is stored within a second.
            if !works(&case.server, &token) && !successor_works(case, &token) {
                case.dead.push(samples);
            }
            case.seen.insert(token);
            assert_eq!(case.env.stored("p", "refresh_token"), case.refresh_token);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for ((case, agent), kind) in cases.iter().zip(&agents).zip(["keep", "omit"]) {
        let said = agent.said();
        assert!(
            case.dead.is_empty(),
            "{kind}: dead in samples {:?} of {samples}\n{said}",
            case.dead
        );
        // 6-second tokens are renewed half-way: about eight times in 24 s.
        assert!(
            case.seen.len() >= 6,
            "{kind}: only {} access tokens in 24 s\n{said}",
            case.seen.len()
        );
        assert!(!said.contains("used already"), "{kind}: {said}");
        let status = case.env.run(&["status"]);
        assert!(status.status.success(), "{kind}: {}", stdout(&status));
    }
}

/// The app's auto-refresh runs through the same worker: against the server that keeps its
/// refresh token, the real event loop renews a 6-second token again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_keeps_refreshing_a_token_the_server_does_not_rotate() {
    use tokdeck::tui::runtime::Host;

    struct Nowhere;
    impl Host for Nowhere {
        fn clipboard(&mut self, _osc52: &str) {}
        fn open_browser(&mut self, _url: &str) {}
        fn suspend(&mut self) -> anyhow::Result<()> {
            Ok(())
        }
    }

    let server = Dot::start_with(Options {
        refresh: Refresh::Keep,
        ttl: 6,
        ..Options::default()
    });
    let env = Env::new();
    let setup = tokio::task::block_in_place(|| {
        env.authorize_on_dot(&server, "p", "read openid", &["--auto-refresh"]);
        env.stored("p", "refresh_token")
    });
    let app = common::app::start(&env, Nowhere);
    let mut seen = HashSet::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(25);
    while tokio::time::Instant::now() < end {
        let (token, refresh) = tokio::task::block_in_place(|| {
            (
                env.stored("p", "access_token"),
                env.stored("p", "refresh_token"),
            )
        });
        assert_eq!(refresh, setup, "the refresh token changed");
        seen.insert(token);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let runtime = app.quit().await;
    let screen = runtime.terminal.backend().to_string();
    // The app renews a profile at most every 10 s: two refreshes or more in 25 s (it used to
    // refuse the second one).
    assert!(
        seen.len() >= 3,
        "only {} access tokens in 25 s:\n{screen}",
        seen.len()
    );
    assert!(!tokio::task::block_in_place(|| env.vault_text()).contains("last_error"));
    assert!(!screen.contains("used already"), "{screen}");
    let last = tokio::task::block_in_place(|| env.stored("p", "access_token"));
    assert!(tokio::task::block_in_place(|| works(&server, &last)));
}

/// A strict OpenID Connect server grants `offline_access` only with `prompt=consent`, which
/// tokdeck sends; a profile that asks for another prompt gets no refresh token, and is told
/// it needs a new login by the time the token ends.
#[test]
fn strict_offline_access_gets_a_refresh_token_with_prompt_consent() {
    let server = Dot::start_with(Options {
        strict_offline: true,
        ttl: 60,
        ..Options::default()
    });
    let env = Env::new();
    env.authorize_on_dot(&server, "offline", "read openid offline_access", &[]);
    assert!(!env.stored("offline", "refresh_token").is_empty());
    let out = env.run(&["refresh", "offline"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let said = env.authorize_on_dot(
        &server,
        "login",
        "read openid offline_access",
        &["--authorize-param", "prompt=select_account"],
    );
    assert!(env.stored("login", "refresh_token").is_empty());
    assert!(
        said.contains("the server issued no refresh token")
            && said.contains("`tokdeck authorize login` is needed again"),
        "{said}"
    );
    // The parameter is the profile's: shown in the vault, removed with KEY=.
    assert!(env.vault_text().contains("prompt = \"select_account\""));
    let out = env.run(&["edit", "login", "--authorize-param", "prompt="]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!env.vault_text().contains("prompt = \"select_account\""));
    // Parameters tokdeck sets itself cannot be given.
    let out = env.run(&["edit", "login", "--authorize-param", "state=x"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("tokdeck sets state itself"),
        "{}",
        stderr(&out)
    );
}

/// Doorkeeper's default gives company tokens (which never expire) a refresh token. Past the
/// local refresh window the token is still `ok` with no refresh deadline; `refresh NAME`,
/// `refresh --all` and the agent leave it alone (rotating it would revoke the copy a service
/// holds), and `refresh NAME --force` renews it.
#[test]
fn company_tokens_that_never_expire_are_not_rotated_unasked() {
    let server = Doorkeeper::start_with(doorkeeper::Options {
        company_refresh: true,
        ..doorkeeper::Options::default()
    });
    let env = Env::new();
    let app = server.register("urn:ietf:wg:oauth:2.0:oob");
    env.doorkeeper_profile(
        &server,
        &app,
        "co",
        &["--owner", "company", "--scope", "read", "--auto-refresh"],
    );
    let refresh_token = env.stored("co", "refresh_token");
    let access_token = env.stored("co", "access_token");
    assert!(!refresh_token.is_empty(), "{}", env.vault_text());
    // The local window ended a day ago.
    let text = env.vault_text();
    let window = text
        .lines()
        .find(|l| l.starts_with("refresh_expires_at = "))
        .expect("a refresh window")
        .to_string();
    env.write_vault_text(&text.replace(&window, "refresh_expires_at = \"2020-01-01T00:00:00Z\""));
    let out = env.run(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}\n{window}",
        stdout(&out),
        stderr(&out)
    );
    let row = stdout(&out)
        .lines()
        .find(|l| l.starts_with("co "))
        .unwrap()
        .to_string();
    assert!(row.contains(" ok") && row.contains("never"), "{row}");

    let out = env.run(&["refresh", "co"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--force renews it"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["refresh", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("co: skipped"), "{}", stderr(&out));
    {
        let _agent = Agent::start(&env, &[]);
        std::thread::sleep(Duration::from_secs(3));
    }
    assert_eq!(env.stored("co", "refresh_token"), refresh_token);
    assert!(server.token_works(&access_token));

    let out = env.run(&["refresh", "co", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(env.stored("co", "refresh_token"), refresh_token);
}
