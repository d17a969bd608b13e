//! Finds the `[[profile]]` tables of vault text and their names without parsing them, so one
//! profile of thousands can be read alone and the rest parsed in parallel.
//!
//! The scanner follows TOML's strings, comments and brackets, so a `[[profile]]` inside a
//! string or an array is not taken for a header. It accepts only the shape tokdeck writes (and
//! hand edits of it): a head of top-level keys, then `[[profile]]` tables whose sub-tables are
//! `[profile.KEY]`. Anything else (another table, a quoted or spaced header, a line it cannot
//! follow) makes [`scan`] return `None`, and the caller parses the whole document instead.

use std::ops::Range;

use std::hash::BuildHasher as _;

use memchr::{memchr, memchr2, memmem};

/// Where the head and each profile lie in the text.
#[derive(Debug, PartialEq, Eq)]
pub struct Layout {
    /// Everything before the first `[[profile]]`: `version`, `recipients`.
    pub head: Range<usize>,
    pub profiles: Vec<Entry>,
}

/// One `[[profile]]` table: from its header to the next one.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub span: Range<usize>,
    /// Its `name`, when written as `name = "..."` (or `'...'`) among its first keys.
    pub name: Option<String>,
}

/// The positions of located profiles by name, holding no copy of a name: a lookup hashes the
/// name asked for and compares it with the entries' own.
pub struct NameIndex {
    hasher: std::hash::RandomState,
    positions: hashbrown::HashTable<usize>,
}

impl NameIndex {
    /// The index of `entries`; `None` when one has no name the scanner read, or a name
    /// repeats.
    pub fn of(entries: &[Entry]) -> Option<Self> {
        let hasher = std::hash::RandomState::new();
        let mut positions = hashbrown::HashTable::with_capacity(entries.len());
        let name_at = |at: &usize| name_of(entries, *at);
        for (i, entry) in entries.iter().enumerate() {
            let name = entry.name.as_deref()?;
            let hash = hasher.hash_one(name);
            match positions.entry(
                hash,
                |at| name_at(at) == Some(name),
                |at| hasher.hash_one(name_at(at).unwrap_or_default()),
            ) {
                hashbrown::hash_table::Entry::Occupied(_) => return None,
                hashbrown::hash_table::Entry::Vacant(slot) => slot.insert(i),
            };
        }
        Some(Self { hasher, positions })
    }

    /// Where the entry called `name` is among `entries` (those the index was made of).
    pub fn get(&self, entries: &[Entry], name: &str) -> Option<usize> {
        let hash = self.hasher.hash_one(name);
        self.positions
            .find(hash, |at| name_of(entries, *at) == Some(name))
            .copied()
    }
}

/// The name of the entry at `at`, if the scanner read one.
fn name_of(entries: &[Entry], at: usize) -> Option<&str> {
    entries.get(at).and_then(|e| e.name.as_deref())
}

/// Bytes that matter outside strings: line ends, comments, quotes and brackets.
static CODE: [bool; 256] = byte_set(b"\n#\"'[]{}");
/// Bytes that matter inside a one-line basic string.
static IN_BASIC: [bool; 256] = byte_set(b"\"\\\n");

const fn byte_set(bytes: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        set[bytes[i] as usize] = true;
        i += 1;
    }
    set
}

/// A header line the scanner understands.
enum Header {
    /// `[[profile]]`
    Profile,
    /// `[profile.KEY]` or deeper, with bare keys.
    ProfileSection,
}

/// Locates the profiles of `text`; `None` when the text is not in the shape tokdeck writes
/// (or not valid TOML), for the caller to parse it whole.
pub fn scan(text: &str) -> Option<Layout> {
    let bytes = text.as_bytes();
    if bytes.len() >= SPLIT_FROM && super::parallel::cores() > 1 {
        let middle = bytes.len() / 2;
        if let Some(found) = bytes
            .get(middle..)
            .and_then(|b| memmem::find(b, b"\n[[profile]]"))
        {
            let split = middle + found + 1;
            let (first, second) = bytes.split_at(split);
            let (first, second) = std::thread::scope(|s| {
                let second = s.spawn(|| scan_part(second));
                (scan_part(first), second.join().ok().flatten())
            });
            // The first half scanned alone ends outside every string and bracket, so the
            // whole text is in the same state where the second half begins.
            if let (Some(first), Some(second)) = (first, second) {
                return Some(first.followed_by(second, split));
            }
        }
    }
    scan_part(bytes)
}

