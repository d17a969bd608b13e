//! Where a vault is, as the person named it. Today a file; a name in the shape of a URL
//! (`SCHEME://...`) is never taken for a file path: a scheme tokdeck does not know is refused by
//! name, rather than creating a folder called `openbao+http:` in the current directory.

use std::fmt;
use std::path::{Path, PathBuf};

/// A vault's location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file.
    File(PathBuf),
}

/// Why a name is not a vault location.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "'{scheme}://' is not a kind of vault location tokdeck knows: name the vault file by its path (e.g. ~/vault.age)"
)]
pub struct UnknownScheme {
    pub scheme: String,
}

impl Location {
    /// Reads a location as given on the command line, in the environment or in the config.
    pub fn parse(named: &Path) -> Result<Self, UnknownScheme> {
        let text = named.to_string_lossy();
        if let Some((scheme, _)) = text.split_once("://") {
            let looks_like_scheme = !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic());
            if looks_like_scheme {
                return Err(UnknownScheme {
                    scheme: scheme.to_string(),
                });
            }
        }
        Ok(Self::File(named.to_path_buf()))
    }

    /// The file, for a file location.
    pub fn file(&self) -> &Path {
        match self {
            Self::File(path) => path,
        }
    }

    /// The folder a file location lies in (`.` for a bare name), for advice on permissions.
    pub fn folder(&self) -> &Path {
        match self {
            Self::File(path) => path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_files_and_urls_are_never_taken_for_paths() {
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
            ("openbao+http://127.0.0.1:8200/secret/team", "openbao+http"),
            ("openbao://bao.example.com/secret/team", "openbao"),
            ("s3://bucket/vault.age", "s3"),
            ("file:///tmp/vault.age", "file"),
        ] {
            let err = Location::parse(Path::new(url)).unwrap_err();
            assert_eq!(err.scheme, scheme);
            assert!(
                err.to_string().contains("not a kind of vault location"),
                "{err}"
            );
        }
    }
}
