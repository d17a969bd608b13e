//! A TCP proxy that counts what passes: plain-HTTP requests, and bytes each way.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

/// A proxy on a free loopback port to `127.0.0.1:target`.
pub struct Meter {
    port: u16,
    counts: Arc<Counts>,
}

/// What passed since the last reset.
#[derive(Debug, Clone, Copy)]
pub struct Passed {
    pub requests: u64,
    /// Bytes from the client to the server.
    pub up: u64,
    /// Bytes from the server to the client.
    pub down: u64,
}

impl Meter {
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = shared.clone();
                let down = shared.clone();
                std::thread::spawn(move || pump(client, server, &up, true));
                std::thread::spawn(move || pump(s2, c2, &down, false));
            }
        });
        Self { port, counts }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What passed since the last call, and starts counting again.
    pub fn take(&self) -> Passed {
        Passed {
            requests: self.counts.requests.swap(0, Ordering::SeqCst),
            up: self.counts.up.swap(0, Ordering::SeqCst),
            down: self.counts.down.swap(0, Ordering::SeqCst),
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, counts: &Counts, upward: bool) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if upward {
            let seen = buf[..n]
                .windows(11)
                .filter(|w| w == b" HTTP/1.1\r\n")
                .count();
            counts.requests.fetch_add(seen as u64, Ordering::SeqCst);
            counts.up.fetch_add(n as u64, Ordering::SeqCst);
        } else {
            counts.down.fetch_add(n as u64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
