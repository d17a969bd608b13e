//! The full-screen app.

use crate::commands::context::Context;

/// Opens the TUI over the vault.
pub async fn run(_ctx: &Context) -> anyhow::Result<()> {
    anyhow::bail!("the full-screen app is not built yet: use the subcommands (see --help)")
}
