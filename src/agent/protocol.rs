//! The agent's protocol: one JSON object per line each way, versioned.
//!
//! A request is `{"v":1,"op":"token","profile":"acme"}`; the answer is `{"ok":true,...}` or
//! `{"ok":false,"error":"what went wrong: what to do"}`. Operations: `token`, `status`,
//! `refresh` (one profile, or all when `profile` is absent), `reload`, `shutdown`, `info`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The longest request line read (not counting its newline); anything longer is refused and
/// the connection closed.
pub const MAX_REQUEST: usize = 64 * 1024;

/// The longest answer line a client reads: room for the largest token a server may send
/// ([`crate::http::MAX_BODY_BYTES`], escaped in JSON) and the status of tens of
/// thousands of profiles.
pub const MAX_REPLY: usize = 64 * 1024 * 1024;

/// A connection with no request for this long is closed (clients reconnect before then).
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// While an answer takes longer than this, a client that asked for them gets an empty line
/// this often, so that it can tell a working agent from a stalled socket.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// A request on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    /// The vault the client means; an agent that keeps another one answers `other_vault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// The client wants an empty line every second while its answer is in the works (see
    /// [`HEARTBEAT`]), so a stalled socket is told from a busy agent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub heartbeat: bool,
    #[serde(flatten)]
    pub request: Request,
}

/// What a client asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// A usable access token (refreshed first when due, or when less than `min_valid_secs`
    /// is left).
    Token {
        profile: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_valid_secs: Option<u64>,
    },
    /// The status table or JSON, as `tokdeck status` prints it, and its exit code.
    Status {
        #[serde(default)]
        json: bool,
        warn_secs: u64,
        /// Only the profiles these words match (`status --filter`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
    },
    /// Refresh one profile now, or every refreshable one.
    Refresh {
        #[serde(default)]
        profile: Option<String>,
    },
    /// Read the vault again.
    Reload,
    /// Finish refreshes in flight, then stop.
    Shutdown,
    /// Who this agent is and what it did last.
    Info,
}

/// An answer on the wire; which fields are set depends on the request.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `token`: the access token (only ever sent to the same user, on a 0600 socket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `token`: when it expires; absent for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// `token`: the profile's variable for `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_var: Option<String>,
    /// `token`: the profile's API base URL, for `api` (no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_base: Option<String>,
    /// `token`: a due refresh failed; the still-valid token is handed out anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// `status`: the output and its exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// `info`: the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Info>,
    /// The request named a vault this agent does not keep: the client opens it itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub other_vault: bool,
}

/// What `info` tells about the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub pid: u32,
    pub since: DateTime<Utc>,
    /// The vault it keeps, as an absolute path.
    pub vault: String,
    /// The last thing it did, with its time.
    pub last: Option<String>,
    /// How many times its keep-alive loop has woken (a busy loop shows here).
    #[serde(default)]
    pub wakeups: u64,
}

impl Reply {
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(message.into()),
            ..Self::default()
        }
    }
}

/// Reading a line failed.
#[derive(Debug, PartialEq, Eq)]
pub enum LineError {
    /// Longer than the limit asked for.
    TooLong,
    /// A whole line that is not UTF-8 (the stream can go on with the next line).
    NotUtf8,
    /// Nothing came within the reader's timeout.
    TimedOut,
    /// The connection broke.
    Broken,
}

/// Reads one line of at most `limit` bytes, its newline not counted; `None` at the end of the
/// stream.
pub async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    limit: usize,
) -> Result<Option<String>, LineError> {
    let mut line = Vec::new();
    loop {
        let chunk = reader.fill_buf().await.map_err(|_| LineError::Broken)?;
        let (used, read) = take_line(&mut line, chunk, limit);
        reader.consume(used);
        if let Some(read) = read {
            return read;
        }
    }
}

/// [`read_line`] on a blocking reader, whose read timeout is [`LineError::TimedOut`].
pub fn read_line_blocking(
    reader: &mut impl std::io::BufRead,
    limit: usize,
) -> Result<Option<String>, LineError> {
    let mut line = Vec::new();
    loop {
        let chunk = reader.fill_buf().map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => LineError::TimedOut,
            _ => LineError::Broken,
        })?;
        let (used, read) = take_line(&mut line, chunk, limit);
        reader.consume(used);
        if let Some(read) = read {
            return read;
        }
    }
}

/// One buffer of input on the way to a line: how many bytes of `chunk` it used (up to the
/// first newline), and the line once it is complete, too long, or ended by the stream (an
/// empty `chunk`).
fn take_line(
    line: &mut Vec<u8>,
    chunk: &[u8],
    limit: usize,
) -> (usize, Option<Result<Option<String>, LineError>>) {
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).map_err(|_| LineError::NotUtf8);
    if chunk.is_empty() {
        let end = (!line.is_empty()).then(|| text(std::mem::take(line)));
        return (0, Some(end.transpose()));
    }
    let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
        Some(i) => (i + 1, true),
        None => (chunk.len(), false),
    };
    line.extend_from_slice(&chunk[..take]);
    if line.len() - usize::from(done) > limit {
        return (take, Some(Err(LineError::TooLong)));
    }
    if !done {
        return (take, None);
    }
    line.pop();
    (take, Some(text(std::mem::take(line)).map(Some)))
}

