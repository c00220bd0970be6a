//! Schemas as documents: stamps, validation, migrations as ordinary events, and history read
//! with the schema it conformed to.

use std::path::Path;
use std::process::Command as StdCommand;

use serde_json::{Value, json};

use crate::clone::{
    clone_ok, command_in, parse_lines, schema_stamped_origin, stream_path, verify_report,
};
use crate::common::*;

fn stamps(folder: &TestFolder, doc: &str) -> Vec<Value> {
    folder
        .ndjson(&["log", doc])
        .iter()
        .map(|e| e["schema"].clone())
        .collect()
}

/// A consumer that knows nothing of migrations replays the stored patches.
fn naive_replay(stream: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/independent/replay_patches.py");
    let out = StdCommand::new("python3")
        .arg(script)
        .arg(stream)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn schema_set_show_and_log_round_trip() {
    let folder = TestFolder::new();
    let v0 = set_schema(&folder, "order", json!({"json_schema": {"type": "object"}}));
    assert_eq!(v0["seq"], 0);
    assert_eq!(v0["type"], "order");
    assert_eq!(v0["migration"], json!([]));
    let v1 = set_schema(
        &folder,
        "order",
        json!({"json_schema": {"required": ["qty"]}, "migration": [{"op": "default", "path": "/qty", "value": 0}]}),
    );
    assert_eq!(v1["seq"], 1);
    assert_eq!(
        folder.json(&["schema", "show", "order"])["json_schema"],
        json!({"required": ["qty"]})
    );
    assert_eq!(
        folder.json(&["schema", "show", "order", "--seq", "0"])["json_schema"],
        json!({"type": "object"})
    );
    let log = folder.ndjson(&["schema", "log", "order"]);
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1]["migration"],
        json!([{"op": "default", "path": "/qty", "value": 0}])
    );
    let (code, _, stderr) = folder.run(&["schema", "show", "invoice"]);
    assert_eq!(code, 5, "{stderr}");
}

#[test]
fn setting_an_identical_schema_writes_nothing() {
    let folder = TestFolder::new();
    let definition = json!({"json_schema": {"type": "object"}});
    set_schema(&folder, "order", definition.clone());
    let before = folder.snapshot();
    let again = set_schema(&folder, "order", definition);
    assert_eq!(again["seq"], 0);
    assert_eq!(folder.snapshot(), before);
}

#[test]
fn invalid_schemas_and_migrations_are_refused_and_write_nothing() {
    let folder = TestFolder::new();
    set_schema(&folder, "order", json!({"json_schema": {"type": "object"}}));
    let before = folder.snapshot();
    for bad in [
        json!({"json_schema": {"type": "nonsense"}}),
        json!({"json_schema": {"minimum": "five"}}),
        json!({"json_schema": {"$ref": "https://example.com/schema.json"}}),
        json!({"json_schema": {}, "migration": [{"op": "explode", "path": "/a"}]}),
        json!({"json_schema": {}, "migration": [{"op": "rename", "from": "/a"}]}),
        json!({"json_schema": {}, "migration": [{"op": "remove", "path": "a"}]}),
        json!({"json_schema": {}, "migration": [{"op": "remove", "path": ""}]}),
        json!({"json_schema": {}, "migration": {"op": "remove", "path": "/a"}}),
        json!({"json_schema": {}, "extra": true}),
        json!({"migration": []}),
        json!([1, 2]),
    ] {
        let out = folder
            .cmd()
            .args(["schema", "set", "order", "-"])
            .write_stdin(bad.to_string())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("eventdir: "), "{stderr}");
        assert_eq!(folder.snapshot(), before, "{bad} changed the folder");
    }
    for (args, code) in [
        (&["schema", "set", "sys", "-"][..], 2),
        (&["schema", "set", "a:b", "-"][..], 2),
    ] {
        let out = folder
            .cmd()
            .args(args)
            .write_stdin("{\"json_schema\":{}}")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
    }
    assert_eq!(folder.snapshot(), before);
}

