//! `tokdeck`: answers `token`, `exec` and `status` from a running agent, and hands every
//! other command line to `tokdeck-core`, the whole program (see [`tokdeck::front`]).

use std::process::ExitCode;

use tokdeck::front::{self, Served};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match front::serve(&args) {
        Served::Exit(code) => ExitCode::from(code),
        Served::HandOver { asked } => ExitCode::from(front::hand_over(&args, asked)),
    }
}