/// Why a request line is refused: each says what to send instead.
#[derive(Debug, thiserror::Error)]
pub enum BadRequest {
    #[error("not a JSON request ({0}): send one object per line")]
    NotJson(serde_json::Error),
    #[error("protocol version {} is not spoken here: this agent speaks {VERSION}", .0.map_or_else(|| "(none)".to_string(), |v| v.to_string()))]
    Version(Option<u64>),
    #[error("not a request this agent knows ({0})")]
    Unknown(serde_json::Error),
}

/// Parses a request line, refusing other versions with a message that names both.
pub fn parse(line: &str) -> Result<Envelope, BadRequest> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(BadRequest::NotJson)?;
    let version = value.get("v").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(VERSION)) {
        return Err(BadRequest::Version(version));
    }
    serde_json::from_value::<Envelope>(value).map_err(BadRequest::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_named() {
        let line = r#"{"v":1,"op":"token","profile":"acme"}"#;
        assert!(
            matches!(parse(line).map(|e| e.request), Ok(Request::Token { profile, .. }) if profile == "acme")
        );
        assert!(matches!(
            parse(r#"{"v":1,"op":"refresh"}"#).map(|e| e.request),
            Ok(Request::Refresh { profile: None })
        ));
        let refused = |line: &str| parse(line).unwrap_err();
        assert!(matches!(refused("garbage"), BadRequest::NotJson(_)));
        assert!(
            refused("garbage")
                .to_string()
                .contains("not a JSON request")
        );
        assert!(matches!(
            refused(r#"{"v":9,"op":"info"}"#),
            BadRequest::Version(Some(9))
        ));
        assert!(
            refused(r#"{"v":9,"op":"info"}"#)
                .to_string()
                .contains("version 9")
        );
        assert!(matches!(
            refused(r#"{"v":1,"op":"dance"}"#),
            BadRequest::Unknown(_)
        ));
        assert!(
            refused(r#"{"v":1,"op":"dance"}"#)
                .to_string()
                .contains("not a request")
        );
        let wire = serde_json::to_string(&Envelope {
            v: VERSION,
            vault: None,
            heartbeat: false,
            request: Request::Info,
        })
        .unwrap();
        assert_eq!(wire, r#"{"v":1,"op":"info"}"#);
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut ok = tokio::io::BufReader::new(&b"one\n\xff\xfe\ntwo"[..]);
        assert_eq!(read_line(&mut ok, 10).await, Ok(Some("one".into())));
        assert_eq!(read_line(&mut ok, 10).await, Err(LineError::NotUtf8));
        assert_eq!(read_line(&mut ok, 10).await, Ok(Some("two".into())));
        assert_eq!(read_line(&mut ok, 10).await, Ok(None));
        let huge = vec![b'x'; MAX_REQUEST + 10];
        let mut reader = tokio::io::BufReader::new(&huge[..]);
        assert_eq!(
            read_line(&mut reader, MAX_REQUEST).await,
            Err(LineError::TooLong)
        );
        // Exactly the limit is accepted, with or without its newline; one byte more is not.
        let mut exact = vec![b'x'; MAX_REQUEST];
        exact.push(b'\n');
        let mut reader = tokio::io::BufReader::new(&exact[..]);
        assert_eq!(
            read_line(&mut reader, MAX_REQUEST)
                .await
                .map(|l| l.map(|l| l.len())),
            Ok(Some(MAX_REQUEST))
        );
        let over = vec![b'x'; MAX_REQUEST + 1];
        let mut reader = tokio::io::BufReader::new(&over[..]);
        assert_eq!(
            read_line(&mut reader, MAX_REQUEST).await,
            Err(LineError::TooLong)
        );
    }

    #[test]
    fn blocking_lines_read_alike_and_a_timeout_is_told_apart() {
        let mut reader = std::io::BufReader::with_capacity(4, &b"one\n\xff\xfe\ntwo"[..]);
        assert_eq!(read_line_blocking(&mut reader, 10), Ok(Some("one".into())));
        assert_eq!(read_line_blocking(&mut reader, 10), Err(LineError::NotUtf8));
        assert_eq!(read_line_blocking(&mut reader, 10), Ok(Some("two".into())));
        assert_eq!(read_line_blocking(&mut reader, 10), Ok(None));
        let mut long = std::io::BufReader::with_capacity(4, &[b'x'; 12][..]);
        assert_eq!(read_line_blocking(&mut long, 10), Err(LineError::TooLong));

        let (quiet, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        quiet
            .set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        let mut reader = std::io::BufReader::new(quiet);
        assert_eq!(
            read_line_blocking(&mut reader, 10),
            Err(LineError::TimedOut)
        );
    }
}
