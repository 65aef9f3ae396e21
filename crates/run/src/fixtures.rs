//! `pantau rules test DIR`: rule fixtures run as tests.
//!
//! A fixture is a folder under `DIR/tests/`: a small replayable history (any of
//! `transactions.jsonl`, `disbursements.jsonl`, `transfers.jsonl`, `outlets.jsonl`, and
//! optionally a `snooze.csv`), a `fixture.json` naming the rules it checks, and
//! `expected.jsonl`, the alerts those rules must raise on it: each line a `rule_id`,
//! `entity_id` and `window_start`, and optionally `evidence` figures that must match and
//! a text the summary must contain. The folder's whole rule set runs (views and all), as
//! in production; only the named rules' alerts are compared, and they must be exactly
//! the expected ones. Every rule of `DIR` must be named by some fixture.
//! `--update` rewrites `expected.jsonl` from what the rules raise now, for review.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::pipeline::replay_alerts;
use pantau_core::jsonl::read_jsonl;
use pantau_core::model::{Alert, Truth};
use pantau_engine::engine::EngineConfig;
use pantau_engine::rules::{self, RuleSet};
use pantau_sim::eval::{evaluate, CategoryRow};

/// `fixture.json`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FixtureSpec {
    /// Rule ids whose alerts this fixture checks. Other keys (a `description` for
    /// people) are not read.
    pub rules: Vec<String>,
}

/// One line of `expected.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    pub rule_id: String,
    pub entity_id: String,
    pub window_start: DateTime<FixedOffset>,
    /// Figures the alert's evidence must hold (numbers to a relative 1e-6).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub evidence: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_contains: Option<String>,
}

type Key = (String, String, i64);

fn key_of(rule_id: &str, entity_id: &str, start: &DateTime<FixedOffset>) -> Key {
    (
        rule_id.to_string(),
        entity_id.to_string(),
        start.timestamp_micros(),
    )
}

fn same_value(expected: &Value, actual: &Value) -> bool {
    match (expected.as_f64(), actual.as_f64()) {
        (Some(e), Some(a)) => (e - a).abs() <= 1e-6 * e.abs().max(a.abs()).max(1.0),
        _ => expected == actual,
    }
}

/// What one fixture found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub name: String,
    pub expected: usize,
    /// The alerts scored against the fixture's `truth.jsonl`, when it has one.
    pub truth: Option<CategoryRow>,
    pub missing: Vec<Expected>,
    pub unexpected: Vec<Alert>,
    /// Alert id and what differs.
    pub differing: Vec<(String, String)>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.differing.is_empty()
    }

    pub fn report(&self) -> String {
        let mut out = String::new();
        let truth = match &self.truth {
            Some(r) => format!(
                "; against truth.jsonl: found {} of {} injected, {} of {} alerts true",
                r.detected, r.truths, r.true_alerts, r.alerts
            ),
            None => String::new(),
        };
        if self.passed() {
            let _ = writeln!(out, "ok    {} ({} alerts{truth})", self.name, self.expected);
            return out;
        }
        let _ = writeln!(out, "FAIL  {}", self.name);
        for m in &self.missing {
            let _ = writeln!(
                out,
                "      missing:    {} {} window {}",
                m.rule_id, m.entity_id, m.window_start
            );
        }
        for a in &self.unexpected {
            let _ = writeln!(
                out,
                "      unexpected: {} {} window {} — {}",
                a.rule_id, a.entity_id, a.window_start, a.summary
            );
        }
        for (id, what) in &self.differing {
            let _ = writeln!(out, "      differs:    alert {id}: {what}");
        }
        out
    }
}

/// The fixture folders of a rules folder, in name order.
pub(crate) fn fixture_dirs(rules_dir: &Path) -> Result<Vec<PathBuf>> {
    let tests = rules_dir.join("tests");
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(&tests) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("fixture.json").is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    dirs.sort();
    Ok(dirs)
}

