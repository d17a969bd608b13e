//! Decrypted vault text to profiles: one profile alone when that is all a command needs
//! (`token NAME` at thousands of profiles), every profile in parallel otherwise, and the whole
//! document at once when the text is not in the shape the scanner follows.
//!
//! Each `[[profile]]` table parsed alone means what it means in the whole document, because
//! the scanner accepts only text whose tables are the head's keys, `[[profile]]` and
//! `[profile.KEY]`. Whenever a part fails to parse, the whole document is parsed instead, so
//! errors name the line of the file a person would fix.

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use super::error::VaultError;
use super::location::Location;
use super::model::{FORMAT_VERSION, NEWEST_FORMAT_VERSION, Profile, VaultData};
use super::scan::{self, Entry, NameIndex};

/// Below this many profiles, parsing them on one thread is as fast as starting others.
const PARALLEL_FROM: usize = 256;

/// Decrypted vault text.
pub enum Parsed {
    /// Parsed whole.
    Whole(VaultData),
    /// Profiles located, each parsed when asked for.
    Located(Located),
}

/// Vault text whose profiles are located (with their names) but not parsed.
pub struct Located {
    text: Zeroizing<String>,
    version: u32,
    recipients: Vec<String>,
    members_secret: Option<SecretString>,
    members_secret_replaces: Option<String>,
    profiles: Vec<Entry>,
    /// Profile name -> position in `profiles`.
    index: NameIndex,
}

/// The top-level keys before the first profile.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    version: u32,
    #[serde(default)]
    recipients: Vec<String>,
    #[serde(default)]
    members_secret: Option<String>,
    #[serde(default)]
    members_secret_replaces: Option<String>,
}

/// One `[[profile]]` table parsed alone.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OneProfile {
    profile: Vec<Profile>,
}

/// Reads decrypted vault text, locating its profiles when the text allows, else parsing it
/// whole (which also checks it).
pub fn read(text: Zeroizing<Vec<u8>>, path: &Location) -> Result<Parsed, VaultError> {
    let mut text = text;
    let text = match String::from_utf8(std::mem::take(&mut *text)) {
        Ok(text) => Zeroizing::new(text),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            return Err(VaultError::bad_content(path, "not UTF-8 text".into()));
        }
    };
    match locate(text) {
        Ok(located) => Ok(Parsed::Located(located)),
        Err(text) => parse_whole(&text, path).map(Parsed::Whole),
    }
}

/// Parses decrypted vault text completely, refusing future format versions with a message of
/// their own.
pub fn parse_vault(text: &[u8], path: &Location) -> Result<VaultData, VaultError> {
    match read(Zeroizing::new(text.to_vec()), path)? {
        Parsed::Whole(data) => Ok(data),
        Parsed::Located(located) => located.parse_all(path),
    }
}

/// Locates the profiles of `text`; gives the text back when it has to be parsed whole: the
/// scanner cannot follow it, a profile's name is not written plainly, or the head is not this
/// version's.
fn locate(text: Zeroizing<String>) -> Result<Located, Zeroizing<String>> {
    let Some(layout) = scan::scan(&text) else {
        return Err(text);
    };
    let head = match text.get(layout.head.clone()).map(toml::from_str::<Head>) {
        Some(Ok(head)) if (1..=FORMAT_VERSION).contains(&head.version) => head,
        _ => return Err(text),
    };
    // A missing or repeated name is reported by the whole parse.
    let Some(index) = NameIndex::of(&layout.profiles) else {
        return Err(text);
    };
    Ok(Located {
        version: head.version,
        recipients: head.recipients,
        members_secret: head.members_secret.map(SecretString::from),
        members_secret_replaces: head.members_secret_replaces,
        profiles: layout.profiles,
        index,
        text,
    })
}

