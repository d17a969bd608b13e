//! An older vault put in place of the live one (a restored backup, a `git pull` of an old
//! commit, a copy from another machine) holds refresh tokens the server has already retired:
//! adopting them would kill every integration at its next refresh. A process that has seen
//! newer tokens keeps them over the file's older ones, and writes them back.

use std::collections::HashMap;

use super::model::{Profile, Token, VaultData};

/// Puts back into `theirs` (the file as just read) every token of `ours` (what this process
/// last saw) that is newer than the file's token of the same profile, by `obtained_at`.
/// Returns the names of the profiles whose tokens were kept. Profiles the file no longer has,
/// or whose token it removed, are left as the file says: that is a decision, not an age.
pub fn keep_newer_tokens(ours: &VaultData, theirs: &mut VaultData) -> Vec<String> {
    let newer: HashMap<&str, &Token> = ours
        .profiles
        .iter()
        .filter_map(|p| p.token.as_ref().map(|t| (p.name.as_str(), t)))
        .collect();
    let mut kept = Vec::new();
    for profile in &mut theirs.profiles {
        let Some(ours) = newer.get(profile.name.as_str()) else {
            continue;
        };
        if profile
            .token
            .as_ref()
            .is_some_and(|theirs| ours.obtained_at > theirs.obtained_at)
        {
            profile.token = Some((*ours).clone());
            kept.push(profile.name.clone());
        }
    }
    kept
}

/// [`keep_newer_tokens`] for one profile: puts `ours`'s token into `theirs` when it is newer;
/// returns whether it did.
pub fn keep_newer_token(ours: &Profile, theirs: &mut Profile) -> bool {
    let (Some(ours), Some(stored)) = (&ours.token, &theirs.token) else {
        return false;
    };
    if ours.obtained_at <= stored.obtained_at {
        return false;
    }
    theirs.token = Some(ours.clone());
    true
}

#[cfg(test)]
mod tests {
    use age::secrecy::{ExposeSecret, SecretString};
    use chrono::{Duration, Utc};

    use super::*;
    use crate::vault::model::{Endpoints, Profile, Provider};

    fn with_token(name: &str, secret: &str, age_secs: i64) -> Profile {
        let mut p = Profile::new(
            name.into(),
            Provider::Custom,
            Endpoints::at("https://x"),
            "id".into(),
            SecretString::from(String::new()),
            String::new(),
        );
        p.token = Some(Token {
            access_token: SecretString::from(secret.to_string()),
            refresh_token: Some(SecretString::from(format!("r-{secret}"))),
            token_type: "Bearer".into(),
            scope: None,
            obtained_at: Utc::now() - Duration::seconds(age_secs),
            expires_at: None,
            refresh_expires_at: None,
            id_token: None,
        });
        p
    }

    fn vault(profiles: Vec<Profile>) -> VaultData {
        VaultData {
            profiles,
            ..VaultData::default()
        }
    }

    #[test]
    fn older_tokens_in_the_file_lose_to_newer_ones_seen() {
        let ours = vault(vec![with_token("a", "new", 1), with_token("b", "same", 50)]);
        let mut theirs = vault(vec![
            with_token("a", "old", 100),
            with_token("b", "newer-elsewhere", 10),
            with_token("c", "only-theirs", 5),
        ]);
        let kept = keep_newer_tokens(&ours, &mut theirs);
        assert_eq!(kept, vec!["a".to_string()]);
        let secret = |i: usize| {
            theirs.profiles[i]
                .token
                .as_ref()
                .unwrap()
                .access_token
                .expose_secret()
                .to_string()
        };
        assert_eq!(secret(0), "new");
        assert_eq!(secret(1), "newer-elsewhere");
        assert_eq!(secret(2), "only-theirs");
    }

    #[test]
    fn a_token_removed_in_the_file_stays_removed() {
        let ours = vault(vec![with_token("a", "new", 1)]);
        let mut revoked = with_token("a", "x", 1);
        revoked.token = None;
        let mut theirs = vault(vec![revoked]);
        assert!(keep_newer_tokens(&ours, &mut theirs).is_empty());
        assert!(theirs.profiles[0].token.is_none());
    }
}
