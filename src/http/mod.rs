//! HTTP below the protocols: one client builder (timeouts, trusted authorities, proxy policy),
//! the retry rules, how many requests go to one server at once, and bounded bodies. `oauth`
//! speaks OAuth on top of it; any other client (a secret store, say) can use it without
//! importing `oauth`.

pub mod builder;
pub mod limits;
pub mod retry;

pub use builder::{CaFileError, blocking_http_builder, http_builder, load_roots};
pub use retry::{Resend, RetryPolicy, Retryable, with_retries};

/// Whether `host` is this machine: `localhost` or a loopback address.
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => *d == "localhost",
        url::Host::Ipv4(ip) => std::net::IpAddr::from(*ip).is_loopback(),
        url::Host::Ipv6(ip) => std::net::IpAddr::from(*ip).is_loopback(),
    }
}

/// Largest response body read; anything bigger is refused, not buffered.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Scheme, host and port: what one limit on requests at once covers.
pub fn origin_of(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| url.to_string(), |u| u.origin().ascii_serialization())
}

/// Host and port, as messages name a server.
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| url.to_string())
}