impl Located {
    /// The profiles' names, as located.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.profiles.iter().filter_map(|e| e.name.as_deref())
    }

    /// The public recipients the head lists.
    pub fn recipients(&self) -> &[String] {
        &self.recipients
    }

    /// The members' secret the head holds, and the mark of the one it replaced.
    pub fn members_secret(&self) -> (Option<&SecretString>, Option<&str>) {
        (
            self.members_secret.as_ref(),
            self.members_secret_replaces.as_deref(),
        )
    }

    /// The profile called `name`, parsing only its table.
    pub fn profile(&self, name: &str, path: &Location) -> Result<Option<Profile>, VaultError> {
        let Some(i) = self.position(name) else {
            return Ok(None);
        };
        match self.profiles.get(i).and_then(|entry| self.parse_one(entry)) {
            Some(profile) => Ok(Some(profile)),
            None => Ok(parse_whole(&self.text, path)?
                .profiles
                .into_iter()
                .find(|p| p.name == name)),
        }
    }

    /// Every profile, parsed on as many threads as help.
    pub fn parse_all(&self, path: &Location) -> Result<VaultData, VaultError> {
        let threads = super::parallel::cores();
        let groups = if self.profiles.len() < PARALLEL_FROM {
            1
        } else {
            threads.clamp(1, 8)
        };
        let per_group = self.profiles.len().div_ceil(groups).max(1);
        let mut groups = self.profiles.chunks(per_group);
        let first = groups.next().unwrap_or_default();
        // This thread parses the first group while the others parse the rest.
        let parsed: Option<Vec<Profile>> = std::thread::scope(|s| {
            let others: Vec<_> = groups
                .map(|group| s.spawn(|| self.parse_group(group)))
                .collect();
            let mut all = Vec::with_capacity(self.profiles.len());
            all.extend(self.parse_group(first)?);
            for other in others {
                all.extend(other.join().ok()??);
            }
            Some(all)
        });
        match parsed {
            Some(profiles) => Ok(VaultData {
                version: self.version,
                recipients: self.recipients.clone(),
                members_secret: self.members_secret.clone(),
                members_secret_replaces: self.members_secret_replaces.clone(),
                // A head with either is not located: its keys are not the scanner's.
                operators: Vec::new(),
                groups: Vec::new(),
                profiles,
            }),
            None => parse_whole(&self.text, path),
        }
    }

    /// Where profile `name` is among the located ones.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(&self.profiles, name)
    }

    /// The profile at `position`, parsing only its table; `None` when it does not parse alone.
    pub fn profile_at(&self, position: usize) -> Option<Profile> {
        self.parse_one(self.profiles.get(position)?)
    }

    /// The text with each of `parts` (a position and a table as [`super::text::Text::profile`]
    /// renders it, in ascending order of position) in place of the table there, in pieces:
    /// what a save of those profiles writes, without rendering the others.
    pub fn pieces<'a>(&'a self, parts: &'a [(usize, Zeroizing<String>)]) -> Vec<&'a [u8]> {
        let text = self.text.as_bytes();
        let mut pieces = Vec::with_capacity(parts.len() * 3 + 1);
        let mut from = 0;
        for (at, part) in parts {
            let Some(span) = self.profiles.get(*at).map(|e| e.span.clone()) else {
                continue;
            };
            pieces.push(text.get(from..span.start).unwrap_or_default());
            pieces.push(part.as_bytes());
            if self.followed(*at) {
                pieces.push(b"\n");
            }
            from = span.end;
        }
        pieces.push(text.get(from..).unwrap_or_default());
        pieces
    }

    /// Puts `parts` in place ([`Located::pieces`]) within the text itself, moving the tables
    /// after them (no second copy of the text is made); `names` are the profiles' names in
    /// `parts`, in order. `Some` is the text read again instead, when a profile was renamed
    /// (the new name may meet another profile's).
    pub fn splice(
        &mut self,
        parts: &[(usize, Zeroizing<String>)],
        names: &[&str],
        path: &Location,
    ) -> Result<Option<Parsed>, VaultError> {
        let growth: usize = parts
            .iter()
            .filter_map(|(at, part)| {
                let old = self.profiles.get(*at)?.span.len();
                self.table_len(*at, part).checked_sub(old)
            })
            .sum();
        // One growth at most, before the tables move: a large buffer is moved by the kernel.
        self.text.reserve_exact(growth);
        // From the last part to the first, so each span still says where its table is.
        for (at, part) in parts.iter().rev() {
            let Some(span) = self.profiles.get(*at).map(|e| e.span.clone()) else {
                continue;
            };
            let mut table = String::with_capacity(part.len() + 1);
            table.push_str(part);
            if self.followed(*at) {
                table.push('\n');
            }
            self.text.replace_range(span, &table);
            drop(Zeroizing::new(table));
        }
        let renamed = parts.len() != names.len()
            || parts.iter().zip(names).any(|((at, _), name)| {
                self.profiles.get(*at).and_then(|e| e.name.as_deref()) != Some(*name)
            });
        if renamed {
            let text = std::mem::take(&mut *self.text);
            return read(Zeroizing::new(text.into_bytes()), path).map(Some);
        }
        let lens: Vec<(usize, usize)> = parts
            .iter()
            .map(|(at, part)| (*at, self.table_len(*at, part)))
            .collect();
        let mut shift: isize = 0;
        let mut lens = lens.into_iter().peekable();
        for (i, entry) in self.profiles.iter_mut().enumerate() {
            let old_len = entry.span.len();
            let start = entry.span.start.saturating_add_signed(shift);
            let len = match lens.next_if(|(at, _)| *at == i) {
                Some((_, len)) => len,
                None => old_len,
            };
            entry.span = start..start + len;
            shift += len.cast_signed() - old_len.cast_signed();
        }
        Ok(None)
    }

    /// Whether another table follows the one at `at`: tables are a blank line apart, as the
    /// whole document renders them.
    fn followed(&self, at: usize) -> bool {
        at + 1 < self.profiles.len()
    }

    /// How long `part` is in the text at `at`, with the blank line after it.
    fn table_len(&self, at: usize, part: &str) -> usize {
        part.len() + usize::from(self.followed(at))
    }

    fn parse_group(&self, group: &[Entry]) -> Option<Vec<Profile>> {
        group.iter().map(|entry| self.parse_one(entry)).collect()
    }

    /// One table parsed alone; `None` when it does not parse (the whole parse says why).
    fn parse_one(&self, entry: &Entry) -> Option<Profile> {
        let table = self.text.get(entry.span.clone())?;
        let mut one = toml::from_str::<OneProfile>(table).ok()?.profile;
        let profile = one.pop()?;
        (one.is_empty() && entry.name.as_deref() == Some(profile.name.as_str())).then_some(profile)
    }
}

