//! The operating system at arm's length: opening a browser, probing a folder for writes,
//! suspending to the shell, advising the kernel how to back a large buffer. One call holds
//! `unsafe`: that advice ([`back_with_huge_pages`]).

use std::path::Path;

/// This machine's name, as the audit log, the vault's lease and the team view name it:
/// `TOKDECK_MACHINE` when set to a plain name (letters, digits, `.`, `_`, `-`, at most 64),
/// for containers whose host names are random; else the host name.
pub fn host_name() -> String {
    if let Some(name) = std::env::var("TOKDECK_MACHINE")
        .ok()
        .filter(|n| is_machine_name(n))
    {
        return name;
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Whether `name` may name a machine: a plain word a terminal shows as it is.
fn is_machine_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether a graphical session is there to show a browser in.
fn display_available() -> bool {
    std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
}

/// Opens `url` in a browser; returns whether one was started. The URL carries no secret
/// (only the client id and a random state), which is why it may go on a command line.
pub fn open_browser(url: &str) -> bool {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if !cfg!(target_os = "macos") && !display_available() {
        return false;
    }
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

/// Whether files can be created in `dir`: a real probe (a temp file made and removed), which
/// also sees read-only mounts and ACLs that mode bits do not show.
pub fn can_write_in(dir: &Path) -> bool {
    tempfile::Builder::new()
        .prefix(".tokdeck-probe-")
        .tempfile_in(dir)
        .is_ok()
}

/// Stops this process as Ctrl-Z would; returns when the shell continues it (`fg`).
pub fn suspend() -> std::io::Result<()> {
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTSTP).map_err(std::io::Error::from)
}

/// The size of a huge page on the machines tokdeck runs on (x86-64, aarch64 with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the 2 MiB-aligned part of `buf`'s capacity with huge pages when it
/// first touches it: a 6 MB vault's plaintext then costs three page faults instead of 1,500.
/// Only advice: where transparent huge pages are off, or the kernel declines, nothing changes.
#[expect(
    unsafe_code,
    reason = "madvise(2) has no safe wrapper; MADV_HUGEPAGE changes how pages are backed, never what they hold"
)]
pub fn back_with_huge_pages(buf: &mut Vec<u8>) {
    let start = buf.as_mut_ptr();
    let offset = (start as usize).next_multiple_of(HUGE_PAGE) - start as usize;
    let Some(aligned) = buf.capacity().checked_sub(offset) else {
        return;
    };
    let len = aligned / HUGE_PAGE * HUGE_PAGE;
    let Some(first) = std::ptr::NonNull::new(start.wrapping_add(offset).cast()) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: `first .. first + len` lies inside `buf`'s allocation, which this function holds
    // mutably, and MADV_HUGEPAGE alters neither its contents nor its mapping. Declined advice
    // (no transparent huge pages here) leaves the buffer as it was, so the outcome is dropped.
    let _ =
        unsafe { nix::sys::mman::madvise(first, len, nix::sys::mman::MmapAdvise::MADV_HUGEPAGE) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_probe_tells_writable_from_missing_folders() {
        let dir = tempfile::tempdir().unwrap();
        assert!(can_write_in(dir.path()));
        assert!(!can_write_in(&dir.path().join("missing")));
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 0, "the probe cleans up");
    }

    #[test]
    fn a_buffer_advised_into_huge_pages_holds_what_is_written() {
        for capacity in [0, 4096, HUGE_PAGE, 5 * HUGE_PAGE + 17] {
            let mut buf = Vec::with_capacity(capacity);
            back_with_huge_pages(&mut buf);
            let pattern = || (0..=250u8).cycle().take(capacity);
            buf.extend(pattern());
            assert_eq!(buf.len(), capacity);
            assert!(
                buf.iter().copied().eq(pattern()),
                "the bytes written are read back"
            );
        }
    }

    #[test]
    fn a_machine_name_is_a_plain_word() {
        assert!(is_machine_name("build-3.ops_1"));
        for bad in ["", "a b", "evil\u{1b}[2J", &"x".repeat(65), "über"] {
            assert!(!is_machine_name(bad), "{bad:?}");
        }
    }
}