#[test]
fn schema_documents_cannot_be_written_with_append() {
    let folder = TestFolder::new();
    let before = folder.snapshot();
    let (code, _, stderr) = folder.run(&[
        "append",
        "sys:schema:order",
        "--data",
        "{\"json_schema\":{}}",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(folder.snapshot(), before);
}

#[test]
fn events_are_stamped_with_the_schema_version_in_effect() {
    let folder = TestFolder::new();
    folder.ok(&["append", "order:1", "--data", "{\"qty\":1}"]);
    set_schema(&folder, "order", json!({"json_schema": {"type": "object"}}));
    folder.ok(&["append", "order:2", "--data", "{\"qty\":2}"]);
    set_schema(
        &folder,
        "order",
        json!({"json_schema": {"type": "object", "required": ["qty"]}}),
    );
    folder.ok(&["append", "order:2", "--set", "qty=3"]);
    folder.ok(&["append", "invoice:1", "--data", "{}"]);
    assert_eq!(stamps(&folder, "order:1"), vec![Value::Null]);
    assert_eq!(
        stamps(&folder, "order:2"),
        vec![json!(0), json!(1), json!(1)]
    );
    assert_eq!(stamps(&folder, "invoice:1"), vec![Value::Null]);
    assert_eq!(
        stamps(&folder, "sys:schema:order"),
        vec![Value::Null, Value::Null]
    );
}

#[test]
fn append_that_violates_the_schema_is_refused_naming_the_path_and_rule() {
    let folder = TestFolder::new();
    set_schema(
        &folder,
        "order",
        json!({"json_schema": {"type": "object", "required": ["qty"], "properties": {"qty": {"type": "integer", "minimum": 1}}}}),
    );
    folder.ok(&["append", "order:1", "--data", "{\"qty\":1}"]);
    let before = folder.snapshot();
    let (code, _, stderr) = folder.run(&["append", "order:1", "--set", "qty=0"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/qty") && stderr.contains("minimum"),
        "{stderr}"
    );
    let (code, _, stderr) = folder.run(&["append", "order:2", "--data", "{\"n\":1}"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("required"), "{stderr}");
    let (code, _, _) = folder.run(&[
        "append",
        "order:1",
        "--patch",
        "[{\"op\":\"remove\",\"path\":\"/qty\"}]",
    ]);
    assert_eq!(code, 2);
    assert_eq!(folder.snapshot(), before);
    // A delete is not validated: the document keeps its last, valid state.
    folder.ok(&["append", "order:1", "--type", "delete"]);
}

/// Stage definitions for the evolution A -> B -> C -> D.
fn stages() -> Vec<Value> {
    vec![
        // A: quantities are integers.
        json!({"json_schema": {"type": "object", "required": ["qty", "status"],
               "properties": {"qty": {"type": "integer"}, "status": {"type": "string"}}}}),
        // B: a field with a default.
        json!({"json_schema": {"type": "object", "required": ["qty", "status", "currency"],
               "properties": {"qty": {"type": "integer"}, "currency": {"enum": ["EUR", "USD"]}}},
               "migration": [{"op": "default", "path": "/currency", "value": "EUR"}]}),
        // C: a rename plus a remapped value.
        json!({"json_schema": {"type": "object", "required": ["quantity", "status", "currency"],
               "properties": {"quantity": {"type": "integer"}, "status": {"enum": ["active", "closed"]}},
               "not": {"required": ["qty"]}},
               "migration": [{"op": "rename", "from": "/qty", "to": "/quantity"},
                             {"op": "remap", "path": "/status", "values": {"open": "active", "done": "closed"}}]}),
        // D: a dropped field.
        json!({"json_schema": {"type": "object", "required": ["quantity", "status", "currency"],
               "properties": {"quantity": {"type": "integer"}, "status": {"enum": ["active", "closed"]},
                              "currency": {"enum": ["EUR", "USD"]}, "note": {"type": "string"}},
               "additionalProperties": false},
               "migration": [{"op": "remove", "path": "/legacy"}]}),
    ]
}

#[test]
fn evolution_a_b_c_d_reads_old_shapes_migrates_on_write_and_replays_naively() {
    let folder = TestFolder::new();
    let stages = stages();
    folder.ok(&[
        "append",
        "order:none",
        "--data",
        r#"{"qty":1,"status":"open","legacy":"x"}"#,
    ]);
    set_schema(&folder, "order", stages[0].clone());
    folder.ok(&[
        "append",
        "order:a",
        "--data",
        r#"{"qty":2,"status":"done","legacy":"y"}"#,
    ]);
    set_schema(&folder, "order", stages[1].clone());
    folder.ok(&[
        "append",
        "order:b",
        "--data",
        r#"{"qty":3,"status":"open","currency":"USD","legacy":"z"}"#,
    ]);
    set_schema(&folder, "order", stages[2].clone());
    folder.ok(&[
        "append",
        "order:c",
        "--data",
        r#"{"quantity":4,"status":"active","currency":"EUR","legacy":"w"}"#,
    ]);
    set_schema(&folder, "order", stages[3].clone());
    folder.ok(&[
        "append",
        "order:d",
        "--data",
        r#"{"quantity":5,"status":"closed","currency":"EUR"}"#,
    ]);

    // Old seqs show the old shapes together with the schema they conformed to.
    let a0 = folder.json(&["at", "order:a", "--seq", "0", "--with-schema"]);
    assert_eq!(
        a0["state"],
        json!({"qty": 2, "status": "done", "legacy": "y"})
    );
    assert_eq!(a0["schema"], 0);
    assert_eq!(a0["schema_document"]["seq"], 0);
    assert_eq!(
        a0["schema_document"]["state"]["json_schema"],
        stages[0]["json_schema"]
    );
    assert_eq!(a0["schema_document"]["state"]["migration"], json!([]));

    let none0 = folder.json(&["at", "order:none", "--seq", "0", "--with-schema"]);
    assert_eq!(none0["schema"], Value::Null);
    assert_eq!(none0["schema_document"], Value::Null);
    let b0 = folder.json(&["at", "order:b", "--seq", "0", "--with-schema"]);
    assert_eq!(
        b0["schema_document"]["state"]["migration"],
        stages[1]["migration"]
    );

    // Verify lists the lagging documents, as a warning.
    let report = folder.json(&["verify", "--json"]);
    assert_eq!(report["ok"], true);
    let lagging: Vec<&str> = report["lagging"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["doc"].as_str().unwrap())
        .collect();
    assert_eq!(lagging, ["order:a", "order:b", "order:c", "order:none"]);

    // Reads never write; get says the document lags, --migrated shows the migrated state.
    let before = folder.snapshot();
    let (code, out, stderr) = folder.run(&["get", "order:a"]);
    assert_eq!(code, 0);
    assert!(
        stderr.contains("schema seq 0") && stderr.contains("seq 3"),
        "{stderr}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["state"]["qty"],
        2
    );
    let migrated = folder.json(&["get", "order:a", "--migrated"]);
    assert_eq!(
        migrated["state"],
        json!({"quantity": 2, "status": "closed", "currency": "EUR"})
    );
    assert_eq!(migrated["schema"], 3);
    assert_eq!(migrated["migrated_from"], 0);
    assert_eq!(folder.snapshot(), before);

    // An append to a lagging document migrates it first, in its own event.
    let lines = folder.ndjson(&["append", "order:a", "--set", "note=rush"]);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["type"], "migrate");
    assert_eq!(lines[0]["schema"], 3);
    assert_eq!(lines[1]["type"], "update");
    assert_eq!(
        lines[1]["data"],
        json!([{"op": "add", "path": "/note", "value": "rush"}])
    );
    assert_eq!(
        folder.json(&["get", "order:a"])["state"],
        json!({"quantity": 2, "status": "closed", "currency": "EUR", "note": "rush"})
    );

    // migrate brings the rest, reporting each document.
    let results = folder.ndjson(&["migrate", "order"]);
    let by_doc = |doc: &str| results.iter().find(|r| r["doc"] == doc).unwrap().clone();
    assert_eq!(by_doc("order:a")["result"], "current");
    assert_eq!(by_doc("order:d")["result"], "current");
    for doc in ["order:none", "order:b", "order:c"] {
        assert_eq!(by_doc(doc)["result"], "migrated", "{doc}");
        assert_eq!(by_doc(doc)["to"], 3);
    }
    assert_eq!(by_doc("order:none")["from"], Value::Null);
    assert_eq!(
        folder.json(&["get", "order:none"])["state"],
        json!({"quantity": 1, "status": "active", "currency": "EUR"})
    );
    assert_eq!(
        folder.json(&["get", "order:b"])["state"],
        json!({"quantity": 3, "status": "active", "currency": "USD"})
    );
    let report = folder.json(&["verify", "--json"]);
    assert_eq!(report["ok"], true);
    assert_eq!(report["lagging"], json!([]));

    // The old shapes are still there, with their schemas.
    assert_eq!(
        folder.json(&["at", "order:none", "--seq", "0"])["state"]["qty"],
        1
    );

    // A consumer that knows nothing of migrations replays to exactly what get shows.
    for doc in ["order:none", "order:a", "order:b", "order:c", "order:d"] {
        let replayed = naive_replay(&folder.stream_file(doc));
        let got = folder.json(&["get", doc]);
        assert_eq!(replayed["state"], got["state"], "{doc}");
        assert_eq!(replayed["deleted"], got["deleted"], "{doc}");
    }
}

#[test]
fn a_document_that_cannot_migrate_is_reported_and_left_alone() {
    let folder = TestFolder::new();
    set_schema(&folder, "item", json!({"json_schema": {"type": "object"}}));
    folder.ok(&["append", "item:ok", "--data", r#"{"a":1}"#]);
    folder.ok(&["append", "item:clash", "--data", r#"{"a":1,"b":2}"#]);
    folder.ok(&["append", "item:invalid", "--data", r#"{"a":"text"}"#]);
    folder.ok(&["append", "item:gone", "--data", r#"{"a":1}"#]);
    folder.ok(&["append", "item:gone", "--type", "delete"]);
    set_schema(
        &folder,
        "item",
        json!({"json_schema": {"type": "object", "properties": {"b": {"type": "integer"}}},
               "migration": [{"op": "rename", "from": "/a", "to": "/b"}]}),
    );
    let clash_before = std::fs::read(folder.stream_file("item:clash")).unwrap();
    let invalid_before = std::fs::read(folder.stream_file("item:invalid")).unwrap();
    let out = folder.cmd().arg("migrate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let results: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let result = |doc: &str| results.iter().find(|r| r["doc"] == doc).unwrap().clone();
    assert_eq!(result("item:ok")["result"], "migrated");
    assert_eq!(result("item:clash")["result"], "failed");
    assert!(
        result("item:clash")["reason"]
            .as_str()
            .unwrap()
            .contains("exists already")
    );
    assert_eq!(result("item:invalid")["result"], "failed");
    assert!(
        result("item:invalid")["reason"]
            .as_str()
            .unwrap()
            .contains("/b")
    );
    assert_eq!(result("item:gone")["result"], "deleted");
    assert_eq!(
        std::fs::read(folder.stream_file("item:clash")).unwrap(),
        clash_before
    );
    assert_eq!(
        std::fs::read(folder.stream_file("item:invalid")).unwrap(),
        invalid_before
    );
    assert_eq!(folder.json(&["get", "item:ok"])["state"], json!({"b": 1}));
    // An append to the failing document is refused too, and says why.
    let (code, _, stderr) = folder.run(&["append", "item:clash", "--set", "c=1"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot be migrated"), "{stderr}");
    assert_eq!(
        std::fs::read(folder.stream_file("item:clash")).unwrap(),
        clash_before
    );
}

#[test]
fn verify_fails_when_a_stamp_does_not_resolve() {
    let folder = TestFolder::new();
    set_schema(&folder, "order", json!({"json_schema": {"type": "object"}}));
    folder.ok(&["append", "order:1", "--data", "{}"]);
    std::fs::remove_file(folder.stream_file("sys:schema:order")).unwrap();
    let out = folder.cmd().args(["verify", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"][0]["doc"], "order:1");
    assert!(
        report["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not resolve")
    );
}

#[test]
fn concurrent_schema_changes_and_appends_produce_exact_stamps_and_valid_states() {
    let folder = TestFolder::new();
    // Version k requires members v0..vk, and its migration adds vk: a state stamped k that
    // lacks one of them means a stamp or a migration was wrong.
    let version = |k: usize| {
        let required: Vec<String> = (0..=k).map(|i| format!("v{i}")).collect();
        json!({"json_schema": {"type": "object", "required": required},
               "migration": [{"op": "default", "path": format!("/v{k}"), "value": k}]})
    };
    set_schema(&folder, "doc", version(0));
    for d in 0..4 {
        folder.ok(&["append", &format!("doc:{d}"), "--data", r#"{"v0":0}"#]);
    }
    let dir = folder.path().to_path_buf();
    let writers: Vec<_> = (0..4)
        .map(|d| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for n in 0..25 {
                    let out = eventdir()
                        .arg("-C")
                        .arg(&dir)
                        .args(["append", &format!("doc:{d}"), "--set", &format!("n={n}")])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            })
        })
        .collect();
    for k in 1..=8 {
        set_schema(&folder, "doc", version(k));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    folder.ok(&["migrate", "doc"]);
    let report = folder.json(&["verify", "--json"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["lagging"], json!([]));
    for d in 0..4 {
        let doc = format!("doc:{d}");
        let mut last_stamp = 0;
        for line in folder.ndjson(&["replay", &doc, "--each"]) {
            let stamp = line["schema"].as_u64().unwrap();
            assert!(stamp >= last_stamp, "{doc}: stamps went backwards");
            last_stamp = stamp;
            for i in 0..=stamp {
                assert!(
                    line["state"].get(format!("v{i}")).is_some(),
                    "{doc} seq {}: state lacks v{i} under schema {stamp}",
                    line["seq"]
                );
            }
        }
        assert_eq!(last_stamp, 8);
        assert_eq!(
            naive_replay(&folder.stream_file(&doc))["state"],
            folder.json(&["get", &doc])["state"]
        );
    }
}

#[test]
fn a_schema_stream_cut_back_fails_its_checkpoint_head_and_the_stamps_beyond_it() {
    let folder = TestFolder::new();
    set_schema(&folder, "order", json!({"json_schema": {"type": "object"}}));
    set_schema(
        &folder,
        "order",
        json!({"json_schema": {"type": "object", "title": "v1"}}),
    );
    folder.ok(&["append", "order:1", "--data", "{}"]);
    let cp = folder.path().with_extension("checkpoint");
    let cp = cp.to_str().unwrap();
    folder.ok(&["verify", "--save-checkpoint", cp]);
    folder.ok(&["verify", "--checkpoint", cp]);
    let schema_file = folder.stream_file("sys:schema:order");
    let bytes = std::fs::read(&schema_file).unwrap();
    let first_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    std::fs::write(&schema_file, &bytes[..first_line]).unwrap();

    let out = folder
        .cmd()
        .args(["verify", "--json", "--checkpoint", cp])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["checkpoint_mismatches"][0]["doc"],
        "sys:schema:order"
    );
    assert!(
        report["checkpoint_mismatches"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("truncated or rolled back"),
        "{report}"
    );
    assert_eq!(report["failed"][0]["doc"], "order:1", "{report}");
    assert!(
        report["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("ends at seq 0"),
        "{report}"
    );
    std::fs::remove_file(cp).unwrap();
}

#[test]
fn migrate_of_many_documents_in_small_groups_reports_each_once_in_order() {
    // 104 open files leave a group 20 streams: 250 documents take 13 groups, each made durable
    // before the next.
    let folder = TestFolder::new();
    set_schema(&folder, "item", json!({"json_schema": {"type": "object"}}));
    let mut requests: String = (0..250)
        .map(|i| {
            format!(
                "{}\n",
                json!({"doc": format!("item:{i}"), "data": {"a": i}})
            )
        })
        .collect();
    requests.push_str(&format!("{}\n", json!({"doc": "item:3", "type": "delete"})));
    requests.push_str(&format!(
        "{}\n",
        json!({"doc": "item:100", "data": [{"op": "add", "path": "/b", "value": 0}]})
    ));
    folder.batch_ok(&requests);
    set_schema(
        &folder,
        "item",
        json!({"json_schema": {"type": "object"},
               "migration": [{"op": "rename", "from": "/a", "to": "/b"}]}),
    );
    // Migrated by its own append first: current when migrate comes.
    folder.ok(&["append", "item:7", "--set", "x=1"]);
    let events_before = folder.json(&["verify", "--json"])["events"]
        .as_u64()
        .unwrap();

    let mut cmd = command_in(folder.path(), &["migrate", "item"]);
    limit_open_files(&mut cmd, 104);
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = parse_lines(&out.stdout);
    let listed: Vec<Value> = folder
        .ndjson(&["ls"])
        .into_iter()
        .map(|d| d["doc"].clone())
        .filter(|d| d.as_str().unwrap().starts_with("item:"))
        .collect();
    let reported: Vec<Value> = results.iter().map(|r| r["doc"].clone()).collect();
    assert_eq!(
        reported, listed,
        "one line per document, in the folder's order"
    );
    for result in &results {
        let doc = result["doc"].as_str().unwrap();
        let expected = match doc {
            "item:3" => json!({"result": "deleted", "from": 0, "to": 0, "seq": null}),
            "item:7" => json!({"result": "current", "from": 1, "to": 1, "seq": null}),
            "item:100" => json!({"result": "failed", "from": 0, "to": 0, "seq": null}),
            _ => json!({"result": "migrated", "from": 0, "to": 1, "seq": 1}),
        };
        for member in ["result", "from", "to", "seq"] {
            assert_eq!(result[member], expected[member], "{doc}: {result}");
        }
    }
    let clash = results.iter().find(|r| r["doc"] == "item:100").unwrap();
    assert!(
        clash["reason"].as_str().unwrap().contains("exists already"),
        "{clash}"
    );
    assert_eq!(folder.json(&["get", "item:42"])["state"], json!({"b": 42}));
    let report = folder.json(&["verify", "--json"]);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events"], events_before + 247, "{report}");
    assert_eq!(
        report["lagging"],
        json!([{"doc": "item:100", "schema": 0, "current_schema": 1}]),
        "{report}"
    );

    // A second run finds nothing to do but the one that cannot migrate.
    let (code, stdout, _) = folder.run(&["migrate", "item"]);
    assert_eq!(code, 2);
    let again = parse_lines(stdout.as_bytes());
    assert!(
        again
            .iter()
            .all(|r| r["result"] != "migrated"
                && (r["result"] != "failed" || r["doc"] == "item:100")),
        "{again:?}"
    );
    assert_eq!(
        folder.json(&["verify", "--json"])["events"],
        events_before + 247
    );
}

#[test]
fn a_migrate_killed_at_any_moment_leaves_a_folder_that_verifies_and_a_rerun_completes() {
    // 300 order documents (and 300 of another type), then a schema change that every order
    // document lags: each kill lands on a fresh clone of that folder.
    let origin = schema_stamped_origin();
    set_schema(
        &origin,
        "order",
        json!({"json_schema": {"type": "object"},
               "migration": [{"op": "default", "path": "/currency", "value": "EUR"}]}),
    );
    let tmp = tempfile::tempdir().unwrap();
    let copy = |name: &str| {
        let dst = tmp.path().join(name);
        clone_ok(origin.path(), &dst);
        dst
    };
    let migrate = |dir: &Path| command_in(dir, &["migrate", "order"]);
    let timed = copy("timed");
    let started = std::time::Instant::now();
    let out = migrate(&timed).output().unwrap();
    let whole = started.elapsed();
    assert!(out.status.success(), "{out:?}");

    let rounds = 12;
    for k in 1..=rounds {
        let dir = copy(&format!("killed-{k}"));
        let mut child = migrate(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut text);
            text
        });
        std::thread::sleep(whole.mul_f64(k as f64 / rounds as f64));
        let _ = child.kill();
        child.wait().unwrap();
        let text = reader.join().unwrap();
        // Torn tails at most; every stamp resolves.
        let report = verify_report(&dir);
        // A line printed whole was printed once its migrate event was durable: it is there.
        let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
        for line in complete.lines() {
            let result: Value = serde_json::from_str(line).unwrap();
            let doc = result["doc"].as_str().unwrap();
            let stream = std::fs::read_to_string(stream_path(&dir, doc)).unwrap();
            let seq = result["seq"].as_u64().expect("every order document lags") as usize;
            let event: Value = serde_json::from_str(stream.lines().nth(seq).unwrap()).unwrap();
            assert_eq!(event["type"], "migrate", "kill {k}: {doc}: {report}");
        }
        // A re-run migrates the rest, and only the rest.
        let out = migrate(&dir).output().unwrap();
        assert!(out.status.success(), "kill {k}: {out:?}");
        let report = verify_report(&dir);
        assert_eq!(report["lagging"], json!([]), "kill {k}: {report}");
        assert_eq!(report["torn_tails"], json!([]), "kill {k}: {report}");
        assert_eq!(report["events"], 600 * 5 + 3 + 300, "kill {k}: {report}");
    }
}