/// Text at least this long is scanned in two halves at once.
const SPLIT_FROM: usize = 1 << 20;

fn scan_part(bytes: &[u8]) -> Option<Layout> {
    Scanner {
        bytes,
        at: 0,
        depth: 0,
    }
    .run()
}

impl Layout {
    /// This layout of the text before `offset`, and `next` of the text from there on, which
    /// starts with a `[[profile]]`.
    fn followed_by(mut self, next: Layout, offset: usize) -> Layout {
        self.profiles
            .extend(next.profiles.into_iter().map(|entry| Entry {
                span: entry.span.start + offset..entry.span.end + offset,
                name: entry.name,
            }));
        self
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Open `[` and `{` of values (arrays and inline tables may span lines).
    depth: usize,
}

impl<'a> Scanner<'a> {
    fn run(mut self) -> Option<Layout> {
        let mut head_end = None;
        let mut profiles: Vec<Entry> = Vec::new();
        // Whether keys at the line start still belong to the current profile's own table.
        let mut in_profile_table = false;
        while self.at < self.bytes.len() {
            let line_start = self.at;
            self.skip_blanks();
            match self.bytes.get(self.at) {
                Some(b'[') => match self.header()? {
                    Header::Profile => {
                        head_end.get_or_insert(line_start);
                        if let Some(last) = profiles.last_mut() {
                            last.span.end = line_start;
                        }
                        profiles.push(Entry {
                            span: line_start..self.bytes.len(),
                            name: None,
                        });
                        in_profile_table = true;
                    }
                    Header::ProfileSection if head_end.is_some() => in_profile_table = false,
                    Header::ProfileSection => return None,
                },
                Some(b'n') if in_profile_table && self.bytes[self.at..].starts_with(b"name") => {
                    let entry = profiles.last_mut()?;
                    if let Some(name) = self.name_value() {
                        if entry.name.is_some() {
                            return None;
                        }
                        entry.name = Some(name);
                    }
                }
                _ => {}
            }
            self.rest_of_line()?;
        }
        if self.depth != 0 {
            return None;
        }
        Some(Layout {
            head: 0..head_end.unwrap_or(self.bytes.len()),
            profiles,
        })
    }

