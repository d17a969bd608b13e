//! `vault copy`: moving a vault between a file and OpenBao, still encrypted.

use std::io::Read;

use anyhow::{Context as _, bail};

use crate::cli::VaultCommand;
use crate::context::Context;
use crate::vault::{Location, VaultError};

/// `tokdeck vault ...`
pub fn run(ctx: &Context, action: &VaultCommand) -> anyhow::Result<()> {
    match action {
        VaultCommand::Copy { dest } => copy(ctx, &Location::parse(dest)?),
    }
}

/// Copies the ciphertext as it is: no key is needed, and what arrives opens with the same
/// keys. The source stays: the note says to retire it, so two copies do not drift apart.
/// The copy is the vault this machine trusted at `from`: it trusts it at `to` too, rather
/// than whatever it finds there first.
fn copy_trust(from: &Location, to: &Location) {
    let Some(pins) = Context::pins() else { return };
    let name = from.canonical();
    if let Ok(Some(mut accepted)) = pins.accepted(&name) {
        accepted.location = to.canonical();
        if let Err(e) = pins.record(&accepted) {
            tracing::warn!(error = %e, "cannot record that this machine trusts the copy");
        }
    }
}

fn copy(ctx: &Context, to: &Location) -> anyhow::Result<()> {
    let from = ctx.vault_location()?;
    if crate::agent::canonical(&from) == crate::agent::canonical(to) {
        bail!("{to} is where the vault already is: name another place");
    }
    VaultError::check_exists(&from)?;
    let source = ctx.backend(&from)?;
    let mut ciphertext = Vec::new();
    source
        .open()?
        .reader
        .read_to_end(&mut ciphertext)
        .with_context(|| format!("cannot read {from}"))?;
    let target = ctx.backend(to)?;
    let taken = || {
        anyhow::anyhow!(
            "a vault already exists at {to}: remove it first, or give `tokdeck vault copy` another DEST"
        )
    };
    if target.probe().is_some() {
        return Err(taken());
    }
    target.create(&ciphertext).map_err(|e| match e {
        VaultError::AlreadyExists(_) => taken(),
        other => other.into(),
    })?;
    copy_trust(&from, to);
    crate::note!(
        "copied the vault, still encrypted, from {from} to {to}: point --vault, TOKDECK_VAULT or config `vault` at {to} on every machine, then remove {from} (two copies would fork the refresh tokens)"
    );
    Ok(())
}
