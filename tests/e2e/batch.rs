//! `append --batch`: one result line per request, in order; refusals write nothing and do not
//! stop the others; results come as soon as their group is durable.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

use crate::append::assert_folder_unchanged;
use crate::common::*;

fn batch(folder: &TestFolder, input: &str) -> (i32, Vec<Value>) {
    let out = folder
        .cmd()
        .args(["append", "--batch"])
        .write_stdin(input.to_string())
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.code().unwrap(), lines)
}

/// `append --batch` running on `folder` with both pipes open: the child, its stdin and its
/// results.
fn spawn_batch(folder: &TestFolder) -> (Child, ChildStdin, BufReader<ChildStdout>) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("eventdir"))
        .arg("-C")
        .arg(folder.path())
        .args(["append", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let results = BufReader::new(child.stdout.take().unwrap());
    (child, stdin, results)
}

#[test]
fn batch_prints_one_result_per_request_in_order_and_refusals_write_nothing_else() {
    let folder = TestFolder::new();
    let input = [
        json!({"doc": "order:1", "data": {"qty": 1}}),
        json!({"doc": "order:2", "data": {"qty": 2}}),
        json!({"doc": "order:1", "set": {"qty": 3}, "expect": 0}),
        json!({"doc": "order:1", "set": {"qty": 4}, "expect": 0}),
        json!({"doc": "order:3", "type": "delete"}),
        json!({"doc": "order:2", "data": [{"op": "remove", "path": "/missing"}]}),
        json!({"doc": "order:2", "type": "delete", "meta": {"actor": "bob"}}),
        json!({"doc": "sys:schema:order", "data": {}}),
    ];
    let mut text: String = input.iter().map(|r| format!("{r}\n")).collect();
    text.push_str("not json\n");
    let (code, lines) = batch(&folder, &text);
    assert_eq!(lines.len(), 9);
    assert_eq!(
        (lines[0]["doc"].clone(), lines[0]["seq"].clone()),
        (json!("order:1"), json!(0))
    );
    assert_eq!(lines[1]["doc"], "order:2");
    assert_eq!(lines[2]["seq"], 1);
    assert_eq!(
        lines[3]["error"]["code"], 3,
        "the second --expect 0 sees the first one's event"
    );
    assert_eq!(lines[3]["line"], 4);
    assert_eq!(lines[4]["error"]["code"], 5);
    assert_eq!(lines[5]["error"]["code"], 2);
    assert_eq!(lines[6]["type"], "delete");
    assert_eq!(lines[6]["meta"], json!({"actor": "bob"}));
    assert_eq!(lines[7]["error"]["code"], 2);
    assert_eq!(lines[8]["error"]["code"], 2);
    assert_eq!(code, 3, "exits with the first refusal's code");
    assert_eq!(folder.json(&["get", "order:1"])["state"], json!({"qty": 3}));
    assert_eq!(folder.json(&["get", "order:2"])["deleted"], true);
    assert!(!folder.stream_file("order:3").exists());
    assert_eq!(folder.json(&["verify", "--json"])["ok"], true);
    // The stored lines are what the results said.
    let log = folder.ndjson(&["log", "order:1"]);
    assert_eq!(log[0], lines[0]);
    assert_eq!(log[1], lines[2]);
}

#[test]
fn a_trickle_is_committed_line_by_line_without_waiting_for_more_input() {
    let folder = TestFolder::new();
    let (mut child, mut stdin, mut results) = spawn_batch(&folder);
    for n in 0..20 {
        let request = if n == 0 {
            json!({"doc": "tick:1", "data": {"n": 0}})
        } else {
            json!({"doc": "tick:1", "set": {"n": n}})
        };
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        // The pipe stays open: the result must come anyway, and be durable by then.
        let mut line = String::new();
        results.read_line(&mut line).unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["seq"], n);
        assert_eq!(folder.json(&["get", "tick:1"])["seq"], n);
        if n == 10 {
            // Another writer appends between two requests: the batch must see it.
            folder.ok(&["append", "tick:1", "--set", "other=1"]);
            let mut line = String::new();
            writeln!(
                stdin,
                "{}",
                json!({"doc": "tick:1", "set": {"n": 10}, "expect": 10})
            )
            .unwrap();
            stdin.flush().unwrap();
            results.read_line(&mut line).unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&line).unwrap()["error"]["code"],
                3
            );
            break;
        }
    }
    writeln!(stdin, "{}", json!({"doc": "tick:1", "set": {"last": true}})).unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut results, &mut rest).unwrap();
    assert_eq!(
        child.wait().unwrap().code(),
        Some(3),
        "the refused --expect sets the exit code"
    );
    let last: Value = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!(last["seq"], 12);
    let state = folder.json(&["get", "tick:1"])["state"].clone();
    assert_eq!(state, json!({"n": 10, "other": 1, "last": true}));
    assert_eq!(folder.json(&["verify", "--json"])["ok"], true);
}