/// The whole document in one parse; the version is looked at on its own only when the
/// content does not fit this build's model, which is what a newer format looks like.
fn parse_whole(text: &str, path: &Location) -> Result<VaultData, VaultError> {
    let future = |found: i64| VaultError::FutureVersion {
        path: path.clone(),
        found,
        supported: NEWEST_FORMAT_VERSION,
    };
    let data: VaultData = match toml::from_str(text) {
        Ok(data) => data,
        Err(e) => {
            #[derive(serde::Deserialize)]
            struct VersionOnly {
                version: Option<i64>,
            }
            return Err(match toml::from_str::<VersionOnly>(text) {
                Ok(VersionOnly { version: Some(v) }) if v > i64::from(NEWEST_FORMAT_VERSION) => {
                    future(v)
                }
                Ok(VersionOnly { version: None }) => {
                    VaultError::bad_content(path, "no `version` field".into())
                }
                _ => VaultError::bad_content(path, where_and_why(text, &e)),
            });
        }
    };
    if data.version > NEWEST_FORMAT_VERSION {
        return Err(future(i64::from(data.version)));
    }
    if data.version < 1 {
        return Err(VaultError::bad_content(
            path,
            format!("unknown version {}", data.version),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for p in &data.profiles {
        if !seen.insert(p.name.as_str()) {
            return Err(VaultError::bad_content(
                path,
                format!("profile name '{}' appears twice", p.name),
            ));
        }
    }
    Ok(data)
}

/// A parse error told without the text it is about: the offending line may hold a secret
/// (`client_secret = "…`), so the line's number and key are named, never its value, and
/// anything the parser quoted is left out.
fn where_and_why(text: &str, e: &toml::de::Error) -> String {
    let why = unquoted(e.message());
    let Some(span) = e.span() else { return why };
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let line_no = memchr::memchr_iter(b'\n', &text.as_bytes()[..start]).count() + 1;
    let line = text[..start].rfind('\n').map_or(text, |i| &text[i + 1..]);
    let line = line.split('\n').next().unwrap_or_default();
    match line.split_once('=').map(|(key, _)| key.trim()) {
        Some(key) if !key.is_empty() && key.chars().all(is_key_char) => {
            format!("line {line_no}, key `{key}`: {why}")
        }
        _ => format!("line {line_no}: {why}"),
    }
}

/// A bare or dotted TOML key, as tokdeck writes them.
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// `message`, on one line, with what it quotes (`"…"`, `` `…` ``, `'…'`) cut out.
fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(q) if c == q => {
                open = None;
                out.push('…');
                out.push(c);
            }
            Some(_) => {}
            None if matches!(c, '"' | '`' | '\'') => {
                open = Some(c);
                out.push(c);
            }
            None => out.push(c),
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use age::secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::vault::{Endpoints, Provider, Token};

    fn path() -> &'static Location {
        static VAULT: std::sync::LazyLock<Location> =
            std::sync::LazyLock::new(|| Location::File("v.age".into()));
        &VAULT
    }

    fn vault(names: &[&str]) -> VaultData {
        let profiles = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut p = Profile::new(
                    (*name).to_string(),
                    Provider::Custom,
                    Endpoints::at("http://127.0.0.1:9"),
                    format!("client-{i}"),
                    SecretString::from(format!("secret-{i}")),
                    "urn:ietf:wg:oauth:2.0:oob".into(),
                );
                p.scopes = vec!["read".into(), "write".into()];
                p.notes = format!("line one of {i}\n[[profile]]\nname = \"fake\"\n'''\"\"\"");
                p.token = Some(Token {
                    access_token: SecretString::from(format!("access-{i}")),
                    refresh_token: Some(SecretString::from(format!("refresh-{i}"))),
                    token_type: "Bearer".into(),
                    scope: None,
                    obtained_at: chrono::DateTime::UNIX_EPOCH,
                    expires_at: None,
                    refresh_expires_at: None,
                    id_token: None,
                });
                p
            })
            .collect();
        VaultData {
            recipients: vec!["age1example".into()],
            profiles,
            ..VaultData::default()
        }
    }

    fn located(text: &str) -> Located {
        match read(Zeroizing::new(text.as_bytes().to_vec()), path()).unwrap() {
            Parsed::Located(located) => located,
            Parsed::Whole(_) => panic!("parsed whole: {text}"),
        }
    }

    fn same(a: &VaultData, b: &VaultData) {
        assert_eq!(toml::to_string(a).unwrap(), toml::to_string(b).unwrap());
    }

    #[test]
    fn what_tokdeck_writes_is_read_one_profile_at_a_time() {
        let data = vault(&["a", "b \"quoted\" é", "c"]);
        let text = toml::to_string(&data).unwrap();
        let located = located(&text);
        assert_eq!(located.recipients(), ["age1example"]);
        let b = located.profile("b \"quoted\" é", path()).unwrap().unwrap();
        assert_eq!(b.client_id, "client-1");
        assert_eq!(
            b.notes, data.profiles[1].notes,
            "the header in the notes is text"
        );
        assert!(located.profile("fake", path()).unwrap().is_none());
        same(&located.parse_all(path()).unwrap(), &data);
    }

    #[test]
    fn parallel_parsing_keeps_the_order() {
        let names: Vec<String> = (0..PARALLEL_FROM * 2 + 7)
            .map(|i| format!("p{i}"))
            .collect();
        let data = vault(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let text = toml::to_string(&data).unwrap();
        same(&located(&text).parse_all(path()).unwrap(), &data);
    }

    #[test]
    fn hand_edits_read_the_same_as_the_whole_document() {
        let text = "# my vault\r\nversion = 1\r\nrecipients = [\r\n  \"age1example\", # me\r\n]\r\n\r\n\
            [[profile]]  # first\r\nprovider = \"custom\"\r\nname = 'a'\r\nclient_id = \"c\"\r\n\
            client_secret = \"s\"\r\nredirect_uri = \"urn:ietf:wg:oauth:2.0:oob\"\r\nowner = \"user\"\r\n\
            endpoints = { base_url = \"http://127.0.0.1:9\" }\r\n\
            notes = '''\r\n[[profile]]\r\n'''\r\n\
            [profile.token]\r\naccess_token = \"tok-a\"\r\nobtained_at = \"2026-01-01T00:00:00Z\"\r\n\
            [[profile]]\r\nname = \"b\"\r\nprovider = \"factorial\"\r\nclient_id = \"c\"\r\n\
            client_secret = \"s\"\r\nredirect_uri = \"urn:ietf:wg:oauth:2.0:oob\"\r\nowner = \"company\"\r\n\
            [profile.endpoints]\r\nbase_url = \"https://api.factorialhr.com\"\r\n";
        let whole = parse_whole(text, path()).unwrap();
        let located = located(text);
        same(&located.parse_all(path()).unwrap(), &whole);
        let a = located.profile("a", path()).unwrap().unwrap();
        assert_eq!(a.token.unwrap().access_token.expose_secret(), "tok-a");
        assert_eq!(a.notes, "[[profile]]\r\n");
    }

    #[test]
    fn other_shapes_are_parsed_whole() {
        let data = vault(&["a"]);
        let text = toml::to_string(&data).unwrap();
        for changed in [
            text.replacen("[[profile]]", "[[ profile ]]", 1),
            text.replace("name = \"a\"", "\"name\" = \"a\""),
            format!("{text}\n[extra]\n"),
        ] {
            let parsed = read(Zeroizing::new(changed.clone().into_bytes()), path());
            match parsed {
                Ok(Parsed::Whole(whole)) => same(&whole, &data),
                Err(e) => assert!(changed.contains("[extra]"), "{e}"),
                Ok(Parsed::Located(_)) => panic!("located: {changed}"),
            }
        }
    }

    #[test]
    fn a_broken_profile_is_reported_at_its_line_in_the_file() {
        let data = vault(&["a", "b"]);
        let text = toml::to_string(&data)
            .unwrap()
            .replace("client_id = \"client-1\"", "client_id = client-1");
        let line = text
            .lines()
            .position(|l| l == "client_id = client-1")
            .unwrap()
            + 1;
        let located = located(&text);
        // The profile asked for is read; the broken one is reported with the file's line.
        assert_eq!(located.profile("a", path()).unwrap().unwrap().name, "a");
        for e in [
            located.profile("b", path()).unwrap_err(),
            located.parse_all(path()).unwrap_err(),
        ] {
            let message = e.to_string();
            assert!(message.contains(&format!("line {line}")), "{message}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line_and_key_never_the_value() {
        let text = "version = 1\n\n[[profile]]\nname = \"p\"\nclient_secret = \"s3cr3t-value\n";
        let err = parse_vault(text.as_bytes(), path())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(
            err.contains("line 5") && err.contains("client_secret"),
            "{err}"
        );
        let text = "version = 1\n[[profile]]\nname = \"p\"\naccess_token = 5 sup3r\n";
        let err = parse_vault(text.as_bytes(), path())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("sup3r"), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert_eq!(
            unquoted("invalid type: string \"tok\", expected `x`"),
            "invalid type: string \"…\", expected `…`"
        );
    }

    #[test]
    fn repeated_names_and_future_versions_are_refused_as_before() {
        let text = toml::to_string(&vault(&["a", "a"])).unwrap();
        let e = read(Zeroizing::new(text.into_bytes()), path())
            .err()
            .unwrap();
        assert!(e.to_string().contains("'a' appears twice"), "{e}");
        let future = toml::to_string(&vault(&["a"]))
            .unwrap()
            .replace("version = 2", "version = 9");
        assert!(matches!(
            read(Zeroizing::new(future.into_bytes()), path()),
            Err(VaultError::FutureVersion { found: 9, .. })
        ));
        assert!(matches!(
            read(Zeroizing::new(vec![0xff, 0xfe]), path()),
            Err(VaultError::BadContent { .. })
        ));
    }
}
