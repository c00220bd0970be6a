//! The event line: how an event is written (canonical bytes, salted payload digest, chained
//! hash) and how a stored line is parsed and checked. FORMAT.md is the specification.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::DocId;
use crate::json::canonical;
use crate::line::Line;

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The hash that stands before event 0.
pub const ZERO_HASH: Hash = [0; 32];

/// The bytes of a salt.
pub const SALT_BYTES: usize = 16;

/// What an event does to its document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// Sets the whole state (`data` is an object); starts or restarts the document.
    Create,
    /// Applies an RFC 6902 patch (`data` is an array).
    Update,
    /// Marks the document deleted (`data` is null); its history stays.
    Delete,
    /// Applies the patch that brings the document to a newer schema (`data` is an array).
    Migrate,
}

impl EventType {
    /// The name stored in the `type` member.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Create => "create",
            EventType::Update => "update",
            EventType::Delete => "delete",
            EventType::Migrate => "migrate",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event about to be written; the stream supplies `seq`, `timestamp` and the previous hash.
pub struct NewEvent<'a> {
    pub seq: u64,
    pub doc: &'a DocId,
    pub kind: EventType,
    pub timestamp: &'a str,
    pub schema: Option<u64>,
    pub meta: Option<&'a Value>,
    /// The payload: the state for create, the patch for update and migrate, `None` for delete.
    pub data: Option<&'a Value>,
}

/// The stored line of a new event (with its newline) and its hash.
pub struct EncodedEvent {
    pub line: String,
    pub hash: Hash,
}

impl NewEvent<'_> {
    /// Encodes the event with a fresh event id and salt, chained to `prev`.
    pub fn encode(&self, prev: &Hash) -> EncodedEvent {
        self.encode_payload(
            prev,
            uuid::Uuid::new_v4(),
            &Payload::new(self.data, self.meta),
        )
    }

    /// Encodes the event with the given event id and salt (deterministic; for tests).
    pub fn encode_with(
        &self,
        prev: &Hash,
        event_id: uuid::Uuid,
        salt: &[u8; SALT_BYTES],
    ) -> EncodedEvent {
        self.encode_payload(
            prev,
            event_id,
            &Payload::with_salt(self.data, self.meta, *salt),
        )
    }

    /// Encodes the event with its data and meta already encoded in `payload`, which must have
    /// been made from this event's `data` and `meta` (those two fields are not read again).
    pub(crate) fn encode_payload(
        &self,
        prev: &Hash,
        event_id: uuid::Uuid,
        payload: &Payload,
    ) -> EncodedEvent {
        let mut line = String::with_capacity(payload.data.len() + payload.meta.len() + 400);
        let hash = self.encode_into(prev, event_id, payload, &mut line);
        EncodedEvent { line, hash }
    }

    /// [`encode_payload`](Self::encode_payload), appending the line to `out`; returns the
    /// event's hash.
    pub(crate) fn encode_into(
        &self,
        prev: &Hash,
        event_id: uuid::Uuid,
        payload: &Payload,
        out: &mut String,
    ) -> Hash {
        let start = out.len();
        Envelope {
            seq: self.seq,
            doc: self.doc.as_str(),
            kind: self.kind,
            timestamp: self.timestamp,
            event_id,
            schema: self.schema,
            meta: &payload.meta,
            salt: &payload.salt,
            data_hash: &payload.digest,
        }
        .write(out);
        let hash = chain_hash(prev, &out.as_bytes()[start..], &payload.digest);
        out.push_str(&payload.data);
        out.push_str(",\"hash\":\"");
        push_hex(out, &hash);
        out.push_str("\"}\n");
        hash
    }
}

/// An event's data and meta encoded ahead of its envelope: their canonical text, a fresh salt
/// and the salted digest of the data. None of it depends on the stream.
#[derive(Clone, Debug)]
pub struct Payload {
    data: String,
    salt: [u8; SALT_BYTES],
    digest: Hash,
    meta: String,
}

impl Payload {
    /// Encodes `data` (`None` for a delete's `null`) and `meta` with a fresh salt.
    pub fn new(data: Option<&Value>, meta: Option<&Value>) -> Payload {
        Payload::with_salt(data, meta, fresh_salt())
    }

    /// `data` is the data's canonical text already.
    pub fn encoded(data: String, meta: Option<&Value>) -> Payload {
        Payload::with_text(data, meta, fresh_salt())
    }

