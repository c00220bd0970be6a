//! JSON Patch (RFC 6902): parsing a patch, and applying it with RFC 6902's equality for `test`.

use json_patch::{Patch, PatchOperation};
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
    serde_json::from_value(value).map_err(|e| Error::InvalidPatch {
        what: what.to_string(),
        reason: e.to_string(),
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

/// Applies `patch` to `doc` in place, all or nothing: on error `doc` is as it was. A patch of
/// `add`, `remove`, `replace` and `copy` goes to json-patch in one call, which undoes itself on
/// error. `test` (compared numerically here) and `move` (whose failure json-patch cannot undo:
/// it drops the source, and undoing earlier operations then panics) go through a copy.
pub fn apply_in_place(doc: &mut Value, patch: &Patch) -> Result<(), String> {
    let needs_copy =
        |op: &PatchOperation| matches!(op, PatchOperation::Test(_) | PatchOperation::Move(_));
    if patch.0.iter().any(needs_copy) {
        *doc = apply(doc, patch)?;
        return Ok(());
    }
    json_patch::patch(doc, &patch.0).map_err(|e| {
        let op = &patch.0[e.operation];
        format!(
            "operation {} ({}) failed at path {:?}: {}",
            e.operation,
            op_name(op),
            e.path.as_str(),
            e.kind
        )
    })
}

/// Applies `patch` to a copy of `state` and returns the result; `state` is never changed. A
/// failing operation is reported by its index, its path and why.
pub fn apply(state: &Value, patch: &Patch) -> Result<Value, String> {
    let mut doc = state.clone();
    for (index, op) in patch.0.iter().enumerate() {
        match op {
            // json-patch compares numbers by representation; RFC 6902 says `1` equals `1.0`.
            PatchOperation::Test(test) => {
                let found = test.path.resolve(&doc).map_err(|_| {
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
            }
            _ => json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| {
                format!(
                    "operation {index} ({}) failed at path {:?}: {}",
                    op_name(op),
                    e.path.as_str(),
                    e.kind
                )
            })?,
        }
    }
    Ok(doc)
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
    fn test_op_compares_numbers_numerically() {
        let patch = parse(json!([{"op": "test", "path": "/n", "value": 1.0}]), "p").unwrap();
        assert!(apply(&json!({"n": 1}), &patch).is_ok());
        let patch = parse(json!([{"op": "test", "path": "/n", "value": 2}]), "p").unwrap();
        assert!(apply(&json!({"n": 1}), &patch).is_err());
    }

    #[test]
    fn in_place_application_is_all_or_nothing() {
        let mut doc = json!({"a": 1});
        let patch = parse(
            json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/zz"}]),
            "p",
        )
        .unwrap();
        assert!(
            apply_in_place(&mut doc, &patch)
                .unwrap_err()
                .contains("operation 1 (remove)")
        );
        assert_eq!(doc, json!({"a": 1}));
        let patch = parse(json!([{"op": "add", "path": "/b", "value": 2}, {"op": "test", "path": "/b", "value": 3}]), "p").unwrap();
        assert!(apply_in_place(&mut doc, &patch).is_err());
        assert_eq!(doc, json!({"a": 1}));
        let patch = parse(json!([{"op": "add", "path": "/b", "value": 2.0}, {"op": "test", "path": "/b", "value": 2}]), "p").unwrap();
        apply_in_place(&mut doc, &patch).unwrap();
        assert_eq!(doc, json!({"a": 1, "b": 2.0}));
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
    fn non_patches_are_refused() {
        assert!(parse(json!({"op": "add"}), "p").is_err());
        assert!(parse(json!([{"op": "frobnicate", "path": "/a"}]), "p").is_err());
        assert!(parse(json!([{"op": "add", "path": "/a"}]), "p").is_err());
    }
}
