//! Where a command gets a usable access token: from the running agent when it keeps this
//! vault (its answer checked as any from outside), else from this run's vault, refreshed
//! here through a worker when due ([`crate::usable`]). `token`, `exec`, `api` and the small
//! `tokdeck` executable ([`crate::front`]) get theirs here.

use age::secrecy::SecretString;
use anyhow::{anyhow, bail};

use super::on_worker::{fail_if, run_jobs};
use crate::agent::ask::Client as AgentClient;
use crate::agent::protocol::{Reply as AgentReply, Request as AgentRequest};
use crate::context::Context;
use crate::health::lasts_at_least;
use crate::usable::{self, Issued};
use crate::vault::{Profile, StoreHandle};
use crate::worker::{Event, Job, JobFailure};

/// Where one command gets its tokens: the running agent when it keeps this vault (no
/// decryption, no prompt), else this run's vault, opened at most once however many tokens and
/// refreshes the command needs (a passphrase is asked for once).
pub struct TokenSource<'a> {
    ctx: &'a Context,
    /// `None` when no agent answers, or it keeps another vault.
    agent: Option<AgentClient>,
    /// The vault, once opened.
    store: Option<StoreHandle>,
}

impl<'a> TokenSource<'a> {
    /// Connects to the agent, if one keeps this vault (blocking briefly; see
    /// [`crate::agent::ask`]).
    pub fn new(ctx: &'a Context) -> TokenSource<'a> {
        TokenSource {
            ctx,
            agent: AgentClient::for_vault(ctx),
            store: None,
        }
    }

    /// Asks the agent, if one keeps this vault, with `ask`; `None` means "do it here", and
    /// an agent that gave it (another vault, or no answer) is not asked again.
    fn with_agent<T>(
        &mut self,
        ask: impl FnOnce(&mut AgentClient) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<Option<T>> {
        let Some(agent) = self.agent.as_mut() else {
            return Ok(None);
        };
        let answer = ask(agent)?;
        if answer.is_none() {
            self.agent = None;
        }
        Ok(answer)
    }

    async fn store(&mut self) -> anyhow::Result<StoreHandle> {
        if let Some(store) = &self.store {
            return Ok(store.clone());
        }
        let store = self.ctx.vault_handle().await?;
        self.store = Some(store.clone());
        Ok(store)
    }

    /// A usable token for `name` (see [`crate::usable`]); a warning goes to stderr when a due
    /// refresh failed but the token still works.
    pub async fn obtain(&mut self, name: &str) -> anyhow::Result<Issued> {
        let issued = match self.agent_token(name, None)? {
            Some(issued) => issued,
            None => self.issue_here(name, None).await?,
        };
        Ok(tell_warning(name, issued))
    }

    /// Like [`Self::obtain`], with at least `min_valid` left (refreshed first otherwise), for
    /// callers outside the async runtime: it starts one only when no agent answers.
    pub fn obtain_blocking(
        &mut self,
        name: &str,
        min_valid: Option<std::time::Duration>,
    ) -> anyhow::Result<Issued> {
        let issued = match self.agent_token(name, min_valid)? {
            Some(issued) => issued,
            None => crate::runtime::block_on(self.issue_here(name, min_valid))??,
        };
        Ok(tell_warning(name, issued))
    }

    /// The agent's token for `name`, when an agent keeps this vault.
    fn agent_token(
        &mut self,
        name: &str,
        min_valid: Option<std::time::Duration>,
    ) -> anyhow::Result<Option<Issued>> {
        let ctx = self.ctx;
        self.with_agent(|agent| agent_token(ctx, agent, name, min_valid))
    }

    /// A usable token through a worker of this process.
    async fn issue_here(
        &mut self,
        name: &str,
        min_valid: Option<std::time::Duration>,
    ) -> anyhow::Result<Issued> {
        let (ctx, store) = (self.ctx, self.store().await?);
        let refresh = |job: Job| {
            let store = store.clone();
            async move {
                let mut saved = None;
                let jobs = vec![(name.to_string(), job)];
                let failures = run_jobs(ctx, store, jobs, |event| {
                    if let Event::Succeeded { saved: Some(p), .. } = event {
                        saved = Some(Profile::clone(p));
                    }
                })
                .await
                .map_err(|e| JobFailure::internal(e.to_string()))?;
                failures.first().map_or(Ok(saved), |f| Err(f.error.clone()))
            }
        };
        let wanted = usable::Wanted {
            margin: ctx.config.refresh_margin,
            min_valid,
        };
        Ok(usable::usable_token(&store, name, &ctx.clock, wanted, refresh).await?)
    }

    /// Refreshes `name` now (after a 401).
    pub async fn refresh(&mut self, name: &str) -> anyhow::Result<()> {
        let request = AgentRequest::Refresh {
            profile: Some(name.to_string()),
        };
        if self.with_agent(|agent| agent.ask(request))?.is_some() {
            return Ok(());
        }
        let store = self.store().await?;
        let job = Job::Refresh {
            if_expiring_within: None,
            force: false,
        };
        let failures = run_jobs(self.ctx, store, vec![(name.to_string(), job)], |_| {}).await?;
        fail_if(&failures, 1)
    }
}

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
