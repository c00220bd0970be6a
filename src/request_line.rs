//! One request line of `append --batch`, parsed straight into a request. A patch is read into
//! its operations as the line is parsed, without building a JSON value of it first: a batch
//! reads one patch per line, and the value (an object per operation, each member name
//! allocated) cost more than the rest of the line. Every value still gets the checks all input
//! gets (no duplicate keys, finite numbers, bounded nesting), and every refusal is the one a
//! line parsed as a whole value would get.

use std::borrow::Cow;
use std::fmt;

use json_patch::{Patch, PatchOperation};
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Unexpected, Visitor};
use serde_json::Value;

use crate::append::{Action, Expect, Request};
use crate::json::{self, MAX_DEPTH, StrictValue, StrictVisitor};
use crate::patch::{self, Member};
use crate::{DocId, Error, Result, state};

/// Parses one request line (`{"doc": ..., "type": ..., "data": ..., ...}`) into a request.
/// An update in the plain form producers commonly write is read by a quicker scanner, and may
/// come with its payload encoded (see [`crate::plain_request`]).
pub fn parse(text: &[u8]) -> Result<Request> {
    // One UTF-8 check of the whole line, for both parsers, instead of one for every string.
    let utf8 = std::str::from_utf8(text).ok();
    match utf8.and_then(crate::plain_request::parse) {
        Some(request) => Ok(request),
        None => parse_general(text, utf8),
    }
}

/// Parses a request line with serde, whatever its form: the parser whose reading and
/// refusals every line gets. `utf8` is `text` when it is UTF-8.
pub(crate) fn parse_general<'a>(text: &'a [u8], utf8: Option<&'a str>) -> Result<Request> {
    let line = read(text, utf8)?;
    if let Some(unknown) = line.unknown {
        return Err(Error::input(
            "request",
            format!("unknown member {unknown:?}"),
        ));
    }
    let doc = match line.doc {
        Some(Text::Str(doc)) => DocId::parse_writable(&doc)?,
        _ => {
            return Err(Error::input(
                "request",
                "\"doc\" must be a document id string",
            ));
        }
    };
    let expect = match line.expect {
        None => Expect::Any,
        Some(Value::String(text)) => Expect::parse(&text)?,
        Some(Value::Number(n)) => Expect::Seq(
            n.as_u64()
                .ok_or_else(|| Error::input("expect", "must be a seq"))?,
        ),
        Some(_) => return Err(Error::input("expect", "must be a seq, \"none\" or \"any\"")),
    };
    let meta = match line.meta {
        None | Some(Value::Null) => None,
        Some(meta @ Value::Object(_)) => Some(meta),
        Some(_) => return Err(Error::input("meta", "must be a JSON object")),
    };
    let (data, set) = (line.data, line.set);
    let kind = match line.kind {
        Some(Text::Str(kind)) => kind,
        Some(_) => {
            return Err(Error::input(
                "type",
                "must be \"create\", \"update\" or \"delete\"",
            ));
        }
        None => match (&data, &set) {
            (Some(Data::Value(Value::Object(_))), None) => Cow::Borrowed("create"),
            (Some(Data::Patch(_)), None) | (None, Some(_)) => Cow::Borrowed("update"),
            _ => {
                return Err(Error::input(
                    "request",
                    "give \"data\" (create or update), \"set\" (update) or \"type\": \"delete\"",
                ));
            }
        },
    };
    let action = match (kind.as_ref(), data, set) {
        ("create", Some(Data::Value(state)), None) => {
            state::check_new_state(&state, "data")?;
            Action::Create(state)
        }
        ("create", Some(Data::Patch(_)), None) => {
            return Err(Error::input(
                "data",
                "a document's state must be a JSON object",
            ));
        }
        ("update", Some(Data::Patch(patch)), None) => {
            Action::Update(patch.map_err(|reason| Error::InvalidPatch {
                what: "data".to_string(),
                reason,
            })?)
        }
        ("update", Some(Data::Value(_)), None) => {
            return Err(Error::InvalidPatch {
                what: "data".to_string(),
                reason: "expected an array of operations".to_string(),
            });
        }
        ("update", None, Some(Value::Object(sets))) => {
            Action::Update(patch::from_sets(&sets.into_iter().collect::<Vec<_>>())?)
        }
        ("delete", None, None) => Action::Delete,
        ("create" | "update" | "delete", _, _) => {
            return Err(Error::input(
                "request",
                format!(
                    "a {kind} takes {}",
                    match kind.as_ref() {
                        "create" => "\"data\" (an object)",
                        "update" => "\"data\" (a patch) or \"set\" (an object), not both",
                        _ => "neither \"data\" nor \"set\"",
                    }
                ),
            ));
        }
        _ => {
            return Err(Error::input(
                "type",
                format!("{kind:?} is not create, update or delete"),
            ));
        }
    };
    Ok(Request {
        doc,
        action,
        expect,
        meta,
        payload: None,
    })
}

