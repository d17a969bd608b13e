//! `tokdeck agent [status|stop] [--systemd-unit]`.

use anyhow::anyhow;

use crate::agent::ask::Client;
use crate::agent::protocol::Request;
use crate::agent::{self, server};
use crate::cli::{AgentAction, AgentArgs};
use crate::context::Context;

/// What `tokdeck agent` is asked other than to run: work without a runtime (the socket and
/// file I/O it does blocks, which has no place on a runtime's threads).
#[derive(Debug, Clone, Copy)]
pub enum Control {
    SystemdUnit,
    Status,
    Stop,
}

/// What `args` ask of the agent other than to run it, if anything.
pub fn control_of(args: &AgentArgs) -> Option<Control> {
    if args.systemd_unit {
        return Some(Control::SystemdUnit);
    }
    match args.action {
        Some(AgentAction::Status) => Some(Control::Status),
        Some(AgentAction::Stop) => Some(Control::Stop),
        None => None,
    }
}

/// The unit file, `agent status` or `agent stop`.
pub fn control(ctx: &Context, asked: Control) -> anyhow::Result<()> {
    match asked {
        Control::SystemdUnit => print_systemd_unit(ctx),
        Control::Status => status(ctx),
        Control::Stop => stop(ctx),
    }
}

fn print_systemd_unit(ctx: &Context) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let location = ctx.vault_location()?;
    let (vault, folder) = match &location {
        crate::vault::Location::File(path) => {
            let path = std::path::absolute(path)?;
            let folder = path.parent().map(std::path::Path::to_path_buf);
            (path.display().to_string(), folder)
        }
        elsewhere @ crate::vault::Location::OpenBao(_) => (elsewhere.to_string(), None),
    };
    let identity = ctx.identity_path().map(std::path::absolute).transpose()?;
    let unit = agent::systemd_unit(&exe, &vault, identity.as_deref(), folder.as_deref());
    crate::output::print(&unit)?;
    Ok(())
}

/// Runs the agent in the foreground, until `agent stop`, SIGTERM or Ctrl-C.
pub async fn run(ctx: &Context, args: &AgentArgs) -> anyhow::Result<i32> {
    let metrics = args
        .metrics
        .as_deref()
        .map(|text| agent::metrics::parse_address(text, args.metrics_public))
        .transpose()
        .map_err(|e| anyhow!(e))?;
    // Its client blocks: it is set up off the runtime's threads.
    let publisher = match args.publish.clone() {
        Some(place) => {
            let ctx = ctx.clone();
            let connected = move || publisher(&ctx, &place);
            Some(crate::vault::handle::on_the_pool(connected).await??)
        }
        None => None,
    };
    server::run(ctx, server::Options { metrics, publisher })
        .await
        .map(|()| 0)
}

/// Where `--publish` writes, checked before the agent starts: an unreachable or forbidden
/// OpenBao is an error now.
fn publisher(ctx: &Context, place: &std::path::Path) -> anyhow::Result<agent::publish::Publisher> {
    let location = crate::vault::Location::parse(place)?;
    let crate::vault::Location::OpenBao(prefix) = &location else {
        return Err(anyhow!(
            "--publish takes openbao://HOST/MOUNT/PREFIX (or openbao+http:// on this machine), not {location}"
        ));
    };
    let connection = crate::openbao::connection(ctx.config.http_timeout, ctx.extra_roots()?)?;
    let api = crate::vault::backend::openbao::api::Api::new(connection)?;
    agent::publish::Publisher::connect(prefix, api)
}

fn running(ctx: &Context) -> anyhow::Result<Client> {
    Client::for_vault(ctx).ok_or_else(|| {
        anyhow!(
            "no agent runs for {} (socket {}): start one with `tokdeck agent`",
            ctx.vault_location()
                .map(|l| l.to_string())
                .unwrap_or_default(),
            agent::socket_path().display()
        )
    })
}

fn status(ctx: &Context) -> anyhow::Result<()> {
    let mut client = running(ctx)?;
    let info = client
        .request(Request::Info)?
        .info
        .ok_or_else(|| anyhow!("the agent did not say who it is"))?;
    let text = format!(
        "agent pid {} running since {}\nvault  {}\nsocket {}\nlast   {}\nwakeups {}\n",
        info.pid,
        info.since.format("%Y-%m-%d %H:%M:%S UTC"),
        crate::display::untrusted(&info.vault),
        agent::socket_path().display(),
        crate::display::untrusted(info.last.as_deref().unwrap_or("nothing yet")),
        info.wakeups,
    );
    crate::output::print(&text)?;
    Ok(())
}

fn stop(ctx: &Context) -> anyhow::Result<()> {
    let mut client = running(ctx)?;
    client.request(Request::Shutdown)?;
    crate::note!("agent stopping (it finishes refreshes in flight first)");
    Ok(())
}
