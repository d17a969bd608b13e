//! A real Doorkeeper 5.5 server (tests/fixtures/doorkeeper/server.rb) on a free loopback port,
//! with its own temporary database; stopped when dropped.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::fixture::{Fixture, approve, free_port, http, http_with, register_app, start_fixture};

/// What the test needs from Debian to run the fixture.
const INSTALL: &str = "apt-get install -y ruby-doorkeeper ruby-rails ruby-sqlite3 puma";

/// How the server retires a refresh token when it issues a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The generator's default (`previous_refresh_token` column): the old one keeps working
    /// until the new access token is first used.
    Previous,
    /// No such column: the old one dies at once.
    Immediate,
}

/// Server settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub rotation: Rotation,
    /// Access token lifetime in seconds.
    pub ttl: u64,
    /// Puma threads.
    pub threads: u32,
    /// Also serve HTTPS, with a self-signed certificate (see [`Doorkeeper::tls_base_url`]).
    pub tls: bool,
    /// Company tokens (which never expire) come with a refresh token too.
    pub company_refresh: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rotation: Rotation::Previous,
            ttl: 7200,
            threads: 4,
            tls: false,
            company_refresh: false,
        }
    }
}

/// A running server.
pub struct Doorkeeper {
    server: Fixture,
    pub port: u16,
    /// The HTTPS port, when started with `tls`.
    pub tls_port: Option<u16>,
}

/// An OAuth app registered on the server.
#[derive(Debug, Clone)]
pub struct App {
    pub uid: String,
    pub secret: String,
    pub redirect_uri: String,
}

fn script() -> PathBuf {
    crate::fixtures_dir().join("doorkeeper/server.rb")
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (key.pem, cert.pem).
fn write_certificate(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
            .unwrap();
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    std::fs::write(&cert, made.cert.pem()).unwrap();
    (key, cert)
}

impl Doorkeeper {
    /// Starts a server with default options.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    /// Starts a server and waits until it answers; a port taken meanwhile is retried.
    pub fn start_with(options: Options) -> Self {
        let ruby = Command::new("ruby")
            .args([
                "-e",
                "require 'rails'; require 'doorkeeper'; require 'sqlite3'; require 'puma'",
            ])
            .output();
        assert!(
            ruby.is_ok_and(|o| o.status.success()),
            "these tests run a real Doorkeeper server, whose packages are missing: {INSTALL}"
        );
        let tls_port = std::cell::Cell::new(None);
        let server = start_fixture("Doorkeeper", |port, dir| {
            let mut command = Command::new("ruby");
            if options.tls {
                let (key, cert) = write_certificate(dir);
                let port = free_port();
                tls_port.set(Some(port));
                command.env(
                    "DOORKEEPER_TLS",
                    format!("{port},{},{}", key.display(), cert.display()),
                );
            }
            command
                .arg(script())
                .env("DOORKEEPER_PORT", port.to_string())
                .env("DOORKEEPER_DB", dir.join("db.sqlite3"))
                .env(
                    "DOORKEEPER_ROTATION",
                    match options.rotation {
                        Rotation::Previous => "previous",
                        Rotation::Immediate => "immediate",
                    },
                )
                .env("DOORKEEPER_TTL", options.ttl.to_string())
                .env(
                    "DOORKEEPER_COMPANY_REFRESH",
                    if options.company_refresh { "1" } else { "0" },
                )
                .env("DOORKEEPER_THREADS", options.threads.to_string())
                .env("DOORKEEPER_LOG", dir.join("rails.log"));
            command
        });
        Self {
            port: server.port,
            tls_port: tls_port.get(),
            server,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The same server over HTTPS (started with `tls`).
    pub fn tls_base_url(&self) -> String {
        format!(
            "https://127.0.0.1:{}",
            self.tls_port.expect("started with tls")
        )
    }

    /// The self-signed certificate of the HTTPS port, in PEM: the CA to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.server.dir().join("cert.pem")
    }

    /// Registers a confidential OAuth app for `redirect_uri`.
    pub fn register(&self, redirect_uri: &str) -> App {
        let form = format!(
            "redirect_uri={}&scopes=read+write",
            url::form_urlencoded::byte_serialize(redirect_uri.as_bytes()).collect::<String>()
        );
        let v = register_app(self.port, &form);
        App {
            uid: v["uid"].as_str().unwrap().to_string(),
            secret: v["secret"].as_str().unwrap().to_string(),
            redirect_uri: redirect_uri.to_string(),
        }
    }

    /// Opens `authorize_url` as a browser would (the owner approves at once) and returns where
    /// the server redirects: the callback URL, or its out-of-band page.
    pub fn approve(&self, authorize_url: &str) -> String {
        approve(self.port, authorize_url)
    }

    /// A token request straight to the server, bypassing tokdeck: (status, JSON body).
    pub fn token_request(&self, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let reply = http(self.port, "POST", "/oauth/token", Some(&body)).unwrap();
        (
            reply.status,
            serde_json::from_str(&reply.body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Whether the credentials endpoint accepts `access_token` (this counts as its first use).
    /// A 5xx is no verdict: SQLite under concurrent writes answers 500 ("database is
    /// locked") and rolls back, so the question is asked again.
    pub fn token_works(&self, access_token: &str) -> bool {
        let bearer = format!("Bearer {access_token}");
        for _ in 0..20 {
            let reply = http_with(
                self.port,
                "GET",
                "/api/2025-04-01/resources/api_public/credentials",
                None,
                &[("Authorization", &bearer)],
            );
            match reply {
                Some(r) if r.status >= 500 => std::thread::sleep(Duration::from_millis(200)),
                other => return other.is_some_and(|r| r.status == 200),
            }
        }
        false
    }

    /// Rails' log, for failure messages.
    pub fn log(&self) -> String {
        self.server.file("rails.log")
    }
}
