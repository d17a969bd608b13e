//! Shell completion that knows the profiles. `tokdeck completions SHELL` prints a script that
//! asks tokdeck at each Tab (clap_complete's `COMPLETE=SHELL` protocol); a profile name is
//! completed from a running agent's status, so completing never opens the vault, never asks
//! for a key and never waits on a server. Without an agent no names are offered; commands
//! and flags still are.

use anyhow::Context as _;
use clap::CommandFactory;
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::{CompleteEnv, Shells};

use crate::agent::ask::Client;
use crate::agent::protocol::Request;
use crate::context::Context;

/// The variable that makes tokdeck answer its shell's completion request.
pub const VAR: &str = "COMPLETE";

/// Whether the shell asks for completions: `COMPLETE` names a shell.
pub fn asked() -> bool {
    std::env::var_os(VAR).is_some_and(|shell| !shell.is_empty() && shell != "0")
}

/// Answers the shell's completion request and exits, when it made one; returns otherwise.
pub fn answer_if_asked() {
    CompleteEnv::with_factory(super::Cli::command)
        .var(VAR)
        .bin("tokdeck")
        .complete();
}

/// The script that registers tokdeck's completion with `shell`; at each Tab it runs this
/// program (by its full path) with `COMPLETE` set.
pub fn registration(shell: clap_complete::Shell) -> anyhow::Result<String> {
    let name = shell.to_string();
    let shells = Shells::builtins();
    let completer = shells
        .completer(&name)
        .with_context(|| format!("no completion for {name}: try bash, zsh or fish"))?;
    let program = std::env::current_exe().context("cannot find this program's path")?;
    let mut script = Vec::new();
    completer.write_registration(
        VAR,
        "tokdeck",
        "tokdeck",
        &program.to_string_lossy(),
        &mut script,
    )?;
    Ok(String::from_utf8_lossy(&script).into_owned())
}

/// What a profile NAME argument completes to: the names the running agent keeps.
pub fn profile_names() -> ArgValueCandidates {
    ArgValueCandidates::new(names_from_agent)
}

/// The running agent's profiles, each with its state as the description zsh and fish show;
/// none when no agent runs for the vault the environment names, or it does not answer.
fn names_from_agent() -> Vec<CompletionCandidate> {
    // The global options as the environment sets them (TOKDECK_VAULT, TOKDECK_CONFIG).
    let args = ["tokdeck".into(), "status".into()];
    let Ok(global) = super::Cli::parse_args(&args).map(|cli| cli.global) else {
        return Vec::new();
    };
    let Ok(ctx) = Context::new(global.options()) else {
        return Vec::new();
    };
    if !crate::agent::allowed(ctx.options.no_agent) {
        return Vec::new();
    }
    let Some(mut agent) = Client::for_vault(&ctx) else {
        return Vec::new();
    };
    let request = Request::Status {
        json: true,
        warn_secs: ctx.config.warn.as_secs(),
        filter: None,
    };
    let text = match agent.ask(request) {
        Ok(Some(reply)) => reply.text.unwrap_or_default(),
        _ => return Vec::new(),
    };
    candidates(&text)
}

/// The names in a `status --json` answer. An agent's text is untrusted: a name that would
/// not be safe to print is left out.
fn candidates(status_json: &str) -> Vec<CompletionCandidate> {
    let Ok(rows) = serde_json::from_str::<Vec<serde_json::Value>>(status_json) else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|row| {
            let name = row["name"].as_str()?;
            let plain =
                crate::display::untrusted(name) == name && !name.contains(char::is_whitespace);
            let state = row["state"].as_str().unwrap_or_default();
            plain.then(|| CompletionCandidate::new(name).help(Some(state.to_owned().into())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_a_status_answer_and_unsafe_ones_are_left_out() {
        let answer = r#"[{"name":"loop","state":"ok"},{"name":"bad\u001b[2J","state":"ok"},
            {"name":"two words","state":"expired"},{"name":"payroll","state":"expiring"}]"#;
        let names: Vec<String> = candidates(answer)
            .iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["loop", "payroll"]);
        assert!(candidates("not json").is_empty());
    }

    #[test]
    fn every_shell_gets_a_registration_that_calls_this_program() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = registration(shell).unwrap_or_default();
            assert!(script.contains(VAR), "{shell}: {script}");
            assert!(script.contains("tokdeck"), "{shell}: {script}");
        }
    }
}
