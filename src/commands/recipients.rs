//! `tokdeck recipients`: who can open the vault. Every change re-encrypts the vault under the
//! write lock, through the same atomic save as every other writer.

use std::fmt::Write as _;

use anyhow::bail;

use crate::cli::RecipientsCommand;
use crate::context::Context;
use crate::vault::{Store, VaultData, crypto, trust};

/// Runs `tokdeck recipients [list | add R... | remove R... [--force] [--rotate]]`.
pub async fn run(ctx: &Context, action: Option<&RecipientsCommand>) -> anyhow::Result<()> {
    if let Some(RecipientsCommand::Accept { yes }) = action {
        return accept(ctx, *yes);
    }
    let store = ctx.open_store()?;
    match action {
        None | Some(RecipientsCommand::List) => list(&store),
        Some(RecipientsCommand::Add { recipients }) => add(&store, recipients),
        Some(RecipientsCommand::Remove {
            recipients,
            force,
            rotate,
        }) => {
            remove(&store, recipients, *force, *rotate)?;
            if *rotate {
                super::rotate::rotate_all(ctx, store).await?;
            }
            Ok(())
        }
        Some(RecipientsCommand::Accept { .. }) => Ok(()),
    }
}

/// `tokdeck recipients accept`: shows how the vault differs from what this machine trusted,
/// and trusts it as it is once a person agrees (or `--yes`).
fn accept(ctx: &Context, yes: bool) -> anyhow::Result<()> {
    let Some(pins) = Context::pins() else {
        bail!("no state folder to keep trusted vaults in: set XDG_STATE_HOME or HOME");
    };
    let store = ctx.open_untrusted()?;
    if store.is_passphrase_vault() {
        crate::note!(
            "{} is protected by a passphrase: there are no recipients to accept",
            store.location()
        );
        return Ok(());
    }
    let changes = store.trust_changes(pins.clone())?;
    if changes == crate::vault::trust::Changes::default() {
        crate::note!(
            "{} is as this machine accepted it: nothing to accept",
            store.location()
        );
        return Ok(());
    }
    let mut out = String::new();
    for r in &changes.added {
        let _ = writeln!(
            out,
            "+ {r}  (new recipient: the next saves are readable with this key)"
        );
    }
    for r in &changes.removed {
        let _ = writeln!(out, "- {r}  (no longer a recipient)");
    }
    if changes.foreign {
        out.push_str("! its members' secret is not the one this machine accepted: either your team made a new vault, or someone who cannot open the vault replaced it\n");
    }
    crate::output::print(&out)?;
    if !yes && !confirmed(&format!("trust {} as it is now? [y/N] ", store.location()))? {
        bail!(
            "not accepted: tokdeck keeps refusing {} (pass --yes to accept without being asked)",
            store.location()
        );
    }
    store.accept_membership(pins)?;
    crate::note!(
        "accepted: tokdeck uses {} again (a running agent at its next read)",
        store.location()
    );
    Ok(())
}

