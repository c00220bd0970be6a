//! JSON Patch (RFC 6902): parsing a patch, and applying it with RFC 6902's equality for `test`.
//! json-patch does the applying, but for the commonest operations, which are applied here
//! without its allocations.

use std::borrow::Cow;
use std::fmt;

use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, CopyOperation, MoveOperation, Patch, PatchOperation, RemoveOperation,
    ReplaceOperation, TestOperation,
};
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::json::json_equal;
use crate::{Error, Result};

/// Parses `value` as an RFC 6902 patch. `what` names the input in error messages.
pub fn parse(value: Value, what: &str) -> Result<Patch> {
    if !value.is_array() {
        return Err(Error::InvalidPatch {
            what: what.to_string(),
            reason: "expected an array of operations".to_string(),
        });
    }
    value
        .deserialize_seq(PatchVisitor)
        .map_err(|e| Error::InvalidPatch {
            what: what.to_string(),
            reason: e.to_string(),
        })
}

/// The canonical text of `patch` as an event's data: each operation's members sorted, the
/// same bytes as the canonical form of the patch as a JSON value, without building that
/// value.
pub fn canonical_text(patch: &Patch) -> String {
    use crate::canonical::{push_string, push_value};
    // Room for a typical operation, so that most texts are written without growing.
    let mut out = String::with_capacity(2 + 128 * patch.0.len());
    out.push('[');
    for (i, operation) in patch.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let (from, path, value) = match operation {
            PatchOperation::Add(o) => (None, &o.path, Some(&o.value)),
            PatchOperation::Remove(o) => (None, &o.path, None),
            PatchOperation::Replace(o) => (None, &o.path, Some(&o.value)),
            PatchOperation::Move(o) => (Some(&o.from), &o.path, None),
            PatchOperation::Copy(o) => (Some(&o.from), &o.path, None),
            PatchOperation::Test(o) => (None, &o.path, Some(&o.value)),
        };
        // Members in sorted order: from, op, path, value.
        out.push('{');
        if let Some(from) = from {
            out.push_str("\"from\":");
            push_string(&mut out, from.as_str());
            out.push(',');
        }
        out.push_str("\"op\":\"");
        out.push_str(op_name(operation));
        out.push_str("\",\"path\":");
        push_string(&mut out, path.as_str());
        if let Some(value) = value {
            out.push_str(",\"value\":");
            push_value(&mut out, value);
        }
        out.push('}');
    }
    out.push(']');
    out
}

/// Parses the stored text of a patch (the `data` of an update or migrate event), the whole
/// text and nothing but one patch.
pub fn parse_stored(text: &str) -> Result<Patch, String> {
    if let Some(patch) = crate::stored_patch::parse(text) {
        return Ok(patch);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    (&mut de)
        .deserialize_seq(PatchVisitor)
        .and_then(|patch| de.end().map(|()| patch))
        .map_err(|e| e.to_string())
}

/// Reads a patch straight into operations. json-patch's own `Deserialize` goes through serde's
/// internally tagged enums, which buffer every operation before reading it: several times
/// slower, and folding a stream parses one patch per event.
struct PatchVisitor;

impl<'de> Visitor<'de> for PatchVisitor {
    type Value = Patch;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of operations")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Patch, A::Error> {
        let mut ops = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
        while let Some(op) = seq.next_element_seed(OperationSeed)? {
            ops.push(op);
        }
        Ok(Patch(ops))
    }
}

struct OperationSeed;

impl<'de> DeserializeSeed<'de> for OperationSeed {
    type Value = PatchOperation;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PatchOperation, D::Error> {
        d.deserialize_map(OperationVisitor)
    }
}

const OPS: &[&str] = &["add", "remove", "replace", "move", "copy", "test"];

/// An operation's member name, recognised without allocating it.
pub(crate) enum Member {
    Op,
    Path,
    From,
    Value,
    Other,
}

struct MemberSeed;

