//! `tokdeck-core`: the whole program. `tokdeck` hands it every command line it does not answer
//! itself (see [`tokdeck::front`]); run directly, it does everything `tokdeck` does.

use std::process::ExitCode;

use tokdeck::cli::Cli;
use tokdeck::exit;

fn main() -> ExitCode {
    tokdeck::cli::complete::answer_if_asked();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::parse_args(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                // --help and --version are not errors.
                return ExitCode::SUCCESS;
            }
            return ExitCode::from(exit::for_usage_error(&args));
        }
    };
    let failure = exit::for_failure(&cli);
    match tokdeck::commands::run(&cli) {
        Ok(code) => ExitCode::from(exit::for_result(code)),
        Err(e) => {
            tokdeck::note!("tokdeck: {}", tokdeck::logging::one_line(&e));
            ExitCode::from(failure)
        }
    }
}
