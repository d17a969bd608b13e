//! Which stored token a new one may be written over. A new token replaces the token it was
//! obtained from (a refresh) or the one the vault held when it was asked for (a new grant);
//! a token whose save failed is kept in memory and written later, but only over that same
//! token: by then the vault may hold another process's newer rotation, or a fresh login, and
//! writing the held token over it would bring back a refresh token the server has retired.

use age::secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::vault::Token;

/// What tells one token from another: a SHA-256 over its access and refresh tokens (a
/// server that keeps its refresh token still issues a new access token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Print([u8; 32]);

impl Print {
    pub fn of(token: &Token) -> Self {
        let mut hash = Sha256::new();
        for part in [Some(&token.access_token), token.refresh_token.as_ref()] {
            let bytes = part.map_or(&b""[..], |s| s.expose_secret().as_bytes());
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        }
        Self(hash.finalize().into())
    }
}

/// The token a new one replaces, as the job read it under the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replacing {
    /// `None`: the profile held no token.
    replaced: Option<Print>,
    /// A new grant a person asked for is written over whatever the vault holds at its first
    /// save; a retry of a held token never is.
    insist: bool,
}

impl Replacing {
    /// A refresh: the new token replaces the one whose refresh token was sent.
    pub fn rotation(sent: &Token) -> Self {
        Self {
            replaced: Some(Print::of(sent)),
            insist: false,
        }
    }

    /// A new grant (a code, a device login, the client's own credentials): it replaces what
    /// the profile held when the job read it.
    pub fn grant(held: Option<&Token>) -> Self {
        Self {
            replaced: held.map(Print::of),
            insist: true,
        }
    }

    /// The same, for a later retry: only over the token it replaced.
    pub fn retry(self) -> Self {
        Self {
            insist: false,
            ..self
        }
    }

    /// What to do with `new` given what the vault holds now.
    pub fn placement(&self, stored: Option<&Token>, new: &Token) -> Placement {
        let stored = stored.map(Print::of);
        if stored == Some(Print::of(new)) {
            Placement::AlreadyThere
        } else if self.insist || stored == self.replaced {
            Placement::Write
        } else {
            Placement::Superseded
        }
    }
}

/// Whether a new token is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The vault holds the token it replaced: write it.
    Write,
    /// The vault holds it already (a save whose answer was lost landed after all).
    AlreadyThere,
    /// The vault holds another token, newer than the one it replaced: leave that one.
    Superseded,
}

/// A refresh token on its way, as recorded beside the vault ([`crate::vault::backend::Intent`]):
/// the SHA-256 of the token, in hex, and when the token it belongs to was obtained.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spending {
    pub print: String,
    pub obtained_at: chrono::DateTime<chrono::Utc>,
}

impl Spending {
    pub fn of(digest: &[u8; 32], token: &Token) -> Self {
        Self {
            print: crate::display::hex(digest),
            obtained_at: token.obtained_at,
        }
    }
}

/// The print of `token`'s refresh token, as the records beside the vault keep it.
pub fn refresh_print(token: &Token) -> Option<String> {
    token
        .refresh_token
        .as_ref()
        .map(|r| crate::display::hex(&Sha256::digest(r.expose_secret().as_bytes())))
}

/// A new token whose save failed, kept while this process runs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HeldToken {
    pub token: Token,
    pub replacing: Replacing,
    /// The record of the refresh token it came from, cleared once it is saved or dropped.
    pub spending: Option<Spending>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::SecretString;

    fn token(refresh: Option<&str>, access: &str) -> Token {
        Token {
            access_token: SecretString::from(access.to_string()),
            refresh_token: refresh.map(|r| SecretString::from(r.to_string())),
            token_type: "Bearer".into(),
            scope: None,
            obtained_at: chrono::Utc::now(),
            expires_at: None,
            refresh_expires_at: None,
            id_token: None,
        }
    }

    #[test]
    fn a_held_token_goes_only_over_the_token_it_replaced() {
        let old = token(Some("r0"), "a0");
        let new = token(Some("r1"), "a1");
        let other = token(Some("r2"), "a2");
        let rotation = Replacing::rotation(&old);
        assert_eq!(rotation.placement(Some(&old), &new), Placement::Write);
        assert_eq!(
            rotation.placement(Some(&new), &new),
            Placement::AlreadyThere
        );
        assert_eq!(
            rotation.placement(Some(&other), &new),
            Placement::Superseded
        );
        assert_eq!(rotation.placement(None, &new), Placement::Superseded);
        // A server that keeps its refresh token issues a new access token all the same.
        let kept = token(Some("r0"), "a9");
        assert_eq!(rotation.placement(Some(&old), &kept), Placement::Write);
        assert_eq!(
            rotation.placement(Some(&kept), &kept),
            Placement::AlreadyThere
        );
    }

    #[test]
    fn a_new_grant_is_saved_over_anything_once_then_only_over_what_it_replaced() {
        let old = token(Some("r0"), "a0");
        let new = token(Some("r1"), "a1");
        let other = token(None, "a2");
        let grant = Replacing::grant(Some(&old));
        assert_eq!(grant.placement(Some(&other), &new), Placement::Write);
        assert_eq!(
            grant.retry().placement(Some(&other), &new),
            Placement::Superseded
        );
        assert_eq!(grant.retry().placement(Some(&old), &new), Placement::Write);
        let first = Replacing::grant(None);
        assert_eq!(first.retry().placement(None, &new), Placement::Write);
    }
}
