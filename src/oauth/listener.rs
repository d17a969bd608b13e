//! The loopback redirect listener: catches one authorization callback on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use url::Url;

use super::OAuthError;
use super::redirect::{Callback, parse_query};

/// Where to listen, derived from a loopback redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackTarget {
    /// Every address the browser may connect to: `localhost` resolves to 127.0.0.1 or `::1`
    /// depending on the system, so it gets both.
    pub addrs: Vec<SocketAddr>,
    pub path: String,
}

/// `Some` when `redirect_uri` is `http://127.0.0.1:PORT/...`, `http://localhost:PORT/...`
/// or `http://[::1]:PORT/...`: the cases tokdeck can catch itself.
pub fn loopback_target(redirect_uri: &str) -> Option<LoopbackTarget> {
    let url = Url::parse(redirect_uri).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let port = url.port()?;
    let ips: Vec<IpAddr> = match url.host()? {
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
            vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
        }
        url::Host::Ipv4(ip) if ip.is_loopback() => vec![ip.into()],
        url::Host::Ipv6(ip) if ip.is_loopback() => vec![ip.into()],
        _ => return None,
    };
    Some(LoopbackTarget {
        addrs: ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
        path: url.path().to_string(),
    })
}

const PAGE_OK: &str = "<!doctype html><title>tokdeck</title><h1>Authorized</h1><p>tokdeck has the code. You can close this tab.</p>";
const PAGE_DENIED: &str =
    "<!doctype html><title>tokdeck</title><h1>Not authorized</h1><p>See the terminal.</p>";
const PAGE_BAD_STATE: &str = "<!doctype html><title>tokdeck</title><h1>Rejected</h1><p>This callback does not belong to the authorization tokdeck started.</p>";
const MAX_REQUEST_HEAD: usize = 8 * 1024;
const PER_CONNECTION: Duration = Duration::from_secs(5);

/// What one connection amounted to.
enum Outcome {
    Code(Callback),
    Denied(String),
    WrongState,
    Ignored,
}

/// A bound listener waiting for the callback.
pub struct Listener {
    /// One socket per loopback address of the redirect URI; at least one.
    sockets: Vec<TcpListener>,
    path: String,
}

