//! A real django-oauth-toolkit server (tests/fixtures/dot/server.py) on a free loopback port,
//! with its own temporary database; stopped when dropped. Its defaults stand: PKCE required,
//! refresh tokens rotated; it adds strict reuse protection, RFC 9207 `iss`, OpenID Connect,
//! introspection and the device grant.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use super::fixture::{Fixture, Reply, approve, http, register_app, start_fixture};

/// What the fixture needs.
const INSTALL: &str = "pip install -r tests/fixtures/dot/requirements.txt";

/// A running server.
pub struct Dot {
    server: Fixture,
    pub port: u16,
}

/// An app registered on the server.
#[derive(Debug, Clone)]
pub struct App {
    pub client_id: String,
    pub secret: String,
}

fn python() -> String {
    std::env::var("TOKDECK_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn script() -> PathBuf {
    crate::fixtures_dir().join("dot/server.py")
}

/// How the server answers a refresh (`DOT_REFRESH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// A new refresh token each time; the old one revoked, a second use revokes the grant.
    Rotate,
    /// `ROTATE_REFRESH_TOKEN = False`: the same refresh token handed back.
    Keep,
    /// No refresh token in the answer at all: keep the one you have.
    Omit,
}

/// Server settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub refresh: Refresh,
    /// Access token lifetime in seconds.
    pub ttl: u64,
    /// `offline_access` only with `prompt=consent` (OpenID Connect Core 11, read strictly).
    pub strict_offline: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            refresh: Refresh::Rotate,
            ttl: 3600,
            strict_offline: false,
        }
    }
}

impl Dot {
    /// Starts a server with its defaults and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts a server with `options` and waits until it answers; a port taken meanwhile is
    /// retried.
    pub fn start_with(options: Options) -> Self {
        let ready = Command::new(python())
            .args(["-c", "import oauth2_provider, jwcrypto"])
            .output();
        assert!(
            ready.is_ok_and(|o| o.status.success()),
            "these tests run a real django-oauth-toolkit server, whose packages are missing: {INSTALL}"
        );
        let server = start_fixture("django-oauth-toolkit", |port, dir| {
            let mut command = Command::new(python());
            command
                .arg(script())
                .env("DOT_PORT", port.to_string())
                .env("DOT_DB", dir.join("db.sqlite3"))
                .env("DOT_TTL", options.ttl.to_string())
                .env(
                    "DOT_REFRESH",
                    match options.refresh {
                        Refresh::Rotate => "rotate",
                        Refresh::Keep => "keep",
                        Refresh::Omit => "omit",
                    },
                )
                .env(
                    "DOT_STRICT_OFFLINE",
                    if options.strict_offline { "1" } else { "0" },
                );
            command
        });
        Self {
            port: server.port,
            server,
        }
    }

    /// The issuer its metadata names.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}/o", self.port)
    }

    /// An endpoint under the issuer, e.g. `token/`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.issuer())
    }

    /// Registers an app: `client_type` confidential or public; `grant` authorization-code,
    /// client-credentials or device.
    pub fn register(&self, client_type: &str, grant: &str, redirect_uri: &str) -> App {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_type", client_type),
                ("grant", grant),
                ("redirect_uri", redirect_uri),
            ])
            .finish();
        let v = register_app(self.port, &form);
        App {
            client_id: v["client_id"].as_str().unwrap().to_string(),
            secret: v["client_secret"].as_str().unwrap().to_string(),
        }
    }

    /// Opens `authorize_url` as alice's browser would (the app skips the consent page) and
    /// returns where the server redirects.
    pub fn approve(&self, authorize_url: &str) -> String {
        approve(self.port, authorize_url)
    }

    /// Enters `user_code` on the server's device page and approves (or denies) it on the
    /// confirmation page that follows, as alice would.
    pub fn answer_device(&self, user_code: &str, approve: bool) {
        let form = format!("user_code={user_code}");
        let entered = self.post("/o/device/", &form);
        assert_eq!(
            entered.status, 302,
            "the device page refused the code: {}",
            entered.body
        );
        let confirm = entered.location.expect("a confirmation page");
        let confirm = url::Url::parse(&format!("http://127.0.0.1:{}", self.port))
            .unwrap()
            .join(&confirm)
            .unwrap();
        let action = if approve { "accept" } else { "deny" };
        let answered = self.post(confirm.path(), &format!("action={action}"));
        assert!(
            (200..400).contains(&answered.status),
            "the confirmation page: {} {}",
            answered.status,
            answered.body
        );
    }

    fn post(&self, path: &str, form: &str) -> Reply {
        http(self.port, "POST", path, Some(form)).expect("the fixture answers")
    }

    /// The server's stderr, for failure messages.
    pub fn log(&self) -> String {
        self.server.file("stderr.txt")
    }
}
