//! Property tests: random sequences of creates, updates (--set, --patch remove), deletes and
//! re-creates on a few documents, run through the real binary and through a model kept here.
//! After every sequence the folder verifies, and the state at every seq is the same whether
//! asked with `at --seq`, read from `replay --each`, or computed by the model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value};

use crate::common::*;
use crate::independent::{have_python, python_digest};

/// Ids with a colon in the ID, non-ASCII bytes and an upper-case type.
const DOCS: [&str; 3] = ["prop:1", "prop:ü/2", "Prop:a:b"];
/// Member names that need JSON Pointer escaping (`/`, `~`) or are not ASCII.
const FIELDS: [&str; 6] = ["a", "b", "é", "x/y", "~t", "with space"];

/// A --set VALUE: JSON text, or bare text that is not JSON (taken as a string).
#[derive(Debug, Clone)]
enum SetValue {
    Json(Value),
    Bare(String),
}

impl SetValue {
    fn arg(&self) -> String {
        match self {
            SetValue::Json(v) => v.to_string(),
            SetValue::Bare(s) => s.clone(),
        }
    }

    fn value(&self) -> Value {
        match self {
            SetValue::Json(v) => v.clone(),
            SetValue::Bare(s) => Value::String(s.clone()),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Create the document if it is not live, else update it with --set: mostly valid ops.
    Write {
        doc: usize,
        fields: Vec<(usize, SetValue)>,
    },
    /// Create, whatever the document's state (refused while it is live).
    Create {
        doc: usize,
        fields: Vec<(usize, Value)>,
    },
    Update {
        doc: usize,
        sets: Vec<(usize, SetValue)>,
    },
    Remove {
        doc: usize,
        field: usize,
    },
    Delete {
        doc: usize,
    },
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        prop::sample::select(vec![0.5, -2.25, 0.1, 1e20, 1.5e-7, -0.0]).prop_map(Value::from),
        "[a-zA-Z0-9 éü€🎉\"\\\\\t\n=/~-]{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn set_value() -> impl Strategy<Value = SetValue> {
    prop_oneof![
        4 => json_value().prop_map(SetValue::Json),
        1 => "[a-zé][a-z é]{0,6}"
            .prop_filter("not a JSON keyword", |s| !["true", "false", "null"].contains(&s.as_str()))
            .prop_map(SetValue::Bare),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let doc = 0..DOCS.len();
    let field = 0..FIELDS.len();
    prop_oneof![
        6 => (doc.clone(), prop::collection::vec((field.clone(), set_value()), 1..4))
            .prop_map(|(doc, fields)| Op::Write { doc, fields }),
        1 => (doc.clone(), prop::collection::vec((field.clone(), json_value()), 0..4))
            .prop_map(|(doc, fields)| Op::Create { doc, fields }),
        1 => (doc.clone(), prop::collection::vec((field.clone(), set_value()), 1..4))
            .prop_map(|(doc, sets)| Op::Update { doc, sets }),
        2 => (doc.clone(), field).prop_map(|(doc, field)| Op::Remove { doc, field }),
        2 => doc.prop_map(|doc| Op::Delete { doc }),
    ]
}

/// One document in the model.
#[derive(Debug, Default)]
struct Model {
    state: Map<String, Value>,
    live: bool,
    /// (state, deleted) after each event.
    history: Vec<(Value, bool)>,
}

/// A JSON Pointer to one member.
fn pointer(field: &str) -> String {
    format!("/{}", field.replace('~', "~0").replace('/', "~1"))
}

/// Turns a Write into the Create or Update it means in the model's current state.
fn resolve(op: &Op, models: &BTreeMap<usize, Model>) -> Op {
    match op {
        Op::Write { doc, fields } if models.get(doc).is_some_and(|m| m.live) => Op::Update {
            doc: *doc,
            sets: fields.clone(),
        },
        Op::Write { doc, fields } => Op::Create {
            doc: *doc,
            fields: fields.iter().map(|(f, v)| (*f, v.value())).collect(),
        },
        other => other.clone(),
    }
}

/// Applies `op` to the binary and the model; asserts that the binary refuses exactly the ops
/// the model says are invalid (missing document: exit 5; any other conflict: exit 2).
fn apply(folder: &TestFolder, models: &mut BTreeMap<usize, Model>, op: &Op) {
    let (doc, args, valid) = match op {
        Op::Create { doc, fields } => {
            let data: Map<String, Value> = fields
                .iter()
                .map(|(f, v)| (FIELDS[*f].to_string(), v.clone()))
                .collect();
            let m = models.entry(*doc).or_default();
            let valid = !m.live;
            if valid {
                m.state = data.clone();
            }
            (
                *doc,
                vec!["--data".to_string(), Value::Object(data).to_string()],
                valid,
            )
        }
        Op::Update { doc, sets } => {
            let m = models.entry(*doc).or_default();
            let valid = m.live;
            let mut args = Vec::new();
            for (f, v) in sets {
                args.push("--set".to_string());
                args.push(format!("{}={}", FIELDS[*f], v.arg()));
                if valid {
                    m.state.insert(FIELDS[*f].to_string(), v.value());
                }
            }
            (*doc, args, valid)
        }
        Op::Remove { doc, field } => {
            let m = models.entry(*doc).or_default();
            let valid = m.live && m.state.contains_key(FIELDS[*field]);
            if valid {
                m.state.remove(FIELDS[*field]);
            }
            let patch = serde_json::json!([{"op": "remove", "path": pointer(FIELDS[*field])}]);
            (*doc, vec!["--patch".to_string(), patch.to_string()], valid)
        }
        Op::Write { .. } => unreachable!("resolved before"),
        Op::Delete { doc } => {
            let m = models.entry(*doc).or_default();
            let valid = m.live;
            (
                *doc,
                vec!["--type".to_string(), "delete".to_string()],
                valid,
            )
        }
    };
    let m = models.get_mut(&doc).unwrap();
    let mut all = vec!["append", DOCS[doc]];
    all.extend(args.iter().map(String::as_str));
    let (code, stdout, stderr) = folder.run(&all);
    if valid {
        assert_eq!(code, 0, "{op:?} refused: {stderr}");
        let event: Value = serde_json::from_str(&stdout).expect("append prints the event");
        assert_eq!(event["seq"], m.history.len());
        m.live = !matches!(op, Op::Delete { .. });
        m.history.push((Value::Object(m.state.clone()), !m.live));
    } else {
        let expected = if m.history.is_empty() { 5 } else { 2 };
        assert_eq!(
            code, expected,
            "{op:?} should be refused ({m:?}): {stdout}{stderr}"
        );
        assert!(stdout.is_empty(), "a refused append printed {stdout}");
    }
}

fn check(folder: &TestFolder, models: &BTreeMap<usize, Model>) {
    // (a) verify passes, and counts what the model counts.
    let report = folder.json(&["verify", "--json"]);
    assert_eq!(report["ok"], true, "{report}");
    let events: usize = models.values().map(|m| m.history.len()).sum();
    let streams = models.values().filter(|m| !m.history.is_empty()).count();
    assert_eq!(report["events"], events, "{report}");
    assert_eq!(report["streams"], streams, "{report}");
    if have_python() {
        assert_eq!(report["digest"], python_digest(folder.path()));
    }

    // (b) at --seq N == replay --each [N] == the model, for every N.
    for (doc, m) in models {
        let doc = DOCS[*doc];
        if m.history.is_empty() {
            let (code, _, _) = folder.run(&["get", doc]);
            assert_eq!(code, 5, "{doc} has no events");
            continue;
        }
        let replayed = folder.ndjson(&["replay", doc, "--each"]);
        assert_eq!(replayed.len(), m.history.len(), "{doc}: {replayed:?}");
        for (n, (line, (state, deleted))) in replayed.iter().zip(&m.history).enumerate() {
            assert_eq!(line["doc"], doc);
            assert_eq!(line["seq"], n);
            assert_eq!(&line["state"], state, "{doc} seq {n}: replay vs model");
            assert_eq!(&line["deleted"], deleted, "{doc} seq {n}: replay vs model");
            let at = folder.json(&["at", doc, "--seq", &n.to_string()]);
            assert_eq!(&at, line, "{doc} seq {n}: at vs replay --each");
        }
        assert_eq!(&folder.json(&["get", doc]), replayed.last().unwrap());
        let (code, _, _) = folder.run(&["at", doc, "--seq", &m.history.len().to_string()]);
        assert_eq!(code, 5, "{doc}: a seq past the end");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        max_shrink_iters: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn folded_states_agree_with_the_model(ops in prop::collection::vec(op(), 1..14)) {
        let folder = TestFolder::new();
        let mut models = BTreeMap::new();
        for op in &ops {
            let op = resolve(op, &models);
            apply(&folder, &mut models, &op);
        }
        check(&folder, &models);
    }
}