impl<'de> DeserializeSeed<'de> for MemberSeed {
    type Value = Member;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Member, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for MemberSeed {
    type Value = Member;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Member, E> {
        Ok(Member::named(name))
    }
}

impl Member {
    pub(crate) fn named(name: &str) -> Member {
        match name {
            "op" => Member::Op,
            "path" => Member::Path,
            "from" => Member::From,
            "value" => Member::Value,
            _ => Member::Other,
        }
    }
}

/// The members of an operation, in any order; members no operation defines are read (so that
/// their JSON is still checked) and ignored, as RFC 6902 asks.
struct OperationVisitor;

impl<'de> Visitor<'de> for OperationVisitor {
    type Value = PatchOperation;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an operation object with \"op\" and \"path\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PatchOperation, A::Error> {
        let mut op: Option<String> = None;
        let mut path: Option<String> = None;
        let mut from: Option<String> = None;
        let mut value: Option<Value> = None;
        while let Some(member) = map.next_key_seed(MemberSeed)? {
            let (slot, name) = match member {
                Member::Op => (&mut op, "op"),
                Member::Path => (&mut path, "path"),
                Member::From => (&mut from, "from"),
                Member::Value => {
                    if value.is_some() {
                        return Err(de::Error::duplicate_field("value"));
                    }
                    value = Some(map.next_value()?);
                    continue;
                }
                Member::Other => {
                    map.next_value::<Value>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
        }
        operation(op.as_deref(), path, from, value).map_err(de::Error::custom)
    }
}

/// The operation named by `op`, from the members read for it; the error is what serde would
/// say of the missing or wrong member.
pub(crate) fn operation(
    op: Option<&str>,
    path: Option<String>,
    from: Option<String>,
    value: Option<Value>,
) -> Result<PatchOperation, String> {
    use serde_json::Error as E;
    let op = op.ok_or_else(|| <E as de::Error>::missing_field("op").to_string())?;
    let pointer = |text: Option<String>, name: &'static str| {
        let text = text.ok_or_else(|| <E as de::Error>::missing_field(name).to_string())?;
        PointerBuf::parse(text).map_err(|e| e.to_string())
    };
    let required = |value: Option<Value>| {
        value.ok_or_else(|| <E as de::Error>::missing_field("value").to_string())
    };
    Ok(match op {
        "add" => PatchOperation::Add(AddOperation {
            path: pointer(path, "path")?,
            value: required(value)?,
        }),
        "remove" => PatchOperation::Remove(RemoveOperation {
            path: pointer(path, "path")?,
        }),
        "replace" => PatchOperation::Replace(ReplaceOperation {
            path: pointer(path, "path")?,
            value: required(value)?,
        }),
        "move" => PatchOperation::Move(MoveOperation {
            from: pointer(from, "from")?,
            path: pointer(path, "path")?,
        }),
        "copy" => PatchOperation::Copy(CopyOperation {
            from: pointer(from, "from")?,
            path: pointer(path, "path")?,
        }),
        "test" => PatchOperation::Test(TestOperation {
            path: pointer(path, "path")?,
            value: required(value)?,
        }),
        other => return Err(<E as de::Error>::unknown_variant(other, OPS).to_string()),
    })
}

/// The patch that sets each `(field, value)`: a top-level member name, or a JSON Pointer when it
/// starts with `/`. Setting a member that exists replaces it (RFC 6902 `add`).
pub fn from_sets(sets: &[(String, Value)]) -> Result<Patch> {
    let ops = sets
        .iter()
        .map(|(field, value)| {
            let path = if field.starts_with('/') {
                field.clone()
            } else {
                format!("/{}", field.replace('~', "~0").replace('/', "~1"))
            };
            serde_json::json!({"op": "add", "path": path, "value": value})
        })
        .collect();
    parse(Value::Array(ops), "--set")
}

/// Applies `patch` to a copy of `state` and returns the result; `state` is never changed. A
/// failing operation is reported by its index, its path and why.
pub fn apply(state: &Value, patch: &Patch) -> Result<Value, String> {
    let mut doc = state.clone();
    apply_unguarded(&mut doc, patch)?;
    Ok(doc)
}

/// A patch applied to a state in place, undone when dropped unless [kept](Applied::keep): after
/// any failure that follows (the patch's own, or a check of its result) the state is as it
/// was, without a copy of the whole state made first. The operations applied here keep what
/// they replaced; before one left to json-patch, the top-level members it names are copied,
/// since it can touch nothing else.
pub struct Applied<'a, 'p> {
    state: &'a mut Value,
    patch: &'p Patch,
    /// What undoes each change made, in the order made; `None` once kept.
    undo: Option<Vec<Undo>>,
}

/// What undoes one operation.
enum Undo {
    /// The change the operation at this index of the patch made here.
    Change(usize, Change),
    /// An operation json-patch applied: the members it could touch, as they were before it.
    Members(Backup),
}

/// What an operation applied here changed: what undoing it needs.
enum Change {
    /// The value now at the operation's path replaced this one (`replace`, or `add` of a
    /// member that was there).
    Replaced(Value),
    /// `add` created the member at its path.
    Created,
    /// `remove` took this value out of its path.
    Removed(Value),
}

/// What an operation may change: some top-level members (each with its old value, or `None`
/// when it was absent), or, for an operation on the root, the whole state.
enum Backup {
    Members(Vec<(String, Option<Value>)>),
    Whole(Value),
}

impl Backup {
    fn of(state: &Value, op: &PatchOperation) -> Backup {
        let Value::Object(members) = state else {
            return Backup::Whole(state.clone());
        };
        let changed = match op {
            PatchOperation::Add(o) => [Some(&o.path), None],
            PatchOperation::Remove(o) => [Some(&o.path), None],
            PatchOperation::Replace(o) => [Some(&o.path), None],
            PatchOperation::Move(o) => [Some(&o.from), Some(&o.path)],
            PatchOperation::Copy(o) => [Some(&o.path), None],
            PatchOperation::Test(_) => [None, None],
        };
        let mut saved: Vec<(String, Option<Value>)> = Vec::new();
        for pointer in changed.into_iter().flatten() {
            let Some(token) = pointer.first() else {
                return Backup::Whole(state.clone());
            };
            let name = token.decoded();
            if !saved.iter().any(|(saved, _)| *saved == name) {
                saved.push((name.to_string(), members.get(name.as_ref()).cloned()));
            }
        }
        Backup::Members(saved)
    }

