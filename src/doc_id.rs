//! Document ids (`TYPE:ID`): parsing, validation, and the reversible mapping to file names.
//!
//! A file name keeps `a-z`, `0-9`, `_`, `-` and (not first) `.` as they are and writes every
//! other byte of the UTF-8 id as `%XX` (upper-case hex). Upper-case letters are escaped too, so
//! two ids never map to names that a case-insensitive file system would confuse, and no name can
//! be `.`, `..`, hidden, or contain `/` or NUL.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The longest TYPE, in bytes of UTF-8.
pub const MAX_TYPE_BYTES: usize = 64;
/// The longest ID part, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 200;
/// The longest encoded file name of an ID part, so that `NAME.ndjson` fits the usual 255-byte
/// limit of file names with room for temporary suffixes.
pub const MAX_ENCODED_BYTES: usize = 240;

/// The type whose documents are reserved for eventdir itself.
pub const SYS_TYPE: &str = "sys";
/// The prefix of schema documents: `sys:schema:TYPE`.
pub const SCHEMA_PREFIX: &str = "sys:schema:";

/// A validated document id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocId {
    full: String,
    colon: usize,
}

impl DocId {
    /// Parses and validates `text` as a document id.
    pub fn parse(text: &str) -> Result<DocId> {
        let bad = |reason: &str| Error::InvalidDocId {
            id: text.to_string(),
            reason: reason.to_string(),
        };
        let Some(colon) = text.find(':') else {
            return Err(bad("expected TYPE:ID, e.g. order:42"));
        };
        let (kind, id) = (&text[..colon], &text[colon + 1..]);
        if kind.is_empty() {
            return Err(bad("the TYPE before ':' is empty"));
        }
        if id.is_empty() {
            return Err(bad("the ID after ':' is empty"));
        }
        if kind.len() > MAX_TYPE_BYTES {
            return Err(bad(&format!(
                "TYPE is {} bytes long; at most {MAX_TYPE_BYTES} are allowed",
                kind.len()
            )));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(bad(&format!(
                "ID is {} bytes long; at most {MAX_ID_BYTES} are allowed",
                id.len()
            )));
        }
        if let Some(c) = text.chars().find(|&c| is_forbidden(c)) {
            return Err(bad(&format!(
                "contains the control or invisible character U+{:04X}",
                c as u32
            )));
        }
        if encoded_len(id) > MAX_ENCODED_BYTES {
            return Err(bad(&format!(
                "ID needs {} bytes as a file name; at most {MAX_ENCODED_BYTES} are allowed (characters other than a-z, 0-9, '_', '-', '.' take 3 bytes)",
                encoded_len(id)
            )));
        }
        Ok(DocId {
            full: text.to_string(),
            colon,
        })
    }

    /// Parses an id that the user asks to write: `sys:` ids are refused, because the only
    /// reserved documents (`sys:schema:TYPE`) are written by `eventdir schema`.
    pub fn parse_writable(text: &str) -> Result<DocId> {
        let id = DocId::parse(text)?;
        if id.kind() == SYS_TYPE {
            let reason = if id.schema_of().is_some() {
                "schema documents are reserved and are not written with `append`"
            } else {
                "the type 'sys' is reserved for eventdir"
            };
            return Err(Error::InvalidDocId {
                id: text.to_string(),
                reason: reason.to_string(),
            });
        }
        Ok(id)
    }

    /// The whole id, `TYPE:ID`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The TYPE part (the category).
    pub fn kind(&self) -> &str {
        &self.full[..self.colon]
    }

    /// The ID part.
    pub fn id(&self) -> &str {
        &self.full[self.colon + 1..]
    }

    /// For `sys:schema:TYPE`, the TYPE it governs.
    pub fn schema_of(&self) -> Option<&str> {
        self.full
            .strip_prefix(SCHEMA_PREFIX)
            .filter(|t| !t.is_empty())
    }

    /// The id of the schema document that governs this document's type.
    pub fn schema_doc(&self) -> Option<DocId> {
        if self.kind() == SYS_TYPE {
            return None;
        }
        DocId::parse(&format!("{SCHEMA_PREFIX}{}", self.kind())).ok()
    }

    /// The stream file's path relative to the folder's `streams/` directory:
    /// `TYPE/SHARD/ID.ndjson`, where SHARD is the first byte of SHA-256 of the whole id in hex.
    pub fn relative_path(&self) -> PathBuf {
        // Built in one string: every stream opened asks for its path.
        let (kind, id) = (self.kind(), self.id());
        let mut path = String::with_capacity(encoded_len(kind) + 4 + encoded_len(id) + 7);
        encode_into(kind, &mut path);
        path.push('/');
        path.extend(self.shard_digits());
        path.push('/');
        encode_into(id, &mut path);
        path.push_str(".ndjson");
        PathBuf::from(path)
    }

    /// The shard directory name: two hex digits taken from the id's SHA-256.
    pub fn shard(&self) -> String {
        self.shard_digits().into_iter().collect()
    }

    fn shard_digits(&self) -> [char; 2] {
        let byte = Sha256::digest(self.full.as_bytes())[0];
        let hex = |n: u8| char::from(b"0123456789abcdef"[usize::from(n)]);
        [hex(byte >> 4), hex(byte & 0xf)]
    }