    fn skip_blanks(&mut self) {
        while matches!(self.bytes.get(self.at), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// Reads a table header at `self.at` (a `[`); `None` when it is not one tokdeck writes.
    fn header(&mut self) -> Option<Header> {
        let rest = &self.bytes[self.at..];
        let line = &rest[..memchr(b'\n', rest).unwrap_or(rest.len())];
        let (kind, len) = if line.starts_with(b"[[profile]]") {
            (Header::Profile, "[[profile]]".len())
        } else if line.starts_with(b"[profile.") {
            let close = memchr(b']', line)?;
            let key = &line["[profile.".len()..close];
            let bare = |part: &[u8]| {
                !part.is_empty()
                    && part
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            };
            if !key.split(|&b| b == b'.').all(bare) {
                return None;
            }
            (Header::ProfileSection, close + 1)
        } else {
            return None;
        };
        self.at += len;
        Some(kind)
    }

    /// At `name`: reads `name = "..."`, leaving `self.at` after the value. `None` (with
    /// `self.at` unmoved) when the key is longer (`names`) or the value is not a plain string.
    fn name_value(&mut self) -> Option<String> {
        let start = self.at;
        self.at += "name".len();
        self.skip_blanks();
        if self.bytes.get(self.at) != Some(&b'=') {
            self.at = start;
            return None;
        }
        self.at += 1;
        self.skip_blanks();
        let quote = *self.bytes.get(self.at)?;
        let value_start = self.at + 1;
        let escaped = match quote {
            b'"' if !self.bytes[self.at..].starts_with(b"\"\"\"") => self.basic_string()?,
            b'\'' if !self.bytes[self.at..].starts_with(b"'''") => {
                self.literal_string()?;
                false
            }
            _ => {
                self.at = start;
                return None;
            }
        };
        let raw = std::str::from_utf8(&self.bytes[value_start..self.at - 1]).ok()?;
        if !escaped {
            return Some(raw.to_string());
        }
        // Escapes: let the TOML parser decode the one string.
        let value = std::str::from_utf8(&self.bytes[value_start - 1..self.at]).ok()?;
        toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()?
            .remove("v")?
            .as_str()
            .map(str::to_string)
    }

    /// From `self.at` to the start of the next line where a key or header may begin,
    /// following strings, comments and brackets. `None` when the text is not valid TOML.
    fn rest_of_line(&mut self) -> Option<()> {
        loop {
            let rest = self.rest()?;
            let Some(skip) = rest.iter().position(|&b| CODE[usize::from(b)]) else {
                self.at = self.bytes.len();
                return Some(());
            };
            self.at += skip;
            match rest[skip] {
                b'\n' => {
                    self.at += 1;
                    if self.depth == 0 {
                        return Some(());
                    }
                }
                b'#' => {
                    let rest = &self.bytes[self.at..];
                    self.at += memchr(b'\n', rest).unwrap_or(rest.len());
                }
                b'"' if self.bytes[self.at..].starts_with(b"\"\"\"") => self.multiline_basic()?,
                b'"' => {
                    let start = self.at;
                    if self.basic_string().is_none() {
                        self.skip_broken_string(start);
                    }
                }
                b'\'' if self.bytes[self.at..].starts_with(b"'''") => self.multiline_literal()?,
                b'\'' => {
                    let start = self.at;
                    if self.literal_string().is_none() {
                        self.skip_broken_string(start);
                    }
                }
                b'[' | b'{' => {
                    self.depth += 1;
                    self.at += 1;
                }
                b']' | b'}' => {
                    self.depth = self.depth.checked_sub(1)?;
                    self.at += 1;
                }
                _ => self.at += 1,
            }
        }
    }

    /// A one-line string opened at `start` and not closed on its line: no valid TOML, but its
    /// end is certain (such a string cannot span lines), so the scan goes on at the line's
    /// end and only the profile that holds it fails to parse. A mistake in one profile then
    /// does not stop reading the others.
    fn skip_broken_string(&mut self, start: usize) {
        let rest = self.bytes.get(start..).unwrap_or_default();
        self.at = start + memchr(b'\n', rest).unwrap_or(rest.len());
    }

    /// The text from `self.at` on; `None` once an escape ran past the end.
    fn rest(&self) -> Option<&'a [u8]> {
        self.bytes.get(self.at..)
    }

    /// At `"`: moves past the closing quote; returns whether the string held escapes.
    fn basic_string(&mut self) -> Option<bool> {
        let mut escaped = false;
        self.at += 1;
        loop {
            let rest = self.rest()?;
            // Values are short: a plain loop beats setting up a vector search.
            let found = rest.iter().position(|&b| IN_BASIC[usize::from(b)])?;
            match rest[found] {
                b'"' => {
                    self.at += found + 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.at += found + 2;
                }
                _ => return None,
            }
        }
    }

    /// At `'`: moves past the closing quote.
    fn literal_string(&mut self) -> Option<()> {
        self.at += 1;
        let rest = self.rest()?;
        let found = memchr2(b'\'', b'\n', rest)?;
        (rest[found] == b'\'').then(|| self.at += found + 1)
    }

    /// At `"""`: moves past the closing `"""` (and up to two quotes that belong to the text).
    fn multiline_basic(&mut self) -> Option<()> {
        self.at += 3;
        loop {
            let rest = self.rest()?;
            let found = memchr2(b'"', b'\\', rest)?;
            if rest[found] == b'\\' {
                self.at += found + 2;
            } else if rest[found..].starts_with(b"\"\"\"") {
                self.at += found + 3;
                self.extra_quotes(b'"');
                return Some(());
            } else {
                self.at += found + 1;
            }
        }
    }

    /// At `'''`: moves past the closing `'''` (and up to two quotes that belong to the text).
    fn multiline_literal(&mut self) -> Option<()> {
        self.at += 3;
        let found = memmem::find(self.rest()?, b"'''")?;
        self.at += found + 3;
        self.extra_quotes(b'\'');
        Some(())
    }

    fn extra_quotes(&mut self, quote: u8) {
        for _ in 0..2 {
            if self.bytes.get(self.at) == Some(&quote) {
                self.at += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Option<Vec<Option<String>>> {
        scan(text).map(|l| l.profiles.into_iter().map(|e| e.name).collect())
    }

    #[test]
    fn finds_each_profile_and_its_name() {
        let text = "version = 1\nrecipients = [\"age1x\"]\n\n[[profile]]\nname = \"a\"\n\
                    scopes = [\n  \"read\",\n]\n[profile.token]\nname = \"not-the-name\"\n\n\
                    [[profile]]\n  name='b' # comment\n";
        let layout = scan(text).unwrap();
        let head_end = text.find("[[profile]]").unwrap();
        assert_eq!(layout.head, 0..head_end);
        let second = text.rfind("[[profile]]").unwrap();
        assert_eq!(layout.profiles[0].span, head_end..second);
        assert_eq!(layout.profiles[1].span, second..text.len());
        assert_eq!(
            names(text).unwrap(),
            [Some("a".to_string()), Some("b".to_string())]
        );
    }

    #[test]
    fn headers_inside_strings_and_comments_are_text() {
        let text = "version = 1\n[[profile]]\nname = \"a\"\nnotes = \"\"\"\n[[profile]]\n\
                    name = \"fake\"\n\"\"\"\n# [[profile]]\nx = '''\n[[profile]]'''\n\
                    y = \"\\\"[[profile]]\"\n";
        assert_eq!(names(text).unwrap(), [Some("a".to_string())]);
    }

    #[test]
    fn escaped_names_are_decoded() {
        let text = "[[profile]]\nname = \"caf\\u00e9 \\\"x\\\"\"\n";
        assert_eq!(names(text).unwrap(), [Some("café \"x\"".to_string())]);
    }

    #[test]
    fn names_it_cannot_read_plainly_are_left_unknown() {
        let text = "[[profile]]\n\"name\" = \"a\"\nnames = 1\n";
        assert_eq!(names(text).unwrap(), [None]);
    }

    #[test]
    fn a_string_left_open_breaks_only_its_own_profile() {
        let text = "version = 1\n[[profile]]\nname = \"a\"\nclient_id = \"x\n\
                    [[profile]]\nname = \"b\"\nnotes = 'y\n[[profile]]\nname = \"c\"\n";
        let layout = scan(text).unwrap();
        let found: Vec<_> = layout.profiles.iter().map(|e| e.name.clone()).collect();
        assert_eq!(
            found,
            [Some("a".into()), Some("b".into()), Some("c".into())]
        );
        let c = &text[layout.profiles[2].span.clone()];
        assert_eq!(c, "[[profile]]\nname = \"c\"\n");
    }

    #[test]
    fn other_shapes_are_left_to_the_full_parser() {
        for text in [
            "[other]\nx = 1\n",
            "[[profile]]\nname = \"a\"\n[other]\n",
            "[ [profile] ]\n",
            "[[profile]]\n[profile.\"token\"]\n",
            "[profile.token]\n",
            "[[profile]]\nname = \"a\"\nname = \"b\"\n",
            "x = [\n",
            "x = ]\n",
            "x = \"\"\"never closed\n",
        ] {
            assert_eq!(scan(text), None, "{text:?}");
        }
    }

    #[test]
    fn long_text_scanned_in_halves_is_scanned_as_a_whole() {
        let profile = |i: usize| {
            format!(
                "[[profile]]\nname = \"p{i}\"\nnotes = \"{}\"\n",
                "x".repeat(900)
            )
        };
        let mut text = String::from("version = 1\n");
        for i in 0..2_000 {
            text.push_str(&profile(i));
        }
        let layout = scan(&text).unwrap();
        assert_eq!(layout, scan_part(text.as_bytes()).unwrap());
        assert_eq!(layout.profiles.len(), 2_000);
        assert_eq!(layout.profiles[1_999].name.as_deref(), Some("p1999"));
        // A multi-line string across the middle: the halves do not agree, and the text is
        // scanned again as a whole.
        let middle = text.len() / 2;
        let cut = middle + text[middle..].find("[[profile]]").unwrap();
        text.insert_str(cut, "extra = \"\"\"\n");
        let end = cut + text[cut..].find("\n[[profile]]").unwrap() + 1 + 40;
        let end = end + text[end..].find("\n[[profile]]").unwrap();
        text.insert_str(end, "\n\"\"\"");
        let middle = text.len() / 2;
        let split = middle + text[middle..].find("\n[[profile]]").unwrap();
        assert!(
            (cut..end).contains(&split),
            "the halves meet inside the string"
        );
        let layout = scan(&text).unwrap();
        assert_eq!(layout, scan_part(text.as_bytes()).unwrap());
        assert_eq!(
            layout.profiles.len(),
            1_999,
            "one header is inside the string"
        );
    }

    #[test]
    fn crlf_and_empty_text() {
        assert_eq!(
            names("version = 1\r\n[[profile]]\r\nname = \"a\"\r\n").unwrap(),
            [Some("a".to_string())]
        );
        let empty = scan("").unwrap();
        assert_eq!((empty.head, empty.profiles.len()), (0..0, 0));
    }
}
