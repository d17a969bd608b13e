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

/// The longest request line read; anything longer is refused and the connection closed.
pub const MAX_LINE: usize = 64 * 1024;

/// A request on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    /// The vault the client means; an agent that keeps another one answers `other_vault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    #[serde(flatten)]
    pub request: Request,
}

/// What a client asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// A usable access token (refreshed first when due).
    Token { profile: String },
    /// The status table or JSON, as `tokdeck status` prints it, and its exit code.
    Status {
        #[serde(default)]
        json: bool,
        warn_secs: u64,
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
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// The connection broke or sent something that is not UTF-8.
    Broken,
}

/// Reads one line of at most [`MAX_LINE`] bytes; `None` at the end of the stream.
pub async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
) -> Result<Option<String>, LineError> {
    let mut line = Vec::new();
    loop {
        let chunk = reader.fill_buf().await.map_err(|_| LineError::Broken)?;
        if chunk.is_empty() {
            return if line.is_empty() {
                Ok(None)
            } else {
                String::from_utf8(line)
                    .map(Some)
                    .map_err(|_| LineError::Broken)
            };
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        line.extend_from_slice(&chunk[..take]);
        reader.consume(take);
        if line.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
        if done {
            line.pop();
            return String::from_utf8(line)
                .map(Some)
                .map_err(|_| LineError::Broken);
        }
    }
}

/// Parses a request line, refusing other versions with a message that names both.
pub fn parse(line: &str) -> Result<Envelope, String> {
    let value: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| format!("not a JSON request ({e}): send one object per line"))?;
    let version = value.get("v").and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(VERSION)) {
        return Err(format!(
            "protocol version {} is not spoken here: this agent speaks {VERSION}",
            version.map_or_else(|| "(none)".to_string(), |v| v.to_string())
        ));
    }
    serde_json::from_value::<Envelope>(value)
        .map_err(|e| format!("not a request this agent knows ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_named() {
        let line = r#"{"v":1,"op":"token","profile":"acme"}"#;
        assert!(
            matches!(parse(line).map(|e| e.request), Ok(Request::Token { profile }) if profile == "acme")
        );
        assert!(matches!(
            parse(r#"{"v":1,"op":"refresh"}"#).map(|e| e.request),
            Ok(Request::Refresh { profile: None })
        ));
        assert!(parse("garbage").unwrap_err().contains("not a JSON request"));
        assert!(
            parse(r#"{"v":9,"op":"info"}"#)
                .unwrap_err()
                .contains("version 9")
        );
        assert!(
            parse(r#"{"v":1,"op":"dance"}"#)
                .unwrap_err()
                .contains("not a request")
        );
        let wire = serde_json::to_string(&Envelope {
            v: VERSION,
            vault: None,
            request: Request::Info,
        })
        .unwrap();
        assert_eq!(wire, r#"{"v":1,"op":"info"}"#);
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut ok = tokio::io::BufReader::new(&b"one\ntwo"[..]);
        assert_eq!(read_line(&mut ok).await, Ok(Some("one".into())));
        assert_eq!(read_line(&mut ok).await, Ok(Some("two".into())));
        assert_eq!(read_line(&mut ok).await, Ok(None));
        let huge = vec![b'x'; MAX_LINE + 10];
        let mut reader = tokio::io::BufReader::new(&huge[..]);
        assert_eq!(read_line(&mut reader).await, Err(LineError::TooLong));
    }
}
