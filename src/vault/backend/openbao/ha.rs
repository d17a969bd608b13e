//! What makes the client fit for a cluster. A request that meets an election (no leader yet,
//! a proxy with no active node behind it, a rate limit, a standby not caught up) is sent again
//! with a growing, jittered pause, for a bounded time; a request that got no answer at all is
//! tried a few times only, so a server that is down is said at once; and a write whose answer
//! was lost (a timeout, a reset, a gateway error) is never sent again here: the caller reads
//! back what landed. Every request carries the storage index of this client's last write with
//! `X-Vault-Inconsistent: forward-active-node`, so a standby that serves reads and has not
//! caught up with that write hands the request to the active node instead of answering from
//! an older state (servers that do not know the headers ignore them).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::HeaderValue;

/// The largest answer read: a vault of thousands of profiles is a few megabytes.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_PAUSE: Duration = Duration::from_secs(2);

/// Sends of a request that got no answer at all (refused, reset before any answer).
const UNANSWERED_SENDS: u32 = 3;

/// How long a request keeps being sent while the cluster answers that it cannot serve it:
/// twice the HTTP timeout, from 10 s to 60 s. Raft elects a leader within a few seconds.
pub fn patience(timeout: Duration) -> Duration {
    (timeout * 2).clamp(Duration::from_secs(10), Duration::from_secs(60))
}

/// Whether a request may be sent again when it is not known whether it was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// A read, or a write whose second copy changes nothing.
    Safe,
    /// A write that must not be applied twice: its caller reads back what landed.
    Never,
}

/// An answer as read.
pub struct Answer {
    /// The HTTP status; 0 for an answer cut short at [`MAX_ANSWER_BYTES`].
    pub status: u16,
    pub body: Vec<u8>,
    /// The server's clock when it answered.
    pub date: Option<DateTime<Utc>>,
    /// The storage index the answer names (`X-Vault-Index`).
    index: Option<HeaderValue>,
    /// How many times the request was sent.
    pub sends: u32,
}

/// How sending went.
pub enum Sent {
    /// An answer: final, or the last of the cluster's "not now" when patience ran out.
    Answered(Answer),
    /// No answer at all; the last transport error.
    Unanswered(reqwest::Error),
    /// A write that may have been applied: its answer was lost, or said so. What happened.
    Unknown(String),
}

/// What one answer means for sending the request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Final,
    /// The cluster could not serve it now and did not apply it.
    NotApplied,
    /// The cluster may have applied it.
    MaybeApplied,
}

fn verdict(status: u16, said: &str) -> Verdict {
    let said = said.to_lowercase();
    // Neither goes away by waiting: say it now.
    if said.contains("too large") || said.contains("sealed") {
        return Verdict::Final;
    }
    match status {
        // Not caught up with the index asked for; rate-limited; no server or no leader.
        412 | 429 | 503 => Verdict::NotApplied,
        500 if said.contains("not active") || said.contains("no active") => Verdict::NotApplied,
        // A server error mid-commit, a proxy that lost the answer or timed out.
        500 | 502 | 504 => Verdict::MaybeApplied,
        _ => Verdict::Final,
    }
}

/// The storage index of this client's last write, shared by its clones.
#[derive(Clone, Default)]
pub struct LastWrite(Arc<Mutex<Option<HeaderValue>>>);

impl LastWrite {
    fn get(&self) -> Option<HeaderValue> {
        self.0.lock().ok().and_then(|index| index.clone())
    }

    fn set(&self, index: HeaderValue) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(index);
        }
    }
}

