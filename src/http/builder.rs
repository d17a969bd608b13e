//! Every HTTP client of tokdeck's: its timeouts, its name, the certificate authorities it
//! trusts and when it goes through a proxy.

use std::time::Duration;

/// Sets what every HTTP client of tokdeck's has on a builder of either kind: its timeouts,
/// its name, its proxy policy (see `proxy_policy`) and the authorities it trusts.
macro_rules! configure {
    ($builder:expr, $timeout:expr, $roots:expr) => {{
        let builder = $builder
            .connect_timeout($timeout.min(Duration::from_secs(10)))
            .timeout($timeout)
            .user_agent(concat!("tokdeck/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        let builder = match proxy_policy() {
            Some(proxy) => builder.proxy(proxy),
            None => builder,
        };
        $roots.iter().fold(builder, |builder, root| {
            builder.add_root_certificate(root.clone())
        })
    }};
}

/// Every async HTTP client of tokdeck's starts here. Callers choose the redirect policy.
pub fn http_builder(timeout: Duration, roots: &[reqwest::Certificate]) -> reqwest::ClientBuilder {
    configure!(reqwest::Client::builder(), timeout, roots)
}

/// Every blocking HTTP client of tokdeck's starts here: the same as [`http_builder`]'s, for
/// code that runs on a plain thread (never on a runtime's: build, use and drop it there, or
/// in `spawn_blocking`). Callers choose the redirect policy.
pub fn blocking_http_builder(
    timeout: Duration,
    roots: &[reqwest::Certificate],
) -> reqwest::blocking::ClientBuilder {
    configure!(reqwest::blocking::Client::builder(), timeout, roots)
}

/// The proxy the environment names (`https_proxy`, `HTTPS_PROXY`, `all_proxy`, `ALL_PROXY`,
/// with `NO_PROXY` honoured), used for `https://` requests off loopback only. A proxy never
/// sees a request to this machine, and never one in plain HTTP: tokdeck's plain-HTTP
/// requests carry secrets, and only loopback servers get them. Through the proxy, TLS runs
/// end to end (CONNECT), so the proxy sees the host name and nothing more.
fn proxy_policy() -> Option<reqwest::Proxy> {
    let named = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.trim().is_empty()))?;
    let proxy = match url::Url::parse(named.trim()) {
        Ok(proxy) => proxy,
        Err(e) => {
            tracing::warn!(error = %e, "the proxy the environment names is not a URL; going direct");
            return None;
        }
    };
    let policy = reqwest::Proxy::custom(move |target| proxied(target).then(|| proxy.clone()));
    Some(policy.no_proxy(reqwest::NoProxy::from_env()))
}

/// Whether a request to `target` may go through a proxy: HTTPS, and not to this machine.
fn proxied(target: &url::Url) -> bool {
    target.scheme() == "https"
        && target
            .host()
            .is_some_and(|host| !super::is_loopback_host(&host))
}

/// A `ca_file` that cannot serve as certificate authorities.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("cannot read ca_file {}: {source}", .path.display())]
    Unreadable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "ca_file {} holds no PEM certificate: point it at the provider's CA certificate (-----BEGIN CERTIFICATE-----)",
        .path.display()
    )]
    NotPem { path: std::path::PathBuf },
}

/// The certificate authorities in the PEM file at `path`, to trust besides the usual ones.
pub fn load_roots(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, CaFileError> {
    let pem = std::fs::read(path).map_err(|source| CaFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    match reqwest::Certificate::from_pem_bundle(&pem) {
        Ok(roots) if !roots.is_empty() => Ok(roots),
        _ => Err(CaFileError::NotPem {
            path: path.to_path_buf(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_off_loopback_goes_through_a_proxy() {
        let url = |u: &str| url::Url::parse(u).unwrap();
        assert!(proxied(&url("https://api.factorialhr.com/oauth/token")));
        for direct in [
            "http://127.0.0.1:8080/oauth/token",
            "http://localhost:1/x",
            "http://[::1]:1/x",
            "https://127.0.0.1:8443/x",
            "https://localhost/x",
            "http://api.example.com/x",
        ] {
            assert!(!proxied(&url(direct)), "{direct}");
        }
    }
}