    /// The data's canonical text.
    pub fn data(&self) -> &str {
        &self.data
    }

    fn with_salt(data: Option<&Value>, meta: Option<&Value>, salt: [u8; SALT_BYTES]) -> Payload {
        Payload::with_text(
            data.map_or_else(|| "null".to_string(), canonical),
            meta,
            salt,
        )
    }

    fn with_text(data: String, meta: Option<&Value>, salt: [u8; SALT_BYTES]) -> Payload {
        Payload {
            digest: payload_digest(&salt, data.as_bytes()),
            data,
            salt,
            meta: meta.map_or_else(|| "null".to_string(), canonical),
        }
    }
}

/// A CSPRNG seeded from the operating system once per thread: unpredictable salts without a
/// system call per event.
fn fresh_salt() -> [u8; SALT_BYTES] {
    let mut salt = [0u8; SALT_BYTES];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut salt);
    salt
}

/// The members of an event line before its data, in their fixed order: what a writer writes and
/// what a reader insists on, byte for byte.
struct Envelope<'a> {
    seq: u64,
    doc: &'a str,
    kind: EventType,
    timestamp: &'a str,
    event_id: uuid::Uuid,
    schema: Option<u64>,
    /// The text of `meta`: `null` or an object.
    meta: &'a str,
    salt: &'a [u8; SALT_BYTES],
    data_hash: &'a Hash,
}

impl Envelope<'_> {
    /// Appends `{"seq":…,…,"data":` to `out`: the bytes E of FORMAT.md.
    fn write(&self, out: &mut String) {
        out.push_str("{\"seq\":");
        out.push_str(itoa::Buffer::new().format(self.seq));
        out.push_str(",\"doc\":");
        crate::canonical::push_string(out, self.doc);
        out.push_str(",\"type\":\"");
        out.push_str(self.kind.as_str());
        out.push_str("\",\"timestamp\":\"");
        out.push_str(self.timestamp);
        out.push_str("\",\"event_id\":\"");
        out.push_str(
            self.event_id
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
        out.push_str("\",\"schema\":");
        match self.schema {
            Some(seq) => out.push_str(itoa::Buffer::new().format(seq)),
            None => out.push_str("null"),
        }
        out.push_str(",\"meta\":");
        out.push_str(self.meta);
        out.push_str(",\"salt\":\"");
        push_hex(out, self.salt);
        out.push_str("\",\"data_hash\":\"");
        push_hex(out, self.data_hash);
        out.push_str("\",\"data\":");
    }
}

/// `SHA-256(salt ‖ payload bytes)`.
pub fn payload_digest(salt: &[u8], payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(payload);
    h.finalize().into()
}

/// `SHA-256(prev ‖ SHA-256(envelope bytes) ‖ data_hash)`.
pub fn chain_hash(prev: &Hash, envelope: &[u8], data_hash: &Hash) -> Hash {
    let envelope_digest: Hash = Sha256::digest(envelope).into();
    let mut h = Sha256::new();
    h.update(prev);
    h.update(envelope_digest);
    h.update(data_hash);
    h.finalize().into()
}

/// A stored event, parsed and checked against its chain.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    /// The stored line, without its newline.
    pub line: Line,
    pub seq: u64,
    pub kind: EventType,
    pub schema: Option<u64>,
    pub hash: Hash,
    /// Where `timestamp` starts in the line: kept there rather than copied, one allocation
    /// fewer per event read.
    timestamp_at: usize,
    data: Range<usize>,
    /// `data_hash` as the parse decoded it, for [`StoredEvent::check_payload`].
    data_hash: Hash,
}

impl StoredEvent {
    /// The checks a line parsed with [`DataCheck::DigestByCaller`] leaves: the forms of the
    /// timestamp and the event id, the data against its salted digest, and the stored hash
    /// against the one computed. The event id follows the timestamp at a fixed distance, the
    /// salt sits at one before the data (`,"salt":"` 32 hex `","data_hash":"` 64 hex
    /// `","data":`), the stored hash at the end of the line.
    pub fn check_payload(&self) -> Result<(), String> {
        check_timestamp(self.timestamp())?;
        let event_id_at = self.timestamp_at + EVENT_ID_FROM_TIMESTAMP;
        check_event_id(&self.line[event_id_at..event_id_at + EVENT_ID_LEN])?;
        let salt_at = self.data.start - SALT_FROM_DATA;
        let salt = decode_hex::<SALT_BYTES>(&self.line[salt_at..salt_at + 2 * SALT_BYTES])
            .ok_or(SALT_NOT_HEX)?;
        check_digest(&salt, self.data_text(), &self.data_hash)?;
        check_stored_hash(&self.line[self.data.end..], &self.hash)
    }

