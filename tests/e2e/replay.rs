//! Replaying a history folder: injected anomalies are found, and the alerts do not depend
//! on how the input was batched.

use pantau::model::{category, Alert, Truth};

use crate::support::{comparable, replay, simulate, truth};

fn overlaps(a: &Alert, t: &Truth) -> bool {
    a.window_start <= t.end && t.start <= a.window_end
}

fn found(alerts: &[Alert], t: &Truth) -> bool {
    alerts.iter().any(|a| {
        a.category == t.category
            && (a.entity_id == t.entity_id || t.outlets.contains(&a.entity_id))
            && overlaps(a, t)
    })
}

#[test]
fn finds_every_injected_burst_markup_and_seasonal_outlet() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    simulate(&history, &["--months", "3", "--seed", "42"]);
    let (alerts, dead) = replay(&history, &tmp.path().join("out"), &[]);
    assert!(
        dead.is_empty(),
        "valid records reached the DLQ: {:?}",
        &dead[..dead.len().min(3)]
    );
    let truth = truth(&history);
    for cat in [
        category::CARD_COLLECTION,
        category::PRICE_MARKUP,
        category::SEASONAL_OUTLET,
    ] {
        let injected: Vec<&Truth> = truth.iter().filter(|t| t.category == cat).collect();
        assert!(!injected.is_empty(), "no {cat} injected");
        let missed: Vec<&&Truth> = injected.iter().filter(|t| !found(&alerts, t)).collect();
        assert!(
            missed.is_empty(),
            "{} of {} {cat} not found: {missed:#?}",
            missed.len(),
            injected.len()
        );
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
