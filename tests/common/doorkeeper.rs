//! A real Doorkeeper 5.5 server (tests/fixtures/doorkeeper/server.rb) on a free loopback port,
//! with its own temporary database; stopped when dropped.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            rotation: Rotation::Previous,
            ttl: 7200,
            threads: 4,
            tls: false,
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
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/doorkeeper/server.rb")
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
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
        self.server.dir.path().join("cert.pem")
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
        let url = url::Url::parse(authorize_url).unwrap();
        let target = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        let reply = http(self.port, "GET", &target, None).expect("the fixture answers");
        assert_eq!(reply.status, 302, "no redirect: {}", reply.body);
        reply.location.expect("a Location header")
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

/// A fixture server process with its port and folder; killed when dropped.
pub struct Fixture {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fixture {
    /// A file from its folder ("" when missing), for failure messages.
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

/// Starts a fixture server (`command` for a port and a fresh folder; its stderr goes to
/// `stderr.txt` there) and waits until `GET /health` answers 200; a port taken meanwhile is
/// retried.
pub fn start_fixture(name: &str, command: impl Fn(u16, &std::path::Path) -> Command) -> Fixture {
    let mut last_log = String::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let stderr = std::fs::File::create(dir.path().join("stderr.txt")).unwrap();
        let mut child = command(port, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                last_log =
                    std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
                break;
            }
            if http(port, "GET", "/health", None).is_some_and(|r| r.status == 200) {
                return Fixture { child, port, dir };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the {name} fixture did not start within 90 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("the {name} fixture would not start: {last_log}");
}

/// Registers an OAuth app through a fixture's test-only `POST /test/applications` (a form);
/// its JSON answer.
pub fn register_app(port: u16, form: &str) -> serde_json::Value {
    let reply = http(port, "POST", "/test/applications", Some(form)).expect("the fixture answers");
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// Opens a redirect `callback` (path and query) on the loopback listener at `port`, as the
/// browser would.
pub fn deliver(port: u16, callback: &str) -> Option<Reply> {
    let target = url::Url::parse(callback).ok()?;
    let path = format!("{}?{}", target.path(), target.query().unwrap_or_default());
    http(port, "GET", &path, None)
}

/// A one-shot HTTP/1.1 request on loopback.
pub fn http(port: u16, method: &str, target: &str, form: Option<&str>) -> Option<Reply> {
    http_with(port, method, target, form, &[])
}

pub fn http_with(
    port: u16,
    method: &str,
    target: &str,
    form: Option<&str>,
    headers: &[(&str, &str)],
) -> Option<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let body = form.unwrap_or_default();
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if form.is_some() {
        request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .map(str::to_string);
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Some(Reply {
        status,
        location,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