    /// When the event was written, in the stored form (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
    pub fn timestamp(&self) -> &str {
        &self.line[self.timestamp_at..self.timestamp_at + crate::time::STORED_LEN]
    }

    /// The raw text of the `data` member.
    pub fn data_text(&self) -> &str {
        &self.line[self.data.clone()]
    }

    /// The `data` member, parsed.
    pub fn data(&self) -> Result<Value, String> {
        serde_json::from_str(self.data_text()).map_err(|e| format!("data cannot be read: {e}"))
    }

    /// The event hash in hex.
    pub fn hash_hex(&self) -> String {
        encode_hex(self.hash)
    }
}

/// Reads the envelope of a stored line front to back. The envelope has one spelling (FORMAT.md),
/// so it is matched literally rather than parsed as general JSON: faster, and any other order,
/// spacing or spelling is refused by construction.
struct Scanner<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn expect(&mut self, literal: &str) -> Result<(), String> {
        if self.line[self.pos..].starts_with(literal) {
            self.pos += literal.len();
            Ok(())
        } else {
            Err(format!("expected {literal:?} at byte {}", self.pos))
        }
    }

    /// `n` bytes, then `"`.
    fn fixed(&mut self, n: usize, what: &str) -> Result<&'a str, String> {
        let text = self
            .line
            .get(self.pos..self.pos + n)
            .filter(|_| self.line[self.pos + n..].starts_with('"'));
        let text =
            text.ok_or_else(|| format!("{what} at byte {} is not {n} characters long", self.pos))?;
        self.pos += n + 1;
        Ok(text)
    }

    /// A plain decimal integer: `0` or a digit string without a leading zero.
    fn integer(&mut self, what: &str) -> Result<u64, String> {
        let digits = self.line[self.pos..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let text = &self.line[self.pos..self.pos + digits];
        if digits == 0 || (digits > 1 && text.starts_with('0')) {
            return Err(format!(
                "{what} at byte {} is not a plain decimal integer",
                self.pos
            ));
        }
        self.pos += digits;
        text.parse().map_err(|_| format!("{what} is out of range"))
    }

    /// Takes `"text"` when it stands next and `text` needs no escaping (the common case for a
    /// document id); `false` leaves the scanner where it was.
    fn plain_string(&mut self, text: &str) -> bool {
        let plain = !text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
        let rest = self.line.as_bytes()[self.pos..].strip_prefix(b"\"");
        let taken = rest
            .and_then(|rest| rest.strip_prefix(text.as_bytes()))
            .is_some_and(|rest| rest.starts_with(b"\""));
        if plain && taken {
            self.pos += text.len() + 2;
        }
        plain && taken
    }

    /// One JSON value, returned as its text.
    fn value(&mut self, what: &str) -> Result<&'a str, String> {
        let mut de = serde_json::Deserializer::from_str(&self.line[self.pos..]);
        let raw =
            <&RawValue>::deserialize(&mut de).map_err(|e| format!("{what} is not JSON: {e}"))?;
        let text = raw.get();
        if !self.line[self.pos..].starts_with(text) {
            return Err(format!("{what} is preceded by whitespace"));
        }
        self.pos += text.len();
        Ok(text)
    }
}

/// How much of `data` [`parse_line_with`] checks beyond its shape and digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataCheck {
    /// That it parses as one JSON value (numbers in range, nesting within limits).
    Readable,
    /// Nothing more: the caller parses `data` itself and reports a failure as corruption
    /// (a fold, which applies every payload it reads).
    ByCaller,
    /// Not even its digest, nor whether the stored hash is the one computed (the chain goes on
    /// from the computed one), nor the forms of the timestamp and the event id (the order of
    /// timestamps is still checked): as `ByCaller`, and the caller also calls
    /// [`StoredEvent::check_payload`] before it applies the event (a fold whose lines are read
    /// and chained on another thread, which so does less).
    DigestByCaller,
}