    fn restore(self, state: &mut Value) {
        match (self, state) {
            (Backup::Whole(old), state) => *state = old,
            (Backup::Members(saved), Value::Object(members)) => {
                for (name, old) in saved {
                    match old {
                        Some(old) => members.insert(name, old),
                        None => members.remove(&name),
                    };
                }
            }
            (Backup::Members(_), _) => {
                unreachable!("only an operation on the root changes its type")
            }
        }
    }
}

impl Change {
    /// Undoes `op`'s change, in the state just as `op` left it.
    fn undo(self, state: &mut Value, op: &PatchOperation) {
        const AS_LEFT: &str = "the state is as the operation left it";
        let path = match op {
            PatchOperation::Add(o) => o.path.as_str(),
            PatchOperation::Replace(o) => o.path.as_str(),
            PatchOperation::Remove(o) => o.path.as_str(),
            _ => unreachable!("only add, replace and remove are applied here"),
        };
        match self {
            Change::Replaced(old) => *resolve_mut(state, path).expect(AS_LEFT) = old,
            Change::Created => {
                let (members, last) = parent_members(state, path).expect(AS_LEFT);
                members.remove(last);
            }
            Change::Removed(old) => {
                let (members, last) = parent_members(state, path).expect(AS_LEFT);
                members.insert(last.to_string(), old);
            }
        }
    }
}

impl Applied<'_, '_> {
    /// The patched state.
    pub fn state(&self) -> &Value {
        self.state
    }

