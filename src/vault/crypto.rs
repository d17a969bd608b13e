//! age encryption of the vault: identity files, SSH keys, passphrases, many recipients.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use super::error::{VaultError, clean_age_message};
use super::location::Location;

/// How to open the vault.
pub enum Unlock {
    /// Private keys from an identity file (age X25519 keys or an SSH private key).
    Identity(IdentityFile),
    /// A passphrase (scrypt).
    Passphrase(SecretString),
}

/// How to seal the vault when saving.
#[derive(Clone)]
pub enum Sealing {
    /// Public recipients: age1..., ssh-ed25519 ..., ssh-rsa ...
    Recipients(Vec<String>),
    /// A passphrase.
    Passphrase(SecretString),
}

/// Private keys loaded from one file, with the public recipients they answer to.
pub struct IdentityFile {
    pub path: PathBuf,
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// Public recipients matching these identities.
    pub recipients: Vec<String>,
}

impl std::fmt::Debug for IdentityFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityFile")
            .field("path", &self.path)
            .field("identities", &"***")
            .field("recipients", &self.recipients)
            .finish()
    }
}

/// Callbacks for an identity that never asks anything: an encrypted SSH key opened with them
/// cannot be unlocked, and says so.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPrompt;

impl age::Callbacks for NoPrompt {
    fn display_message(&self, _: &str) {}

    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }

    fn request_public_string(&self, _: &str) -> Option<String> {
        None
    }

    fn request_passphrase(&self, _: &str) -> Option<SecretString> {
        None
    }
}

/// Whether a passphrase can be asked for: rpassword reads from the controlling terminal.
fn has_terminal() -> bool {
    std::fs::File::open("/dev/tty").is_ok()
}

impl IdentityFile {
    /// Loads an age identity file (AGE-SECRET-KEY-1...) or an OpenSSH private key; `prompt`
    /// asks for an SSH key's own passphrase when it has one (the edge decides how).
    pub fn load(path: &Path, prompt: impl age::Callbacks) -> Result<Self, VaultError> {
        let bad = |reason: String| VaultError::BadIdentity {
            path: path.to_path_buf(),
            reason,
        };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        if text.contains("-----BEGIN") {
            let identity = age::ssh::Identity::from_buffer(
                BufReader::new(text.as_bytes()),
                Some(path.display().to_string()),
            )
            .map_err(|e| bad(clean_age_message(e)))?;
            if let age::ssh::Identity::Unsupported(k) = &identity {
                return Err(bad(format!(
                    "unsupported SSH key ({k:?}): use ed25519 or RSA"
                )));
            }
            // An encrypted key needs its passphrase typed; without a terminal age would only
            // say later that "no identity matches", which sends people looking the wrong way.
            if matches!(identity, age::ssh::Identity::Encrypted(_)) && !has_terminal() {
                return Err(bad(
                    "the SSH key is passphrase-protected and there is no terminal to ask on: run in a terminal, or use an unencrypted age key (age-keygen) for automation"
                        .into(),
                ));
            }
            let recipients = age::ssh::Recipient::try_from(identity.clone())
                .map(|r| vec![r.to_string()])
                .unwrap_or_default();
            return Ok(Self {
                path: path.to_path_buf(),
                identities: vec![Box::new(identity.with_callbacks(prompt))],
                recipients,
            });
        }
        let mut identities: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        let mut recipients = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = age::x25519::Identity::from_str(line)
                .map_err(|_| bad("not an age identity file or SSH private key".into()))?;
            recipients.push(key.to_public().to_string());
            identities.push(Box::new(key));
        }
        if identities.is_empty() {
            return Err(bad("the file holds no keys".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            identities,
            recipients,
        })
    }

