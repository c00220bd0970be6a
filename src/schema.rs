//! Schema documents (`sys:schema:TYPE`): their versions, JSON Schema validation, and the
//! declarative migrations that bring a document from one version to the next.
//!
//! A schema document's state after its event N is version N: `{"json_schema": …,
//! "migration": […]}`, where `migration` brings a document written under the previous version
//! (or under no schema, for version 0) to this one. Migration steps are no-ops where they do not
//! apply; only their effect on a document is ever stored, as an ordinary RFC 6902 patch.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::state::DocState;
use crate::stream::StreamReader;
use crate::{DocId, Error, Folder, Result};

/// One version of a type's schema.
pub struct Version {
    /// The seq of the schema document's event that made this version.
    pub seq: u64,
    /// The schema document's state at that seq.
    pub state: DocState,
    validator: jsonschema::Validator,
    migration: Vec<Step>,
}

/// One declarative migration step.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Step {
    /// Move the value at `from` to `to`; a no-op when `from` is absent. Fails when `to` exists
    /// already or its parent is not an object.
    Rename { from: String, to: String },
    /// Remove the value at `path`; a no-op when absent.
    Remove { path: String },
    /// Set `path` to `value` where it is absent and its parent is an object.
    Default { path: String, value: Value },
    /// Replace the value at `path` by `values[old]` when the old value is a string listed in
    /// `values`; other values stay.
    Remap {
        path: String,
        values: Map<String, Value>,
    },
}

/// Checks a schema version given to `schema set` and returns the state to store:
/// `{"json_schema": …, "migration": […]}` (an absent migration becomes `[]`).
pub fn check_definition(value: Value) -> Result<Value> {
    let bad = |reason: String| Error::input("schema", reason);
    let Value::Object(mut members) = value else {
        return Err(bad(
            "expected an object {\"json_schema\": {...}, \"migration\": [...]}".to_string(),
        ));
    };
    if let Some(unknown) = members
        .keys()
        .find(|k| *k != "json_schema" && *k != "migration")
    {
        return Err(bad(format!(
            "unknown member {unknown:?} (only json_schema and migration are allowed)"
        )));
    }
    let json_schema = members
        .remove("json_schema")
        .ok_or_else(|| bad("json_schema is missing".to_string()))?;
    compile(&json_schema).map_err(|reason| {
        bad(format!(
            "json_schema is not a valid JSON Schema (draft 2020-12): {reason}"
        ))
    })?;
    let migration = members
        .remove("migration")
        .unwrap_or_else(|| Value::Array(Vec::new()));
    parse_steps(&migration).map_err(bad)?;
    Ok(serde_json::json!({"json_schema": json_schema, "migration": migration}))
}

fn compile(json_schema: &Value) -> Result<jsonschema::Validator, String> {
    if !jsonschema::meta::is_valid(json_schema) {
        let reason = jsonschema::meta::validate(json_schema)
            .err()
            .map(|e| e.masked().to_string());
        return Err(reason.unwrap_or_else(|| "it does not conform to the meta-schema".to_string()));
    }
    jsonschema::draft202012::new(json_schema).map_err(|e| e.masked().to_string())
}

fn parse_steps(migration: &Value) -> Result<Vec<Step>, String> {
    let Value::Array(items) = migration else {
        return Err("migration must be an array of steps".to_string());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let step: Step = serde_json::from_value(item.clone())
                .map_err(|e| format!("migration step {i}: {e}"))?;
            for path in step.paths() {
                if !path.is_empty() && !path.starts_with('/') {
                    return Err(format!(
                        "migration step {i}: {path:?} is not a JSON Pointer"
                    ));
                }
                if path.is_empty() {
                    return Err(format!(
                        "migration step {i}: the whole document cannot be a step's path"
                    ));
                }
            }
            Ok(step)
        })
        .collect()
}

impl Step {
    fn paths(&self) -> Vec<&str> {
        match self {
            Step::Rename { from, to } => vec![from, to],
            Step::Remove { path } | Step::Default { path, .. } | Step::Remap { path, .. } => {
                vec![path]
            }
        }
    }

    /// Applies the step to `doc` in place.
    fn apply(&self, doc: &mut Value) -> Result<(), String> {
        match self {
            Step::Rename { from, to } => {
                let Some(value) = take(doc, from) else {
                    return Ok(());
                };
                if doc.pointer(to).is_some() {
                    return Err(format!("rename {from} to {to}: {to} exists already"));
                }
                put(doc, to, value).map_err(|reason| format!("rename {from} to {to}: {reason}"))
            }
            Step::Remove { path } => {
                take(doc, path);
                Ok(())
            }
            Step::Default { path, value } => {
                if doc.pointer(path).is_none() {
                    // Where the parent is missing or not an object the step does not apply.
                    let _ = put(doc, path, value.clone());
                }
                Ok(())
            }
            Step::Remap { path, values } => {
                if let Some(slot) = doc.pointer_mut(path)
                    && let Some(new) = slot.as_str().and_then(|old| values.get(old))
                {
                    *slot = new.clone();
                }
                Ok(())
            }
        }
    }
}

/// Splits a pointer into its parent pointer and its last token (unescaped).
fn split(path: &str) -> (&str, String) {
    let cut = path.rfind('/').expect("pointers start with /");
    (
        &path[..cut],
        path[cut + 1..].replace("~1", "/").replace("~0", "~"),
    )
}

fn take(doc: &mut Value, path: &str) -> Option<Value> {
    let (parent, key) = split(path);
    match doc.pointer_mut(parent)? {
        Value::Object(members) => members.remove(&key),
        Value::Array(items) => {
            let index: usize = key.parse().ok()?;
            (index < items.len()).then(|| items.remove(index))
        }
        _ => None,
    }
}

