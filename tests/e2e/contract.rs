//! The wire contract: what the simulator writes and what pantau emits validate against
//! `schemas/`, and every kind of bad input reaches the DLQ with its reason.

use std::collections::BTreeMap;
use std::path::Path;

use pantau_core::model::{category, DeadLetter};
use serde_json::Value;

use crate::support::{replay, simulate, truth, workspace_root};

fn validator(name: &str) -> jsonschema::Validator {
    let path = workspace_root().join("schemas").join(name);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file"))
        .expect("schema is JSON");
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{name} is not a valid schema: {e}"))
}

fn assert_lines_valid(file: &Path, schema: &str, skip: &dyn Fn(&str) -> bool) -> usize {
    let v = validator(schema);
    let text = std::fs::read_to_string(file).expect("file");
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        if skip(line) {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), i + 1));
        let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{}:{} breaks {schema}: {errors:?}",
            file.display(),
            i + 1
        );
        n += 1;
    }
    n
}

/// The records the simulator broke on purpose: raw line and expected reason.
fn injected_malformed(history: &Path) -> Vec<(String, String)> {
    truth(history)
        .into_iter()
        .filter(|t| t.category == category::MALFORMED)
        .map(|t| {
            let text = |key: &str| {
                t.params
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (text("raw"), text("reason"))
        })
        .collect()
}

#[test]
fn simulated_records_alerts_and_dead_letters_match_the_schemas() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    simulate(
        &history,
        &[
            "--months",
            "1",
            "--scale",
            "0.3",
            "--malformed",
            "16",
            "--seed",
            "7",
        ],
    );
    let malformed: Vec<String> = injected_malformed(&history)
        .into_iter()
        .map(|(raw, _)| raw)
        .collect();
    assert_eq!(malformed.len(), 16);
    let is_malformed = |line: &str| line.trim().is_empty() || malformed.iter().any(|m| m == line);
    for (file, schema) in [
        ("transactions.jsonl", "transaction.json"),
        ("disbursements.jsonl", "disbursement.json"),
        ("transfers.jsonl", "transfer.json"),
        ("outlets.jsonl", "outlet.json"),
        ("truth.jsonl", "truth.json"),
    ] {
        let n = assert_lines_valid(&history.join(file), schema, &is_malformed);
        assert!(n > 0, "{file} is empty");
    }
    let out = tmp.path().join("out");
    let (alerts, dead) = replay(&history, &out, &[]);
    assert!(!alerts.is_empty(), "a simulated month raises alerts");
    assert_lines_valid(&out.join("alerts.jsonl"), "alert.json", &|_| false);
    assert_eq!(
        assert_lines_valid(&out.join("dlq.jsonl"), "dlq.json", &|_| false),
        dead.len()
    );
}

#[test]
fn every_kind_of_bad_input_reaches_the_dlq_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    simulate(
        &history,
        &[
            "--months",
            "1",
            "--scale",
            "0.2",
            "--malformed",
            "24",
            "--seed",
            "11",
        ],
    );
    let injected = injected_malformed(&history);
    let reasons: std::collections::BTreeSet<&str> =
        injected.iter().map(|(_, r)| r.as_str()).collect();
    for expected in [
        "invalid_json",
        "missing_field",
        "wrong_type",
        "unknown_bank",
        "unknown_payment",
        "non_positive_amount",
        "time_without_offset",
        "future",
        "empty_message",
        "before_program",
    ] {
        assert!(
            reasons.contains(expected),
            "the simulator injected no {expected}"
        );
    }
    let (_, dead) = replay(&history, &tmp.path().join("out"), &[]);
    let mut dead_by_raw: BTreeMap<&str, Vec<&DeadLetter>> = BTreeMap::new();
    for d in &dead {
        dead_by_raw.entry(d.original.as_str()).or_default().push(d);
    }
    for (raw, reason) in &injected {
        let found = dead_by_raw
            .get(raw.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(
            found.iter().any(|d| &d.reason == reason
                && !d.error.is_empty()
                && d.topic.starts_with("bpnt.")),
            "{raw:?} ({reason}) did not reach the DLQ with that reason: {found:?}"
        );
    }
    // Nothing valid went there: every dead letter is an injected bad record.
    assert_eq!(
        dead.len(),
        injected.len(),
        "unexpected dead letters: {:?}",
        dead.iter()
            .filter(|d| !injected.iter().any(|(r, _)| r == &d.original))
            .collect::<Vec<_>>()
    );
    // And the schemas agree that each one that is JSON at all is invalid.
    let tx = validator("transaction.json");
    let disb = validator("disbursement.json");
    for d in &dead {
        // A time past its receipt, or before the program, is a well-formed record with a
        // wrong clock: the schema describes the shape, pantau judges the clock.
        if ["future", "before_program"].contains(&d.reason.as_str()) {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&d.original) {
            let schema = if d.topic == "bpnt.disbursements" {
                &disb
            } else {
                &tx
            };
            assert!(
                !schema.is_valid(&v),
                "schema accepts {} rejected as {}",
                d.original,
                d.reason
            );
        }
    }
}