    /// Keeps the change.
    pub fn keep(mut self) {
        self.undo = None;
    }
}

impl Drop for Applied<'_, '_> {
    fn drop(&mut self) {
        for undo in self.undo.take().into_iter().flatten().rev() {
            match undo {
                Undo::Change(index, change) => change.undo(self.state, &self.patch.0[index]),
                Undo::Members(backup) => backup.restore(self.state),
            }
        }
    }
}

/// Applies `patch` to `state` in place, undoably (see [`Applied`]); after an error `state` is
/// as it was.
pub fn apply_undoable<'a, 'p>(
    state: &'a mut Value,
    patch: &'p Patch,
) -> Result<Applied<'a, 'p>, String> {
    let mut applied = Applied {
        state,
        patch,
        undo: Some(Vec::with_capacity(patch.0.len())),
    };
    for (index, op) in patch.0.iter().enumerate() {
        let mut backup = None;
        let change = apply_one(applied.state, index, Cow::Borrowed(op), |state| {
            backup = Some(Backup::of(state, op));
        });
        let undo = applied.undo.as_mut().expect("kept only by its owner");
        // Before any error goes out: json-patch may have changed something before failing.
        undo.extend(backup.map(Undo::Members));
        undo.extend(change?.map(|change| Undo::Change(index, change)));
    }
    Ok(applied)
}

/// The deepest nesting `patch` can reach in a state no deeper than the limit: for each `add`,
/// `replace` or `test`, its path's length plus its value's depth (`remove` reaches nothing
/// new). `None` for a patch that moves or copies, whose values come from the state itself.
pub fn depth_reached(patch: &Patch) -> Option<usize> {
    patch.0.iter().try_fold(0, |deepest, op| {
        let reached = match op {
            PatchOperation::Add(o) => tokens(&o.path) + crate::json::depth(&o.value),
            PatchOperation::Replace(o) => tokens(&o.path) + crate::json::depth(&o.value),
            PatchOperation::Remove(_) | PatchOperation::Test(_) => 0,
            PatchOperation::Move(_) | PatchOperation::Copy(_) => return None,
        };
        Some(deepest.max(reached))
    })
}

/// How many tokens a pointer has: one per `/` (an escaped one is `~1`).
fn tokens(pointer: &PointerBuf) -> usize {
    pointer.as_str().bytes().filter(|&b| b == b'/').count()
}

/// Applies `patch` to `doc` in place with no way back: after an error `doc` is left part-way.
/// For a copy that an error throws away: the next state an append computes, or a stored patch,
/// whose failure makes the fold an error (the stream is corrupt). `test` compares numbers
/// numerically, as RFC 6902 asks (json-patch compares their representation).
pub fn apply_unguarded(doc: &mut Value, patch: &Patch) -> Result<(), String> {
    for (index, op) in patch.0.iter().enumerate() {
        apply_one(doc, index, Cow::Borrowed(op), |_| {})?;
    }
    Ok(())
}

/// [`apply_unguarded`] for a patch not needed afterwards (a stored patch being folded): its
/// values are moved into `doc` instead of copied.
pub fn apply_owned(doc: &mut Value, patch: Patch) -> Result<(), String> {
    for (index, op) in patch.0.into_iter().enumerate() {
        apply_owned_operation(doc, index, op)?;
    }
    Ok(())
}

/// Applies operation `index` of a stored patch being folded, as [`apply_owned`] does.
pub(crate) fn apply_owned_operation(
    doc: &mut Value,
    index: usize,
    op: PatchOperation,
) -> Result<(), String> {
    apply_one(doc, index, Cow::Owned(op), |_| {}).map(drop)
}

/// Applies one operation: here when [`apply_to_member`] can (what it changed comes back), or
/// by json-patch, after `before_general` has seen the state as it was.
fn apply_one(
    doc: &mut Value,
    index: usize,
    op: Cow<'_, PatchOperation>,
    before_general: impl FnOnce(&Value),
) -> Result<Option<Change>, String> {
    // json-patch compares numbers by representation; RFC 6902 says `1` equals `1.0`.
    if let PatchOperation::Test(test) = &*op {
        let found = test.path.resolve(doc).map_err(|_| {
            format!(
                "operation {index} (test) failed at path {:?}: no such member",
                test.path.as_str()
            )
        })?;
        if !json_equal(found, &test.value) {
            return Err(format!(
                "operation {index} (test) failed at path {:?}: value did not match",
                test.path.as_str()
            ));
        }
        return Ok(None);
    }
    let op = match apply_to_member(doc, op) {
        Ok(change) => return Ok(Some(change)),
        Err(op) => op,
    };
    before_general(doc);
    json_patch::patch_unsafe(doc, std::slice::from_ref(&*op)).map_err(|e| {
        format!(
            "operation {index} ({}) failed at path {:?}: {}",
            op_name(&op),
            e.path.as_str(),
            e.kind
        )
    })?;
    Ok(None)
}

/// Applies the commonest operations (`replace` of an existing value; `add` and `remove` of an
/// object member) when their target exists, walking the pointer without allocating (serde_json's
/// `pointer_mut`, which json-patch uses, allocates two strings per token, and jsonptr's walk
/// decodes and checks each token). The operation comes back when nothing was changed and
/// json-patch is to apply it (arrays, escaped tokens, errors).
fn apply_to_member<'o>(
    doc: &mut Value,
    op: Cow<'o, PatchOperation>,
) -> Result<Change, Cow<'o, PatchOperation>> {
    match &*op {
        PatchOperation::Replace(o) => {
            let Some(target) = resolve_mut(doc, o.path.as_str()) else {
                return Err(op);
            };
            Ok(Change::Replaced(std::mem::replace(target, take_value(op))))
        }
        PatchOperation::Add(o) => {
            let Some((members, last)) = parent_members(doc, o.path.as_str()) else {
                return Err(op);
            };
            Ok(match members.get_mut(last) {
                Some(member) => Change::Replaced(std::mem::replace(member, take_value(op))),
                None => {
                    let last = last.to_string();
                    members.insert(last, take_value(op));
                    Change::Created
                }
            })
        }
        PatchOperation::Remove(o) => {
            let Some((members, last)) = parent_members(doc, o.path.as_str()) else {
                return Err(op);
            };
            members.remove(last).map(Change::Removed).ok_or(op)
        }
        _ => Err(op),
    }
}

