use std::process::ExitCode;

use clap::Parser;
use tokdeck::cli::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return ExitCode::SUCCESS;
            }
            // `status` keeps 1 and 2 for token states; its usage errors are 3 like its failures.
            let is_status = std::env::args().skip(1).any(|a| a == "status");
            return ExitCode::from(if is_status { 3 } else { 2 });
        }
    };
    let _log = tokdeck::logging::init();
    let failure = tokdeck::commands::failure_code(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tokdeck::note!("tokdeck: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(tokdeck::commands::run(cli)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            tokdeck::note!("tokdeck: {}", tokdeck::logging::one_line(&e));
            ExitCode::from(failure as u8)
        }
    }
}
