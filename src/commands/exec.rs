//! `tokdeck exec NAME [--env VAR] -- CMD [ARGS...]`: CMD runs with a valid access token in its
//! environment. tokdeck replaces itself with CMD (exec), so stdin, stdout and stderr are CMD's,
//! signals reach it directly, and the exit code is its own. The token is never in argv.

use std::os::unix::process::CommandExt;

use age::secrecy::ExposeSecret;
use anyhow::anyhow;

use super::tokens::TokenSource;
use crate::cli::ExecArgs;
use crate::context::Context;
use crate::usable::Issued;

/// The variable the token goes in when neither `--env` nor the profile names one.
pub const DEFAULT_VAR: &str = "TOKDECK_ACCESS_TOKEN";

/// Runs CMD; returns only when it could not be started (126: not executable, 127: not found,
/// as shells say). Called outside the async runtime: CMD inherits none of its threads.
pub fn run(ctx: &Context, args: &ExecArgs) -> anyhow::Result<i32> {
    let issued = TokenSource::new(ctx).obtain_blocking(&args.name, args.min_valid)?;
    replace_with(&issued, args)
}

/// Replaces this process with CMD, `issued` in its environment; returns only when CMD could
/// not be started.
pub fn replace_with(issued: &Issued, args: &ExecArgs) -> anyhow::Result<i32> {
    let var = args
        .env
        .clone()
        .or_else(|| issued.env_var.clone())
        .unwrap_or_else(|| DEFAULT_VAR.into());
    // Checked where it is used, whichever way it came (the command line, the vault, the
    // agent): a variable that makes programs load code never gets a token.
    let var = crate::vault::validate::validate_env_var(&var)
        .map_err(|e| anyhow!("{e}: nothing was run"))?;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| anyhow!("no command to run: put it after --"))?;
    let expires = issued
        .expires_at
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let error = std::process::Command::new(program)
        .args(rest)
        .env(&var, issued.access_token.expose_secret())
        .env("TOKDECK_TOKEN_EXPIRES_AT", expires)
        .env("TOKDECK_PROFILE", &args.name)
        .exec();
    let name = program.to_string_lossy();
    let code = if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    crate::note!("tokdeck: cannot run {name}: {error}: check the command and your PATH");
    Ok(code)
}