fn check_digest(salt: &[u8], data: &str, data_hash: &Hash) -> Result<(), String> {
    if payload_digest(salt, data.as_bytes()) != *data_hash {
        return Err("data does not match data_hash".to_string());
    }
    Ok(())
}

/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_MEMBER_LEN: usize = 75;
const EVENT_ID_LEN: usize = 36;
/// From the timestamp's first character to the event id's: the timestamp and
/// `","event_id":"`.
const EVENT_ID_FROM_TIMESTAMP: usize = crate::time::STORED_LEN + 14;
/// From the salt's first hex digit to the data: the salt, `","data_hash":"`, 64 hex digits and
/// `","data":`.
const SALT_FROM_DATA: usize = 2 * SALT_BYTES + 15 + 64 + 9;
const SALT_NOT_HEX: &str = "salt is not 32 lower-case hex digits";
const NO_HASH_MEMBER: &str = "the line does not end with the hash member";

/// The hex digits of `member` (the line's last [`HASH_MEMBER_LEN`] bytes), if it has the hash
/// member's shape.
fn stored_hash_hex(member: &str) -> Option<&str> {
    member
        .strip_prefix(",\"hash\":\"")
        .and_then(|rest| rest.strip_suffix("\"}"))
}

/// Checks that `member` (the line's last [`HASH_MEMBER_LEN`] bytes) holds `hash`.
fn check_stored_hash(member: &str, hash: &Hash) -> Result<(), String> {
    let stored = stored_hash_hex(member)
        .and_then(decode_hex::<32>)
        .ok_or(NO_HASH_MEMBER)?;
    if stored != *hash {
        return Err(
            "hash does not match the event's bytes and the previous event's hash".to_string(),
        );
    }
    Ok(())
}

/// Parses one stored line (without its newline) of document `doc` and checks everything the
/// line itself can prove: its members, its payload digest, and its hash chained to `prev`.
/// The error is a reason for a corruption report.
pub fn parse_line(line: String, doc: &DocId, prev: &Hash) -> Result<StoredEvent, String> {
    parse_line_with(line.into(), doc, prev, DataCheck::Readable)
}

