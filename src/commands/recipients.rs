//! `tokdeck recipients`: who can open the vault. Every change re-encrypts the vault under the
//! write lock, through the same atomic save as every other writer.

use std::fmt::Write as _;

use anyhow::bail;

use crate::cli::RecipientsCommand;
use crate::context::Context;
use crate::vault::groups::Group;
use crate::vault::store::Arrangement;
use crate::vault::{Store, VaultData, crypto, trust};

/// Runs `tokdeck recipients [list | add R... | remove R... [--force] [--rotate]]`, each to
/// the members, a group (`--group G`) or the operators (`--operator`).
pub fn run(ctx: &Context, action: Option<&RecipientsCommand>) -> anyhow::Result<()> {
    if let Some(RecipientsCommand::Accept { yes }) = action {
        return accept(ctx, *yes);
    }
    let store = ctx.open_store()?;
    match action {
        None | Some(RecipientsCommand::List) => list(&store),
        Some(RecipientsCommand::Add { recipients, to }) => {
            add(&store, recipients, &Readers::of(to))
        }
        Some(RecipientsCommand::Remove {
            recipients,
            to,
            force,
            rotate,
        }) => {
            let exposed = remove(&store, recipients, &Readers::of(to), *force, *rotate)?;
            if *rotate {
                let store = crate::vault::StoreHandle::new(store);
                crate::runtime::block_on(super::rotate::rotate_exposed(ctx, store, &exposed))??;
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
    let (mut recipients, groups, operators) = store.read(|data| {
        (
            data.recipients.clone(),
            data.groups.clone(),
            data.operators.clone(),
        )
    })?;
    if recipients.is_empty() {
        // A vault encrypted by the age CLI names none; it is sealed to the key that opened it.
        recipients = store.unlocking_recipients();
    }
    let line = |out: &mut String, indent: &str, r: &String| {
        let yours = crypto::canonical_recipient(r).is_ok_and(|c| mine.contains(&c));
        let _ = writeln!(
            out,
            "{indent}{r}{}",
            if yours { "  (your key)" } else { "" }
        );
    };
    let mut out = String::new();
    for r in &recipients {
        line(&mut out, "", r);
    }
    for group in &groups {
        let _ = writeln!(out, "group {} (its profiles' entries):", group.name);
        for r in &group.recipients {
            line(&mut out, "  ", r);
        }
    }
    if !operators.is_empty() {
        out.push_str("operators (status only):\n");
        for r in &operators {
            line(&mut out, "  ", r);
        }
    }
    crate::output::print(&out)?;
    Ok(())
}

/// Whose recipient list a change is to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Readers {
    Members,
    Group(String),
    Operators,
}

impl Readers {
    fn of(args: &crate::cli::ReadersArgs) -> Self {
        match (&args.group, args.operator) {
            (Some(group), _) => Self::Group(group.clone()),
            (None, true) => Self::Operators,
            (None, false) => Self::Members,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Members => "the vault".into(),
            Self::Group(name) => format!("group {name}"),
            Self::Operators => "the operators".into(),
        }
    }

    /// The list this names in `data`; a group is made when `create`. Changing a group's
    /// list seals its entries again, which only a holder of one of its keys can do.
    fn list_in<'a>(
        &self,
        data: &'a mut VaultData,
        own: &[String],
        create: bool,
    ) -> anyhow::Result<&'a mut Vec<String>> {
        let name = match self {
            Self::Members => return Ok(&mut data.recipients),
            Self::Operators => return Ok(&mut data.operators),
            Self::Group(name) => name,
        };
        let at = match data.groups.iter().position(|g| &g.name == name) {
            Some(at) => at,
            None if create => {
                data.groups.push(Group {
                    name: name.clone(),
                    recipients: Vec::new(),
                });
                data.groups.len() - 1
            }
            None => bail!("the vault has no group {name}: see `tokdeck recipients list`"),
        };
        let group = &mut data.groups[at];
        let mine = canonical_all(own);
        let member = canonical_all(&group.recipients)
            .iter()
            .any(|r| mine.contains(r));
        if !group.recipients.is_empty() && !member {
            bail!(
                "no key here is one of group {name}'s, so its entries cannot be sealed again: ask a member of {name} to run this"
            );
        }
        Ok(&mut group.recipients)
    }
}

