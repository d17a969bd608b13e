//! Exit codes, decided in one place from what was asked.
//!
//! `status` follows monitoring-plugin conventions and keeps 1 and 2 for token states, so its
//! own failures (and its usage errors) are 3, "unknown". Every other command exits 0 on
//! success, 1 on failure and 2 on a usage error.

use std::ffi::OsString;

use clap::CommandFactory;

use crate::cli::{Cli, Command};

/// A usage error of `status`, or a failure of `status` itself.
const STATUS_UNKNOWN: u8 = 3;
/// A command line clap rejects.
const USAGE: u8 = 2;
/// A command that failed.
const FAILURE: u8 = 1;

/// The code for a command line that did not parse: the subcommand is read the way clap reads
/// it (leniently), so a profile named `status` does not make another command's error a 3.
pub fn for_usage_error(args: &[OsString]) -> u8 {
    let lenient = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(args);
    match lenient.as_ref().ok().and_then(|m| m.subcommand_name()) {
        Some("status") => STATUS_UNKNOWN,
        _ => USAGE,
    }
}

/// The code for a parsed command that failed.
pub fn for_failure(cli: &Cli) -> u8 {
    match cli.command {
        Some(Command::Status(_)) => STATUS_UNKNOWN,
        _ => FAILURE,
    }
}

/// The code for a command line the whole program could not be started for (see
/// [`crate::front`]): `status` is "unknown" to a monitor, not "attention soon".
pub fn for_unstarted(args: &[OsString]) -> u8 {
    match args.get(1) {
        Some(first) if first == "status" => STATUS_UNKNOWN,
        _ => FAILURE,
    }
}

/// The code a command returned when it ran to its end (status: 0, 1 or 2).
pub fn for_result(code: i32) -> u8 {
    u8::try_from(code.clamp(0, 255)).unwrap_or(FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn usage_errors_are_two_but_three_for_status() {
        assert_eq!(for_usage_error(&args("tokdeck status --bogus")), 3);
        assert_eq!(for_usage_error(&args("tokdeck refresh")), 2);
        // A profile named like a command does not change another command's code.
        assert_eq!(for_usage_error(&args("tokdeck token status --bogus")), 2);
        assert_eq!(for_usage_error(&args("tokdeck --bogus")), 2);
    }

    #[test]
    fn failures_are_one_but_three_for_status() {
        let status = Cli::try_parse_from(["tokdeck", "status"]).unwrap();
        assert_eq!(for_failure(&status), 3);
        let token = Cli::try_parse_from(["tokdeck", "token", "status"]).unwrap();
        assert_eq!(for_failure(&token), 1);
        assert_eq!(for_unstarted(&args("tokdeck status --json")), 3);
        assert_eq!(for_unstarted(&args("tokdeck token status")), 1);
        assert_eq!(for_result(2), 2);
        assert_eq!(for_result(-5), 0);
    }
}