/// The value of an `add` or `replace`: moved out of an operation owned, copied from one
/// borrowed.
fn take_value(op: Cow<'_, PatchOperation>) -> Value {
    match op {
        Cow::Owned(PatchOperation::Add(o)) => o.value,
        Cow::Owned(PatchOperation::Replace(o)) => o.value,
        Cow::Borrowed(PatchOperation::Add(o)) => o.value.clone(),
        Cow::Borrowed(PatchOperation::Replace(o)) => o.value.clone(),
        _ => unreachable!("only add and replace have a value to place"),
    }
}

/// What `pointer` (an RFC 6901 pointer, already checked) names in `doc`. `None` when it names
/// nothing, or takes a form left to json-patch: a token with an escape (`~0`, `~1`), or an
/// array index other than plain digits.
pub(crate) fn resolve_mut<'d>(doc: &'d mut Value, pointer: &str) -> Option<&'d mut Value> {
    let mut target = doc;
    let mut rest = pointer;
    while let Some(tokens) = rest.strip_prefix('/') {
        let end = tokens
            .bytes()
            .position(|b| b == b'/')
            .unwrap_or(tokens.len());
        let token = &tokens[..end];
        rest = &tokens[end..];
        target = match target {
            Value::Object(members) if !token.contains('~') => members.get_mut(token)?,
            Value::Array(items) => items.get_mut(array_index(token)?)?,
            _ => return None,
        };
    }
    rest.is_empty().then_some(target)
}

/// The object holding the member `pointer` names, and the member's name: when the parent is
/// an object [`resolve_mut`] finds and the name needs no unescaping.
pub(crate) fn parent_members<'d, 'p>(
    doc: &'d mut Value,
    pointer: &'p str,
) -> Option<(&'d mut serde_json::Map<String, Value>, &'p str)> {
    let at = pointer.rfind('/')?;
    let last = &pointer[at + 1..];
    if last.contains('~') {
        return None;
    }
    match resolve_mut(doc, &pointer[..at])? {
        Value::Object(members) => Some((members, last)),
        _ => None,
    }
}