/// [`parse_line`], with `check` saying whether `data` must be proven readable here.
pub fn parse_line_with(
    line: Line,
    doc: &DocId,
    prev: &Hash,
    check: DataCheck,
) -> Result<StoredEvent, String> {
    let mut scan = Scanner {
        line: &line,
        pos: 0,
    };
    let bad = |reason: String| format!("not a valid event line: {reason}");
    scan.expect("{\"seq\":").map_err(bad)?;
    let seq = scan.integer("seq").map_err(bad)?;
    scan.expect(",\"doc\":").map_err(bad)?;
    if !scan.plain_string(doc.as_str()) {
        check_doc(&mut scan, doc)?;
    }
    scan.expect(",\"type\":\"").map_err(bad)?;
    let kind = match &line[scan.pos..] {
        rest if rest.starts_with("create\"") => EventType::Create,
        rest if rest.starts_with("update\"") => EventType::Update,
        rest if rest.starts_with("delete\"") => EventType::Delete,
        rest if rest.starts_with("migrate\"") => EventType::Migrate,
        _ => return Err(bad(format!("unknown type at byte {}", scan.pos))),
    };
    scan.pos += kind.as_str().len() + 1;
    scan.expect(",\"timestamp\":\"").map_err(bad)?;
    let timestamp_at = scan.pos;
    let timestamp = scan
        .fixed(crate::time::STORED_LEN, "timestamp")
        .map_err(bad)?;
    // Left to the caller with the digest: the thread that reads ahead does the rest.
    let deferred = check == DataCheck::DigestByCaller;
    if !deferred {
        check_timestamp(timestamp)?;
    }
    scan.expect(",\"event_id\":\"").map_err(bad)?;
    debug_assert_eq!(scan.pos, timestamp_at + EVENT_ID_FROM_TIMESTAMP);
    let event_id = scan.fixed(EVENT_ID_LEN, "event_id").map_err(bad)?;
    if !deferred {
        check_event_id(event_id)?;
    }
    scan.expect(",\"schema\":").map_err(bad)?;
    let schema = if line[scan.pos..].starts_with("null") {
        scan.pos += 4;
        None
    } else {
        Some(scan.integer("schema").map_err(bad)?)
    };
    scan.expect(",\"meta\":").map_err(bad)?;
    let meta = if line[scan.pos..].starts_with("null,") {
        scan.pos += 4;
        "null"
    } else {
        scan.value("meta").map_err(bad)?
    };
    if meta != "null" && !meta.starts_with('{') {
        return Err("meta is neither an object nor null".to_string());
    }
    scan.expect(",\"salt\":\"").map_err(bad)?;
    let salt_text = scan.fixed(2 * SALT_BYTES, "salt").map_err(bad)?;
    scan.expect(",\"data_hash\":\"").map_err(bad)?;
    let data_hash = decode_hex::<32>(scan.fixed(64, "data_hash").map_err(bad)?)
        .ok_or("data_hash is not 64 lower-case hex digits")?;
    scan.expect(",\"data\":").map_err(bad)?;
    let start = scan.pos;
    // The line ends with the fixed-length hash member, so the data is what lies between: no
    // scan is needed to find its end. Whether it is one JSON value is checked below (or, when
    // folding, by the parse that applies it).
    let end = line
        .len()
        .checked_sub(HASH_MEMBER_LEN)
        .filter(|&end| end > start && line.is_char_boundary(end))
        .ok_or(NO_HASH_MEMBER)?;
    let data = start..end;
    let data_text = &line[data.clone()];
    // The first and last bytes pin the shape and rule out surrounding whitespace.
    let shape_ok = match kind {
        EventType::Create => data_text.starts_with('{') && data_text.ends_with('}'),
        EventType::Update | EventType::Migrate => {
            data_text.starts_with('[') && data_text.ends_with(']')
        }
        EventType::Delete => data_text == "null",
    };
    if !shape_ok {
        return Err(format!("data of a {kind} event has the wrong shape"));
    }
    if !deferred {
        let salt = decode_hex::<SALT_BYTES>(salt_text).ok_or(SALT_NOT_HEX)?;
        check_digest(&salt, data_text, &data_hash)?;
    }
    if check == DataCheck::Readable {
        crate::json::check_readable(data_text).map_err(|e| format!("data cannot be read: {e}"))?;
    }
    let hash = chain_hash(prev, &line.as_bytes()[..start], &data_hash);
    if !deferred {
        check_stored_hash(&line[end..], &hash)?;
    } else if stored_hash_hex(&line[end..]).is_none() {
        return Err(NO_HASH_MEMBER.to_string());
    }
    Ok(StoredEvent {
        line,
        seq,
        kind,
        timestamp_at,
        schema,
        hash,
        data,
        data_hash,
    })
}

/// Checks that `timestamp` is in the stored form.
pub(crate) fn check_timestamp(timestamp: &str) -> Result<(), String> {
    if !crate::time::is_stored_form(timestamp) {
        return Err(format!("timestamp {timestamp:?} is not in the stored form"));
    }
    Ok(())
}

fn check_event_id(event_id: &str) -> Result<(), String> {
    if !is_lower_uuid(event_id) {
        return Err(format!("event_id {event_id:?} is not a lower-case UUID"));
    }
    Ok(())
}

/// Reads the `doc` member in general and checks that it names `doc` in the stored form.
fn check_doc(scan: &mut Scanner, doc: &DocId) -> Result<(), String> {
    let bad = |reason: &str| format!("not a valid event line: {reason}");
    let doc_text = scan.value("doc").map_err(|e| bad(&e))?;
    let doc_value: String =
        serde_json::from_str(doc_text).map_err(|_| bad("doc is not a string"))?;
    if doc_value != doc.as_str() {
        return Err(format!(
            "the event belongs to {doc_value:?}, not to this stream"
        ));
    }
    if crate::json::canonical(&Value::String(doc_value)) != doc_text {
        return Err(bad("doc is not escaped in the stored form"));
    }
    Ok(())
}

/// Whether `text` is a UUID in lower-case hyphenated form.
fn is_lower_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => NIBBLES[b as usize] != 0xff,
        })
}

