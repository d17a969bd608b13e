//! `tokdeck token`, and the token a running agent hands out, checked as any answer from
//! outside. `token`, `exec` and the small `tokdeck` executable (see [`crate::front`]) share it.

use std::io::IsTerminal;

use age::secrecy::{ExposeSecret, SecretString};
use anyhow::{anyhow, bail};

use super::oauth::TokenSource;
use crate::agent::ask::Client as AgentClient;
use crate::agent::protocol::{Reply as AgentReply, Request as AgentRequest};
use crate::context::Context;
use crate::health::lasts_at_least;
use crate::usable::Issued;

/// The token `agent` hands out for `name`, with at least `min_valid` left, checked as any
/// answer from outside: `None` when the agent keeps another vault or could not be asked (a
/// warning says why), and the caller does the work itself.
pub fn agent_token(
    ctx: &Context,
    agent: &mut AgentClient,
    name: &str,
    min_valid: Option<std::time::Duration>,
) -> anyhow::Result<Option<Issued>> {
    let request = AgentRequest::Token {
        profile: name.to_string(),
        min_valid_secs: min_valid.map(|d| d.as_secs()),
    };
    agent
        .ask(request)?
        .map(|reply| checked_validity(from_agent(name, reply)?, min_valid, ctx))
        .transpose()
}

/// `issued`, its warning (a due refresh failed, the token still works) told on stderr.
pub fn tell_warning(name: &str, issued: Issued) -> Issued {
    if let Some(warning) = &issued.warning {
        crate::note!("{name}: warning: {warning}");
    }
    issued
}

/// A token as the agent handed it out, checked as any answer from outside: the variable must
/// be one `exec` may set. The base URL is checked by `api`, the one command that sends the
/// token (and any payload) there.
fn from_agent(name: &str, reply: AgentReply) -> anyhow::Result<Issued> {
    let token = reply
        .token
        .ok_or_else(|| anyhow!("the agent sent no token for '{name}'"))?;
    let env_var = reply
        .env_var
        .map(|var| crate::vault::validate::validate_env_var(&var))
        .transpose()
        .map_err(|e| anyhow!("the agent's answer for '{name}' is refused: {e}"))?;
    Ok(Issued {
        access_token: SecretString::from(token),
        expires_at: reply.expires_at,
        warning: reply.warning,
        env_var,
        api_base: reply.api_base.unwrap_or_default(),
    })
}

/// An agent older than this client may not know `min_valid_secs`: what it handed out is
/// checked here too.
fn checked_validity(
    issued: Issued,
    min_valid: Option<std::time::Duration>,
    ctx: &Context,
) -> anyhow::Result<Issued> {
    let now = ctx.clock.now();
    let Some(min) = min_valid.filter(|&min| !lasts_at_least(issued.expires_at, now, min)) else {
        return Ok(issued);
    };
    let left = issued.expires_at.map_or(0, |at| (at - now).num_seconds());
    bail!(
        "the agent handed out a token with {left}s left, less than --min-valid {} asks: restart the agent (`tokdeck agent stop`), it may be older than this tokdeck",
        crate::duration::format_duration(min)
    )
}

/// `tokdeck token`: only the token goes to stdout (or an Authorization header line).
pub fn token(ctx: &Context, args: &crate::cli::TokenArgs) -> anyhow::Result<()> {
    let issued = TokenSource::new(ctx).obtain_blocking(&args.name, args.min_valid)?;
    print_issued(&issued, args.header)
}

/// What `token` prints: the token, or with `header` an Authorization header line.
pub fn print_issued(issued: &Issued, header: bool) -> anyhow::Result<()> {
    if header {
        let line = zeroize::Zeroizing::new(format!(
            "Authorization: Bearer {}",
            issued.access_token.expose_secret()
        ));
        return Ok(crate::output::println(&line)?);
    }
    print_token(issued)
}

/// The token on stdout: a newline on a terminal, none in a pipe (for `$(tokdeck token x)` and
/// pipes that hash or compare it).
pub fn print_token(issued: &Issued) -> anyhow::Result<()> {
    let secret = issued.access_token.expose_secret();
    if std::io::stdout().is_terminal() {
        crate::output::println(secret)?;
    } else {
        crate::output::print(secret)?;
    }
    Ok(())
}
