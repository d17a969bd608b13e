//! `tokdeck api NAME PATH [-X METHOD] [-d DATA|@FILE|-] [-H 'K: V']... [-i]`: a request to the
//! profile's API with its bearer token, like `gh api`. On 401 it refreshes once and retries.
//! The token only ever goes to the profile's own host: no redirect to another host is
//! followed. On a terminal JSON is pretty-printed and anything else shown escaped (see
//! [`crate::display`]); in a pipe the body is passed on as received.

use std::io::{IsTerminal, Read};
use std::time::Duration;

use age::secrecy::ExposeSecret;
use anyhow::{Context as _, anyhow, bail};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::tokens::TokenSource;
use crate::cli::ApiArgs;
use crate::context::Context;
use crate::display::{untrusted, untrusted_lines};

/// Largest response body read; a bigger one is refused, not buffered.
pub const MAX_API_BODY: usize = 8 * 1024 * 1024;

/// An answer, read whole.
struct Answer {
    status: reqwest::StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

pub async fn run(ctx: &Context, args: &ApiArgs) -> anyhow::Result<i32> {
    // One source for the first token and any refresh: the vault is opened at most once.
    let mut tokens = TokenSource::new(ctx);
    let issued = tokens.obtain(&args.name).await?;
    // Checked here, where the token and payload go: an agent's answer is not trusted for it.
    let base = crate::vault::validate::validate_base_url(&issued.api_base)
        .map_err(|e| anyhow!("the base URL '{}' is refused: {e}", issued.api_base))?;
    let base = url::Url::parse(&base)
        .with_context(|| format!("the profile's base URL '{}' is invalid", issued.api_base))?;
    let url = target(&base, &args.path)?;
    let body = request_body(args.data.as_deref())?;
    let method = method(args)?;
    let headers = headers(&args.headers, body.as_deref())?;
    let client = client(ctx.config.http_timeout, &ctx.extra_roots()?, &url)?;
    let send = |token: String| {
        let mut request = client
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .bearer_auth(token);
        if let Some(body) = &body {
            request = request.body(body.clone());
        }
        read(request)
    };
    let first = issued.access_token.expose_secret().to_string();
    let mut answer = send(first).await?;
    if answer.status == reqwest::StatusCode::UNAUTHORIZED {
        crate::note!(
            "{}: 401 from the API: refreshing the token and trying once more",
            args.name
        );
        tokens.refresh(&args.name).await?;
        let again = tokens.obtain(&args.name).await?;
        answer = send(again.access_token.expose_secret().to_string()).await?;
    }
    show(&answer, args.include)?;
    if answer.status.is_success() {
        return Ok(0);
    }
    // The body is on stdout already, once: stderr says only what went wrong.
    let reason = answer.status.canonical_reason().unwrap_or("error");
    crate::note!(
        "{}: HTTP {} {reason} from the API (the answer's body is on stdout)",
        args.name,
        answer.status.as_u16()
    );
    Ok(1)
}

/// PATH under the base; a full URL only on the same scheme, host and port.
fn target(base: &url::Url, path: &str) -> anyhow::Result<url::Url> {
    if path.contains("://") {
        let url = url::Url::parse(path).with_context(|| format!("invalid URL '{path}'"))?;
        if url.origin() != base.origin() {
            bail!(
                "{} is not the profile's server ({}): tokdeck sends its token nowhere else",
                untrusted(&url.origin().ascii_serialization()),
                base.origin().ascii_serialization()
            );
        }
        return Ok(url);
    }
    if !path.starts_with('/') {
        bail!("the path must start with '/', e.g. /api/2025-04-01/resources/employees/employees");
    }
    let joined = format!("{}{path}", base.as_str().trim_end_matches('/'));
    url::Url::parse(&joined).with_context(|| format!("invalid path '{path}'"))
}

/// `-d`: text, `@FILE`, or `-` for stdin.
fn request_body(data: Option<&str>) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(data) = data else { return Ok(None) };
    let bytes = match data {
        "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read the body from stdin")?;
            bytes
        }
        _ if data.starts_with('@') => {
            let file = &data[1..];
            std::fs::read(file).with_context(|| format!("cannot read the body from {file}"))?
        }
        text => text.as_bytes().to_vec(),
    };
    Ok(Some(bytes))
}

fn method(args: &ApiArgs) -> anyhow::Result<reqwest::Method> {
    let name = match (&args.method, &args.data) {
        (Some(m), _) => m.to_ascii_uppercase(),
        (None, Some(_)) => "POST".into(),
        (None, None) => "GET".into(),
    };
    reqwest::Method::from_bytes(name.as_bytes())
        .map_err(|_| anyhow!("'{name}' is not an HTTP method"))
}

/// `-H 'Name: value'` headers; a JSON body gets `Content-Type: application/json` unless given.
fn headers(given: &[String], body: Option<&[u8]>) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    if body.is_some_and(|b| serde_json::from_slice::<serde_json::Value>(b).is_ok()) {
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    for line in given {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("header '{line}' is not 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| anyhow!("'{}' is not a header name", name.trim()))?;
        if name == reqwest::header::AUTHORIZATION {
            bail!("the Authorization header is tokdeck's to set");
        }
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| anyhow!("header '{name}' has a value HTTP cannot carry"))?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// A client that follows redirects only on the profile's own origin.
fn client(
    timeout: Duration,
    roots: &[reqwest::Certificate],
    url: &url::Url,
) -> anyhow::Result<reqwest::Client> {
    let origin = url.origin();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 || attempt.url().origin() != origin {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    crate::http::http_builder(timeout, roots)
        .redirect(policy)
        .build()
        .context("cannot set up HTTP")
}

async fn read(request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    let mut response = request
        .send()
        .await
        .map_err(|e| anyhow!("the request failed: {e}: check the network and the path"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.context("the answer broke off")? {
        if body.len() + chunk.len() > MAX_API_BODY {
            bail!(
                "the answer is larger than {} MiB: narrow the request (filters, paging)",
                MAX_API_BODY / 1024 / 1024
            );
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Prints headers (with -i) and the body: as received in a pipe; pretty JSON or escaped text
/// on a terminal.
fn show(answer: &Answer, include: bool) -> anyhow::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    if include {
        let mut head = format!("HTTP {}\n", answer.status);
        for (name, value) in &answer.headers {
            head.push_str(name.as_str());
            head.push_str(": ");
            head.push_str(&String::from_utf8_lossy(value.as_bytes()));
            head.push('\n');
        }
        head.push('\n');
        crate::output::print(&if terminal {
            untrusted_lines(&head).into_owned()
        } else {
            head
        })?;
    }
    if !terminal {
        return Ok(crate::output::print_bytes(&answer.body)?);
    }
    let text = match serde_json::from_slice::<serde_json::Value>(&answer.body) {
        Ok(json) => crate::display::json_for_terminal(serde_json::to_string_pretty(&json)?),
        Err(_) => untrusted_lines(&String::from_utf8_lossy(&answer.body)).into_owned(),
    };
    crate::output::println(&text)?;
    Ok(())
}