/// Decodes exactly `N` bytes of lower-case hex, eight digits at a time.
pub fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut words = bytes.chunks_exact(8);
    let mut quads = out.chunks_exact_mut(4);
    for (word, quad) in words.by_ref().zip(quads.by_ref()) {
        let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        quad.copy_from_slice(&decode_hex_word(word)?.to_le_bytes());
    }
    let mut invalid = 0;
    for (byte, pair) in quads
        .into_remainder()
        .iter_mut()
        .zip(words.remainder().chunks_exact(2))
    {
        let (hi, lo) = (NIBBLES[pair[0] as usize], NIBBLES[pair[1] as usize]);
        invalid |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0f);
    }
    (invalid & 0xf0 == 0).then_some(out)
}

/// Eight lower-case hex digits (the first in the lowest byte of `word`) as four bytes (the
/// first in the lowest byte), or `None` if any is not one.
fn decode_hex_word(word: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = ONES * 0x80;
    // The high bit of each byte that is at least `low`; exact for ASCII bytes, whose sums
    // cannot carry into the next byte.
    let at_least = |low: u8| word.wrapping_add(ONES * (0x80 - u64::from(low))) & HIGHS;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    if word & HIGHS != 0 || digit | letter != HIGHS {
        return None;
    }
    // '0'..'9' are 0x30..0x39 and 'a'..'f' 0x61..0x66: the low four bits, plus 9 for a letter
    // (bit 6).
    let nibbles = (word & (ONES * 0x0f)) + ((word >> 6) & ONES) * 9;
    // Each 16-bit lane becomes one byte (high nibble first), then the lanes are packed.
    const EVEN: u64 = 0x00ff_00ff_00ff_00ff;
    let lanes = ((nibbles & EVEN) << 4) | ((nibbles >> 8) & EVEN);
    let pairs = (lanes | (lanes >> 8)) & 0x0000_ffff_0000_ffff;
    Some((pairs | (pairs >> 16)) as u32)
}

/// Lower-case hex of `bytes`.
pub fn encode_hex(bytes: impl AsRef<[u8]>) -> String {
    let mut out = String::with_capacity(bytes.as_ref().len() * 2);
    push_hex(&mut out, bytes.as_ref());
    out
}

/// The two lower-case hex digits of each byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 0x0f]];
        i += 1;
    }
    table
};

/// Appends the lower-case hex of `bytes` to `out`.
fn push_hex(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.chunks(32) {
        let mut hex = [0u8; 64];
        for (pair, &b) in hex.chunks_exact_mut(2).zip(chunk) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        out.push_str(std::str::from_utf8(&hex[..2 * chunk.len()]).expect("hex digits are ASCII"));
    }
}

