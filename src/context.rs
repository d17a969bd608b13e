//! Resolving where the vault is and how to open it, from flags, environment and config.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use age::secrecy::SecretString;
use anyhow::{Context as _, anyhow};
use zeroize::Zeroizing;

use crate::audit::{AuditLog, Who};
use crate::clock::Clock;
use crate::config::{Config, Paths};
use crate::oauth::OAuthClient;
use crate::vault::backend::openbao::OpenBaoBackend;
use crate::vault::backend::{Backend, FileBackend};
use crate::vault::{
    IdentityFile, Location, Store, StoreHandle, Unlock, VaultData, VaultError, crypto,
};
use crate::worker::{self, WorkerConfig, WorkerHandle};

/// One warning per profile field that holds control characters (see
/// [`VaultData::fields_with_control_characters`]).
pub fn control_character_warnings(data: &VaultData) -> Vec<String> {
    data.fields_with_control_characters()
        .into_iter()
        .map(|(profile, field)| control_character_warning(&profile, field))
        .collect()
}

/// The same for one profile.
pub fn profile_control_character_warnings(profile: &crate::vault::Profile) -> Vec<String> {
    profile
        .fields_with_control_characters()
        .into_iter()
        .map(|field| control_character_warning(&profile.name, field))
        .collect()
}

fn control_character_warning(profile: &str, field: &str) -> String {
    format!(
        "warning: profile '{profile}': {field} holds control characters; they are shown escaped: fix them with `tokdeck edit`"
    )
}

/// What this run was told on its command line or in its environment, whatever parsed it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The vault file, when named.
    pub vault: Option<PathBuf>,
    /// The identity file that opens the vault, when named.
    pub identity: Option<PathBuf>,
    /// A file whose first line is the vault's passphrase.
    pub passphrase_file: Option<PathBuf>,
    /// The settings file, when not the default one.
    pub config: Option<PathBuf>,
    /// Open the vault here even when an agent runs.
    pub no_agent: bool,
    /// The app's colour theme, when named.
    pub theme: Option<String>,
}

/// Settings resolved once per run.
#[derive(Clone)]
pub struct Context {
    pub options: Options,
    pub config: Config,
    pub clock: Clock,
}

impl Context {
    /// Reads the config named by the options (or the default one).
    pub fn new(options: Options) -> anyhow::Result<Self> {
        let config = Config::load(options.config.as_deref())?;
        Ok(Self {
            options,
            config,
            clock: Clock::System,
        })
    }

    /// Where the vault is: --vault, `TOKDECK_VAULT`, config `vault`, or the data dir default.
    /// A name in the shape of a URL is refused by its scheme, never taken for a path.
    pub fn vault_location(&self) -> anyhow::Result<Location> {
        let named = self
            .options
            .vault
            .clone()
            .or_else(|| self.config.vault.clone())
            .or_else(Paths::default_vault)
            .ok_or_else(|| anyhow!("no home directory to keep the vault in: pass --vault PATH"))?;
        Ok(Location::parse(&named)?)
    }

    /// What keeps the vault at `location`: its file, or its secret in OpenBao.
    pub fn backend(&self, location: &Location) -> anyhow::Result<Box<dyn Backend>> {
        Ok(match location {
            Location::File(path) => Box::new(FileBackend::new(path)),
            Location::OpenBao(kv) => {
                let connection =
                    crate::openbao::connection(self.config.http_timeout, self.extra_roots()?)?;
                Box::new(OpenBaoBackend::new(kv, connection)?)
            }
        })
    }

    /// The identity file named by flags or config, if any.
    pub fn identity_path(&self) -> Option<PathBuf> {
        self.options
            .identity
            .clone()
            .or_else(|| self.config.identity.clone())
    }

