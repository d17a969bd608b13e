//! What it takes to open the app: unlock the vault (any passphrase prompt comes before the
//! screen is taken over), pick the theme, work out the settings, then hand over to the runtime.

use super::app::{App, Settings};
use super::theme::Theme;
use crate::config::Paths;
use crate::context::Context;
use crate::vault::Store;

/// Picks the theme: `NO_COLOR` wins, then --theme / config.
pub fn resolve_theme(ctx: &Context) -> anyhow::Result<Theme> {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return Ok(Theme::monochrome());
    }
    let name = ctx
        .options
        .theme
        .clone()
        .unwrap_or_else(|| ctx.config.theme.clone());
    let user_dir = Paths::config_dir().map(|d| d.join("themes"));
    Theme::load(&name, user_dir.as_deref())
}

/// Opens the TUI over the vault.
pub async fn run(ctx: &Context) -> anyhow::Result<()> {
    // Unlock (and any passphrase prompt) happens before the screen is taken over.
    let store = ctx.store_handle().await?;
    let theme = resolve_theme(ctx)?;
    let handle = ctx.worker(store.clone(), crate::audit::Who::App)?;
    let settings = Settings {
        warn: ctx.config.warn,
        refresh_margin: ctx.config.refresh_margin,
        vault_label: home_relative(store.location()),
        utc_offset: ctx.clock.utc_offset(),
        read_only_reason: read_only_reason(store.location()),
    };
    let data = store.run(Store::snapshot).await?;
    let warnings = crate::context::control_character_warnings(&data);
    let mut app = App::new(data.profiles, ctx.clock.now(), settings);
    for warning in warnings {
        app.warn(warning);
    }
    let audit = ctx.audit_log(crate::audit::Who::App).map(|log| log.path);
    super::runtime::run_in_terminal(app, theme, store, handle, ctx.clock.clone(), audit).await
}

/// Why changes cannot be saved, when the vault's folder is not writable (a read-only mount, a
/// shared checkout): the app then shows the vault but refuses changes up front.
fn read_only_reason(vault: &crate::vault::Location) -> Option<String> {
    let dir = vault.folder()?;
    (!crate::platform::can_write_in(dir)).then(|| {
        format!(
            "read-only: {} is not writable, so changes cannot be saved",
            dir.display()
        )
    })
}

/// `~/...` for paths under the home directory.
fn home_relative(vault: &crate::vault::Location) -> String {
    let Some(path) = vault.file() else {
        return vault.to_string();
    };
    match directories::BaseDirs::new().and_then(|b| {
        path.strip_prefix(b.home_dir())
            .ok()
            .map(|p| p.display().to_string())
    }) {
        Some(rest) => format!("~/{rest}"),
        None => path.display().to_string(),
    }
}
