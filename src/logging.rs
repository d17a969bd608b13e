//! Logs go to a file under the state dir, never to the terminal the TUI owns.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;

use tracing_subscriber::EnvFilter;

use crate::config::Paths;
use crate::vault::store::ensure_private_dir;

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
        .with_writer(std::sync::Mutex::new(file))
        .try_init()
        .is_ok()
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
