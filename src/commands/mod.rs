//! What each subcommand does. `main` parses, calls [`run`], and maps the result to an exit code.

pub mod agent;
pub mod api;
pub mod audit;
pub mod exec;
pub mod import_token;
pub mod inspect;
pub mod oauth;
mod on_worker;
pub mod profiles;
pub mod recipients;
pub mod rotate;
pub mod server_args;
pub mod share;
pub mod status;
pub mod token;
pub mod tokens;
pub mod vault;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::context::Context;

/// Runs the parsed command line; returns the process exit code.
///
/// `token`, `exec` and `status`, which scripts and monitors call in loops, ask a running
/// agent before any async runtime starts; `token` and `exec` start one only to do the work
/// themselves, and `status` needs none. Commands that only read and write the vault run
/// without a runtime too (with file logging): the store is synchronous, and async code
/// reaches it only through a [`crate::vault::StoreHandle`]. The rest run on a runtime.
pub fn run(cli: &Cli) -> anyhow::Result<i32> {
    let ctx = Context::new(cli.global.options())?;
    match &cli.command {
        Some(Command::Token(args)) => token::token(&ctx, args).map(|()| 0),
        Some(Command::Exec(args)) => exec::run(&ctx, args),
        Some(Command::Status(args)) => status::run(&ctx, args),
        Some(command) if runs_without_a_runtime(command) => {
            let _logging = crate::logging::init();
            on_the_store(&ctx, command)
        }
        command => {
            let threads = crate::runtime::Threads::for_command(command.as_ref());
            crate::runtime::start(threads)?.block_on(on_runtime(&ctx, cli))
        }
    }
}

/// Whether `command` is one of [`on_the_store`]'s.
fn runs_without_a_runtime(command: &Command) -> bool {
    matches!(
        command,
        Command::Init(_)
            | Command::Add(_)
            | Command::Edit(_)
            | Command::Remove { .. }
            | Command::ImportToken(_)
            | Command::Audit(_)
            | Command::Export(_)
            | Command::Import(_)
            | Command::Inspect { .. }
            | Command::Recipients { .. }
            | Command::Vault { .. }
            | Command::Completions { .. }
            | Command::Man
    ) || matches!(command, Command::Agent(args) if agent::control_of(args).is_some())
}

/// The commands that run without a runtime: synchronous work on the vault, and output.
/// `add`, `edit` and `recipients remove --rotate` start one for their network step alone.
fn on_the_store(ctx: &Context, command: &Command) -> anyhow::Result<i32> {
    match command {
        Command::Init(args) => profiles::init(ctx, args),
        Command::Add(args) => profiles::add(ctx, args),
        Command::Edit(args) => profiles::edit(ctx, args),
        Command::Remove { name } => profiles::remove(ctx, name),
        Command::ImportToken(args) => import_token::run(ctx, args),
        Command::Audit(args) => audit::run(ctx, args),
        Command::Export(args) => share::export(ctx, args),
        Command::Import(args) => share::import(ctx, args),
        Command::Inspect { name, json } => inspect::run(ctx, name, *json),
        Command::Agent(args) if let Some(asked) = agent::control_of(args) => {
            agent::control(ctx, asked)
        }
        Command::Recipients { action } => recipients::run(ctx, action.as_ref()),
        Command::Vault { action } => vault::run(ctx, action),
        Command::Completions { shell } => {
            crate::output::print(&crate::cli::complete::registration(*shell)?).map_err(Into::into)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            page.extend_from_slice(SEE_ALSO.as_bytes());
            crate::output::print_bytes(&page).map_err(Into::into)
        }
        _ => anyhow::bail!("this command runs on the async runtime"),
    }
    .map(|()| 0)
}

/// The commands that run on the async runtime.
async fn on_runtime(ctx: &Context, cli: &Cli) -> anyhow::Result<i32> {
    match &cli.command {
        None => crate::tui::run(ctx).await.map(|()| 0),
        Some(Command::Authorize(args)) => oauth::authorize(ctx, args).await.map(|()| 0),
        Some(Command::Exchange { name, code, .. }) => {
            oauth::exchange(ctx, name, code).await.map(|()| 0)
        }
        Some(Command::Refresh(args)) => oauth::refresh(ctx, args).await.map(|()| 0),
        Some(Command::Api(args)) => api::run(ctx, args).await,
        Some(Command::Agent(args)) => agent::run(ctx, args).await,
        Some(Command::Rediscover { name }) => oauth::rediscover(ctx, name).await.map(|()| 0),
        Some(Command::Check { name }) => oauth::check(ctx, name).await.map(|()| 0),
        Some(Command::Revoke { name }) => oauth::revoke(ctx, name).await.map(|()| 0),
        // Run before any runtime starts (see [`run`]).
        Some(_) => anyhow::bail!("this command does not run on the async runtime"),
    }
}

/// The manual page's last section: the guide and the references beside it, as the README
/// links them.
const SEE_ALSO: &str = r#".SH "SEE ALSO"
\fBage\fR(1), \fBbao\fR(1).
The user guide is README.md in the source; every command and option is in docs/commands.md,
and how the parts behave in docs/providers.md, docs/agent.md and docs/vault.md.
SECURITY.md says what is protected and what is not.
"#;