    /// Recovers the id from a stream file's path relative to `streams/`, or `None` when the path
    /// is not one eventdir would write (a foreign file).
    pub fn from_relative_path(path: &Path) -> Option<DocId> {
        let mut parts = path.iter();
        let kind = decode(parts.next()?.to_str()?)?;
        parts.next()?; // the shard, checked with the rest below
        let file = parts.next()?.to_str()?;
        if parts.next().is_some() {
            return None;
        }
        let id = decode(file.strip_suffix(".ndjson")?)?;
        let doc = DocId::parse(&format!("{kind}:{id}")).ok()?;
        if doc.kind() == SYS_TYPE
            && !doc
                .schema_of()
                .is_some_and(|t| !t.contains(':') && t != SYS_TYPE)
        {
            return None; // no such reserved document exists
        }

        // The path this id is written at, compared whole: its type (decoding takes only what
        // encoding writes), its shard and its file name.
        (doc.relative_path() == path).then_some(doc)
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// Control characters and the invisible characters that make two ids look alike: bidirectional
/// overrides, zero-width characters and the byte-order mark.
fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn is_plain(byte: u8, first: bool) -> bool {
    matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-') || (byte == b'.' && !first)
}

fn encoded_len(text: &str) -> usize {
    text.bytes()
        .enumerate()
        .map(|(i, b)| if is_plain(b, i == 0) { 1 } else { 3 })
        .sum()
}

/// Encodes one part of an id as a file-name component.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(encoded_len(text));
    encode_into(text, &mut out);
    out
}

/// [`encode`], appending to `out`.
fn encode_into(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, b) in text.bytes().enumerate() {
        if is_plain(b, i == 0) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

/// Decodes a file-name component; `None` unless it is exactly what [`encode`] writes.
fn decode(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = name.get(i + 1..i + 3)?;
            if hex.bytes().any(|h| h.is_ascii_lowercase()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (encode(&text) == name).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_stay_readable() {
        let id = DocId::parse("order:42").unwrap();
        assert_eq!(id.kind(), "order");
        assert_eq!(id.id(), "42");
        let path = id.relative_path();
        assert!(path.to_str().unwrap().starts_with("order/"));
        assert!(path.to_str().unwrap().ends_with("/42.ndjson"));
        assert_eq!(DocId::from_relative_path(&path), Some(id));
    }

    #[test]
    fn hostile_ids_stay_inside_one_component() {
        for text in [
            "x:../x",
            "a:/../../b",
            "a:/etc/passwd",
            "a:%2e%2e",
            "a:..",
            "a:.hidden",
            "Order:A",
            "a:b:c",
        ] {
            let id = DocId::parse(text).unwrap();
            let path = id.relative_path();
            assert_eq!(path.components().count(), 3, "{text}");
            for part in path.iter() {
                let part = part.to_str().unwrap();
                assert!(
                    !part.starts_with('.') && !part.contains('/'),
                    "{text} -> {part}"
                );
            }
            assert_eq!(DocId::from_relative_path(&path), Some(id), "{text}");
        }
    }

    #[test]
    fn ids_differing_by_case_or_normalisation_get_distinct_case_insensitive_names() {
        let names: Vec<String> = ["a:Ab", "a:ab", "a:AB", "a:\u{e9}", "a:e\u{301}", "a:%41b"]
            .iter()
            .map(|t| {
                DocId::parse(t)
                    .unwrap()
                    .relative_path()
                    .to_str()
                    .unwrap()
                    .to_lowercase()
            })
            .collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn malformed_ids_are_refused() {
        for text in [
            "",
            "order",
            ":42",
            "order:",
            "a:b\0c",
            "a:b\nc",
            "a:\u{202E}x",
            &format!("a:{}", "x".repeat(201)),
        ] {
            assert!(DocId::parse(text).is_err(), "{text:?}");
        }
        assert!(DocId::parse_writable("sys:schema:order").is_err());
        assert!(DocId::parse_writable("sys:other").is_err());
        assert_eq!(
            DocId::parse("sys:schema:order").unwrap().schema_of(),
            Some("order")
        );
    }

    #[test]
    fn foreign_names_do_not_decode() {
        for reserved in ["sys:foo", "sys:schema:a:b", "sys:schema:sys"] {
            let doc = DocId::parse(reserved).unwrap();
            assert_eq!(
                DocId::from_relative_path(&doc.relative_path()),
                None,
                "{reserved}"
            );
        }
        let schema = DocId::parse("sys:schema:order").unwrap();
        assert_eq!(
            DocId::from_relative_path(&schema.relative_path()),
            Some(schema)
        );
        let shard = DocId::parse("order:42").unwrap().shard();

        let wrong = if shard == "00" { "01" } else { "00" };
        for path in [
            format!("order/{wrong}/42.ndjson"),
            "order/zz/42.ndjson".to_string(),
            format!("Order/{shard}/42.ndjson"),
            format!("order/{shard}/%2f.ndjson"),
            format!("order/{shard}/42.txt"),
            format!("order/{shard}/42.ndjson/x"),
            // a type that decodes with a colon in it: `a:b:c` is type `a`, written elsewhere
            format!("a%3Ab/{}/c.ndjson", DocId::parse("a:b:c").unwrap().shard()),
        ] {
            assert_eq!(DocId::from_relative_path(Path::new(&path)), None, "{path}");
        }
    }
}
