//! The `/metrics` endpoint: a small HTTP/1.1 server (hyper) under the agent's supervisor.
//! Each connection has a deadline (two seconds to send its headers) and a bounded number run at
//! once: a scraper that stalls, a slowloris or a flood of idle connections from another local
//! user cost a bounded amount, and a real scrape gets through within seconds.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::keeper::Keeper;
use super::supervisor::Supervisor;

/// How long one connection may last.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// How long a client may take to send its request's headers: one that trickles them in (a
/// slowloris) or sends none holds its turn no longer.
const HEADER_DEADLINE: Duration = Duration::from_secs(2);
/// Connections served at once; more wait for their turn. Each costs a small task, and with
/// the header deadline idle ones give their turn back within two seconds.
const AT_ONCE: usize = 64;

/// Binds the metrics address; a port in use or an address not of this machine is an error
/// at start, not a silent absence of metrics.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot serve metrics on {address}: choose another --metrics address or port")
    })
}

/// Serves `/metrics` until the supervisor stops.
pub async fn serve(listener: TcpListener, keeper: Arc<Keeper>, warn: Duration, tasks: Supervisor) {
    let turns = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tasks.stopping() => return,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(turn) = turns.clone().acquire_owned().await else {
            return;
        };
        let keeper = keeper.clone();
        tasks.spawn_until_stop(async move {
            let service = hyper::service::service_fn(move |request| {
                let keeper = keeper.clone();
                async move { Ok::<_, Infallible>(answer(&request, keeper, warn).await) }
            });
            // One request a connection: a scrape is one GET, and a kept-alive idle
            // connection would hold a turn.
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(turn);
        });
    }
}

async fn answer(
    request: &Request<hyper::body::Incoming>,
    keeper: Arc<Keeper>,
    warn: Duration,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" || request.method() != hyper::Method::GET {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "only GET /metrics is served here\n".into(),
        );
    }
    // Prometheus asks for OpenMetrics; anything else gets the classic text format.
    let openmetrics = request
        .headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|v| v.contains("application/openmetrics-text"))
        });
    let now = keeper.clock.now();
    let rendering = keeper.clone();
    let rendered = keeper
        .store
        .run(move |store| store.read(|data| rendering.metrics.render(data, now, warn)))
        .await;
    match rendered {
        Ok(text) if openmetrics => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        Ok(text) => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            super::metrics::to_classic(&text),
        ),
        _ => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "cannot read the vault now\n".into(),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}
