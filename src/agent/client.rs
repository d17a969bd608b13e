//! Asking a running agent: `token`, `exec`, `api` and `status` use it when its socket answers
//! for the same vault, so they neither decrypt nor prompt.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::protocol::{self, Envelope, Info, Reply, Request, VERSION};
use super::{allowed, canonical, socket_path};
use crate::context::Context;

/// How long a request may take: a token may need a refresh first (with its retries).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection to a running agent.
pub struct Client {
    stream: BufReader<UnixStream>,
    /// The vault every request names (absolute), when the client means one.
    vault: Option<String>,
}

impl Client {
    /// A connection to the agent, if one listens and the agent is not switched off. Its
    /// requests name this run's vault: see [`Self::ask`].
    pub async fn for_vault(ctx: &Context) -> Option<Self> {
        if !allowed(ctx.global.no_agent) {
            return None;
        }
        let vault = canonical(&ctx.vault_path().ok()?);
        let mut client = Self::open(&socket_path()).await?;
        client.vault = Some(vault);
        Some(client)
    }

    /// Asks about this run's vault in one round trip: `None` when the agent keeps another
    /// vault (the caller then opens its own).
    pub async fn ask(&mut self, request: Request) -> anyhow::Result<Option<Reply>> {
        let reply = self.exchange(request).await?;
        if reply.other_vault {
            return Ok(None);
        }
        Self::accepted(reply).map(Some)
    }

    /// Whether something answers on `socket`: `Some(info)` for an agent (its info when it
    /// gives one), `None` when nobody listens.
    pub async fn connect_to(socket: &Path) -> Option<Option<Info>> {
        let mut client = Self::open(socket).await?;
        Some(
            client
                .request(Request::Info)
                .await
                .ok()
                .and_then(|r| r.info),
        )
    }

    async fn open(socket: &Path) -> Option<Self> {
        let stream = tokio::time::timeout(Duration::from_secs(2), UnixStream::connect(socket))
            .await
            .ok()?
            .ok()?;
        Some(Self {
            stream: BufReader::new(stream),
            vault: None,
        })
    }

    /// Sends one request and reads its reply; a reply with `ok: false` is an error.
    pub async fn request(&mut self, request: Request) -> anyhow::Result<Reply> {
        let reply = self.exchange(request).await?;
        Self::accepted(reply)
    }

    fn accepted(reply: Reply) -> anyhow::Result<Reply> {
        if reply.ok {
            Ok(reply)
        } else {
            let why = reply.error.unwrap_or_else(|| "the agent refused".into());
            Err(anyhow!("{why}"))
        }
    }

    async fn exchange(&mut self, request: Request) -> anyhow::Result<Reply> {
        let envelope = Envelope {
            v: VERSION,
            vault: self.vault.clone(),
            request,
        };
        let mut line = serde_json::to_vec(&envelope)?;
        line.push(b'\n');
        let exchange = async {
            self.stream.get_mut().write_all(&line).await?;
            protocol::read_line(&mut self.stream)
                .await
                .map_err(|e| anyhow!("the agent's answer is unreadable ({e:?})"))?
                .ok_or_else(|| anyhow!("the agent closed the connection"))
        };
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                anyhow!(
                    "the agent did not answer within {}s",
                    REQUEST_TIMEOUT.as_secs()
                )
            })??;
        serde_json::from_str(&answer).context("the agent's answer is not JSON")
    }
}
