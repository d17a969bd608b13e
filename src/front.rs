//! The `tokdeck` executable: small, so it starts about as fast as a hello-world. It answers
//! `token`, `exec` and `status` itself when a running agent keeps their vault (scripts call
//! them in loops), and hands every other command line to `tokdeck-core`, the whole program,
//! installed beside it. It hands over by exec: the process, its arguments, its terminal and
//! its exit code stay the user's, and nothing is added but `--no-agent` once the agent was
//! asked, so it is not asked twice.
//!
//! Only what those three commands need from an agent is linked here: no async runtime, no
//! HTTP, no decryption, no app. The answers are the ones the whole program gives: both run
//! the same functions ([`tokens::agent_token`], [`exec::replace_with`], [`status::from_agent`]).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use crate::agent::ask::Client;
use crate::cli::{Cli, Command};
use crate::commands::{exec, status, token, tokens};
use crate::context::Context;

/// The whole program, installed beside `tokdeck`.
pub const CORE: &str = "tokdeck-core";

/// What became of a command line here.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// It was answered: exit with this code.
    Exit(u8),
    /// The whole program runs it; `asked` when the agent was already tried (it is not
    /// running, keeps another vault, or could not be trusted or asked, with a warning).
    HandOver { asked: bool },
}

/// Answers `args` from a running agent when it can.
pub fn serve(args: &[OsString]) -> Served {
    let not_here = Served::HandOver { asked: false };
    if crate::cli::complete::asked() {
        // The shell asks for completions: the whole program answers them.
        return not_here;
    }
    let Some(cli) = Cli::parse_quick(args) else {
        return not_here;
    };
    // A config that does not read is the whole program's to explain.
    let Ok(ctx) = Context::new(cli.global.options()) else {
        return not_here;
    };
    if !crate::agent::allowed(ctx.options.no_agent) {
        return not_here;
    }
    let Some(mut agent) = Client::for_vault(&ctx) else {
        return Served::HandOver { asked: true };
    };
    let answered = match &cli.command {
        Some(Command::Token(args)) => answer_token(&ctx, &mut agent, args),
        Some(Command::Exec(args)) => answer_exec(&ctx, &mut agent, args),
        Some(Command::Status(args)) => status::from_agent(&ctx, &mut agent, args),
        _ => return not_here,
    };
    match answered {
        Ok(Some(code)) => Served::Exit(crate::exit::for_result(code)),
        Ok(None) => Served::HandOver { asked: true },
        Err(e) => {
            crate::note!("tokdeck: {}", crate::logging::one_line(&e));
            Served::Exit(crate::exit::for_failure(&cli))
        }
    }
}

fn answer_token(
    ctx: &Context,
    agent: &mut Client,
    args: &crate::cli::TokenArgs,
) -> anyhow::Result<Option<i32>> {
    let Some(issued) = tokens::agent_token(ctx, agent, &args.name, args.min_valid)? else {
        return Ok(None);
    };
    token::print_issued(&tokens::tell_warning(&args.name, issued), args.header)?;
    Ok(Some(0))
}

fn answer_exec(
    ctx: &Context,
    agent: &mut Client,
    args: &crate::cli::ExecArgs,
) -> anyhow::Result<Option<i32>> {
    let Some(issued) = tokens::agent_token(ctx, agent, &args.name, args.min_valid)? else {
        return Ok(None);
    };
    exec::replace_with(&tokens::tell_warning(&args.name, issued), args).map(Some)
}

/// Replaces this process with the whole program, given `args` (with `--no-agent` after the
/// command's name when the agent was `asked`); returns only when it cannot start.
pub fn hand_over(args: &[OsString], asked: bool) -> u8 {
    // Beside this executable (links followed, so a link to `tokdeck` on the PATH finds it),
    // never searched for on the PATH.
    let core = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(CORE),
        Err(e) => {
            crate::note!(
                "tokdeck: cannot tell where tokdeck is ({e}), to start {CORE} beside it: run {CORE} by its path"
            );
            return crate::exit::for_unstarted(args);
        }
    };
    let mut command = std::process::Command::new(&core);
    if let Some(name) = args.first() {
        // Usage lines and errors keep the name the user typed.
        command.arg0(name);
    }
    let mut rest = args.iter().skip(1);
    if asked {
        command.args(rest.next()).arg("--no-agent");
    }
    let error = command.args(rest).exec();
    crate::note!(
        "tokdeck: cannot start {}: {error}: install it beside tokdeck (`cargo install --path .` installs both)",
        core.display()
    );
    crate::exit::for_unstarted(args)
}