/// Compares what the checked rules raised with what is expected.
pub fn compare(name: &str, expected: Vec<Expected>, actual: &[Alert]) -> Outcome {
    let mut by_key: BTreeMap<Key, &Alert> = actual
        .iter()
        .map(|a| (key_of(&a.rule_id, &a.entity_id, &a.window_start), a))
        .collect();
    let mut outcome = Outcome {
        name: name.to_string(),
        expected: expected.len(),
        ..Outcome::default()
    };
    for e in expected {
        let Some(alert) = by_key.remove(&key_of(&e.rule_id, &e.entity_id, &e.window_start)) else {
            outcome.missing.push(e);
            continue;
        };
        for (field, want) in &e.evidence {
            match alert.evidence.get(field) {
                Some(got) if same_value(want, got) => {}
                got => outcome.differing.push((
                    alert.alert_id.clone(),
                    format!("evidence {field} is {got:?}, expected {want}"),
                )),
            }
        }
        if let Some(text) = &e.summary_contains {
            if !alert.summary.contains(text.as_str()) {
                outcome.differing.push((
                    alert.alert_id.clone(),
                    format!("summary {:?} does not contain {text:?}", alert.summary),
                ));
            }
        }
    }
    outcome.unexpected = by_key.into_values().cloned().collect();
    outcome
}

fn expected_of(alert: &Alert) -> Expected {
    Expected {
        rule_id: alert.rule_id.clone(),
        entity_id: alert.entity_id.clone(),
        window_start: alert.window_start,
        evidence: alert.evidence.clone(),
        summary_contains: None,
    }
}

/// Runs one fixture; with `update`, writes what the rules raise as its expectation.
pub(crate) async fn run_fixture(
    rules_dir: &Path,
    set: &RuleSet,
    fixture: &Path,
    update: bool,
) -> Result<(FixtureSpec, Outcome)> {
    let spec_path = fixture.join("fixture.json");
    let text = std::fs::read_to_string(&spec_path)
        .map_err(pantau_core::error::Error::file("read", &spec_path))?;
    let spec: FixtureSpec = serde_json::from_str(&text).map_err(|e| Error::Fixture {
        path: spec_path.clone(),
        problem: format!("not a fixture spec: {e}"),
    })?;
    for id in &spec.rules {
        if !set.rules.iter().any(|r| &r.id == id) {
            return Err(Error::Fixture {
                path: spec_path,
                problem: format!(
                    "names rule {id:?}, which {} does not have",
                    rules_dir.display()
                ),
            });
        }
    }
    let snooze = Some(fixture.join("snooze.csv")).filter(|p| p.is_file());
    let mut actual = replay_alerts(
        fixture,
        &EngineConfig::for_rule_author(Some(rules_dir), snooze),
        set.clone(),
    )
    .await?;
    actual.retain(|a| spec.rules.contains(&a.rule_id));
    actual.sort_by_key(|a| key_of(&a.rule_id, &a.entity_id, &a.window_start));
    let expected_path = fixture.join("expected.jsonl");
    if update {
        let mut text = String::new();
        for a in &actual {
            text.push_str(&serde_json::to_string(&expected_of(a)).map_err(|source| {
                pantau_core::error::Error::Encode {
                    what: "an expected alert",
                    source,
                }
            })?);
            text.push('\n');
        }
        std::fs::write(&expected_path, text)
            .map_err(pantau_core::error::Error::file("write", &expected_path))?;
    }
    let expected: Vec<Expected> = if expected_path.is_file() {
        read_jsonl(&expected_path)?
    } else {
        Vec::new()
    };
    let name = fixture
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut outcome = compare(&name, expected, &actual);
    let truth_path = fixture.join("truth.jsonl");
    if truth_path.is_file() {
        let categories: BTreeSet<&str> = set
            .rules
            .iter()
            .filter(|r| spec.rules.contains(&r.id))
            .map(|r| r.category.as_str())
            .collect();
        let truth: Vec<Truth> = read_jsonl::<Truth>(&truth_path)?
            .into_iter()
            .filter(|t| categories.contains(t.category.as_str()))
            .collect();
        outcome.truth = Some(evaluate(&truth, &actual).overall);
    }
    Ok((spec, outcome))
}