/// A burst (read ahead on a thread) followed by silence and then a trickle (read by the writer
/// itself): the half line the burst ended with is carried over, and a refused line in the
/// trickle is answered without waiting for the next one.
#[test]
fn a_burst_then_a_trickle_is_answered_in_order_and_a_refusal_comes_without_more_input() {
    let folder = TestFolder::new();
    let (mut child, mut stdin, mut results) = spawn_batch(&folder);
    let mut next_result = || {
        let mut line = String::new();
        results.read_line(&mut line).unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    // About 400 KB at once, then the first half of one more request.
    let note = "x".repeat(180);
    let mut burst = format!("{}\n", json!({"doc": "burst:1", "data": {"n": 0}}));
    for n in 1..2000 {
        burst.push_str(&format!(
            "{}\n",
            json!({"doc": "burst:1", "set": {"n": n, "note": note}})
        ));
    }
    let split = format!("{}\n", json!({"doc": "burst:1", "set": {"n": 2000}}));
    let (head, tail) = split.split_at(split.len() / 2);
    stdin.write_all(burst.as_bytes()).unwrap();
    stdin.write_all(head.as_bytes()).unwrap();
    stdin.flush().unwrap();
    for n in 0..2000 {
        assert_eq!(next_result()["seq"], n);
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    stdin.write_all(tail.as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(next_result()["seq"], 2000, "the half line was kept");
    for n in 2001..2005 {
        writeln!(stdin, "{}", json!({"doc": "burst:1", "set": {"n": n}})).unwrap();
        stdin.flush().unwrap();
        assert_eq!(next_result()["seq"], n);
    }
    writeln!(stdin, "not json").unwrap();
    stdin.flush().unwrap();
    let refusal = next_result();
    assert_eq!(refusal["error"]["code"], 2, "{refusal}");
    assert_eq!(refusal["line"], 2006);
    writeln!(stdin, "{}", json!({"doc": "burst:1", "set": {"n": 2005}})).unwrap();
    drop(stdin);
    assert_eq!(next_result()["seq"], 2005);
    assert_eq!(child.wait().unwrap().code(), Some(2));
    assert_eq!(folder.json(&["get", "burst:1"])["state"]["n"], 2005);
    assert_eq!(folder.json(&["verify", "--json"])["events"], 2006);
}

#[test]
fn a_large_batch_over_many_documents_equals_the_same_appends_one_by_one() {
    let batched = TestFolder::new();
    let mut input = String::new();
    for i in 0..2000 {
        let doc = format!("item:{}", i % 300);
        let request = if i < 300 {
            json!({"doc": doc, "data": {"n": i}})
        } else {
            json!({"doc": doc, "set": {"n": i}})
        };
        input.push_str(&format!("{request}\n"));
    }
    let (code, lines) = batch(&batched, &input);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 2000);
    assert!(lines.iter().all(|l| l.get("error").is_none()));
    let report = batched.json(&["verify", "--json"]);
    assert_eq!(report["ok"], true);
    assert_eq!(report["events"], 2000);
    for i in [0, 7, 299] {
        let state = batched.json(&["get", &format!("item:{i}")]);
        let last = (0..2000).filter(|n| n % 300 == i).max().unwrap();
        assert_eq!(state["state"]["n"], last);
    }
}

/// A group of a megabyte or more to few streams is fsynced on a thread of its own while the
/// next group is planned: every result still comes back, in order, exactly as stored, and a
/// refusal in the middle leaves the rest applied.
#[test]
fn a_megabyte_batch_to_two_documents_is_stored_exactly_as_answered() {
    let f = TestFolder::new();
    let note = "n".repeat(1000);
    let mut input = String::new();
    input.push_str(&format!(
        "{}\n",
        json!({"doc": "big:1", "data": {"i": 0, "note": note}})
    ));
    input.push_str(&format!(
        "{}\n",
        json!({"doc": "big:2", "data": {"i": 0, "note": note}})
    ));
    for i in 1..1500 {
        for doc in ["big:1", "big:2"] {
            input.push_str(&format!(
                "{}\n",
                json!({"doc": doc, "set": {"i": i, "note": note}})
            ));
        }
    }
    // Stale: big:1 is at seq 1499 by then.
    input.push_str(&format!(
        "{}\n",
        json!({"doc": "big:1", "set": {"i": -1}, "expect": 0})
    ));
    input.push_str(&format!(
        "{}\n",
        json!({"doc": "big:2", "set": {"i": 1500}})
    ));
    let (code, results) = batch(&f, &input);
    assert_eq!(code, 3, "the stale request sets the exit code");
    assert_eq!(results.len(), 3002);
    assert_eq!(results[3000]["error"]["code"], 3, "{}", results[3000]);
    for doc in ["big:1", "big:2"] {
        let answered: Vec<&Value> = results.iter().filter(|r| r["doc"] == doc).collect();
        let stored = f.ndjson(&["log", doc]);
        assert_eq!(stored.len(), answered.len(), "{doc}");
        assert!(stored.iter().zip(&answered).all(|(s, a)| s == *a), "{doc}");
    }
    assert_eq!(f.json(&["get", "big:2"])["state"]["i"], 1500);
    assert_eq!(f.json(&["get", "big:1"])["state"]["i"], 1499);
    f.ok(&["verify"]);
}

/// The reason of a refusal, without what it names (`data`, `--patch`) and without the position
/// serde_json adds (a column of the request line, or of the `--patch` argument).
fn reason(message: &str) -> &str {
    let reason = message.split_once(": ").map_or(message, |(_, r)| r);
    reason.split(" at line ").next().unwrap_or(reason)
}

#[test]
fn a_patch_in_a_batch_line_is_read_and_refused_exactly_as_append_patch_reads_it() {
    let f = TestFolder::new();
    // The batch patches p:1, `append --patch` the same document q:1.
    for doc in ["p:1", "q:1"] {
        f.ok(&["append", doc, "--data", r#"{"a":{"b":1},"n":0}"#]);
    }
    // Accepted: members in any order, escaped names, members no operation defines (ignored).
    let accepted = [
        r#"[{"value":{"z":1,"y":[2,{"x":3}]},"path":"/a","op":"replace"}]"#,
        r#"[{"p\u0061th":"/n","op":"add","value":1,"note":{"k":[1]}}]"#,
        r#"[{"op":"move","from":"/a","path":"/c"},{"op":"test","path":"/n","value":1.0}]"#,
        r#"[]"#,
    ];
    for patch in accepted {
        let line = format!(r#"{{"doc":"p:1","data":{patch}}}"#);
        let (code, results) = batch(&f, &format!("{line}\n"));
        assert_eq!(code, 0, "{patch}: {results:?}");
        let single: Value = serde_json::from_str(&f.ok(&["append", "q:1", "--patch", patch]))
            .expect("the stored event");
        assert_eq!(results[0]["data"], single["data"], "{patch}");
    }
    let stored = f.ndjson(&["log", "p:1"]);
    assert_eq!(
        stored[1]["data"],
        json!([{"op": "replace", "path": "/a", "value": {"y": [2, {"x": 3}], "z": 1}}])
    );
    assert_eq!(
        stored[2]["data"],
        json!([{"op": "add", "path": "/n", "value": 1}])
    );
    // Refused, with the reason `append --patch` gives.
    let refused = [
        r#"[{"path":"/n","value":1}]"#,
        r#"[{"op":"frobnicate","path":"/n"}]"#,
        r#"[{"op":"add","path":"n","value":1}]"#,
        r#"[{"op":"add","path":7,"value":1}]"#,
        r#"[{"op":"add","path":"/n"}]"#,
        r#"[{"op":"move","path":"/n"}]"#,
        r#"[{"op":"remove","path":"/n"},1]"#,
        r#"[["op","add"]]"#,
        r#"[{"op":"add","op":"remove","path":"/n"}]"#,
        r#"[{"op":"add","path":"/n","value":{"k":1,"k":2}}]"#,
        r#"[{"op":"add","path":"/n","value":1,"x":1,"x":2}]"#,
        r#"[{"op":"add","path":"/n","value":1e400}]"#,
        r#"{"op":"add","path":"/n","value":1}"#,
    ];
    let before = f.snapshot();
    for patch in refused {
        let line = format!(r#"{{"doc":"p:1","type":"update","data":{patch}}}"#);
        let (code, results) = batch(&f, &format!("{line}\n"));
        assert_eq!(code, 2, "{patch}: {results:?}");
        let message = results[0]["error"]["message"].as_str().unwrap().to_string();
        let (code, _, stderr) = f.run(&["append", "q:1", "--patch", patch]);
        assert_eq!(code, 2, "{patch}: {stderr}");
        let stderr = stderr.trim().trim_start_matches("eventdir: ");
        assert_eq!(
            reason(&message),
            reason(stderr),
            "{patch}: {message} | {stderr}"
        );
    }
    assert_folder_unchanged(&before, &f.snapshot(), &"refused patches");
}

/// More requests to one document than one group takes: the groups follow one another on the
/// stream, every result in input order and exactly as stored.
#[test]
fn a_batch_to_one_document_larger_than_a_group_is_stored_in_order_exactly_as_answered() {
    let f = TestFolder::new();
    let mut input = format!("{}\n", json!({"doc": "busy:1", "data": {"n": 0}}));
    for i in 1..25_000 {
        let request = if i % 1000 == 0 {
            json!({"doc": format!("calm:{i}"), "data": {"n": i}})
        } else {
            json!({"doc": "busy:1", "set": {"n": i}})
        };
        input.push_str(&format!("{request}\n"));
    }
    let (code, results) = batch(&f, &input);
    assert_eq!(code, 0);
    assert_eq!(results.len(), 25_000);
    let answered: Vec<&Value> = results.iter().filter(|r| r["doc"] == "busy:1").collect();
    assert!(answered.iter().enumerate().all(|(seq, r)| r["seq"] == seq));
    let stored = f.ndjson(&["log", "busy:1"]);
    assert_eq!(stored.len(), answered.len());
    assert!(stored.iter().zip(&answered).all(|(s, a)| s == *a));
    assert_eq!(f.json(&["get", "busy:1"])["state"]["n"], 24_999);
    assert_eq!(f.json(&["verify", "--json"])["events"], 25_000);
}

/// Results of one stream's requests that follow one another are printed together: a refusal
/// among them still comes out at its own line, between the events before and after it.
#[test]
fn refusals_among_one_documents_results_come_out_at_their_own_lines() {
    let f = TestFolder::new();
    let mut input = format!("{}\n", json!({"doc": "busy:1", "data": {"n": 0}}));
    for i in 1..3000 {
        let request = match i % 500 {
            0 => json!({"doc": "busy:1", "set": {"n": -1}, "expect": 0}),
            _ => json!({"doc": "busy:1", "set": {"n": i}}),
        };
        input.push_str(&format!("{request}\n"));
    }
    let (code, results) = batch(&f, &input);
    assert_eq!(code, 3);
    assert_eq!(results.len(), 3000);
    let mut seq = 0;
    for (i, result) in results.iter().enumerate() {
        if i > 0 && i % 500 == 0 {
            assert_eq!(result["error"]["code"], 3, "line {}: {result}", i + 1);
            assert_eq!(result["line"], i + 1);
        } else {
            assert_eq!(result["seq"], seq, "line {}: {result}", i + 1);
            seq += 1;
        }
    }
    let answered: Vec<&Value> = results.iter().filter(|r| r["doc"] == "busy:1").collect();
    let stored = f.ndjson(&["log", "busy:1"]);
    assert_eq!(stored.len(), answered.len());
    assert!(stored.iter().zip(&answered).all(|(s, a)| s == *a));
}

#[test]
fn rounds_that_share_or_swap_their_documents_under_a_low_open_file_limit_all_land() {
    // 74 open files leave a batch 10 for streams: a round over 8 documents is one group, which
    // the next round over the same 8 takes over; a round over 8 others does not fit beside it
    // and is split, its first group waiting for the one before to be durable.
    let f = TestFolder::new();
    let doc = |i: usize| match i {
        0..100_000 => format!("a:{}", i % 8),
        _ => format!("b:{}", i % 8),
    };
    let input: String = (0..110_000)
        .map(|i| match i {
            0..8 | 100_000..100_008 => json!({"doc": doc(i), "data": {"n": i}}),
            _ => json!({"doc": doc(i), "set": {"n": i}}),
        })
        .map(|request| format!("{request}\n"))
        .collect();
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("eventdir"));
    cmd.arg("-C")
        .arg(f.path())
        .args(["append", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    limit_open_files(&mut cmd, 74);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 110_000);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result["doc"], doc(i), "line {}: {result}", i + 1);
    }
    assert_eq!(f.json(&["get", "a:7"])["state"]["n"], 99_999);
    assert_eq!(f.json(&["get", "a:7"])["seq"], 12_499);
    assert_eq!(f.json(&["get", "b:7"])["state"]["n"], 109_999);
    assert_eq!(f.json(&["verify", "--json"])["events"], 110_000);
}

/// The `data` bytes of each line of `doc`'s stream file, as stored.
fn stored_data(f: &TestFolder, doc: &str) -> Vec<String> {
    std::fs::read_to_string(f.stream_file(doc))
        .unwrap()
        .lines()
        .map(|line| {
            let start = line.find(",\"data\":").unwrap() + ",\"data\":".len();
            let end = line.rfind(",\"hash\":").unwrap();
            line[start..end].to_string()
        })
        .collect()
}

/// An update written plainly (no whitespace, no escapes, the canonical member order) is read
/// by a quicker path than the same update written any other way; both store the same bytes.
#[test]
fn a_plain_update_line_and_the_same_request_spaced_out_store_the_same_bytes() {
    let f = TestFolder::new();
    for doc in ["p:1", "q:1"] {
        f.ok(&["append", doc, "--data", r#"{"a":1,"f":2.5,"n":0}"#]);
    }
    let patches = [
        r#"[{"op":"replace","path":"/n","value":-7},{"op":"add","path":"/s","value":"é ☃"}]"#,
        r#"[{"op":"remove","path":"/a","value":"ignored"},{"op":"add","path":"/a","value":null}]"#,
        r#"[{"op":"replace","path":"/f","value":2.50},{"op":"add","path":"/o","value":{"b":[1],"a":true}}]"#,
        r#"[{"from":"/o","op":"move","path":"/m"},{"from":"/m","op":"copy","path":"/c"}]"#,
    ];
    let mut input = String::new();
    for (seq, patch) in (0..).zip(patches) {
        input.push_str(&format!(
            "{{\"doc\":\"p:1\",\"expect\":{seq},\"data\":{patch}}}\n"
        ));
        let spaced = patch.replace(',', ", ").replace(':', ": ");
        input.push_str(&format!(
            "{{ \"doc\": \"q:1\", \"expect\": {seq}, \"data\": {spaced} }}\n"
        ));
    }
    let (code, results) = batch(&f, &input);
    assert_eq!(code, 0, "{results:?}");
    assert!(results.iter().all(|r| r.get("error").is_none()));
    assert_eq!(stored_data(&f, "p:1"), stored_data(&f, "q:1"));
    assert_eq!(
        stored_data(&f, "p:1")[2],
        r#"[{"op":"remove","path":"/a"},{"op":"add","path":"/a","value":null}]"#
    );
    assert_eq!(
        f.json(&["get", "p:1"])["state"],
        f.json(&["get", "q:1"])["state"]
    );
    assert_eq!(f.json(&["verify", "--json"])["ok"], true);
}