/// An array index as RFC 6901 spells it: `0`, or digits without a leading zero.
fn array_index(token: &str) -> Option<usize> {
    let plain = token == "0"
        || (!token.is_empty()
            && !token.starts_with('0')
            && token.bytes().all(|b| b.is_ascii_digit()));
    plain.then(|| token.parse().ok()).flatten()
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_undoable_patch_leaves_the_state_as_it_was_when_it_fails_or_is_dropped() {
        let original = json!({"a": {"b": [1, 2]}, "c": "x", "d~/e": 1, "items": [{"q": 1}]});
        let patches = [
            // fails at its second operation, after the first changed the state
            json!([{"op": "replace", "path": "/c", "value": "y"}, {"op": "remove", "path": "/zz"}]),
            json!([{"op": "add", "path": "/new", "value": 1}, {"op": "test", "path": "/c", "value": 0}]),
            json!([{"op": "move", "from": "/a/b", "path": "/d~0~1e"}, {"op": "remove", "path": "/a/b"}]),
            json!([{"op": "remove", "path": "/items/0/q"}, {"op": "copy", "from": "/c", "path": "/nope/x"}]),
            json!([{"op": "replace", "path": "", "value": [1]}, {"op": "remove", "path": "/9"}]),
            // changes of the members walked here, nested and repeated, undone last first
            json!([
                {"op": "replace", "path": "/a/b/0", "value": 9},
                {"op": "add", "path": "/a/x", "value": 1},
                {"op": "remove", "path": "/c"},
                {"op": "add", "path": "/c", "value": "z"},
                {"op": "replace", "path": "/a", "value": {}},
                {"op": "test", "path": "/a", "value": 1}
            ]),
            // walked here and left to json-patch, mixed
            json!([
                {"op": "add", "path": "/c", "value": "new"},
                {"op": "remove", "path": "/d~0~1e"},
                {"op": "add", "path": "/a/b/1", "value": 5},
                {"op": "replace", "path": "/items/0/q", "value": 2},
                {"op": "remove", "path": "/nope"}
            ]),
            json!([
                {"op": "replace", "path": "", "value": {"k": 1}},
                {"op": "add", "path": "/k2", "value": 2},
                {"op": "remove", "path": "/k"},
                {"op": "test", "path": "/k2", "value": 3}
            ]),
        ];
        for patch in patches {
            let patch = parse(patch, "p").unwrap();
            let mut state = original.clone();
            assert!(apply_undoable(&mut state, &patch).is_err());
            assert_eq!(state, original);
        }
        // succeeds, then is dropped (a later check refused the result)
        let patch = parse(
            json!([{"op": "add", "path": "/a/b/-", "value": 3}, {"op": "move", "from": "/c", "path": "/f"}]),
            "p",
        )
        .unwrap();
        let mut state = original.clone();
        let applied = apply_undoable(&mut state, &patch).unwrap();
        assert_eq!(applied.state(), &apply(&original, &patch).unwrap());
        drop(applied);
        assert_eq!(state, original);
        apply_undoable(&mut state, &patch).unwrap().keep();
        assert_eq!(state, apply(&original, &patch).unwrap());
    }

    /// Operations over a small document: paths that exist or not, nested, escaped, in arrays.
    fn operation() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let paths = [
            "",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1",
            "/a/b/-",
            "/a/x",
            "/c",
            "/d~0~1e",
            "/n",
            "/items/0/q",
            "/items/0",
            "/zz/y",
        ];
        let values = [
            json!(1),
            json!("s"),
            json!({}),
            json!([1]),
            json!(null),
            json!({"q": 2}),
        ];
        let ops = ["add", "remove", "replace", "test", "move", "copy"];
        (0..ops.len(), 0..paths.len(), 0..paths.len(), 0..values.len()).prop_map(
            move |(op, path, from, value)| {
                json!({"op": ops[op], "path": paths[path], "from": paths[from], "value": values[value]})
            },
        )
    }

    proptest::proptest! {
        #[test]
        fn an_undoable_patch_applies_as_json_patch_does_and_undoes_exactly(
            ops in proptest::collection::vec(operation(), 1..6)
        ) {
            let original = json!({"a": {"b": [1, 2]}, "c": "x", "d~/e": 1, "items": [{"q": 1}]});
            let patch = parse(Value::Array(ops), "p").unwrap();
            let mut theirs = original.clone();
            let theirs = json_patch::patch_unsafe(&mut theirs, &patch.0).map(|()| theirs);
            let mut state = original.clone();
            let ours = apply_undoable(&mut state, &patch).map(|applied| applied.state().clone());
            proptest::prop_assert_eq!(&state, &original);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    proptest::prop_assert_eq!(&ours, &theirs);
                    apply_undoable(&mut state, &patch).unwrap().keep();
                    proptest::prop_assert_eq!(&state, &theirs);
                }
                (Err(_), Err(_)) => {}
                (ours, theirs) => proptest::prop_assert!(false, "ours {ours:?}, json-patch's {theirs:?}"),
            }
        }
    }

    #[test]
    fn canonical_text_is_the_canonical_form_of_the_patch_as_a_value() {
        let patch = parse(
            json!([
                {"op": "add", "path": "/a~1b", "value": {"z": 1, "a": [1.0, "\u{e9}\n\u{1}"]}},
                {"op": "remove", "path": "/x"},
                {"op": "replace", "path": "", "value": null},
                {"path": "/m", "op": "move", "from": "/n"},
                {"op": "copy", "from": "/a", "path": "/c", "value": "ignored"},
                {"op": "test", "path": "/t", "value": -0.5, "comment": "ignored"}
            ]),
            "p",
        )
        .unwrap();
        let value = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            canonical_text(&patch),
            serde_json::to_string(&value).unwrap()
        );
    }

    #[test]
    fn test_op_compares_numbers_numerically() {
        let patch = parse(json!([{"op": "test", "path": "/n", "value": 1.0}]), "p").unwrap();
        assert!(apply(&json!({"n": 1}), &patch).is_ok());
        let patch = parse(json!([{"op": "test", "path": "/n", "value": 2}]), "p").unwrap();
        assert!(apply(&json!({"n": 1}), &patch).is_err());
    }

    #[test]
    fn a_failing_patch_leaves_the_state_alone() {
        let state = json!({"a": 1});
        let patch = parse(
            json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/zz"}]),
            "p",
        )
        .unwrap();
        let err = apply(&state, &patch).unwrap_err();
        assert!(err.contains("operation 1 (remove)"), "{err}");
        assert_eq!(state, json!({"a": 1}));
    }

    #[test]
    fn sets_escape_member_names_and_accept_pointers() {
        let patch = from_sets(&[
            ("a/b".to_string(), json!(1)),
            ("/c".to_string(), json!("x")),
        ])
        .unwrap();
        assert_eq!(
            apply(&json!({}), &patch).unwrap(),
            json!({"a/b": 1, "c": "x"})
        );
    }

    #[test]
    fn stored_patches_parse_as_json_patch_parses_them() {
        let texts = [
            r#"[{"op":"add","path":"/a","value":1}]"#,
            r#"[{"value":{"x":[1,2]},"path":"/a~1b/0","op":"replace"}]"#,
            r#"[{"op":"remove","path":"/a"},{"op":"move","from":"/b","path":"/c"}]"#,
            r#"[{"op":"copy","path":"/c","from":"/b"},{"op":"test","path":"","value":null}]"#,
            r#"[{"op":"add","path":"/a","value":1,"comment":{"x":[true]}}]"#,
            r#"[]"#,
            r#"[{"op":"add","path":"/a"}]"#,
            r#"[{"op":"add","value":1}]"#,
            r#"[{"path":"/a","value":1}]"#,
            r#"[{"op":"frobnicate","path":"/a"}]"#,
            r#"[{"op":"add","path":"a","value":1}]"#,
            r#"[{"op":"move","path":"/a"}]"#,
            r#"[{"op":"add","path":"/a","path":"/b","value":1}]"#,
            r#"[{"op":1,"path":"/a","value":1}]"#,
            r#"[1]"#,
            r#"{"op":"add","path":"/a","value":1}"#,
        ];
        for text in texts {
            let ours = parse_stored(text);
            let theirs = serde_json::from_str::<Patch>(text);
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{text}: ours {ours:?}, json-patch's {theirs:?}"),
            }
            // From a value (whose duplicate members have already collapsed), too.
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                parse(value.clone(), "p").ok(),
                serde_json::from_value::<Patch>(value).ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn stored_patch_text_must_be_one_readable_patch() {
        assert!(parse_stored(r#"[{"op":"remove","path":"/a"}] x"#).is_err());
        assert!(parse_stored(r#"[{"op":"remove","path":"/a"}],[]"#).is_err());
        assert!(parse_stored(r#"[{"op":"remove","path":"/a","n":1e400}]"#).is_err());
        assert!(parse_stored(r#"[{"op":"add","path":"/a","value":1e400}]"#).is_err());
    }

    #[test]
    fn member_fast_path_matches_json_patch() {
        let doc = json!({"a": 1, "o": {"x~y": [1, {"z": 2}], "/": 3}, "l": [0, 1, 2]});
        let patches = [
            json!([{"op": "replace", "path": "/a", "value": {"n": [1]}}]),
            json!([{"op": "replace", "path": "/o/x~0y/1/z", "value": 5}]),
            json!([{"op": "replace", "path": "/o/~1", "value": 4}]),
            json!([{"op": "replace", "path": "/missing", "value": 4}]),
            json!([{"op": "replace", "path": "/l/3", "value": 4}]),
            json!([{"op": "replace", "path": "/l/01", "value": 4}]),
            json!([{"op": "replace", "path": "", "value": {"b": 1}}]),
            json!([{"op": "add", "path": "/a", "value": 2}, {"op": "add", "path": "/new", "value": 3}]),
            json!([{"op": "add", "path": "/o/x~0y/1/w", "value": null}]),
            json!([{"op": "add", "path": "/l/1", "value": 9}, {"op": "add", "path": "/l/-", "value": 8}]),
            json!([{"op": "add", "path": "/nope/x", "value": 1}]),
            json!([{"op": "add", "path": "/a/x", "value": 1}]),
            json!([{"op": "remove", "path": "/a"}, {"op": "remove", "path": "/o/~1"}]),
            json!([{"op": "remove", "path": "/zz"}]),
            json!([{"op": "remove", "path": "/l/0"}, {"op": "remove", "path": "/l/5"}]),
            json!([{"op": "remove", "path": "/a/b"}]),
            json!([{"op": "replace", "path": "/l/0", "value": 7}, {"op": "replace", "path": "/l/-", "value": 1}]),
            json!([{"op": "replace", "path": "/o/x~0y/+1", "value": 1}]),
            json!([{"op": "replace", "path": "/o//", "value": 1}]),
            json!([{"op": "add", "path": "/o/", "value": 1}, {"op": "replace", "path": "/o/", "value": 2}]),
            json!([{"op": "add", "path": "/o/~1/x", "value": 1}]),
            json!([{"op": "remove", "path": "/o/x~0y/1/z"}, {"op": "add", "path": "/o/a~1b", "value": 1}]),
            json!([{"op": "add", "path": "", "value": [1]}]),
        ];
        for patch in patches {
            let parsed = parse(patch.clone(), "p").unwrap();
            let mut theirs = doc.clone();
            let theirs = json_patch::patch_unsafe(&mut theirs, &parsed.0).map(|()| theirs);
            let mut borrowed = doc.clone();
            let borrowed = apply_unguarded(&mut borrowed, &parsed).map(|()| borrowed);
            let mut undoable = doc.clone();
            if let Ok(applied) = apply_undoable(&mut undoable, &parsed) {
                drop(applied);
            }
            assert_eq!(undoable, doc, "{patch}: dropped, undone");
            let kept = apply_undoable(&mut undoable, &parsed).map(Applied::keep);
            let kept = kept.map(|()| undoable);
            let mut owned = doc.clone();
            let owned = apply_owned(&mut owned, parsed).map(|()| owned);
            for ours in [borrowed, kept, owned] {
                match (&ours, &theirs) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{patch}"),
                    (Err(_), Err(_)) => {}
                    _ => panic!("{patch}: ours {ours:?}, json-patch's {theirs:?}"),
                }
            }
        }
    }

    #[test]
    fn non_patches_are_refused() {
        assert!(parse(json!({"op": "add"}), "p").is_err());
        assert!(parse(json!([{"op": "frobnicate", "path": "/a"}]), "p").is_err());
        assert!(parse(json!([{"op": "add", "path": "/a"}]), "p").is_err());
    }
}
