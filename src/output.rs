//! Writing to stdout and stderr without panicking when the reader has gone away.
//!
//! `println!` panics on a closed pipe (`tokdeck status | head -1`); a command whose reader
//! stopped listening has nothing left to say, so it ends quietly with its own exit code.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout as is; a closed pipe is not an error.
pub fn print(text: &str) -> std::io::Result<()> {
    print_bytes(text.as_bytes())
}

/// Writes `bytes` to stdout as they are (a body passed on in a pipe); a closed pipe is not an
/// error.
pub fn print_bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    quiet_on_closed_pipe(out.write_all(bytes).and_then(|()| out.flush()))
}

/// Writes `text` and a newline to stdout; a closed pipe is not an error.
/// The text is not copied, so a secret printed here leaves no stray copy in memory.
pub fn println(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    quiet_on_closed_pipe(
        out.write_all(text.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush()),
    )
}

/// Writes one line to stderr, ignoring any failure: a note nobody can read is no error.
/// Notes carry server and vault text (errors, names, descriptions), so control characters
/// are shown as visible escapes, never sent to the terminal.
pub fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", crate::display::untrusted(text));
}

/// Writes `text` to stderr as it is: tokdeck's own drawing (a QR code), never text from
/// outside, which goes through [`note`].
pub fn note_raw(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

fn quiet_on_closed_pipe(result: std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `eprintln!` that never panics: formats a line for [`note`].
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::note(&format!($($arg)*))
    };
}