    /// Creates a new X25519 identity file (mode 0600), like `age-keygen -o`.
    pub fn generate(path: &Path) -> Result<Self, VaultError> {
        use age::secrecy::ExposeSecret;
        let key = age::x25519::Identity::generate();
        let public = key.to_public().to_string();
        let contents = Zeroizing::new(format!(
            "# created by tokdeck\n# public key: {public}\n{}\n",
            key.to_string().expose_secret()
        ));
        super::disk::write_atomic(path, contents.as_bytes(), false)?;
        Self::load(path, NoPrompt)
    }
}

/// A recipient in the form age prints it (an SSH key without its comment), so that two
/// spellings of one key compare equal.
pub fn canonical_recipient(text: &str) -> Result<String, VaultError> {
    let text = text.trim();
    let bad = || VaultError::BadRecipient(text.into());
    if text.starts_with("age1") {
        age::x25519::Recipient::from_str(text)
            .map(|r| r.to_string())
            .map_err(|_| bad())
    } else if text.starts_with("ssh-") {
        age::ssh::Recipient::from_str(text)
            .map(|r| r.to_string())
            .map_err(|_| bad())
    } else {
        Err(bad())
    }
}

/// Parses one public recipient.
pub fn parse_recipient(text: &str) -> Result<Box<dyn age::Recipient + Send>, VaultError> {
    let text = text.trim();
    if text.starts_with("age1") {
        age::x25519::Recipient::from_str(text)
            .map(|r| Box::new(r) as _)
            .map_err(|_| VaultError::BadRecipient(text.into()))
    } else if text.starts_with("ssh-") {
        age::ssh::Recipient::from_str(text)
            .map(|r| Box::new(r) as _)
            .map_err(|_| VaultError::BadRecipient(text.into()))
    } else {
        Err(VaultError::BadRecipient(text.into()))
    }
}

/// Encrypts `plaintext` to the sealing's recipients or passphrase (binary age format).
pub fn encrypt(plaintext: &[u8], sealing: &Sealing) -> Result<Vec<u8>, VaultError> {
    encrypt_pieces(&[plaintext], sealing)
}

/// Encrypts the plaintext that `pieces` make in order, without joining them first.
pub fn encrypt_pieces(pieces: &[&[u8]], sealing: &Sealing) -> Result<Vec<u8>, VaultError> {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    // The age format adds 16 bytes per 64 KiB chunk, and a header.
    let mut out = Vec::with_capacity(len + len / 4096 + 1024);
    encrypt_pieces_into(pieces, sealing, &mut out)?;
    Ok(out)
}

/// [`encrypt_pieces`] into `out`, as the ciphertext comes.
pub fn encrypt_pieces_into(
    pieces: &[&[u8]],
    sealing: &Sealing,
    out: &mut dyn Write,
) -> Result<(), VaultError> {
    let encryptor = match sealing {
        Sealing::Passphrase(p) => age::Encryptor::with_user_passphrase(p.clone()),
        Sealing::Recipients(list) => {
            if list.is_empty() {
                return Err(VaultError::NoRecipients);
            }
            let parsed = list
                .iter()
                .map(|r| parse_recipient(r))
                .collect::<Result<Vec<_>, _>>()?;
            age::Encryptor::with_recipients(
                parsed.iter().map(|r| r.as_ref() as &dyn age::Recipient),
            )
            .map_err(|e| VaultError::Encrypt(clean_age_message(e)))?
        }
    };
    let mut writer = encryptor
        .wrap_output(out)
        .map_err(|e| VaultError::Encrypt(e.to_string()))?;
    pieces
        .iter()
        .try_for_each(|piece| writer.write_all(piece))
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|e| VaultError::Encrypt(e.to_string()))
}

/// Whether `bytes` is a passphrase-protected age file.
pub fn is_passphrase_file(bytes: &[u8]) -> bool {
    age::Decryptor::new_buffered(bytes).is_ok_and(|d| d.is_scrypt())
}

