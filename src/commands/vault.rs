//! `vault copy`: moving a vault between a file and OpenBao, still encrypted; `vault layout`:
//! a team vault in OpenBao as one secret, or as entries.

use std::io::Read;

use anyhow::{Context as _, bail};

use crate::cli::{LayoutArg, VaultCommand};
use crate::context::Context;
use crate::vault::store::Arrangement;
use crate::vault::{Location, VaultError};

/// `tokdeck vault ...`
pub fn run(ctx: &Context, action: &VaultCommand) -> anyhow::Result<()> {
    match action {
        VaultCommand::Copy { dest, entries } => copy(ctx, &Location::parse(dest)?, *entries),
        VaultCommand::Layout { to } => lay_out(ctx, *to),
    }
}

/// Moves the vault into entries or back into one secret, under the lease.
fn lay_out(ctx: &Context, to: LayoutArg) -> anyhow::Result<()> {
    let store = ctx.open_vault()?;
    let (target, said) = match to {
        LayoutArg::Entries => (Arrangement::Entries, "one entry per profile"),
        LayoutArg::Single => (Arrangement::Single, "one secret"),
    };
    let location = store.location().clone();
    if store.arrange(target)? {
        crate::note!("{location} is now stored as {said}; every machine reads it as it is");
    } else {
        crate::note!("{location} is already stored as {said}: nothing moved");
    }
    Ok(())
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

fn copy(ctx: &Context, to: &Location, entries: bool) -> anyhow::Result<()> {
    let from = ctx.vault_location()?;
    if crate::agent::canonical(&from) == crate::agent::canonical(to) {
        bail!("{to} is where the vault already is: name another place");
    }
    VaultError::check_exists(&from)?;
    let source = ctx.backend(&from)?;
    let stored = source.open()?;
    let target = ctx.backend(to)?;
    let taken = || {
        anyhow::anyhow!(
            "a vault already exists at {to}: remove it first, or give `tokdeck vault copy` another DEST"
        )
    };
    if target.probe().is_some() {
        return Err(taken());
    }
    let laid_out = matches!(stored.layout, crate::vault::backend::Layout::Entries(_));
    let copied = if entries || laid_out {
        // Not the ciphertext as it is: the copy is made of the vault, opened with the key.
        drop(stored);
        let store = ctx.open_vault()?;
        let shape = if entries {
            Arrangement::Entries
        } else {
            Arrangement::Single
        };
        store.copy_to(target.as_ref(), shape)
    } else {
        let mut ciphertext = Vec::new();
        stored
            .source
            .into_reader()
            .read_to_end(&mut ciphertext)
            .with_context(|| format!("cannot read {from}"))?;
        target.create(&ciphertext).map(|_| ())
    };
    copied.map_err(|e| match e {
        VaultError::AlreadyExists(_) => taken(),
        other => other.into(),
    })?;
    copy_trust(&from, to);
    crate::note!(
        "copied the vault, still encrypted, from {from} to {to}: point --vault, TOKDECK_VAULT or config `vault` at {to} on every machine, then remove {from} (two copies would fork the refresh tokens)"
    );
    Ok(())
}
