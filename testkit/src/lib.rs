//! tokdeck's test servers, shared by the tests (`tests/common`) and the benchmarks: the mock
//! OAuth server on loopback, the fixture runner, and the real Doorkeeper and
//! django-oauth-toolkit servers. Tests fail loudly on purpose: this crate unwraps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::pedantic)]

pub mod doorkeeper;
pub mod dot;
pub mod fixture;
pub mod mock;
pub mod openbao;
pub mod openbao_cluster;
pub mod qr;

/// Where the repository's test fixtures (`tests/fixtures/`) are.
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}