/// Decrypts a vault file's bytes; `path` only names the file in errors.
pub fn decrypt(
    bytes: &[u8],
    unlock: &Unlock,
    path: &Location,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    decrypt_from(bytes, bytes.len(), unlock, path)
}

/// Decrypts a vault file of `len` bytes as `reader` yields it, binary or armored, without
/// holding the ciphertext; `path` only names the file in errors.
pub fn decrypt_from(
    mut reader: impl std::io::BufRead,
    len: usize,
    unlock: &Unlock,
    path: &Location,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    if len == 0 {
        return Err(VaultError::corrupt(path, "the file is empty".into()));
    }
    let binary = is_binary(&mut reader, path)?;
    // The armor reader copies every byte once more; binary files, the usual kind, skip it.
    if binary {
        decrypt_stream(reader, len, unlock, path)
    } else {
        decrypt_stream(age::armor::ArmoredReader::new(reader), len, unlock, path)
    }
}

fn decrypt_stream(
    input: impl BufRead,
    len: usize,
    unlock: &Unlock,
    path: &Location,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let mut reader = open_stream(input, unlock, path)?;
    let mut plaintext = plaintext_buffer(len);
    reader.read_to_end(&mut plaintext).map_err(damaged(path))?;
    Ok(plaintext)
}

/// Whether the age file `reader` yields is binary, not armored.
fn is_binary(reader: &mut impl BufRead, path: &Location) -> Result<bool, VaultError> {
    Ok(reader
        .fill_buf()
        .map_err(VaultError::reading(path))?
        .starts_with(b"age-encryption.org/"))
}

/// An empty buffer for `capacity` bytes of plaintext: wiped when dropped, and backed by huge
/// pages where it is large enough.
fn plaintext_buffer(capacity: usize) -> Zeroizing<Vec<u8>> {
    let mut plaintext = Zeroizing::new(Vec::with_capacity(capacity));
    crate::platform::back_with_huge_pages(&mut plaintext);
    plaintext
}

/// The error of a stream that fails to decrypt part way.
fn damaged(path: &Location) -> impl Fn(std::io::Error) -> VaultError + '_ {
    move |e| {
        VaultError::corrupt(
            path,
            format!("{} (truncated or damaged)", clean_age_message(e)),
        )
    }
}

/// The plaintext of `input`, an age file, as it is decrypted.
fn open_stream<R: BufRead>(
    input: R,
    unlock: &Unlock,
    path: &Location,
) -> Result<age::stream::StreamReader<R>, VaultError> {
    let corrupt = |reason: String| VaultError::corrupt(path, reason);
    let wrong = |reason: String| VaultError::WrongKey {
        path: path.clone(),
        reason,
    };
    let decryptor =
        age::Decryptor::new_buffered(input).map_err(|e| corrupt(clean_age_message(e)))?;
    let scrypt_identity;
    match unlock {
        Unlock::Passphrase(p) => {
            if !decryptor.is_scrypt() {
                return Err(VaultError::NeedsIdentity { path: path.clone() });
            }
            scrypt_identity = age::scrypt::Identity::new(p.clone());
            decryptor.decrypt(std::iter::once(&scrypt_identity as &dyn age::Identity))
        }
        Unlock::Identity(file) => {
            if decryptor.is_scrypt() {
                return Err(VaultError::NeedsPassphrase { path: path.clone() });
            }
            decryptor.decrypt(
                file.identities
                    .iter()
                    .map(|i| i.as_ref() as &dyn age::Identity),
            )
        }
    }
    .map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => wrong("no identity matches this vault".into()),
        age::DecryptError::DecryptionFailed if matches!(unlock, Unlock::Passphrase(_)) => {
            wrong("wrong passphrase".into())
        }
        age::DecryptError::KeyDecryptionFailed => wrong("wrong passphrase or key".into()),
        other => corrupt(clean_age_message(other)),
    })
}

/// A vault file at least this long, sealed to keys, is decrypted in two halves at once.
const HALVES_FROM: usize = 1 << 20;