/// The value of each lower-case hex digit; 0xff for every other byte.
const NIBBLES: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(prev: &Hash) -> EncodedEvent {
        let doc = DocId::parse("order:42").unwrap();
        let data = json!({"status": "open", "qty": 1});
        NewEvent {
            seq: 0,
            doc: &doc,
            kind: EventType::Create,
            timestamp: "2026-11-23T12:00:00.000000Z",
            schema: None,
            meta: Some(&json!({"actor": "alice"})),
            data: Some(&data),
        }
        .encode_with(prev, uuid::Uuid::nil(), &[7; SALT_BYTES])
    }

    #[test]
    fn encoded_line_parses_and_chains() {
        let encoded = sample(&ZERO_HASH);
        let doc = DocId::parse("order:42").unwrap();
        let line = encoded.line.trim_end_matches('\n').to_string();
        let event = parse_line(line, &doc, &ZERO_HASH).unwrap();
        assert_eq!(event.hash, encoded.hash);
        assert_eq!(event.data().unwrap(), json!({"status": "open", "qty": 1}));
        assert_eq!(event.data_text(), r#"{"qty":1,"status":"open"}"#);
        assert!(parse_line(encoded.line.trim_end().to_string(), &doc, &[1; 32]).is_err());
    }

    /// The line `sample` would be with `data` as its payload, every digest recomputed: what a
    /// forger who knows the format could write.
    fn forged(data: &str, check: DataCheck) -> Result<StoredEvent, String> {
        let line = sample(&ZERO_HASH).line;
        let start = line.find(",\"data\":").unwrap() + 8;
        let salt = [7; SALT_BYTES];
        let data_hash = payload_digest(&salt, data.as_bytes());
        let old_hash = &line[line.find("\"data_hash\":\"").unwrap() + 13..][..64];
        let envelope = line[..start].replace(old_hash, &encode_hex(data_hash));
        let hash = chain_hash(&ZERO_HASH, envelope.as_bytes(), &data_hash);
        let line = format!("{envelope}{data},\"hash\":\"{}\"}}", encode_hex(hash));
        let doc = DocId::parse("order:42").unwrap();
        parse_line_with(line.into(), &doc, &ZERO_HASH, check)
    }

    #[test]
    fn data_is_exactly_one_value_between_its_member_and_the_hash() {
        assert!(forged(r#"{"qty":2}"#, DataCheck::Readable).is_ok());
        for bad in [
            r#"{"qty":2} "#,
            r#" {"qty":2}"#,
            r#"{"qty":2},"x":{}"#,
            "{\"q\":1e400}",
        ] {
            assert!(forged(bad, DataCheck::Readable).is_err(), "{bad}");
        }
        // A fold parses the data itself; the shape is still checked here.
        assert!(forged("{\"q\":1e400}", DataCheck::ByCaller).is_ok());
        assert!(forged(r#"{"qty":2} "#, DataCheck::ByCaller).is_err());
        // The hash member's length counted back from the end may fall inside a character.
        // Here a two-byte character before a hash one digit short.
        let line = sample(&ZERO_HASH).line;
        let at = line.find(",\"hash\":").unwrap();
        let line = format!("{}\u{e9}{}\"}}", &line[..at], &line[at..at + 9 + 63]);
        let doc = DocId::parse("order:42").unwrap();
        assert!(parse_line(line, &doc, &ZERO_HASH).is_err());
    }

    #[test]
    fn hex_is_lower_case_only() {
        assert_eq!(decode_hex::<2>("0aff"), Some([0x0a, 0xff]));
        for bad in ["0aFF", "0ag0", "0a f", "0a", "0aff00", "0\u{e9}f"] {
            assert_eq!(decode_hex::<2>(bad), None, "{bad}");
        }
        // Eight digits go through the word test: a non-ASCII byte, 'A' and 'g' fail it.
        for bad in ["0123\u{e9}ab", "0123A5ab", "g1234567", "1234567g"] {
            assert_eq!(decode_hex::<4>(bad), None, "{bad}");
        }
        let hex = "0123456789abcdef".repeat(4);
        let bytes: Vec<u8> = (0..32).map(|i| ((i % 8) * 0x22 + 0x01) as u8).collect();
        assert_eq!(decode_hex::<32>(&hex).map(|b| b.to_vec()), Some(bytes));
    }

    proptest::proptest! {
        /// Digits drawn mostly from hex digits, with their neighbours in ASCII, against a
        /// decoder that goes digit by digit; 28 digits: three words, then four digits.
        #[test]
        fn hex_decodes_as_digit_by_digit(
            digits in proptest::collection::vec(
                proptest::prop_oneof![
                    20 => proptest::sample::select(b"0123456789abcdef".to_vec()),
                    1 => proptest::sample::select(b"/:`gAF\x7f\x00".to_vec()),
                ],
                28,
            ),
        ) {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            };
            let slow: Option<Vec<u8>> = digits
                .chunks(2)
                .map(|pair| Some((digit(pair[0])? << 4) | digit(pair[1])?))
                .collect();
            let text = std::str::from_utf8(&digits).expect("ASCII");
            proptest::prop_assert_eq!(decode_hex::<14>(text).map(|b| b.to_vec()), slow);
        }
    }

    #[test]
    fn golden_line_is_byte_exact() {
        // Changing this line changes the format: bump the format version instead.
        let encoded = sample(&ZERO_HASH);
        assert_eq!(
            encoded.line,
            concat!(
                r#"{"seq":0,"doc":"order:42","type":"create","timestamp":"2026-11-23T12:00:00.000000Z","#,
                r#""event_id":"00000000-0000-0000-0000-000000000000","schema":null,"meta":{"actor":"alice"},"#,
                r#""salt":"07070707070707070707070707070707","#,
                r#""data_hash":"e23223ca6ace79d78d03764c5fab758f75d38fe5c1962737952411b9c8d5afb1","#,
                r#""data":{"qty":1,"status":"open"},"hash":"ae6d2e9a60366ec92f6714c8ac0947616d90f5e8ea80569317e8182a2ce10db9"}"#,
                "\n"
            )
        );
    }
}
