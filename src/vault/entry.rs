//! One profile as an entry of a vault laid out as entries: a one-profile vault document,
//! sealed by a tag under the members' secret over its id and text. A writer who can store
//! entries but cannot open the vault knows no members' secret, so an entry they plant (or
//! move from another id) is refused, even though anyone can encrypt to the recipients.
//!
//! The text is what `age -d` shows: a comment line with the tag, then `version` and the
//! profile's `[[profile]]` table, as the vault file writes it.

use age::secrecy::{ExposeSecret, SecretString};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::VaultError;
use super::location::Location;
use super::model::{FORMAT_VERSION, Profile};
use super::text::Text;

/// How an entry's first line starts.
const SEAL: &str = "# tokdeck entry ";

fn tag(secret: &SecretString, id: &str, body: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(b"tokdeck entry\0");
    mac.update(id.as_bytes());
    mac.update(b"\0");
    mac.update(body.as_bytes());
    mac
}

/// The text of `profile`'s entry `id`, sealed under `secret`.
pub fn render(
    secret: &SecretString,
    id: &str,
    profile: &Profile,
) -> Result<Zeroizing<String>, VaultError> {
    sealed(secret, id, &[profile])
}

/// A vault document of `profiles` behind a seal under `secret` for `id`.
fn sealed(
    secret: &SecretString,
    id: &str,
    profiles: &[&Profile],
) -> Result<Zeroizing<String>, VaultError> {
    sealed_with(secret, id, profiles, "")
}

/// [`sealed`], with `tail` after the profiles.
fn sealed_with(
    secret: &SecretString,
    id: &str,
    profiles: &[&Profile],
    tail: &str,
) -> Result<Zeroizing<String>, VaultError> {
    let mut body = Zeroizing::new(format!("version = {FORMAT_VERSION}\n"));
    for profile in profiles {
        body.push('\n');
        body.push_str(&Text::profile(profile)?);
    }
    body.push_str(tail);
    let sealed = crate::display::hex(&tag(secret, id, &body).finalize().into_bytes());
    Ok(Zeroizing::new(format!("{SEAL}{sealed}\n{}", body.as_str())))
}

/// The body of a text [`sealed`] for `id`, once its seal is checked under `secret`; what
/// is wrong with it otherwise.
fn unsealed<'a>(secret: &SecretString, id: &str, text: &'a [u8]) -> Result<&'a str, &'static str> {
    let text = std::str::from_utf8(text).map_err(|_| "is not text")?;
    let (first, body) = text.split_once('\n').ok_or("has no seal")?;
    let sealed = first
        .strip_prefix(SEAL)
        .and_then(|hex| unhex(hex.trim()))
        .ok_or("has no seal")?;
    tag(secret, id, body)
        .verify_slice(&sealed)
        .map_err(|_| "has a seal the members' secret did not make")?;
    Ok(body)
}

fn refused(id: &str, at: &Location, why: &str) -> VaultError {
    VaultError::Untrusted(format!(
        "entry {id} of {at} {why}: someone who cannot open the vault wrote it; restore it from KV's history (bao kv rollback), or remove it"
    ))
}

/// The profile entry `id`'s text holds, once its seal is checked under `secret` and its id
/// found to be the one its name has (`id_of`).
pub fn open(
    secret: &SecretString,
    id: &str,
    text: &[u8],
    at: &Location,
    id_of: impl Fn(&str) -> String,
) -> Result<Profile, VaultError> {
    let body = unsealed(secret, id, text).map_err(|why| refused(id, at, why))?;
    let mut data = super::parse::parse_vault(body.as_bytes(), at)?;
    let (Some(profile), true) = (data.profiles.pop(), data.profiles.is_empty()) else {
        return Err(refused(id, at, "does not hold exactly one profile"));
    };
    if id_of(&profile.name) != id {
        return Err(refused(id, at, "holds a profile of another id"));
    }
    Ok(profile)
}

/// What status needs of `profile` and nothing secret: no client secret, no token (only
/// whether there is one, and when it ends), no notes, no login under way; nor the client id,
/// redirect address and server metadata, which status does not show.
pub fn status_of(profile: &Profile) -> Profile {
    let mut shown = profile.clone();
    shown.client_secret = SecretString::from(String::new());
    // Not secret, but not shown either: a shard stays small.
    shown.client_id.clear();
    shown.redirect_uri.clear();
    shown.server = None;
    shown.notes.clear();
    shown.authorize_params.clear();
    shown.pending = None;
    if let Some(token) = &mut shown.token {
        token.access_token = SecretString::from(String::from("-"));
        if token.refresh_token.is_some() {
            token.refresh_token = Some(SecretString::from(String::from("-")));
        }
        token.id_token = None;
    }
    shown
}

/// The machine that saved a profile's token last, and when that token was obtained, as a
/// status shard records it (a vault in entries keeps no shared record of every profile).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SavedBy {
    pub host: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// What a status shard holds: the [`status_of`] of its profiles, and who saved each token.