/// Groups and operators give some readers less than all: only where each profile is an entry.
fn refuse_unless_entries(store: &Store, to: &Readers) -> anyhow::Result<()> {
    if *to != Readers::Members && store.arrangement() != Arrangement::Entries {
        bail!(
            "groups and operators are for a team vault laid out as entries, where each profile is sealed to its readers: run `tokdeck vault layout entries` first"
        );
    }
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

fn add(store: &Store, wanted: &[String], to: &Readers) -> anyhow::Result<()> {
    refuse_passphrase_vault(store)?;
    refuse_unless_entries(store, to)?;
    let new: Vec<String> = wanted
        .iter()
        .map(|r| crypto::canonical_recipient(r))
        .collect::<Result<_, _>>()?;
    let own = store.unlocking_recipients();
    let (added, total) = store.update(|data| -> anyhow::Result<(usize, usize)> {
        seed_from_key(data, &own);
        let list = to.list_in(data, &own, true)?;
        let present = canonical_all(list);
        let mut added = 0;
        for r in &new {
            if !present.contains(r) && !list.contains(r) {
                list.push(r.clone());
                added += 1;
            }
        }
        Ok((added, list.len()))
    })??;
    crate::note!(
        "{added} recipient{} added; {} is now encrypted to {total} recipient{}",
        plural(added),
        to.describe(),
        plural(total)
    );
    Ok(())
}

/// Removes `unwanted` from the list `to` names. Returns the profiles whose secrets the
/// removed keys could read.
fn remove(
    store: &Store,
    unwanted: &[String],
    to: &Readers,
    force: bool,
    rotate: bool,
) -> anyhow::Result<Vec<String>> {
    refuse_passphrase_vault(store)?;
    refuse_unless_entries(store, to)?;
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
        let could = readable_by(data, &gone);
        take_out(data, to, &own, &gone)?;
        let still = readable_by(data, &gone);
        let exposed = Exposed::of(data, could.difference(&still));
        // A removed key that reads the head no more knew the old secret: a new one, naming
        // the old one's mark, lets members' machines tell this vault from one it could plant.
        if !canonical_all(&data.all_readers())
            .iter()
            .any(|r| gone.contains(r))
        {
            data.members_secret_replaces = data.members_secret.as_ref().map(trust::mark);
            data.members_secret = Some(trust::new_secret());
        }
        Ok(exposed)
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
    Ok(exposed.names)
}

/// Takes `gone` out of the list `to` names in `data`; a group left with no recipient and no
/// profile is removed.
fn take_out(
    data: &mut VaultData,
    to: &Readers,
    own: &[String],
    gone: &[String],
) -> anyhow::Result<()> {
    let list = to.list_in(data, own, false)?;
    let before = list.len();
    list.retain(|r| crypto::canonical_recipient(r).map_or(true, |c| !gone.contains(&c)));
    if list.len() == before {
        bail!(
            "none of those is a recipient of {}: see `tokdeck recipients list`",
            to.describe()
        );
    }
    let empty = list.is_empty();
    match to {
        Readers::Members if empty => bail!(
            "that would leave the vault with no recipient, so nobody could open it: add another first"
        ),
        Readers::Group(name) if empty => {
            if data
                .profiles
                .iter()
                .any(|p| p.group.as_deref() == Some(name))
            {
                bail!(
                    "that would leave group {name} with no recipient while profiles are in it: move them first (`tokdeck edit NAME --group OTHER`)"
                );
            }
            data.groups.retain(|g| &g.name != name);
        }
        _ => {}
    }
    Ok(())
}

/// Secrets a removed member could have read.
struct Exposed {
    names: Vec<String>,
    client_secrets: usize,
    refresh_tokens: usize,
}

/// The profiles of `data` whose entries are sealed to one of the keys `keys`.
fn readable_by(data: &VaultData, keys: &[String]) -> std::collections::BTreeSet<String> {
    data.profiles
        .iter()
        .filter(|p| {
            canonical_all(data.entry_recipients(p))
                .iter()
                .any(|r| keys.contains(r))
        })
        .map(|p| p.name.clone())
        .collect()
}

impl Exposed {
    /// The secrets of the profiles of `data` called `names`.
    fn of<'a>(data: &VaultData, names: impl Iterator<Item = &'a String>) -> Self {
        let names: Vec<String> = names.cloned().collect();
        let readable: Vec<_> = data
            .profiles
            .iter()
            .filter(|p| names.contains(&p.name))
            .collect();
        Self {
            names,
            client_secrets: readable.len(),
            refresh_tokens: readable
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