fn put(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let (parent, key) = split(path);
    match doc.pointer_mut(parent) {
        Some(Value::Object(members)) => {
            members.insert(key, value);
            Ok(())
        }
        _ => Err(format!("the parent of {path} is not an object")),
    }
}

/// Every version of one type's schema, from its schema document's stream.
pub struct History {
    pub schema_doc: DocId,
    pub versions: Vec<Version>,
}

impl History {
    /// Reads the schema history of `kind`; `None` when the type has no schema.
    pub fn load(folder: &Folder, kind: &str) -> Result<Option<History>> {
        let schema_doc = DocId::parse(&format!("{}{kind}", crate::doc_id::SCHEMA_PREFIX))?;
        let Some(mut reader) = StreamReader::open(folder, &schema_doc)?.map(StreamReader::folding)
        else {
            return Ok(None);
        };
        let mut state: Option<DocState> = None;
        let mut versions = Vec::new();
        while let Some(event) = reader.next_event()? {
            let current = state.get_or_insert_with(DocState::empty);
            current.apply_from(&event, reader.path(), &schema_doc)?;
            let corrupt = |reason: String| {
                Error::corrupt_event(&schema_doc, reader.path(), event.seq, reason)
            };
            let json_schema = current
                .state
                .get("json_schema")
                .cloned()
                .unwrap_or(Value::Null);
            let validator = compile(&json_schema)
                .map_err(|r| corrupt(format!("the stored JSON Schema does not compile: {r}")))?;
            let migration = parse_steps(
                current
                    .state
                    .get("migration")
                    .unwrap_or(&Value::Array(Vec::new())),
            )
            .map_err(|r| corrupt(format!("the stored migration is malformed: {r}")))?;
            versions.push(Version {
                seq: event.seq,
                state: current.clone(),
                validator,
                migration,
            });
        }
        Ok((!versions.is_empty()).then_some(History {
            schema_doc,
            versions,
        }))
    }

    /// The newest version.
    pub fn current(&self) -> &Version {
        self.versions.last().expect("a history has a version")
    }

    /// The version made by the schema event with this seq.
    pub fn version(&self, seq: u64) -> Option<&Version> {
        self.versions.get(usize::try_from(seq).ok()?)
    }

    /// Brings `state`, written under version `from` (`None`: under no schema), to version `to`
    /// by running the migrations of every version in between, in order.
    pub fn migrate(&self, state: &Value, from: Option<u64>, to: u64) -> Result<Value, String> {
        let mut doc = state.clone();
        for version in self
            .versions
            .iter()
            .filter(|v| from.is_none_or(|f| v.seq > f) && v.seq <= to)
        {
            for step in &version.migration {
                step.apply(&mut doc).map_err(|reason| {
                    format!("migration to schema seq {}: {reason}", version.seq)
                })?;
            }
        }
        Ok(doc)
    }
}

impl Version {
    /// Checks `state` against this version; the error names the failing location and rule.
    pub fn validate(&self, state: &Value) -> Result<(), String> {
        match self.validator.iter_errors(state).next() {
            None => Ok(()),
            Some(error) => {
                let at = error.instance_path().as_str();
                let at = if at.is_empty() { "/" } else { at };
                Err(format!(
                    "at {at}: {} (rule {})",
                    error.masked(),
                    error.schema_path().as_str()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps(value: Value) -> Vec<Step> {
        parse_steps(&value).unwrap()
    }

    fn run(steps: &[Step], doc: Value) -> Result<Value, String> {
        let mut doc = doc;
        for step in steps {
            step.apply(&mut doc)?;
        }
        Ok(doc)
    }

    #[test]
    fn steps_are_no_ops_where_they_do_not_apply() {
        let s = steps(json!([
            {"op": "rename", "from": "/qty", "to": "/quantity"},
            {"op": "remove", "path": "/legacy"},
            {"op": "default", "path": "/currency", "value": "EUR"},
            {"op": "remap", "path": "/status", "values": {"open": "active"}},
            {"op": "default", "path": "/missing/child", "value": 1}
        ]));
        assert_eq!(
            run(&s, json!({"qty": 2, "legacy": true, "status": "open"})).unwrap(),
            json!({"quantity": 2, "currency": "EUR", "status": "active"})
        );
        assert_eq!(
            run(&s, json!({"currency": "USD", "status": "closed"})).unwrap(),
            json!({"currency": "USD", "status": "closed"})
        );
    }

    #[test]
    fn rename_onto_an_existing_member_fails() {
        let s = steps(json!([{"op": "rename", "from": "/a", "to": "/b"}]));
        assert!(
            run(&s, json!({"a": 1, "b": 2}))
                .unwrap_err()
                .contains("exists already")
        );
    }

    #[test]
    fn malformed_definitions_are_refused() {
        assert!(check_definition(json!({"json_schema": {"type": "object"}})).is_ok());
        assert!(check_definition(json!({"json_schema": {"type": "nonsense"}})).is_err());
        assert!(
            check_definition(json!({"json_schema": {}, "migration": [{"op": "explode"}]})).is_err()
        );
        assert!(
            check_definition(json!({"json_schema": {}, "migration": [{"op": "remove"}]})).is_err()
        );
        assert!(
            check_definition(
                json!({"json_schema": {}, "migration": [{"op": "remove", "path": "x"}]})
            )
            .is_err()
        );
        assert!(check_definition(json!({"json_schema": {}, "extra": 1})).is_err());
        assert!(check_definition(json!({"migration": []})).is_err());
        assert!(
            check_definition(json!({"json_schema": {"$ref": "https://example.com/s.json"}}))
                .is_err()
        );
    }
}
