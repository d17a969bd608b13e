//! Logs go to a file under the state dir, never to the terminal the TUI owns.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;

use tracing_subscriber::EnvFilter;

use crate::config::Paths;
use crate::vault::disk::ensure_private_dir;

/// Starts file logging (`TOKDECK_LOG` sets the filter, default `info`). Returns whether a
/// log file is in use; without a state dir tokdeck runs without logs.
pub fn init() -> bool {
    let Some(dir) = Paths::state_dir() else {
        return false;
    };
    if ensure_private_dir(&dir).is_err() {
        return false;
    }
    let Ok(file) = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join("tokdeck.log"))
    else {
        return false;
    };
    let filter = EnvFilter::try_from_env("TOKDECK_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(EscapingWriter(file)))
        .try_init()
        .is_ok()
}

/// Writes log lines with control characters shown as visible escapes, so `tail -f` of the log
/// never executes a sequence a server or a shared vault put into a message. The formatter
/// hands over one whole line per write; only its final newline stays.
pub struct EscapingWriter<W>(pub W);

impl<W: std::io::Write> std::io::Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, newline) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (text.as_ref(), ""),
        };
        let line = format!("{}{newline}", crate::display::untrusted(body));
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// An error chain on one line: the outermost message, then causes it does not already say.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn log_lines_keep_their_newline_and_lose_control_sequences() {
        let mut w = EscapingWriter(Vec::new());
        w.write_all(b"error=\"x\x1b]52;c;aGk=\x07 \xc2\x9b2J\"\n")
            .unwrap();
        let text = String::from_utf8(w.0).unwrap();
        assert_eq!(text, "error=\"x\\x1b]52;c;aGk=\\x07 \\u{9b}2J\"\n");
    }
}
