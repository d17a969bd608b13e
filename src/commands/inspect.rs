//! `tokdeck inspect NAME`: what the profile's access token and ID token say of themselves
//! ([`crate::claims`]): the claims of a JWT, with its times as dates and countdowns, or that
//! the token is opaque. Never a token, never a signature.

use age::secrecy::ExposeSecret;

use crate::claims;
use crate::context::Context;

pub fn run(ctx: &Context, name: &str, json: bool) -> anyhow::Result<()> {
    let store = ctx.open_store()?;
    let profile = store.named(name)?;
    let Some(token) = &profile.token else {
        anyhow::bail!("'{name}' has no token yet: authorize it first (tokdeck authorize {name})");
    };
    let access = claims::read(token.access_token.expose_secret());
    let id = token
        .id_token
        .as_ref()
        .map(|t| claims::read(t.expose_secret()));
    if json {
        let document = serde_json::json!({
            "name": profile.name,
            "access_token": claims::json(&access),
            "id_token": id.as_ref().map(claims::json),
        });
        crate::output::println(&serde_json::to_string_pretty(&document)?)?;
        return Ok(());
    }
    let now = ctx.clock.now();
    let mut lines = claims::describe("access token", &access, now);
    match &id {
        Some(id) => lines.extend(claims::describe("id token", id, now)),
        None => lines.push(
            "id token: none kept (OpenID Connect servers send one when the scope has openid)"
                .into(),
        ),
    }
    crate::output::print(&(lines.join("\n") + "\n"))?;
    Ok(())
}