/// The members of a request line, read but not yet interpreted.
#[derive(Default)]
struct Line<'de> {
    doc: Option<Text<'de>>,
    kind: Option<Text<'de>>,
    data: Option<Data>,
    set: Option<Value>,
    expect: Option<Value>,
    meta: Option<Value>,
    /// The first member no request has.
    unknown: Option<String>,
    /// The nesting depth of the whole line as a JSON value.
    depth: usize,
}

/// A request's `data`: an array, read as a patch (or why it is not one), or any other value.
enum Data {
    Patch(std::result::Result<Patch, String>),
    Value(Value),
}

/// Reads the line's members, refusing what is not JSON, a line that is not an object, and one
/// nested deeper than [`MAX_DEPTH`].
fn read<'a>(text: &'a [u8], utf8: Option<&'a str>) -> Result<Line<'a>> {
    if text.iter().find(|b| !b" \t\r\n".contains(b)) != Some(&b'{') {
        // Not an object: its JSON errors, if any, come first.
        json::parse_strict(text, "request")?;
        return Err(Error::input(
            "request",
            "expected a JSON object {\"doc\": ..., ...}",
        ));
    }
    let line = match utf8 {
        Some(text) => read_map(serde_json::Deserializer::from_str(text)),
        // serde_json's own reader names where the line stops being UTF-8.
        None => read_map(serde_json::Deserializer::from_slice(text)),
    }
    .map_err(|e| json::invalid(&e, "request"))?;
    if line.depth > MAX_DEPTH {
        return Err(Error::TooDeep {
            what: "request".to_string(),
            depth: line.depth,
            limit: MAX_DEPTH,
        });
    }
    Ok(line)
}

fn read_map<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> serde_json::Result<Line<'de>> {
    (&mut de)
        .deserialize_map(LineVisitor)
        .and_then(|line| de.end().map(|()| line))
}

fn duplicate<E: de::Error>(name: &str) -> E {
    E::custom(format!("duplicate key {name:?}"))
}

/// A member name, borrowed from the line unless it holds an escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> std::result::Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(name)))
    }

    fn visit_str<E>(self, name: &str) -> std::result::Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(name.to_string())))
    }
}

/// A member that must be a string (`doc`, `type`, `op`, `path`, `from`): borrowed from the
/// line unless it holds an escape. Any other value is read strictly, for its depth and for the
/// error that names its type.
enum Text<'de> {
    Str(Cow<'de, str>),
    Other(Value),
}

/// Reads a [`Text`] member's value, and its nesting depth as part of the line.
fn text_value<'de, A: MapAccess<'de>>(
    map: &mut A,
    depth: &mut usize,
) -> std::result::Result<Text<'de>, A::Error> {
    let text = map.next_value_seed(TextSeed)?;
    if let Text::Other(value) = &text {
        *depth = (*depth).max(1 + json::depth(value));
    }
    Ok(text)
}

