//! A mock OAuth server on loopback that behaves like Doorkeeper: single-use codes, refresh
//! token rotation, company tokens without expiry, revoke, a Bearer-checked credentials
//! endpoint, and injectable faults.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret-5f1c";

/// A fault applied to token-endpoint requests while `remaining` > 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    Slow(Duration),
    Status(u16),
    RateLimited {
        retry_after: u64,
    },
    NotJson,
    MissingAccessToken,
    Reset,
    Huge,
    /// 400 with escape sequences in `error` and `error_description`.
    HostileError,
    /// A valid token whose `scope` and `token_type` carry escape sequences.
    HostileToken,
    /// 500 with an HTML body full of escape sequences.
    HostileHtml,
}

/// What a hostile server puts in its text: an OSC 52 clipboard write, a screen clear, colour.
pub const HOSTILE: &str = "\u{1b}]52;c;aGFja2Vk\u{7}\u{1b}[2J\u{1b}[31mPWNED\u{1b}[0m\u{9b}2J";

#[derive(Debug, Clone)]
struct Grant {
    company: bool,
    redirect_uri: String,
}

#[derive(Default)]
pub struct State {
    codes: HashMap<String, Grant>,
    used_codes: HashSet<String>,
    refresh_tokens: HashMap<String, Grant>,
    access_tokens: HashSet<String>,
    fault: Option<(Fault, u32)>,
    counter: u64,
    /// Every request path seen, in order.
    pub requests: Vec<String>,
    pub token_requests: u32,
    pub refresh_requests: u32,
    pub last_access_token: Option<String>,
    pub last_refresh_token: Option<String>,
    pub revoked: Vec<String>,
    pub expires_in: i64,
    /// Added to every token-endpoint answer, to model a real network's round trip.
    pub latency: Duration,
    /// Doorkeeper's lenient rotation: the old refresh token dies only when the new access
    /// token is first used, not at the refresh itself.
    pub revoke_on_first_use: bool,
    /// The credentials endpoint answers with escape sequences in the owner's e-mail.
    pub hostile_credentials: bool,
    /// Revoking an access token is acknowledged but does nothing (it works until it expires).
    pub lazy_access_revocation: bool,
    /// new access token -> the refresh token it replaced, while that one is still alive.
    pending_revocations: HashMap<String, String>,
}

impl State {
    /// Forgets a refresh token, as if another client had used (rotated) it.
    /// The access token stops working, as if it had expired at the server.
    pub fn revoke_access_for_test(&mut self, token: &str) {
        self.access_tokens.remove(token);
    }

    pub fn refresh_tokens_clear_for_test(&mut self, token: &str) {
        self.refresh_tokens.remove(token);
    }
}

