//! `tokdeck status`: every profile's state as a table or JSON (see [`crate::report`]), with a
//! monitoring exit code.

use crate::agent::ask::Client;
use crate::cli::StatusArgs;
use crate::context::Context;
use crate::report;

/// `tokdeck status`: from the running agent when one keeps this vault, else from the vault.
/// Called outside the async runtime: it needs none.
pub fn run(ctx: &Context, args: &StatusArgs) -> anyhow::Result<i32> {
    if let Some(mut agent) = Client::for_vault(ctx)
        && let Some(code) = from_agent(ctx, &mut agent, args)?
    {
        return Ok(code);
    }
    let warn = args.warn.unwrap_or(ctx.config.warn);
    // No runtime started the log file for this command; opening the vault is worth a line.
    let _logging = crate::logging::init();
    // Not `open_store`: status reads what it shows itself (a vault in entries, its shards).
    let store = ctx.open_vault()?;
    let filter = args.filter.clone().unwrap_or_default();
    let asked = report::Asked {
        now: ctx.clock.now(),
        warn,
        filter: &filter,
        json: args.json,
    };
    let shown = report::status_of(&store, asked)?;
    for line in &shown.warnings {
        crate::note!("{line}");
    }
    crate::output::print(&shown.text)?;
    Ok(shown.code)
}

/// Prints what `agent` says of every profile; its exit code, or `None` when it keeps another
/// vault or could not be asked (a warning says why), and the caller reads the vault itself.
pub fn from_agent(
    ctx: &Context,
    agent: &mut Client,
    args: &StatusArgs,
) -> anyhow::Result<Option<i32>> {
    let warn = args.warn.unwrap_or(ctx.config.warn);
    let request = crate::agent::protocol::Request::Status {
        json: args.json,
        warn_secs: warn.as_secs(),
        filter: args.filter.as_ref().map(ToString::to_string),
    };
    let Some(reply) = agent.ask(request)? else {
        return Ok(None);
    };
    // The agent's text is shown, never executed: a socket can be answered by anyone able to
    // reach it, and a table or JSON document holds no control character of its own.
    let text = reply.text.as_deref().unwrap_or_default();
    crate::output::print(&crate::display::untrusted_lines(text))?;
    Ok(Some(reply.code.unwrap_or(3)))
}