/// Decrypts a vault file of `len` bytes. A large binary one sealed to keys is decrypted in
/// two halves at once, each on its own thread reading the file at its own offset: every
/// chunk is still authenticated at its place, and the end as the end. A passphrase file is
/// read in one pass, since each opening costs a whole scrypt.
pub fn decrypt_file(
    file: &File,
    len: usize,
    unlock: &Unlock,
    path: &Location,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let at = |pos| BufReader::with_capacity(64 * 1024, At { file, pos, len });
    let mut first = at(0);
    let in_halves = is_binary(&mut first, path)?
        && len >= HALVES_FROM
        && matches!(unlock, Unlock::Identity(_))
        && super::parallel::cores() > 1;
    if !in_halves {
        return decrypt_from(first, len, unlock, path);
    }
    let mut front = open_stream(first, unlock, path)?;
    let mut back = open_stream(at(0), unlock, path)?;
    let total = front
        .seek(SeekFrom::End(0))
        .and_then(|total| front.rewind().map(|()| total))
        .map_err(damaged(path))?;
    let total = usize::try_from(total)
        .ok()
        .filter(|t| *t <= len)
        .ok_or_else(|| VaultError::corrupt(path, "its length does not add up".into()))?;
    // Whole 64 KiB chunks on each side: neither thread decrypts a chunk twice.
    let middle = (total / 2).next_multiple_of(64 * 1024).min(total);
    let mut plaintext = plaintext_buffer(total);
    plaintext.resize(total, 0);
    let (front_half, back_half) = plaintext.split_at_mut(middle);
    let (front_read, back_read) = std::thread::scope(|s| {
        let back_read = s.spawn(move || {
            back.seek(SeekFrom::Start(middle as u64))?;
            back.read_exact(back_half)?;
            // The length was authenticated: nothing follows.
            match back.read(&mut [0])? {
                0 => Ok(()),
                _ => Err(std::io::Error::other("more plaintext than its length")),
            }
        });
        (front.read_exact(front_half), back_read.join())
    });
    front_read.map_err(damaged(path))?;
    back_read
        .map_err(|_| VaultError::corrupt(path, "its decryption stopped".into()))?
        .map_err(damaged(path))?;
    Ok(plaintext)
}

/// A file read from an offset of its own, so two readers share one open file.
struct At<'a> {
    file: &'a File,
    pos: usize,
    len: usize,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.file.read_at(buf, self.pos as u64)?;
        self.pos += read;
        Ok(read)
    }
}

