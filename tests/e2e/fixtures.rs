//! The checked-in folders under fixtures/: every future version must keep verifying the golden
//! folder with the same digest, and keep reporting the damaged ones the same way.

use std::path::PathBuf;

use crate::common::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn verify_json(dir: &PathBuf) -> (i32, serde_json::Value) {
    let out = eventdir()
        .arg("-C")
        .arg(dir)
        .args(["verify", "--json"])
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).expect("verify --json prints one object");
    (out.status.code().unwrap(), json)
}

#[test]
fn golden_v1_folder_verifies_with_its_recorded_digest() {
    let recorded = std::fs::read_to_string(fixture("golden-v1.digest")).unwrap();
    let dir = fixture("golden-v1");
    let (code, report) = verify_json(&dir);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["digest"], recorded.trim());
    assert_eq!(report["streams"], 4);
    assert_eq!(report["events"], 8);
    eventdir()
        .arg("-C")
        .arg(&dir)
        .args(["verify", "--expect-digest", recorded.trim()])
        .assert()
        .success();
}

#[test]
fn golden_v1_folder_reads_back_the_states_it_was_written_with() {
    let dir = fixture("golden-v1");
    let get = |doc: &str| -> serde_json::Value {
        let out = eventdir()
            .arg("-C")
            .arg(&dir)
            .args(["get", doc])
            .output()
            .unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let order = get("order:1");
    assert_eq!(order["seq"], 2);
    assert_eq!(
        order["state"],
        serde_json::json!({"status": "paid", "total": 31, "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 1}]})
    );
    let reopened = get("order:2");
    assert_eq!(reopened["seq"], 2);
    assert_eq!(reopened["deleted"], false);
    assert_eq!(
        reopened["state"]["big"].as_u64(),
        Some(9_007_199_254_740_993)
    );
    assert_eq!(get("Customer:Ann Lee")["state"]["name"], "Ann Lee");
    assert_eq!(get("note:école/été")["state"]["text"], "ünïcödé");
}

#[test]
fn tampered_v1_folder_fails_naming_the_document_and_seq() {
    let (code, report) = verify_json(&fixture("tampered-v1"));
    assert_eq!(code, 4);
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["doc"], "order:1");
    assert_eq!(failed[0]["seq"], 1);
    assert_eq!(failed[0]["line"], 2);
}

#[test]
fn torn_v1_folder_reports_a_repairable_torn_tail_and_passes() {
    let (code, report) = verify_json(&fixture("torn-v1"));
    assert_eq!(code, 0, "{report}");
    let torn = report["torn_tails"].as_array().unwrap();
    assert_eq!(torn.len(), 1);
    assert_eq!(torn[0]["doc"], "order:1");
    assert_eq!(torn[0]["after_seq"], 2);
    let recorded = std::fs::read_to_string(fixture("golden-v1.digest")).unwrap();
    assert_eq!(
        report["digest"],
        recorded.trim(),
        "a torn tail is not part of the digest"
    );
}
