//! An HTTP proxy in front of a real server that can lose the answer to a write (the request
//! reaches the server and is applied, and the connection is then closed before the answer
//! comes back, as when a load balancer or a node dies mid-request) or hold a write back for a
//! while before passing it on (a slow save). A real server cannot be made to do either on
//! cue. One request per connection (each answer says `Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct WriteFaults {
    port: u16,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Paths whose next write (whose body holds the text, when one is given) meets a fault,
    /// and which.
    armed: Mutex<Vec<Armed>>,
    lost: AtomicU32,
    /// Writes held back now.
    holding: AtomicU32,
}

struct Armed {
    path: String,
    holding: Option<String>,
    fault: Fault,
}

#[derive(Clone, Copy)]
enum Fault {
    LoseAnswer,
    Delay(Duration),
}

impl WriteFaults {
    /// A proxy on a free loopback port to `127.0.0.1:target`.
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let serving = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let shared = serving.clone();
                std::thread::spawn(move || pass_one(client, target, &shared));
            }
        });
        Self { port, shared }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next POST or PUT to `path` is applied, and its answer lost.
    pub fn lose_next_answer_to(&self, path: &str) {
        self.arm(path, None, Fault::LoseAnswer);
    }

    /// The next POST or PUT to `path` is passed on only after `delay`.
    pub fn delay_next_write_to(&self, path: &str, delay: Duration) {
        self.arm(path, None, Fault::Delay(delay));
    }

    /// The next POST or PUT to `path` whose body holds `text` is passed on only after
    /// `delay`.
    pub fn delay_next_write_with(&self, path: &str, text: &str, delay: Duration) {
        self.arm(path, Some(text), Fault::Delay(delay));
    }

    fn arm(&self, path: &str, holding: Option<&str>, fault: Fault) {
        self.shared.armed.lock().unwrap().push(Armed {
            path: path.to_string(),
            holding: holding.map(str::to_string),
            fault,
        });
    }

    /// Writes held back right now.
    pub fn holding(&self) -> u32 {
        self.shared.holding.load(Ordering::SeqCst)
    }

    /// Answers lost so far.
    pub fn lost(&self) -> u32 {
        self.shared.lost.load(Ordering::SeqCst)
    }
}

/// Passes one request on and its answer back, unless the answer is to be lost.
fn pass_one(client: TcpStream, target: u16, shared: &Shared) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut first = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if first.is_empty() {
            first = line.clone();
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut words = first.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let fault = {
        let mut armed = shared.armed.lock().unwrap();
        let meets = |a: &Armed| {
            a.path == path
                && a.holding
                    .as_ref()
                    .is_none_or(|text| body.windows(text.len()).any(|w| w == text.as_bytes()))
        };
        match armed.iter().position(meets) {
            Some(at) if method == "POST" || method == "PUT" => Some(armed.remove(at).fault),
            _ => None,
        }
    };
    if let Some(Fault::Delay(delay)) = fault {
        shared.holding.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(delay);
        shared.holding.fetch_sub(1, Ordering::SeqCst);
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    server.write_all(&head).unwrap();
    server.write_all(&body).unwrap();
    let mut answer = Vec::new();
    let _ = server.read_to_end(&mut answer);
    let lose = matches!(fault, Some(Fault::LoseAnswer));
    let mut client = client;
    if lose {
        shared.lost.fetch_add(1, Ordering::SeqCst);
    } else if let Some(end) = answer.windows(2).position(|w| w == b"\r\n") {
        let _ = client.write_all(&answer[..end + 2]);
        let _ = client.write_all(b"Connection: close\r\n");
        let _ = client.write_all(&answer[end + 2..]);
    }
    let _ = client.shutdown(Shutdown::Both);
}