impl Listener {
    /// Binds the loopback addresses of the redirect URI. An address this machine lacks (no
    /// IPv6) is skipped as long as another one binds.
    pub async fn bind(target: &LoopbackTarget) -> Result<Self, OAuthError> {
        let mut sockets = Vec::new();
        let mut first_error = None;
        for addr in &target.addrs {
            match TcpListener::bind(addr).await {
                Ok(socket) => sockets.push(socket),
                Err(e) => {
                    first_error.get_or_insert(OAuthError::Listen {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        if sockets.is_empty() {
            return Err(first_error.unwrap_or_else(|| OAuthError::Listen {
                addr: "(none)".into(),
                reason: "no loopback address to listen on".into(),
            }));
        }
        Ok(Self {
            sockets,
            path: target.path.clone(),
        })
    }

    /// The first bound address (the one shown to people).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sockets.first().and_then(|s| s.local_addr().ok())
    }

    /// Every bound address.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// The next connection on either socket (there are one or two).
    async fn accept(&self) -> std::io::Result<TcpStream> {
        let result = match self.sockets.as_slice() {
            [a, b, ..] => tokio::select! {
                r = a.accept() => r,
                r = b.accept() => r,
            },
            [one] => one.accept().await,
            [] => std::future::pending().await,
        };
        result.map(|(stream, _)| stream)
    }

    /// Waits up to `timeout` for one callback whose state equals `expected_state` and returns
    /// its code. Other paths and junk are answered 404/400 and ignored; a wrong state is
    /// answered 400 and reported through `on_reject`, and the wait goes on.
    pub async fn wait_for_code(
        self,
        expected_state: &str,
        timeout: Duration,
        on_reject: impl Fn(&str),
    ) -> Result<Callback, OAuthError> {
        let (tx, mut rx) = mpsc::channel::<Outcome>(16);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    return Err(OAuthError::ListenTimeout(timeout.as_secs()));
                }
                accepted = self.accept() => {
                    let Ok(stream) = accepted else { continue };
                    let tx = tx.clone();
                    let path = self.path.clone();
                    let state = expected_state.to_string();
                    tokio::spawn(async move {
                        let outcome = tokio::time::timeout(PER_CONNECTION, serve(stream, &path, &state))
                            .await
                            .unwrap_or(Outcome::Ignored);
                        let _ = tx.send(outcome).await;
                    });
                }
                Some(outcome) = rx.recv() => match outcome {
                    Outcome::Code(code) => return Ok(code),
                    Outcome::Denied(why) => return Err(OAuthError::Denied(why)),
                    Outcome::WrongState => on_reject("rejected a callback with a wrong or missing state"),
                    Outcome::Ignored => {}
                },
            }
        }
    }
}

async fn serve(mut stream: TcpStream, path: &str, expected_state: &str) -> Outcome {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_REQUEST_HEAD {
            respond(&mut stream, 431, "<h1>Too large</h1>").await;
            return Outcome::Ignored;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let Some(target) = line
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|rest| rest.split(' ').next())
    else {
        respond(&mut stream, 400, "<h1>Bad request</h1>").await;
        return Outcome::Ignored;
    };
    let (req_path, query) = target.split_once('?').unwrap_or((target, ""));
    if req_path != path {
        respond(&mut stream, 404, "<h1>Not found</h1>").await;
        return Outcome::Ignored;
    }
    match parse_query(query) {
        Ok(callback) if callback.state.as_deref() == Some(expected_state) => {
            respond(&mut stream, 200, PAGE_OK).await;
            Outcome::Code(callback)
        }
        Ok(_) => {
            respond(&mut stream, 400, PAGE_BAD_STATE).await;
            Outcome::WrongState
        }
        Err(OAuthError::Denied(why)) => {
            // A denial only counts when it carries our state; anything else is noise.
            let state_ok = url::form_urlencoded::parse(query.as_bytes())
                .any(|(k, v)| k == "state" && v == expected_state);
            if state_ok {
                respond(&mut stream, 200, PAGE_DENIED).await;
                Outcome::Denied(why)
            } else {
                respond(&mut stream, 400, PAGE_BAD_STATE).await;
                Outcome::WrongState
            }
        }
        Err(_) => {
            respond(&mut stream, 400, "<h1>No code</h1>").await;
            Outcome::Ignored
        }
    }
}

async fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        431 => "Request Header Fields Too Large",
        _ => "Bad Request",
    };
    let reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_recognised() {
        let t = loopback_target("http://127.0.0.1:8765/callback").unwrap();
        assert_eq!(t.addrs, ["127.0.0.1:8765".parse().unwrap()]);
        assert_eq!(t.path, "/callback");
        let both: Vec<SocketAddr> = vec![
            "127.0.0.1:9000".parse().unwrap(),
            "[::1]:9000".parse().unwrap(),
        ];
        assert_eq!(
            loopback_target("http://localhost:9000/").unwrap().addrs,
            both
        );
        assert!(loopback_target("http://[::1]:9000/cb").is_some());
        assert!(loopback_target("https://127.0.0.1:1/cb").is_none());
        assert!(loopback_target("http://example.com:80/cb").is_none());
        assert!(loopback_target("urn:ietf:wg:oauth:2.0:oob").is_none());
        assert!(loopback_target("http://10.0.0.1:80/cb").is_none());
    }

    /// A browser that resolves `localhost` to `::1` first reaches the listener too.
    #[tokio::test]
    async fn localhost_is_caught_on_both_loopback_addresses() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = free.local_addr().unwrap().port();
        drop(free);
        let target = loopback_target(&format!("http://localhost:{port}/cb")).unwrap();
        let listener = Listener::bind(&target).await.unwrap();
        let bound = listener.local_addrs();
        let v6 = bound.iter().any(SocketAddr::is_ipv6);
        let waiting = tokio::spawn(listener.wait_for_code("s", Duration::from_secs(10), |_| {}));
        let dial: SocketAddr = if v6 {
            format!("[::1]:{port}").parse().unwrap()
        } else {
            // A machine without IPv6 still listens on 127.0.0.1.
            format!("127.0.0.1:{port}").parse().unwrap()
        };
        let mut stream = TcpStream::connect(dial).await.unwrap();
        stream
            .write_all(b"GET /cb?code=c6&state=s HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert_eq!(waiting.await.unwrap().unwrap().code, "c6");
        assert!(bound.iter().any(SocketAddr::is_ipv4));
    }
}
