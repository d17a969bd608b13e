//! Where a vault is, as the person named it: a file, or a secret in OpenBao's (or HashiCorp
//! Vault's) KV version 2 engine. A name in the shape of a URL (`SCHEME://...`) is never taken
//! for a file path: a scheme tokdeck does not know is refused by name, rather than creating a
//! folder called `openbao+http:` in the current directory.

use std::fmt;
use std::path::{Path, PathBuf};

/// A vault's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file.
    File(PathBuf),
    /// A secret in a KV version 2 engine.
    OpenBao(Box<KvPath>),
}

/// A secret in an OpenBao / Vault KV version 2 engine: the server, the engine's mount and the
/// secret's path under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPath {
    /// `https://HOST[:PORT]`, or `http://` on loopback.
    pub server: url::Url,
    pub mount: String,
    pub path: String,
}

impl KvPath {
    /// The API address of the secret's data (`/v1/MOUNT/data/PATH`).
    pub fn data_url(&self) -> String {
        self.api(&format!("{}/data/{}", self.mount, self.path))
    }

    /// The API address of the secret's metadata (`/v1/MOUNT/metadata/PATH`).
    pub fn metadata_url(&self) -> String {
        self.api(&format!("{}/metadata/{}", self.mount, self.path))
    }

    /// The API address of `rest` under `/v1/`.
    pub fn api(&self, rest: &str) -> String {
        format!("{}v1/{rest}", self.server)
    }

    /// The same server and mount, at `path`.
    pub fn sibling(&self, path: String) -> Self {
        Self {
            path,
            ..self.clone()
        }
    }

    /// The server as messages name it: host and port.
    pub fn host(&self) -> String {
        crate::http::host_of(self.server.as_str())
    }

    /// `MOUNT/PATH`, as `bao kv` commands name the secret.
    pub fn kv_name(&self) -> String {
        format!("{}/{}", self.mount, self.path)
    }
}

impl fmt::Display for KvPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.server.scheme() == "https" {
            "openbao"
        } else {
            "openbao+http"
        };
        let host = self.host();
        write!(f, "{scheme}://{host}/{}/{}", self.mount, self.path)
    }
}

/// Why a name is not a vault location.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadLocation {
    #[error(
        "'{scheme}://' is not a kind of vault location tokdeck knows: name the vault file by its path (e.g. ~/vault.age), or a secret in OpenBao as openbao://HOST/MOUNT/PATH"
    )]
    UnknownScheme { scheme: String },
    #[error("'{named}' is not an OpenBao location: {why}")]
    BadOpenBao { named: String, why: String },
}

impl Location {
    /// The vault as processes compare it: a file by its absolute path (links resolved), a
    /// KV secret by its address.
    pub fn canonical(&self) -> String {
        match self {
            Self::File(path) => std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.clone())
                .display()
                .to_string(),
            Self::OpenBao(kv) => kv.to_string(),
        }
    }

    /// Reads a location as given on the command line, in the environment or in the config.
    pub fn parse(named: &Path) -> Result<Self, BadLocation> {
        let text = named.to_string_lossy();
        let Some(scheme) = scheme_of(&text) else {
            return Ok(Self::File(named.to_path_buf()));
        };
        match scheme {
            "openbao" | "openbao+https" | "openbao+http" => {
                Ok(Self::OpenBao(Box::new(parse_kv(&text)?)))
            }
            other => Err(BadLocation::UnknownScheme {
                scheme: other.to_string(),
            }),
        }
    }

    /// The file, for a file location.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::OpenBao(_) => None,
        }
    }

    /// The folder a file location lies in (`.` for a bare name), for advice on permissions.
    pub fn folder(&self) -> Option<&Path> {
        self.file().map(|path| {
            path.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        })
    }
}

/// The scheme of a name in the shape of a URL.
fn scheme_of(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let looks_like_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic());
    looks_like_scheme.then_some(scheme)
}