struct TextSeed;

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = Text<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Text<'de>, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl TextVisitor {
    fn other<E>(value: std::result::Result<Value, E>) -> std::result::Result<Text<'static>, E> {
        value.map(Text::Other)
    }
}

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Text<'de>, E> {
        Ok(Text::Str(Cow::Owned(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Text<'de>, E> {
        Self::other(StrictVisitor.visit_bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Text<'de>, E> {
        Self::other(StrictVisitor.visit_i64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Text<'de>, E> {
        Self::other(StrictVisitor.visit_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Text<'de>, E> {
        Self::other(StrictVisitor.visit_f64(v))
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Text<'de>, E> {
        Self::other(StrictVisitor.visit_unit())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Text<'de>, A::Error> {
        Self::other(StrictVisitor.visit_seq(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Text<'de>, A::Error> {
        Self::other(StrictVisitor.visit_map(map))
    }
}

/// A value's nesting depth as part of the line, read strictly.
fn strict_value<'de, A: MapAccess<'de>>(
    map: &mut A,
    depth: &mut usize,
) -> std::result::Result<Value, A::Error> {
    let StrictValue(value) = map.next_value()?;
    *depth = (*depth).max(1 + json::depth(&value));
    Ok(value)
}

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = Line<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Line<'de>, A::Error> {
        let mut line = Line {
            depth: 1,
            ..Line::default()
        };
        let mut unknown: Vec<String> = Vec::new();
        while let Some(Key(name)) = map.next_key()? {
            let slot = match name.as_ref() {
                "data" => {
                    if line.data.is_some() {
                        return Err(duplicate(&name));
                    }
                    let (data, depth) = map.next_value_seed(DataSeed)?;
                    line.depth = line.depth.max(1 + depth);
                    line.data = Some(data);
                    continue;
                }
                "doc" | "type" => {
                    let slot = if name == "doc" {
                        &mut line.doc
                    } else {
                        &mut line.kind
                    };
                    if slot.is_some() {
                        return Err(duplicate(&name));
                    }
                    *slot = Some(text_value(&mut map, &mut line.depth)?);
                    continue;
                }
                "set" => &mut line.set,
                "expect" => &mut line.expect,
                "meta" => &mut line.meta,
                other => {
                    if unknown.iter().any(|u| u == other) {
                        return Err(duplicate(other));
                    }
                    strict_value(&mut map, &mut line.depth)?;
                    line.unknown.get_or_insert_with(|| other.to_string());
                    unknown.push(name.into_owned());
                    continue;
                }
            };
            if slot.is_some() {
                return Err(duplicate(&name));
            }
            *slot = Some(strict_value(&mut map, &mut line.depth)?);
        }
        Ok(line)
    }
}

/// Reads `data`, and its nesting depth.
struct DataSeed;

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = (Data, usize);

    fn deserialize<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<(Data, usize), D::Error> {
        d.deserialize_any(DataVisitor)
    }
}

struct DataVisitor;

impl DataVisitor {
    fn value<E>(value: std::result::Result<Value, E>) -> std::result::Result<(Data, usize), E> {
        value.map(|v| (Data::Value(v), 0))
    }
}

impl<'de> Visitor<'de> for DataVisitor {
    type Value = (Data, usize);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
        Self::value(StrictVisitor.visit_bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
        Self::value(StrictVisitor.visit_i64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
        Self::value(StrictVisitor.visit_u64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
        Self::value(StrictVisitor.visit_f64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Self::value(StrictVisitor.visit_str(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
        Self::value(StrictVisitor.visit_string(v))
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Self::value(StrictVisitor.visit_unit())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Value, A::Error> {
        let value = StrictVisitor.visit_map(map)?;
        let depth = json::depth(&value);
        Ok((Data::Value(value), depth))
    }

    /// An array is a patch: read operation by operation.
    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut ops = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
        let mut refused = None;
        let mut depth = 1;
        while let Some((op, op_depth)) = seq.next_element_seed(OperationSeed)? {
            depth = depth.max(1 + op_depth);
            match op {
                Ok(op) => ops.push(op),
                Err(reason) => {
                    refused.get_or_insert(reason);
                }
            }
        }
        let patch = match refused {
            Some(reason) => Err(reason),
            None => Ok(Patch(ops)),
        };
        Ok((Data::Patch(patch), depth))
    }
}

/// Reads one element of a patch: the operation (or why it is not one), and its depth.
struct OperationSeed;

type ReadOperation = (std::result::Result<PatchOperation, String>, usize);

impl<'de> DeserializeSeed<'de> for OperationSeed {
    type Value = ReadOperation;

    fn deserialize<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<ReadOperation, D::Error> {
        d.deserialize_any(OperationVisitor)
    }
}

const OPERATION: &str = "an operation object with \"op\" and \"path\"";

/// What serde says of a value of the wrong type.
fn wrong_type(unexpected: Unexpected, expected: &str) -> String {
    <serde_json::Error as de::Error>::invalid_type(unexpected, &expected).to_string()
}

fn not_an_operation(unexpected: Unexpected) -> ReadOperation {
    (Err(wrong_type(unexpected, OPERATION)), 0)
}

/// A member that must be a string (`op`, `path`, `from`), or what serde says of another type.
fn text(value: Option<Text<'_>>) -> std::result::Result<Option<Cow<'_, str>>, String> {
    match value {
        None => Ok(None),
        Some(Text::Str(text)) => Ok(Some(text)),
        Some(Text::Other(other)) => {
            let unexpected = match &other {
                Value::Null => Unexpected::Unit,
                Value::Bool(b) => Unexpected::Bool(*b),
                Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                    (Some(u), _) => Unexpected::Unsigned(u),
                    (None, Some(i)) => Unexpected::Signed(i),
                    _ => Unexpected::Float(n.as_f64().unwrap_or(0.0)),
                },
                Value::String(text) => Unexpected::Str(text),
                Value::Array(_) => Unexpected::Seq,
                Value::Object(_) => Unexpected::Map,
            };
            Err(wrong_type(unexpected, "a string"))
        }
    }
}

struct OperationVisitor;

impl<'de> Visitor<'de> for OperationVisitor {
    type Value = ReadOperation;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(OPERATION)
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<ReadOperation, A::Error> {
        let (mut op, mut path, mut from) = (None, None, None);
        let mut value = None;
        let mut others: Vec<String> = Vec::new();
        let mut depth = 1;
        while let Some(Key(name)) = map.next_key()? {
            let slot = match Member::named(&name) {
                Member::Op => &mut op,
                Member::Path => &mut path,
                Member::From => &mut from,
                Member::Value => {
                    if value.is_some() {
                        return Err(duplicate(&name));
                    }
                    value = Some(strict_value(&mut map, &mut depth)?);
                    continue;
                }
                // Ignored, as RFC 6902 asks, once read like every other value.
                Member::Other => {
                    if others.iter().any(|o| *o == name) {
                        return Err(duplicate(&name));
                    }
                    strict_value(&mut map, &mut depth)?;
                    others.push(name.into_owned());
                    continue;
                }
            };
            if slot.is_some() {
                return Err(duplicate(&name));
            }
            *slot = Some(text_value(&mut map, &mut depth)?);
        }
        let operation = (|| {
            patch::operation(
                text(op)?.as_deref(),
                text(path)?.map(Cow::into_owned),
                text(from)?.map(Cow::into_owned),
                value,
            )
        })();
        Ok((operation, depth))
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<ReadOperation, A::Error> {
        let mut depth = 1;
        while let Some(StrictValue(item)) = seq.next_element()? {
            depth = depth.max(1 + json::depth(&item));
        }
        Ok((not_an_operation(Unexpected::Seq).0, depth))
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<ReadOperation, E> {
        Ok(not_an_operation(Unexpected::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<ReadOperation, E> {
        Ok(not_an_operation(Unexpected::Signed(v)))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<ReadOperation, E> {
        Ok(not_an_operation(Unexpected::Unsigned(v)))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<ReadOperation, E> {
        Ok(not_an_operation(Unexpected::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<ReadOperation, E> {
        Ok(not_an_operation(Unexpected::Str(v)))
    }

    fn visit_unit<E>(self) -> std::result::Result<ReadOperation, E> {
        Ok(not_an_operation(Unexpected::Unit))
    }
}