    /// Reads the passphrase from --passphrase-file, or asks on the terminal.
    pub fn passphrase(&self, vault: &Location, confirm: bool) -> anyhow::Result<SecretString> {
        if let Some(file) = &self.options.passphrase_file {
            let text = Zeroizing::new(
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read passphrase file {}", file.display()))?,
            );
            let line = text.lines().next().unwrap_or_default();
            if line.is_empty() {
                return Err(anyhow!(
                    "passphrase file {} is empty: put the passphrase on its first line",
                    file.display()
                ));
            }
            return Ok(SecretString::from(line.to_string()));
        }
        if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
            return Err(VaultError::NeedsPassphrase {
                path: vault.clone(),
            }
            .into());
        }
        let first = Zeroizing::new(
            rpassword::prompt_password(format!("passphrase for {vault}: ")).map_err(|_| {
                VaultError::NeedsPassphrase {
                    path: vault.clone(),
                }
            })?,
        );
        if first.is_empty() {
            return Err(anyhow!(
                "empty passphrase: type one, or use --identity instead"
            ));
        }
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password("repeat the passphrase: ")?);
            if *again != *first {
                return Err(anyhow!("the passphrases differ: run the command again"));
            }
        }
        Ok(SecretString::from(first.to_string()))
    }

    /// How to open the vault at `path`, whose first bytes (`head`) tell passphrase from keys.
    pub fn unlock_for(&self, path: &Location, head: &[u8]) -> anyhow::Result<Unlock> {
        if let Some(identity) = self.identity_path() {
            return Ok(Unlock::Identity(IdentityFile::load(
                &identity,
                crate::prompt::Terminal,
            )?));
        }
        if self.options.passphrase_file.is_some() || crypto::is_passphrase_file(head) {
            return Ok(Unlock::Passphrase(self.passphrase(path, false)?));
        }
        match Paths::default_identity().filter(|p| p.exists()) {
            Some(default) => Ok(Unlock::Identity(IdentityFile::load(
                &default,
                crate::prompt::Terminal,
            )?)),
            None => Err(VaultError::NeedsIdentity { path: path.clone() }.into()),
        }
    }

    /// Opens the vault, reads every profile, and warns about fields that hold control
    /// characters.
    pub fn open_store(&self) -> anyhow::Result<Arc<Store>> {
        let store = self.open_vault()?;
        for line in store.read(control_character_warnings)? {
            crate::note!("{line}");
        }
        Ok(store)
    }

    /// Opens the vault without reading its profiles yet: for commands that use one profile
    /// and show none of its fields (`token`, `exec`, `api`), so only that profile is parsed.
    pub fn open_vault(&self) -> anyhow::Result<Arc<Store>> {
        let store = self.open_untrusted()?;
        let store = match Self::pins() {
            Some(pins) => store.trusting(pins)?,
            None => store,
        };
        Ok(Arc::new(store))
    }

    /// [`Self::open_store`] on the blocking pool, for async code: the store's work must not
    /// run on the runtime's threads ([`StoreHandle`]).
    pub async fn store_handle(&self) -> anyhow::Result<StoreHandle> {
        self.opened_on_the_pool(Self::open_store).await
    }

    /// [`Self::open_vault`] on the blocking pool, for async code.
    pub async fn vault_handle(&self) -> anyhow::Result<StoreHandle> {
        self.opened_on_the_pool(Self::open_vault).await
    }

    async fn opened_on_the_pool(
        &self,
        open: fn(&Self) -> anyhow::Result<Arc<Store>>,
    ) -> anyhow::Result<StoreHandle> {
        let ctx = self.clone();
        let store = crate::vault::handle::on_the_pool(move || open(&ctx)).await??;
        Ok(StoreHandle::new(store))
    }

    /// Opens the vault without checking it against what this machine accepted of it
    /// ([`crate::vault::trust`]): only for `recipients accept`, which shows the change first.
    pub fn open_untrusted(&self) -> anyhow::Result<Store> {
        let location = self.vault_location()?;
        VaultError::check_exists(&location)?;
        let backend = self.backend(&location)?;
        let stored = backend.open()?;
        let unlock = self.unlock_for(&location, &stored.stamp.head)?;
        Ok(Store::open_stored(backend, stored, unlock)?)
    }

    /// Where this machine pins the vaults it trusts (`$XDG_STATE_HOME/tokdeck/trusted`).
    pub fn pins() -> Option<crate::vault::trust::Pins> {
        Paths::state_dir().map(|dir| crate::vault::trust::Pins::in_dir(&dir))
    }

    /// The HTTP client with the configured timeout and certificate authorities.
    pub fn client(&self) -> anyhow::Result<OAuthClient> {
        Ok(OAuthClient::trusting(
            self.config.http_timeout,
            &self.config.api_version,
            &self.extra_roots()?,
        )?)
    }

    /// The certificate authorities of config `ca_file`, trusted besides the usual ones.
    pub fn extra_roots(&self) -> anyhow::Result<Vec<reqwest::Certificate>> {
        match &self.config.ca_file {
            Some(path) => crate::http::load_roots(path).map_err(anyhow::Error::from),
            None => Ok(Vec::new()),
        }
    }

    /// Starts the worker over `store`; its jobs are recorded in the audit log as `who`'s.
    pub fn worker(&self, store: StoreHandle, who: Who) -> anyhow::Result<WorkerHandle> {
        Ok(worker::spawn(WorkerConfig {
            spool: worker::Spool::for_vault(store.location()),
            store,
            client: self.client()?,
            clock: self.clock.clone(),
            max_concurrent_jobs: self.config.max_concurrent_jobs,
            audit: self.audit_log(who),
            one_shot: who == Who::Cli,
        }))
    }

    /// The audit log, in the state folder (`$XDG_STATE_HOME/tokdeck/audit.jsonl`).
    pub fn audit_log(&self, who: Who) -> Option<AuditLog> {
        Paths::state_dir().map(|dir| AuditLog::in_dir(&dir, who))
    }
}