/// `openbao://HOST[:PORT]/MOUNT/PATH` (HTTPS) or `openbao+http://` (loopback only).
fn parse_kv(text: &str) -> Result<KvPath, BadLocation> {
    let bad = |why: &str| BadLocation::BadOpenBao {
        named: text.to_string(),
        why: why.to_string(),
    };
    let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let path_part = rest.split(['?', '#']).next().unwrap_or_default();
    if path_part.split('/').any(|s| matches!(s, "." | "..")) {
        return Err(bad("'.' and '..' are not allowed in the path"));
    }
    let plain = scheme == "openbao+http";
    let url = url::Url::parse(&format!(
        "{}://{rest}",
        if plain { "http" } else { "https" }
    ))
    .map_err(|e| bad(&format!("{e}")))?;
    let host = url.host().ok_or_else(|| bad("it names no server"))?;
    if plain && !crate::http::is_loopback_host(&host) {
        return Err(bad(
            "plain HTTP (openbao+http://) is allowed to this machine only, where no network sees the token: use openbao:// (HTTPS)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "it holds a user name or password: the OpenBao token comes from BAO_TOKEN, VAULT_TOKEN or ~/.vault-token",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("remove the '?...' or '#...' part"));
    }
    let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    let [mount, path @ ..] = segments.as_slice() else {
        return Err(bad(
            "name the KV engine's mount and the secret: openbao://HOST/MOUNT/PATH",
        ));
    };
    if path.is_empty() {
        return Err(bad(
            "name the secret under the mount: openbao://HOST/MOUNT/PATH",
        ));
    }
    let mut server = url.clone();
    server.set_path("/");
    Ok(KvPath {
        server,
        mount: (*mount).to_string(),
        path: path.join("/"),
    })
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::OpenBao(kv) => write!(f, "{kv}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_files_and_unknown_urls_are_never_taken_for_paths() {
        for path in [
            "vault.age",
            "/tmp/v.age",
            "./a://b",
            "dir/x:y.age",
            "~/v.age",
        ] {
            assert_eq!(
                Location::parse(Path::new(path)),
                Ok(Location::File(PathBuf::from(path))),
                "{path}"
            );
        }
        for (url, scheme) in [
            ("s3://bucket/vault.age", "s3"),
            ("file:///tmp/vault.age", "file"),
            ("vault://bao.example.com/secret/team", "vault"),
        ] {
            let err = Location::parse(Path::new(url)).unwrap_err();
            assert_eq!(
                err,
                BadLocation::UnknownScheme {
                    scheme: scheme.into()
                }
            );
            assert!(
                err.to_string().contains("not a kind of vault location"),
                "{err}"
            );
        }
    }

    #[test]
    fn openbao_locations_name_a_server_a_mount_and_a_path() {
        let parsed = |text: &str| match Location::parse(Path::new(text)) {
            Ok(Location::OpenBao(kv)) => kv,
            other => panic!("{text}: {other:?}"),
        };
        let kv = parsed("openbao://bao.example.com/secret/teams/payroll");
        assert_eq!(kv.server.as_str(), "https://bao.example.com/");
        assert_eq!(
            (kv.mount.as_str(), kv.path.as_str()),
            ("secret", "teams/payroll")
        );
        assert_eq!(
            kv.data_url(),
            "https://bao.example.com/v1/secret/data/teams/payroll"
        );
        assert_eq!(
            kv.metadata_url(),
            "https://bao.example.com/v1/secret/metadata/teams/payroll"
        );
        assert_eq!(
            kv.to_string(),
            "openbao://bao.example.com/secret/teams/payroll"
        );
        let local = parsed("openbao+http://127.0.0.1:8200/kv/team/");
        assert_eq!(local.server.as_str(), "http://127.0.0.1:8200/");
        assert_eq!(local.to_string(), "openbao+http://127.0.0.1:8200/kv/team");
        assert_eq!(
            parsed("openbao+https://h:8443/a/b").server.as_str(),
            "https://h:8443/"
        );
    }

    #[test]
    fn bad_openbao_locations_say_what_is_wrong() {
        for (text, says) in [
            (
                "openbao+http://bao.example.com/secret/team",
                "this machine only",
            ),
            ("openbao://bao.example.com/secret", "name the secret"),
            ("openbao://bao.example.com/", "mount and the secret"),
            ("openbao://root:pw@bao.example.com/secret/x", "BAO_TOKEN"),
            ("openbao://bao.example.com/secret/x?version=2", "'?...'"),
            ("openbao://bao.example.com/secret/../x", "'..'"),
        ] {
            let err = Location::parse(Path::new(text)).unwrap_err();
            assert!(
                matches!(err, BadLocation::BadOpenBao { .. }) && err.to_string().contains(says),
                "{text}: {err}"
            );
        }
    }
}