#[derive(Debug, Default)]
pub struct Shard {
    pub profiles: Vec<Profile>,
    pub saved_by: std::collections::BTreeMap<String, SavedBy>,
}

/// The part of a shard's text after its profiles.
#[derive(serde::Serialize, serde::Deserialize)]
struct ShardTail {
    #[serde(default)]
    saved_by: std::collections::BTreeMap<String, SavedBy>,
}

/// The text of status shard `id`: the [`status_of`] each of `profiles` and who saved each
/// token (`saved_by`), sealed under `secret`.
pub fn render_shard(
    secret: &SecretString,
    id: &str,
    profiles: &[&Profile],
    saved_by: &std::collections::BTreeMap<String, SavedBy>,
) -> Result<Zeroizing<String>, VaultError> {
    let shown: Vec<Profile> = profiles.iter().map(|p| status_of(p)).collect();
    let refs: Vec<&Profile> = shown.iter().collect();
    let tail = if saved_by.is_empty() {
        String::new()
    } else {
        let tail = ShardTail {
            saved_by: saved_by.clone(),
        };
        let text = toml::to_string(&tail).map_err(|e| VaultError::Encrypt(e.to_string()))?;
        format!("\n{text}")
    };
    sealed_with(secret, id, &refs, &tail)
}

/// What status shard `id`'s text holds, once its seal is checked under `secret`. Its
/// profiles are what status needs, not profiles to act on: nothing else reads them.
pub fn open_shard(
    secret: &SecretString,
    id: &str,
    text: &[u8],
    at: &Location,
) -> Result<Shard, VaultError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(rename = "version")]
        _version: u32,
        #[serde(default, rename = "profile")]
        profiles: Vec<Profile>,
        #[serde(default)]
        saved_by: std::collections::BTreeMap<String, SavedBy>,
    }
    let body = unsealed(secret, id, text).map_err(|why| refused(id, at, why))?;
    let data: Doc = toml::from_str(body)
        .map_err(|e| refused(id, at, &format!("does not parse ({})", e.message())))?;
    Ok(Shard {
        profiles: data.profiles,
        saved_by: data.saved_by,
    })
}

/// The bytes of a hex text; `None` when it is not one.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::model::{Endpoints, Provider};

    fn profile(name: &str) -> Profile {
        Profile::new(
            name.into(),
            Provider::Custom,
            Endpoints::at("https://id.example.com"),
            "client".into(),
            SecretString::from("shh".to_string()),
            "http://127.0.0.1:8080/cb".into(),
        )
    }

    fn id_of(name: &str) -> String {
        format!("id-{name}")
    }

    fn at() -> Location {
        Location::File("entries".into())
    }

    #[test]
    fn an_entry_opens_to_the_profile_it_was_made_of() {
        let secret = SecretString::from("members".to_string());
        let text = render(&secret, "id-a", &profile("a")).unwrap();
        assert!(text.starts_with(SEAL), "{}", text.as_str());
        assert!(text.contains("[[profile]]"), "{}", text.as_str());
        let opened = open(&secret, "id-a", text.as_bytes(), &at(), id_of).unwrap();
        assert_eq!(opened.name, "a");
        assert_eq!(opened.client_secret.expose_secret(), "shh");
    }

    #[test]
    fn an_entry_sealed_without_the_members_secret_is_refused() {
        let secret = SecretString::from("members".to_string());
        let forged = render(
            &SecretString::from("guess".to_string()),
            "id-a",
            &profile("a"),
        )
        .unwrap();
        let e = open(&secret, "id-a", forged.as_bytes(), &at(), id_of).unwrap_err();
        assert!(e.to_string().contains("did not make"), "{e}");

        let text = render(&secret, "id-a", &profile("a")).unwrap();
        let changed = text.replace("shh", "mine");
        let e = open(&secret, "id-a", changed.as_bytes(), &at(), id_of).unwrap_err();
        assert!(e.to_string().contains("did not make"), "{e}");

        let unsealed = text.split_once('\n').unwrap().1;
        let e = open(&secret, "id-a", unsealed.as_bytes(), &at(), id_of).unwrap_err();
        assert!(e.to_string().contains("no seal"), "{e}");
    }

    #[test]
    fn an_entry_moved_to_another_id_is_refused() {
        let secret = SecretString::from("members".to_string());
        let text = render(&secret, "id-a", &profile("a")).unwrap();
        let e = open(&secret, "id-b", text.as_bytes(), &at(), id_of).unwrap_err();
        assert!(e.to_string().contains("did not make"), "{e}");
        // Sealed for its id, but holding another profile's name.
        let text = render(&secret, "id-b", &profile("a")).unwrap();
        let e = open(&secret, "id-b", text.as_bytes(), &at(), id_of).unwrap_err();
        assert!(e.to_string().contains("another id"), "{e}");
    }
}
