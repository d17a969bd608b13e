//! What every real-server fixture shares: a server process on a free loopback port in a
//! folder of its own, waited for until it answers, killed when dropped; one-shot HTTP on
//! loopback; app registration; and approving an authorize URL as a browser would.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A port nobody listens on now, for a server that binds it a moment later.
///
/// It comes from below the kernel's ephemeral range: a port from that range (what binding
/// port 0 gives) can be taken meanwhile as the source port of any outgoing connection, and a
/// server started seconds later (a cluster's third node) then fails with "address in use".
/// Ports are handed out in turn from a start that differs per process, so tests running at
/// once never get the same one.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let Some((low, high)) = quiet_ports() else {
        return ephemeral_port();
    };
    let span = u32::from(high - low);
    let _ = NEXT.compare_exchange(u32::MAX, process_seed() % span, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..span {
        let turn = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = low + u16::try_from(turn).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    ephemeral_port()
}

fn ephemeral_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Up to 10,000 ports just below the ephemeral range, when there is room for them above the
/// privileged ones.
fn quiet_ports() -> Option<(u16, u16)> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let first: u16 = range.split_whitespace().next()?.parse().ok()?;
    let low = first.checked_sub(10_000)?.max(10_000);
    (first > low + 1_000).then_some((low, first))
}

fn process_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::process::id().wrapping_mul(2_654_435_761).wrapping_add(nanos)
}

/// Opens `authorize_url` at the fixture on `port` as a browser would (the owner approves at
/// once) and returns where the server redirects: the callback URL, or its out-of-band page.
pub fn approve(port: u16, authorize_url: &str) -> String {
    let url = url::Url::parse(authorize_url).unwrap();
    let target = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let reply = http(port, "GET", &target, None).expect("the fixture answers");
    assert_eq!(reply.status, 302, "no redirect: {}", reply.body);
    reply.location.expect("a Location header")
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
    /// Its folder.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// A file from its folder ("" when missing), for failure messages.
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

/// Starts a fixture server (`command` for a port and a fresh folder; its stderr goes to
/// `stderr.txt` there) and waits until `GET /health` answers 200; a port taken meanwhile is
/// retried.
pub fn start_fixture(name: &str, command: impl Fn(u16, &std::path::Path) -> Command) -> Fixture {
    start_fixture_at(name, "/health", command)
}

/// Like [`start_fixture`], waiting for `health` to answer 200.
pub fn start_fixture_at(
    name: &str,
    health: &str,
    command: impl Fn(u16, &std::path::Path) -> Command,
) -> Fixture {
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
            if http(port, "GET", health, None).is_some_and(|r| r.status == 200) {
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