/// Asks on the terminal; no terminal means no.
fn confirmed(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    let mut err = std::io::stderr();
    write!(err, "{question}")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn refuse_passphrase_vault(store: &Store) -> anyhow::Result<()> {
    if store.is_passphrase_vault() {
        bail!(
            "{} is protected by a passphrase, which age cannot combine with recipients: create a key-based vault with `tokdeck init --recipient ...` and move the profiles over",
            store.location()
        );
    }
    Ok(())
}

fn list(store: &Store) -> anyhow::Result<()> {
    if store.is_passphrase_vault() {
        return crate::output::println("(passphrase-protected: no recipients)").map_err(Into::into);
    }
    let mine = canonical_all(&store.unlocking_recipients());
    let mut recipients = store.read(|data| data.recipients.clone())?;
    if recipients.is_empty() {
        // A vault encrypted by the age CLI names none; it is sealed to the key that opened it.
        recipients = store.unlocking_recipients();
    }
    let mut out = String::new();
    for r in &recipients {
        let yours = crypto::canonical_recipient(r).is_ok_and(|c| mine.contains(&c));
        out.push_str(r);
        if yours {
            out.push_str("  (your key)");
        }
        out.push('\n');
    }
    crate::output::print(&out)?;
    Ok(())
}

/// A vault without a recipient list (made by the age CLI) is sealed to the key that opened
/// it: make that explicit before the list changes, or the change would lock that key out.
fn seed_from_key(data: &mut VaultData, own: &[String]) {
    if data.recipients.is_empty() {
        data.recipients = own.to_vec();
    }
}

fn canonical_all(list: &[String]) -> Vec<String> {
    list.iter()
        .filter_map(|r| crypto::canonical_recipient(r).ok())
        .collect()
}

fn add(store: &Store, wanted: &[String]) -> anyhow::Result<()> {
    refuse_passphrase_vault(store)?;
    let new: Vec<String> = wanted
        .iter()
        .map(|r| crypto::canonical_recipient(r))
        .collect::<Result<_, _>>()?;
    let own = store.unlocking_recipients();
    let (added, total) = store.update(|data| -> anyhow::Result<(usize, usize)> {
        seed_from_key(data, &own);
        let present = canonical_all(&data.recipients);
        let mut added = 0;
        for r in &new {
            if !present.contains(r) && !data.recipients.contains(r) {
                data.recipients.push(r.clone());
                added += 1;
            }
        }
        Ok((added, data.recipients.len()))
    })??;
    crate::note!(
        "{added} recipient{} added; the vault is now encrypted to {total} recipient{}",
        plural(added),
        plural(total)
    );
    Ok(())
}

fn remove(store: &Store, unwanted: &[String], force: bool, rotate: bool) -> anyhow::Result<()> {
    refuse_passphrase_vault(store)?;
    let gone: Vec<String> = unwanted
        .iter()
        .map(|r| crypto::canonical_recipient(r))
        .collect::<Result<_, _>>()?;
    let own = store.unlocking_recipients();
    let mine = canonical_all(&own);
    if !force && let Some(yours) = gone.iter().find(|r| mine.contains(r)) {
        bail!(
            "{yours} is the key you opened the vault with: removing it locks you out; pass --force if that is what you want"
        );
    }
    let exposed = store.update(|data| -> anyhow::Result<Exposed> {
        seed_from_key(data, &own);
        let before = data.recipients.len();
        data.recipients
            .retain(|r| crypto::canonical_recipient(r).map_or(true, |c| !gone.contains(&c)));
        if data.recipients.len() == before {
            bail!("none of those is a recipient of this vault: see `tokdeck recipients list`");
        }
        if data.recipients.is_empty() {
            bail!("that would leave the vault with no recipient, so nobody could open it: add another first");
        }
        // The removed key knows the old secret: a new one, naming the old one's mark, lets
        // members' machines tell this vault from one the removed key could plant.
        data.members_secret_replaces = data.members_secret.as_ref().map(trust::mark);
        data.members_secret = Some(trust::new_secret());
        Ok(Exposed::of(data))
    })??;
    // Earlier versions (a backup, KV's history) are still sealed to the removed keys.
    let history = store.forget_history().map_err(|e| {
        anyhow::anyhow!(
            "removed, and the vault is re-encrypted without them, but its earlier versions are not destroyed: {e}"
        )
    })?;
    let advice = if rotate {
        "the refresh tokens are rotated next; the client secrets only their OAuth apps can renew (then `tokdeck edit NAME --new-client-secret`)"
    } else {
        "rotate them (`tokdeck recipients remove ... --rotate` renews the refresh tokens and revokes the old ones; issue new client secrets in each OAuth app, then `tokdeck edit NAME --new-client-secret`)"
    };
    crate::note!(
        "removed; the vault is re-encrypted and {history}. Whoever held the removed key may have copied {}: {advice}",
        exposed.describe()
    );
    Ok(())
}

/// Secrets a removed member could have read.
struct Exposed {
    client_secrets: usize,
    refresh_tokens: usize,
}

impl Exposed {
    fn of(data: &VaultData) -> Self {
        Self {
            client_secrets: data.profiles.len(),
            refresh_tokens: data
                .profiles
                .iter()
                .filter(|p| p.token.as_ref().is_some_and(|t| t.refresh_token.is_some()))
                .count(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} client secret{} and {} refresh token{}",
            self.client_secrets,
            plural(self.client_secrets),
            self.refresh_tokens,
            plural(self.refresh_tokens)
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