/// Sends the request `build` makes until the cluster gives a final answer, within `patience`.
/// `write`: the request changes storage, so its answer's index is kept for later requests.
pub fn send(
    build: impl Fn() -> reqwest::blocking::RequestBuilder,
    replay: Replay,
    write: bool,
    patience: Duration,
    last_write: &LastWrite,
) -> Sent {
    let deadline = Instant::now() + patience;
    let mut pause = FIRST_PAUSE;
    let mut sends = 0;
    let mut unanswered = 0;
    loop {
        let mut request = build().header("X-Vault-Inconsistent", "forward-active-node");
        if let Some(index) = last_write.get() {
            request = request.header("X-Vault-Index", index);
        }
        sends += 1;
        let more_time = Instant::now() + pause < deadline;
        match receive(request) {
            Ok(mut answer) => {
                answer.sends = sends;
                let verdict = verdict(answer.status, &first_error(&answer.body));
                if write
                    && verdict == Verdict::Final
                    && let Some(index) = answer.index.take()
                {
                    last_write.set(index);
                }
                match verdict {
                    Verdict::Final => return Sent::Answered(answer),
                    Verdict::MaybeApplied if replay == Replay::Never => {
                        return Sent::Unknown(format!(
                            "{}: {}",
                            answer.status,
                            first_error(&answer.body)
                        ));
                    }
                    _ if !more_time => return Sent::Answered(answer),
                    _ => {}
                }
            }
            Err(e) => {
                unanswered += 1;
                // A connection never made carried nothing; any other loss may have.
                if !e.is_connect() && replay == Replay::Never {
                    return Sent::Unknown(cause_of(&e));
                }
                if unanswered >= UNANSWERED_SENDS || !more_time {
                    return Sent::Unanswered(e);
                }
            }
        }
        std::thread::sleep(jittered(pause));
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// A pause between half of `pause` and all of it: machines that met the same election do not
/// come back at the same moment.
fn jittered(pause: Duration) -> Duration {
    pause.mul_f64(rand::random_range(0.5..=1.0))
}

/// The innermost cause of a transport error, for a message.
pub fn cause_of(e: &reqwest::Error) -> String {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    clean(&cause)
}

/// Sends `request` and reads its answer, up to [`MAX_ANSWER_BYTES`].
fn receive(request: reqwest::blocking::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let mut response = request.send()?;
    let status = response.status().as_u16();
    let headers = response.headers();
    let date = headers
        .get(reqwest::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
        .map(|d| d.with_timezone(&Utc));
    let index = headers.get("x-vault-index").cloned();
    let mut body = Capped::default();
    if let Err(e) = response.copy_to(&mut body) {
        if !body.over {
            return Err(e);
        }
        return Ok(Answer {
            status: 0,
            body: Vec::new(),
            date,
            index: None,
            sends: 0,
        });
    }
    Ok(Answer {
        status,
        body: body.read,
        date,
        index,
        sends: 0,
    })
}

/// An answer's body as it arrives, refused past [`MAX_ANSWER_BYTES`].
#[derive(Default)]
struct Capped {
    read: Vec<u8>,
    over: bool,
}

impl std::io::Write for Capped {
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<usize> {
        if self.read.len() + chunk.len() > MAX_ANSWER_BYTES {
            self.over = true;
            return Err(std::io::Error::other("the answer is too large"));
        }
        self.read.extend_from_slice(chunk);
        Ok(chunk.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The first error OpenBao gave, cleaned for a terminal.
pub fn first_error(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            json["errors"]
                .as_array()
                .and_then(|errors| errors.iter().find_map(serde_json::Value::as_str))
                .map(clean)
        })
        .unwrap_or_default()
}

/// Server text, shown on a terminal: no control characters, one short line.
pub fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_election_is_waited_out_and_a_lost_commit_is_never_resent() {
        assert_eq!(verdict(503, ""), Verdict::NotApplied);
        assert_eq!(verdict(429, ""), Verdict::NotApplied);
        assert_eq!(verdict(412, ""), Verdict::NotApplied);
        assert_eq!(
            verdict(
                500,
                "local node not active but active cluster node not found"
            ),
            Verdict::NotApplied
        );
        assert_eq!(
            verdict(500, "leadership lost while committing log"),
            Verdict::MaybeApplied
        );
        assert_eq!(verdict(502, ""), Verdict::MaybeApplied);
        assert_eq!(verdict(504, ""), Verdict::MaybeApplied);
    }

    #[test]
    fn what_waiting_does_not_mend_is_said_at_once() {
        assert_eq!(verdict(503, "Vault is sealed"), Verdict::Final);
        assert_eq!(
            verdict(500, "put failed due to value being too large"),
            Verdict::Final
        );
        assert_eq!(verdict(403, "permission denied"), Verdict::Final);
        assert_eq!(
            verdict(400, "check-and-set parameter did not match"),
            Verdict::Final
        );
        assert_eq!(verdict(200, ""), Verdict::Final);
    }

    #[test]
    fn patience_follows_the_timeout_within_bounds() {
        assert_eq!(patience(Duration::from_secs(2)), Duration::from_secs(10));
        assert_eq!(patience(Duration::from_secs(20)), Duration::from_secs(40));
        assert_eq!(patience(Duration::from_secs(120)), Duration::from_secs(60));
        for _ in 0..100 {
            let pause = jittered(Duration::from_secs(2));
            assert!(pause >= Duration::from_secs(1) && pause <= Duration::from_secs(2));
        }
    }
}