impl Seek for At<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let to = match to {
            SeekFrom::Start(n) => usize::try_from(n).ok(),
            SeekFrom::End(n) => isize::try_from(n)
                .ok()
                .and_then(|n| self.len.checked_add_signed(n)),
            SeekFrom::Current(n) => isize::try_from(n)
                .ok()
                .and_then(|n| self.pos.checked_add_signed(n)),
        };
        self.pos = to.ok_or_else(|| std::io::Error::other("a seek outside the file"))?;
        Ok(self.pos as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity_in(dir: &Path) -> IdentityFile {
        IdentityFile::generate(&dir.join("key.txt")).unwrap()
    }

    #[test]
    fn round_trip_with_generated_identity() {
        let dir = tempfile::tempdir().unwrap();
        let id = identity_in(dir.path());
        let sealed = encrypt(b"hello", &Sealing::Recipients(id.recipients.clone())).unwrap();
        let opened = decrypt(&sealed, &Unlock::Identity(id), &Location::File("v".into())).unwrap();
        assert_eq!(&opened[..], b"hello");
    }

    #[test]
    fn other_identity_is_refused_as_wrong_key() {
        let dir = tempfile::tempdir().unwrap();
        let id = identity_in(dir.path());
        let other = IdentityFile::generate(&dir.path().join("other.txt")).unwrap();
        let sealed = encrypt(b"x", &Sealing::Recipients(id.recipients.clone())).unwrap();
        let err = decrypt(
            &sealed,
            &Unlock::Identity(other),
            &Location::File("v".into()),
        )
        .unwrap_err();
        assert!(matches!(err, VaultError::WrongKey { .. }), "{err}");
    }

    #[test]
    fn truncated_and_flipped_files_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let id = identity_in(dir.path());
        let sealed = encrypt(&[7u8; 2000], &Sealing::Recipients(id.recipients.clone())).unwrap();
        let unlock = Unlock::Identity(id);
        let cut = &sealed[..sealed.len() - 40];
        assert!(matches!(
            decrypt(cut, &unlock, &Location::File("v".into())),
            Err(VaultError::Corrupt { .. })
        ));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 10;
        flipped[last] ^= 0x40;
        assert!(matches!(
            decrypt(&flipped, &unlock, &Location::File("v".into())),
            Err(VaultError::Corrupt { .. })
        ));
        assert!(matches!(
            decrypt(b"", &unlock, &Location::File("v".into())),
            Err(VaultError::Corrupt { .. })
        ));
        assert!(matches!(
            decrypt(b"version = 1\n", &unlock, &Location::File("v".into())),
            Err(VaultError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_large_file_decrypted_in_halves_is_the_plaintext_and_any_damage_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let id = identity_in(dir.path());
        let plain: Vec<u8> = (0..3 * HALVES_FROM + 12_345)
            .map(|i| b"abcdefghij"[i % 10])
            .collect();
        let sealed = encrypt(&plain, &Sealing::Recipients(id.recipients.clone())).unwrap();
        let unlock = Unlock::Identity(id);
        let open = |bytes: &[u8]| {
            let path = dir.path().join("vault.age");
            std::fs::write(&path, bytes).unwrap();
            let file = File::open(&path).unwrap();
            decrypt_file(&file, bytes.len(), &unlock, &Location::File(path))
        };
        assert!(
            open(&sealed).unwrap()[..] == plain[..],
            "both halves, in order"
        );
        let chunk = 64 * 1024 + 16;
        let header = sealed.len() - plain.len().div_ceil(64 * 1024) * 16 - plain.len();
        for damage in [
            sealed[..sealed.len() - 40].to_vec(),
            // A whole last chunk cut: the one before it is no last chunk.
            sealed[..sealed.len() - (plain.len() % (64 * 1024) + 16)].to_vec(),
            [
                &sealed[..header + chunk * 30],
                &sealed[header + chunk * 31..],
            ]
            .concat(),
        ] {
            let err = open(&damage).unwrap_err();
            assert!(matches!(err, VaultError::Corrupt { .. }), "{err}");
        }
        for at in [header + 10, header + chunk * 20, sealed.len() - 10] {
            let mut flipped = sealed.clone();
            flipped[at] ^= 0x40;
            let err = open(&flipped).unwrap_err();
            assert!(
                matches!(err, VaultError::Corrupt { .. }),
                "byte {at}: {err}"
            );
        }
        let other = IdentityFile::generate(&dir.path().join("other.txt")).unwrap();
        let path = dir.path().join("vault.age");
        std::fs::write(&path, &sealed).unwrap();
        let err = decrypt_file(
            &File::open(&path).unwrap(),
            sealed.len(),
            &Unlock::Identity(other),
            &Location::File(path),
        )
        .unwrap_err();
        assert!(matches!(err, VaultError::WrongKey { .. }), "{err}");
    }

    #[test]
    fn recipients_parse_or_explain() {
        assert!(parse_recipient("age1nope").is_err());
        assert!(parse_recipient("hello").is_err());
        let dir = tempfile::tempdir().unwrap();
        let id = identity_in(dir.path());
        assert!(parse_recipient(&id.recipients[0]).is_ok());
        assert!(format!("{id:?}").contains("***"));
    }
}