/// A running mock server; it stops with the test process.
#[derive(Clone)]
pub struct MockServer {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl MockServer {
    /// Starts the server on its own thread and runtime.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            expires_in: 7200,
            ..State::default()
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let state = shared.clone();
                    tokio::spawn(async move { handle(stream, state).await });
                }
            });
        });
        let addr = rx.recv().unwrap();
        Self { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A fresh single-use code, as if a user approved in the browser.
    pub fn issue_code(&self, company: bool, redirect_uri: &str) -> String {
        let mut s = self.state.lock().unwrap();
        s.counter += 1;
        let code = format!("code-{}", s.counter);
        s.codes.insert(
            code.clone(),
            Grant {
                company,
                redirect_uri: redirect_uri.into(),
            },
        );
        code
    }

    /// A live refresh token, as if a user had authorized earlier.
    pub fn seed_refresh_token(&self) -> String {
        let mut s = self.state.lock().unwrap();
        s.counter += 1;
        let token = format!("refresh-seed-{}", s.counter);
        s.refresh_tokens.insert(
            token.clone(),
            Grant {
                company: false,
                redirect_uri: String::new(),
            },
        );
        token
    }

    /// Applies `fault` to the next `times` token-endpoint requests.
    pub fn fail_next(&self, fault: Fault, times: u32) {
        self.state.lock().unwrap().fault = Some((fault, times));
    }

    pub fn token_requests(&self) -> u32 {
        self.state.lock().unwrap().token_requests
    }

    pub fn refresh_requests(&self) -> u32 {
        self.state.lock().unwrap().refresh_requests
    }

    pub fn last_access_token(&self) -> Option<String> {
        self.state.lock().unwrap().last_access_token.clone()
    }

    pub fn last_refresh_token(&self) -> Option<String> {
        self.state.lock().unwrap().last_refresh_token.clone()
    }

    pub fn is_refresh_token_valid(&self, token: &str) -> bool {
        self.state
            .lock()
            .unwrap()
            .refresh_tokens
            .contains_key(token)
    }

    /// Acknowledges access token revocations without acting on them, as servers whose access
    /// tokens are self-contained do.
    pub fn set_lazy_access_revocation(&self, on: bool) {
        self.state.lock().unwrap().lazy_access_revocation = on;
    }

    pub fn set_revoke_on_first_use(&self, on: bool) {
        self.state.lock().unwrap().revoke_on_first_use = on;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }

    pub fn set_expires_in(&self, secs: i64) {
        self.state.lock().unwrap().expires_in = secs;
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: HashMap<String, String>,
    body: String,
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Some(Request {
        method,
        path,
        query,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

fn form(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn json(status: u16, body: serde_json::Value) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string(),
    }
}

fn oauth_error(status: u16, error: &str) -> Reply {
    json(
        status,
        serde_json::json!({"error": error, "error_description": format!("mock: {error}")}),
    )
}

async fn handle(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let Some(req) = read_request(&mut stream).await else {
        return;
    };
    let fault = {
        let mut s = state.lock().unwrap();
        s.requests.push(req.path.clone());
        if req.path == "/oauth/token" {
            s.token_requests += 1;
            match &mut s.fault {
                Some((f, n)) if *n > 0 => {
                    *n -= 1;
                    Some(*f)
                }
                _ => None,
            }
        } else {
            None
        }
    };
    let latency = state.lock().unwrap().latency;
    if !latency.is_zero() && req.path == "/oauth/token" {
        tokio::time::sleep(latency).await;
    }
    let reply = match fault {
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            route(&req, &state)
        }
        Some(Fault::Status(code)) => Reply {
            status: code,
            headers: vec![],
            body: "<html>upstream trouble</html>".into(),
        },
        Some(Fault::RateLimited { retry_after }) => Reply {
            status: 429,
            headers: vec![("Retry-After".into(), retry_after.to_string())],
            body: String::new(),
        },
        Some(Fault::NotJson) => Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: "<html>login page</html>".into(),
        },
        Some(Fault::MissingAccessToken) => json(
            200,
            serde_json::json!({"token_type": "Bearer", "expires_in": 7200}),
        ),
        Some(Fault::Huge) => Reply {
            status: 200,
            headers: vec![],
            body: format!("{{\"access_token\":\"{}\"}}", "x".repeat(2 * 1024 * 1024)),
        },
        Some(Fault::HostileError) => json(
            400,
            serde_json::json!({
                "error": format!("invalid_grant{HOSTILE}"),
                "error_description": format!("bad{HOSTILE}"),
            }),
        ),
        Some(Fault::HostileToken) => {
            let mut reply = route(&req, &state);
            if let Ok(mut body) = serde_json::from_str::<serde_json::Value>(&reply.body) {
                body["scope"] = format!("read{HOSTILE}").into();
                body["token_type"] = format!("Bearer{HOSTILE}").into();
                reply.body = body.to_string();
            }
            reply
        }
        Some(Fault::HostileHtml) => Reply {
            status: 500,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: format!("<html>{HOSTILE}</html>"),
        },
        Some(Fault::Reset) => {
            // Close with RST: linger 0 then drop.
            if let Ok(std) = stream.into_std() {
                let _ = socket2::SockRef::from(&std).set_linger(Some(Duration::ZERO));
            }
            return;
        }
        None => route(&req, &state),
    };
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.write_all(reply.body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn route(req: &Request, state: &Arc<Mutex<State>>) -> Reply {
    let mut s = state.lock().unwrap();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/oauth/authorize") => {
            // Approve at once, as a user clicking "Authorize" would.
            let q = form(&req.query);
            let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
            s.counter += 1;
            let code = format!("code-{}", s.counter);
            s.codes.insert(
                code.clone(),
                Grant {
                    company: q.get("resource_owner_type").map(String::as_str) == Some("company"),
                    redirect_uri: redirect.clone(),
                },
            );
            let state_param = q.get("state").cloned().unwrap_or_default();
            // As Doorkeeper: the out-of-band redirect goes to a page that shows the code and
            // carries no state; a real redirect URI gets the code and the state.
            let location = if redirect == "urn:ietf:wg:oauth:2.0:oob" {
                let host = req.headers.get("host").cloned().unwrap_or_default();
                format!("http://{host}/oauth/authorize/native?code={code}")
            } else {
                format!(
                    "{redirect}?code={code}&state={}",
                    url::form_urlencoded::byte_serialize(state_param.as_bytes())
                        .collect::<String>()
                )
            };
            Reply {
                status: 302,
                headers: vec![("Location".into(), location)],
                body: String::new(),
            }
        }
        ("POST", "/oauth/token") => {
            let f = form(&req.body);
            // As Doorkeeper: an unknown refresh token is invalid_grant before the client is
            // looked at, so a wrong secret with it still reads invalid_grant.
            if f.get("grant_type").map(String::as_str) == Some("refresh_token")
                && !s.refresh_tokens.contains_key(
                    f.get("refresh_token")
                        .map(String::as_str)
                        .unwrap_or_default(),
                )
            {
                return oauth_error(400, "invalid_grant");
            }
            if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            {
                return oauth_error(401, "invalid_client");
            }
            let grant = match f.get("grant_type").map(String::as_str) {
                Some("authorization_code") => {
                    let code = f.get("code").cloned().unwrap_or_default();
                    if s.used_codes.contains(&code) {
                        return oauth_error(400, "invalid_grant");
                    }
                    let Some(grant) = s.codes.remove(&code) else {
                        return oauth_error(400, "invalid_grant");
                    };
                    if f.get("redirect_uri") != Some(&grant.redirect_uri) {
                        return oauth_error(400, "invalid_grant");
                    }
                    s.used_codes.insert(code);
                    grant
                }
                Some("refresh_token") => {
                    s.refresh_requests += 1;
                    let old = f.get("refresh_token").cloned().unwrap_or_default();
                    // Rotation: the old refresh token dies with this use, or (lenient mode)
                    // when the new access token is first used.
                    let grant = if s.revoke_on_first_use {
                        s.refresh_tokens.get(&old).cloned()
                    } else {
                        s.refresh_tokens.remove(&old)
                    };
                    let Some(grant) = grant else {
                        return oauth_error(400, "invalid_grant");
                    };
                    // The access token issued just below.
                    let next_access = format!("access-{}", s.counter + 1);
                    if s.revoke_on_first_use {
                        s.pending_revocations.insert(next_access, old);
                    }
                    grant
                }
                _ => return oauth_error(400, "unsupported_grant_type"),
            };
            s.counter += 1;
            let access = format!("access-{}", s.counter);
            s.access_tokens.insert(access.clone());
            s.last_access_token = Some(access.clone());
            let mut body = serde_json::json!({
                "access_token": access,
                "token_type": "Bearer",
                "scope": "read write",
                "created_at": 1_680_013_957,
            });
            if !grant.company {
                let refresh = format!("refresh-{}", s.counter);
                s.refresh_tokens.insert(refresh.clone(), grant);
                s.last_refresh_token = Some(refresh.clone());
                body["refresh_token"] = refresh.into();
                body["expires_in"] = s.expires_in.into();
            }
            json(200, body)
        }
        ("POST", "/oauth/revoke") => {
            let f = form(&req.body);
            if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            {
                return oauth_error(401, "invalid_client");
            }
            let token = f.get("token").cloned().unwrap_or_default();
            if !s.lazy_access_revocation {
                s.access_tokens.remove(&token);
            }
            s.refresh_tokens.remove(&token);
            s.revoked.push(token);
            json(200, serde_json::json!({}))
        }
        ("GET", p)
            if p.starts_with("/api/") && p.ends_with("/resources/api_public/credentials") =>
        {
            let bearer = req
                .headers
                .get("authorization")
                .and_then(|h| h.strip_prefix("Bearer "))
                .unwrap_or_default();
            if let Some(old) = s.pending_revocations.remove(bearer) {
                s.refresh_tokens.remove(&old);
            }
            if s.access_tokens.contains(bearer) {
                let email = if s.hostile_credentials {
                    format!("ada@example.com{HOSTILE}")
                } else {
                    "ada@example.com".to_string()
                };
                json(
                    200,
                    serde_json::json!({"data": [{"id": 1, "company_id": 42, "employee_id": 7, "email": email}], "meta": {}}),
                )
            } else {
                // As Doorkeeper without a configured error body: 401, empty.
                Reply {
                    status: 401,
                    headers: vec![],
                    body: String::new(),
                }
            }
        }
        _ => Reply {
            status: 404,
            headers: vec![],
            body: "not found".into(),
        },
    }
}