/// What `pantau rules test` found over a rules folder.
#[derive(Debug)]
pub struct TestRun {
    pub fixtures: usize,
    pub failed: usize,
    pub rules: usize,
    /// Rules no fixture names.
    pub uncovered: Vec<String>,
}

impl TestRun {
    pub fn passed(&self) -> bool {
        self.failed == 0 && self.uncovered.is_empty()
    }

    /// What follows the fixtures' own reports: the rules without a fixture, then the count.
    pub fn report(&self, rules_dir: &Path) -> String {
        let mut out = String::new();
        for id in &self.uncovered {
            out += &format!(
                "FAIL  rule {id} has no fixture (add a folder under {}/tests/)\n",
                rules_dir.display()
            );
        }
        out += &format!(
            "{} fixtures, {} failed; {} of {} rules covered\n",
            self.fixtures,
            self.failed,
            self.rules - self.uncovered.len(),
            self.rules
        );
        out
    }
}

/// `pantau rules test DIR`: runs every fixture, handing each outcome to `on_fixture` as
/// it is known (a run takes seconds), and says which rules no fixture covers.
pub async fn run(
    rules_dir: &Path,
    update: bool,
    mut on_fixture: impl FnMut(&Outcome),
) -> Result<TestRun> {
    let set = rules::load_dir(rules_dir)?;
    let dirs = fixture_dirs(rules_dir)?;
    let mut failed = 0;
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for dir in &dirs {
        let (spec, outcome) = run_fixture(rules_dir, &set, dir, update).await?;
        on_fixture(&outcome);
        if !outcome.passed() {
            failed += 1;
        }
        covered.extend(spec.rules);
    }
    let uncovered = set
        .rules
        .iter()
        .map(|r| r.id.clone())
        .filter(|id| !covered.contains(id))
        .collect();
    Ok(TestRun {
        fixtures: dirs.len(),
        failed,
        rules: set.rules.len(),
        uncovered,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, entity: &str, start: &str, evidence: Value) -> Alert {
        let at = DateTime::parse_from_rfc3339(start).unwrap();
        Alert {
            alert_id: format!("{rule}-{entity}"),
            rule_id: rule.into(),
            rule_version: "v".into(),
            category: rule.into(),
            severity: pantau_core::model::Severity::Medium,
            entity_type: "outlet".into(),
            entity_id: entity.into(),
            regency_code: "3604".into(),
            window_start: at,
            window_end: at,
            detected_at: at,
            score: 1.0,
            title: String::new(),
            summary: "Harga 20% di atas median".into(),
            evidence: evidence.as_object().cloned().unwrap_or_default(),
            shadow: false,
        }
    }

    #[test]
    fn compares_by_rule_entity_and_window_and_checks_the_named_figures() {
        let start = "2023-01-05T00:00:00+07:00";
        let actual = vec![
            alert(
                "r",
                "O-1",
                start,
                serde_json::json!({"ratio": 1.2000000001}),
            ),
            alert("r", "O-2", start, serde_json::json!({})),
        ];
        let e1 = expected_of(&actual[0]);
        assert!(compare("f", vec![e1.clone(), expected_of(&actual[1])], &actual).passed());

        let mut wrong = e1.clone();
        wrong
            .evidence
            .insert("ratio".into(), serde_json::json!(1.5));
        wrong.summary_contains = Some("30%".into());
        let missing = Expected {
            entity_id: "O-3".into(),
            ..e1
        };
        let outcome = compare("f", vec![wrong, missing], &actual);
        assert_eq!(outcome.missing.len(), 1);
        assert_eq!(outcome.unexpected.len(), 1);
        assert_eq!(outcome.differing.len(), 2, "{:?}", outcome.differing);
        let text = outcome.report();
        assert!(text.contains("FAIL  f") && text.contains("O-3") && text.contains("30%"));
    }
}
