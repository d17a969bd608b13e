use std::process::ExitCode;

use clap::Parser;
use tokdeck::cli::Cli;
use tokdeck::exit;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
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
    let _log = tokdeck::logging::init();
    let failure = exit::for_failure(&cli);
    let runtime = match runtime_for(&cli) {
        Ok(rt) => rt,
        Err(e) => {
            tokdeck::note!("tokdeck: cannot start the async runtime: {e}");
            return ExitCode::from(failure);
        }
    };
    match runtime.block_on(tokdeck::commands::run(cli)) {
        Ok(code) => ExitCode::from(exit::for_result(code)),
        Err(e) => {
            tokdeck::note!("tokdeck: {}", tokdeck::logging::one_line(&e));
            ExitCode::from(failure)
        }
    }
}

/// One-shot clients (`token`, `exec`, `api`, `status`) mostly ask the agent and print: one
/// thread is enough and starts faster. Everything else gets two worker threads.
fn runtime_for(cli: &Cli) -> std::io::Result<tokio::runtime::Runtime> {
    use tokdeck::cli::Command;
    let one_shot = matches!(
        cli.command,
        Some(Command::Token(_) | Command::Exec(_) | Command::Api(_) | Command::Status(_))
    );
    if one_shot {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
}
