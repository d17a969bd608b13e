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
    let part = Text::profile(profile)?;
    let body = Zeroizing::new(format!("version = {FORMAT_VERSION}\n\n{}", part.as_str()));
    let sealed = crate::display::hex(&tag(secret, id, &body).finalize().into_bytes());
    Ok(Zeroizing::new(format!("{SEAL}{sealed}\n{}", body.as_str())))
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
    let refused = |why: &str| {
        VaultError::Untrusted(format!(
            "entry {id} of {at} {why}: someone who cannot open the vault wrote it; restore it from KV's history (bao kv rollback), or remove it"
        ))
    };
    let text = std::str::from_utf8(text).map_err(|_| refused("is not text"))?;
    let (first, body) = text
        .split_once('\n')
        .ok_or_else(|| refused("has no seal"))?;
    let sealed = first
        .strip_prefix(SEAL)
        .and_then(|hex| unhex(hex.trim()))
        .ok_or_else(|| refused("has no seal"))?;
    tag(secret, id, body)
        .verify_slice(&sealed)
        .map_err(|_| refused("has a seal the members' secret did not make"))?;
    let mut data = super::parse::parse_vault(body.as_bytes(), at)?;
    let (Some(profile), true) = (data.profiles.pop(), data.profiles.is_empty()) else {
        return Err(refused("does not hold exactly one profile"));
    };
    if id_of(&profile.name) != id {
        return Err(refused("holds a profile of another id"));
    }
    Ok(profile)
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
