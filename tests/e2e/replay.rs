//! Replaying a history folder: injected anomalies are found, and the alerts do not depend
//! on how the input was batched.

use pantau_sim::eval::evaluate;

use crate::support::{comparable, replay, simulate, truth};

/// The bar, on a smaller world than the README's province-size year: five
/// regencies of one province over six months, every pattern injected often enough that
/// one miss is not the whole figure. Every category must reach recall 0.95 and
/// precision 0.90, with no valid record dead-lettered.
#[test]
fn every_category_meets_the_recall_and_precision_bar_on_a_small_province() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    simulate(
        &history,
        &[
            "--regencies",
            "3601,3602,3603,3604,3672",
            "--months",
            "6",
            "--seed",
            "11",
            "--realization-lag-rate",
            "0.2",
            "--supplier-rings",
            "3",
        ],
    );
    let (alerts, dead) = replay(&history, &tmp.path().join("out"), &[]);
    assert!(
        dead.is_empty(),
        "valid records reached the DLQ: {:?}",
        &dead[..dead.len().min(3)]
    );
    let report = evaluate(&truth(&history), &alerts);
    for row in &report.rows {
        assert!(row.truths > 0, "no {} injected:\n{report}", row.category);
    }
    assert_eq!(report.rows.len(), 13, "a category is missing:\n{report}");
    if let Err(e) = report.check(Some(0.95), Some(0.90)) {
        panic!("{e:#}\n{report}{}", report.misses_text());
    }
}

#[test]
fn alerts_do_not_depend_on_batch_size() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    simulate(
        &history,
        &["--months", "1", "--scale", "0.5", "--seed", "3"],
    );
    let (big, _) = replay(&history, &tmp.path().join("big"), &["--batch-size", "8192"]);
    let (small, _) = replay(&history, &tmp.path().join("small"), &["--batch-size", "97"]);
    assert!(!big.is_empty());
    assert_eq!(comparable(&big), comparable(&small));
}

/// A terminal whose clock says 2099, and one reset to 1970, in the middle of the
/// stream: before, the 2099 record ran the watermark to 2099 and sent the rest of the
/// history to the DLQ as `late`. Now each is dead-lettered with its own reason and the
/// alerts are those of the history without them.
#[test]
fn a_record_dated_2099_or_1970_changes_no_alert() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    let poisoned = tmp.path().join("poisoned");
    let world = ["--months", "2", "--scale", "0.3", "--seed", "9"];
    simulate(&clean, &world);
    simulate(&poisoned, &[&world[..], &["--malformed", "10"]].concat());
    let (expected, clean_dead) = replay(&clean, &tmp.path().join("clean-out"), &[]);
    assert!(!expected.is_empty());
    assert!(clean_dead.is_empty(), "{:?}", &clean_dead[..1]);
    let (alerts, dead) = replay(&poisoned, &tmp.path().join("poisoned-out"), &[]);
    assert_eq!(comparable(&alerts), comparable(&expected));
    let mut reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    reasons.sort();
    let mut injected: Vec<&str> = pantau_sim::MALFORMED_REASONS.to_vec();
    injected.sort();
    assert_eq!(
        reasons, injected,
        "exactly the injected records are dead letters"
    );
    for (reason, year) in [("future", "2099-"), ("before_program", "1970-")] {
        let d = dead.iter().find(|d| d.reason == reason).unwrap();
        assert_eq!(d.topic, "bpnt.transactions");
        assert!(d.original.contains(year) && d.error.contains(year), "{d:?}");
    }
}
