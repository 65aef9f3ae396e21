//! `pantau eval`: how well the alerts of a replay find what the simulator injected.
//!
//! An alert finds a truth line when both have the same category, name the same entity
//! and their time spans overlap. "Same entity" is generous where the two sides describe
//! one anomaly at different grains: an alert on any outlet of a supplier ring (or whose
//! evidence lists one in `outlets`) finds the ring, and an alert on the outlet of a
//! terminal (or whose evidence names it as `outlet_id`) finds the terminal.
//!
//! Two kinds of truth lines are reference counts rather than alert targets, so they are
//! counted beside the table instead of in it: `malformed` lines describe the dead-letter
//! queue, and `non_transacting` lines about single cards are the KPM who never spent
//! (thousands of them; pantau reports them as counts per outlet and district, and alerts
//! on the outlets where they pile up).
//!
//! Delays are measured in event time (`window_end` − truth `start`): `detected_at` is the
//! wall clock of whichever machine replayed the history.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use pantau_core::jsonl::read_jsonl;
use pantau_core::model::{category, Alert, Truth};

use crate::error::{Error, Result};

/// What `pantau eval` scores and how strictly.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// The simulated history folder holding `truth.jsonl`.
    pub dir: PathBuf,
    /// The alerts raised on that history (JSON lines).
    pub alerts: PathBuf,
    /// Where the figures are also written as JSON.
    pub json: Option<PathBuf>,
    /// The lowest recall (0 to 1) a category with truth lines may have.
    pub min_recall: Option<f64>,
    /// The lowest precision (0 to 1) a category with alerts may have.
    pub min_precision: Option<f64>,
    /// List the missed truth lines and the unmatched alerts.
    pub show_misses: bool,
    /// The same replay's dead-letter file, set beside the injected malformed records.
    pub dlq: Option<PathBuf>,
}

/// Detection figures of one category (or of its card-level lines, or of everything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryRow {
    /// Alert category, `<category>/card` for card-level lines, or `overall`.
    pub category: String,
    /// Truth lines injected.
    pub truths: usize,
    /// Truth lines found by at least one alert.
    pub detected: usize,
    /// Alerts raised.
    pub alerts: usize,
    /// Alerts that found at least one truth line.
    pub true_alerts: usize,
    /// Over the detected truth lines: earliest matching `window_end` − truth `start`.
    pub median_delay_hours: Option<f64>,
    pub max_delay_hours: Option<f64>,
}

impl CategoryRow {
    fn empty(category: &str) -> CategoryRow {
        CategoryRow {
            category: category.to_string(),
            truths: 0,
            detected: 0,
            alerts: 0,
            true_alerts: 0,
            median_delay_hours: None,
            max_delay_hours: None,
        }
    }

    /// Detected / truths; 0 when nothing was injected (see `truths` before judging).
    pub fn recall(&self) -> f64 {
        ratio(self.detected, self.truths)
    }

    /// True alerts / alerts; 0 when nothing was raised (see `alerts` before judging).
    pub fn precision(&self) -> f64 {
        ratio(self.true_alerts, self.alerts)
    }
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// A truth line no alert found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Missed {
    pub category: String,
    pub entity_type: String,
    pub entity_id: String,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
}

/// An alert that found no truth line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FalseAlert {
    pub category: String,
    pub entity_type: String,
    pub entity_id: String,
    pub window_start: DateTime<FixedOffset>,
    pub window_end: DateTime<FixedOffset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// One row per category (and card level), sorted by name.
    pub rows: Vec<CategoryRow>,
    /// All rows together; the delays are over every detected truth line.
    pub overall: CategoryRow,
    /// `malformed` truth lines, left out of the rows: they belong to the DLQ.
    pub malformed_truths: usize,
    /// `non_transacting` truth lines about single cards, left out of the rows.
    pub non_transacting_cards: usize,
    /// In truth-file order.
    pub missed: Vec<Missed>,
    /// In alert-file order.
    pub false_alerts: Vec<FalseAlert>,
}

impl Report {
    pub fn row(&self, category: &str) -> Option<&CategoryRow> {
        self.rows.iter().find(|r| r.category == category)
    }

    /// Fails naming every category whose recall (among those with truth lines) or
    /// precision (among those with alerts) is under its bound.
    pub fn check(&self, min_recall: Option<f64>, min_precision: Option<f64>) -> Result<()> {
        let mut failures = Vec::new();
        for r in &self.rows {
            if let Some(min) = min_recall.filter(|&m| r.truths > 0 && r.recall() < m) {
                failures.push(format!(
                    "{}: recall {:.3} ({}/{}) is below {min}",
                    r.category,
                    r.recall(),
                    r.detected,
                    r.truths
                ));
            }
            if let Some(min) = min_precision.filter(|&m| r.alerts > 0 && r.precision() < m) {
                failures.push(format!(
                    "{}: precision {:.3} ({}/{}) is below {min}",
                    r.category,
                    r.precision(),
                    r.true_alerts,
                    r.alerts
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::BelowBounds { failures })
        }
    }

    /// The missed truth lines and false alerts, one a line.
    pub fn misses_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("missed truth lines ({}):\n", self.missed.len()));
        for m in &self.missed {
            out.push_str(&format!(
                "  {} {} {} from {}\n",
                m.category,
                m.entity_type,
                m.entity_id,
                m.start.format("%Y-%m-%d %H:%M%:z")
            ));
        }
        out.push_str(&format!("false alerts ({}):\n", self.false_alerts.len()));
        for a in &self.false_alerts {
            out.push_str(&format!(
                "  {} {} {} [{}, {})\n",
                a.category,
                a.entity_type,
                a.entity_id,
                a.window_start.format("%Y-%m-%d %H:%M%:z"),
                a.window_end.format("%Y-%m-%d %H:%M%:z")
            ));
        }
        out
    }
}

/// The aligned table: one line per row, a rule, then the overall line.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .rows
            .iter()
            .map(|r| r.category.len())
            .chain(["category".len(), self.overall.category.len()])
            .max()
            .unwrap_or(0);
        let header = format!(
            "{:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>9}  {:>14}  {:>11}",
            "category",
            "truths",
            "found",
            "recall",
            "alerts",
            "true",
            "precision",
            "median delay h",
            "max delay h"
        );
        writeln!(f, "{header}")?;
        let line = |r: &CategoryRow| {
            format!(
                "{:<width$}  {:>6}  {:>6}  {:>6}  {:>6}  {:>6}  {:>9}  {:>14}  {:>11}",
                r.category,
                r.truths,
                r.detected,
                fraction(r.detected, r.truths),
                r.alerts,
                r.true_alerts,
                fraction(r.true_alerts, r.alerts),
                hours(r.median_delay_hours),
                hours(r.max_delay_hours)
            )
        };
        for r in &self.rows {
            writeln!(f, "{}", line(r))?;
        }
        writeln!(f, "{}", "-".repeat(header.len()))?;
        writeln!(f, "{}", line(&self.overall))
    }
}

/// A dash instead of 0 where there is nothing to divide, so "none found" and "none to
/// find" read differently.
fn fraction(n: usize, d: usize) -> String {
    if d == 0 {
        "-".to_string()
    } else {
        format!("{:.3}", n as f64 / d as f64)
    }
}

fn hours(h: Option<f64>) -> String {
    h.map_or_else(|| "-".to_string(), |h| format!("{h:.1}"))
}

fn evidence_str<'a>(alert: &'a Alert, key: &str) -> Option<&'a str> {
    alert.evidence.get(key).and_then(|v| v.as_str())
}

fn evidence_outlets(alert: &Alert) -> impl Iterator<Item = &str> {
    alert
        .evidence
        .get("outlets")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
}

/// The outlet a terminal truth line belongs to.
fn terminal_outlet(truth: &Truth) -> Option<&str> {
    if truth.entity_type == "terminal" {
        truth.params.get("outlet_id").and_then(|v| v.as_str())
    } else {
        None
    }
}

/// Ids under which a truth line can be found: the index `evaluate` probes.
fn truth_keys(truth: &Truth) -> impl Iterator<Item = &str> {
    std::iter::once(truth.entity_id.as_str())
        .chain(truth.outlets.iter().map(String::as_str))
        .chain(terminal_outlet(truth))
}

/// Ids an alert can find a truth line under; a superset, `matches` decides.
fn alert_keys(alert: &Alert) -> impl Iterator<Item = &str> {
    std::iter::once(alert.entity_id.as_str())
        .chain(evidence_outlets(alert))
        .chain(evidence_str(alert, "outlet_id"))
}

/// Same category, same entity (see the module doc) and overlapping time.
pub fn matches(truth: &Truth, alert: &Alert) -> bool {
    truth.category == alert.category && same_entity(truth, alert) && overlaps(truth, alert)
}

fn same_entity(truth: &Truth, alert: &Alert) -> bool {
    if alert.entity_id == truth.entity_id || truth.outlets.contains(&alert.entity_id) {
        return true;
    }
    if evidence_outlets(alert).any(|o| truth.outlets.iter().any(|t| t == o)) {
        return true;
    }
    terminal_outlet(truth).is_some_and(|outlet| {
        alert.entity_id == outlet || evidence_str(alert, "outlet_id") == Some(outlet)
    })
}

/// The alert window is half-open, the truth span closed.
fn overlaps(truth: &Truth, alert: &Alert) -> bool {
    alert.window_start <= truth.end && alert.window_end > truth.start
}

fn delay_hours(truth: &Truth, first_end: DateTime<FixedOffset>) -> f64 {
    (first_end - truth.start).num_milliseconds() as f64 / 3_600_000.0
}

/// Median and maximum; `None` for no values.
fn median_max(mut values: Vec<f64>) -> (Option<f64>, Option<f64>) {
    if values.is_empty() {
        return (None, None);
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (Some(median), values.last().copied())
}

/// Truth lines of one row, indexed by every id they can be found under.
#[derive(Default)]
struct Group<'a> {
    /// With their position in the truth file.
    truths: Vec<(usize, &'a Truth)>,
    by_key: HashMap<&'a str, Vec<usize>>,
    first_end: Vec<Option<DateTime<FixedOffset>>>,
    alerts: usize,
    true_alerts: usize,
}

/// Scores alerts against the simulator's truth lines. Pure: the same inputs always give
/// the same report, whatever order the alerts come in.
pub fn evaluate(truth: &[Truth], alerts: &[Alert]) -> Report {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut malformed_truths = 0;
    let mut non_transacting_cards = 0;
    for (line, t) in truth.iter().enumerate() {
        if t.category == category::MALFORMED {
            malformed_truths += 1;
            continue;
        }
        if t.category == category::NON_TRANSACTING && t.entity_type == "card" {
            non_transacting_cards += 1;
            continue;
        }
        let g = groups.entry(t.category.clone()).or_default();
        let i = g.truths.len();
        g.truths.push((line, t));
        g.first_end.push(None);
        for key in truth_keys(t) {
            let ids = g.by_key.entry(key).or_default();
            // A ring may list an outlet under two keys; one entry per line is enough.
            if ids.last() != Some(&i) {
                ids.push(i);
            }
        }
    }

    let mut false_alerts = Vec::new();
    let mut candidates = Vec::new();
    for a in alerts {
        let g = groups.entry(a.category.clone()).or_default();
        g.alerts += 1;
        candidates.clear();
        for key in alert_keys(a) {
            candidates.extend(g.by_key.get(key).into_iter().flatten().copied());
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut found = false;
        for &i in &candidates {
            if matches(g.truths[i].1, a) {
                found = true;
                let first = &mut g.first_end[i];
                if first.is_none_or(|e| a.window_end < e) {
                    *first = Some(a.window_end);
                }
            }
        }
        if found {
            g.true_alerts += 1;
        } else {
            false_alerts.push(FalseAlert {
                category: a.category.clone(),
                entity_type: a.entity_type.clone(),
                entity_id: a.entity_id.clone(),
                window_start: a.window_start,
                window_end: a.window_end,
            });
        }
    }

    let mut rows = Vec::with_capacity(groups.len());
    let mut overall = CategoryRow::empty("overall");
    let mut all_delays = Vec::new();
    let mut missed: Vec<(usize, Missed)> = Vec::new();
    for (key, g) in &groups {
        let mut delays = Vec::new();
        for (&(line, t), first) in g.truths.iter().zip(&g.first_end) {
            match first {
                Some(end) => delays.push(delay_hours(t, *end)),
                None => missed.push((
                    line,
                    Missed {
                        category: t.category.clone(),
                        entity_type: t.entity_type.clone(),
                        entity_id: t.entity_id.clone(),
                        start: t.start,
                        end: t.end,
                    },
                )),
            }
        }
        all_delays.extend_from_slice(&delays);
        let (median, max) = median_max(delays);
        let row = CategoryRow {
            category: key.clone(),
            truths: g.truths.len(),
            detected: g.first_end.iter().filter(|e| e.is_some()).count(),
            alerts: g.alerts,
            true_alerts: g.true_alerts,
            median_delay_hours: median,
            max_delay_hours: max,
        };
        overall.truths += row.truths;
        overall.detected += row.detected;
        overall.alerts += row.alerts;
        overall.true_alerts += row.true_alerts;
        rows.push(row);
    }
    (overall.median_delay_hours, overall.max_delay_hours) = median_max(all_delays);
    // Rows group the lines; the listing follows the file, which is easier to look up.
    missed.sort_by_key(|(line, _)| *line);
    Report {
        rows,
        overall,
        malformed_truths,
        non_transacting_cards,
        missed: missed.into_iter().map(|(_, m)| m).collect(),
        false_alerts,
    }
}

/// What `--json` writes: the report with recall and precision spelled out (null where
/// there is nothing to divide).
#[derive(Serialize)]
struct JsonReport<'a> {
    categories: Vec<JsonRow<'a>>,
    overall: JsonRow<'a>,
    malformed_truths: usize,
    non_transacting_cards: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letters: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    missed: Option<&'a [Missed]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    false_alerts: Option<&'a [FalseAlert]>,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    #[serde(flatten)]
    row: &'a CategoryRow,
    recall: Option<f64>,
    precision: Option<f64>,
}

impl<'a> JsonRow<'a> {
    fn new(row: &'a CategoryRow) -> JsonRow<'a> {
        JsonRow {
            row,
            recall: (row.truths > 0).then(|| row.recall()),
            precision: (row.alerts > 0).then(|| row.precision()),
        }
    }
}

/// Non-empty lines of a JSON-lines file; dead letters need not parse to be counted.
fn count_lines(path: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file("read", path, e))?;
    Ok(text.lines().filter(|l| !l.trim().is_empty()).count())
}

/// What `pantau eval` found, as it prints: the table, the dead letters beside the
/// malformed records injected, and the misses when asked for.
#[derive(Debug)]
pub struct Evaluation {
    pub report: Report,
    /// Lines of `--dlq`, when given.
    pub dead_letters: Option<(PathBuf, usize)>,
    pub show_misses: bool,
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let report = &self.report;
        write!(f, "{report}")?;
        match &self.dead_letters {
            Some((path, n)) => writeln!(
                f,
                "dead letters: {n} in {}, {} malformed records injected",
                path.display(),
                report.malformed_truths
            )?,
            None if report.malformed_truths > 0 => writeln!(
                f,
                "{} malformed records injected (pass --dlq to compare with the dead letters)",
                report.malformed_truths
            )?,
            None => {}
        }
        if report.non_transacting_cards > 0 {
            writeln!(
                f,
                "{} KPM-periods injected as non-transacting (reference counts, not alert targets)",
                report.non_transacting_cards
            )?;
        }
        if self.show_misses {
            write!(f, "{}", report.misses_text())?;
        }
        Ok(())
    }
}

/// `pantau eval`: scores the alerts against the history's truth and writes `--json` when
/// asked; the caller prints the result and then checks the bounds
/// ([`Report::check`]).
pub fn run(config: &EvalConfig) -> Result<Evaluation> {
    let truth_path = config.dir.join("truth.jsonl");
    if !truth_path.is_file() {
        return Err(Error::NotAHistory { truth: truth_path });
    }
    let truth: Vec<Truth> = read_jsonl(&truth_path)?;
    let alerts: Vec<Alert> = read_jsonl(&config.alerts)?;
    let dead_letters = config
        .dlq
        .as_deref()
        .map(|path| Ok::<_, Error>((path.to_path_buf(), count_lines(path)?)))
        .transpose()?;
    let report = evaluate(&truth, &alerts);
    if let Some(path) = &config.json {
        let json = JsonReport {
            categories: report.rows.iter().map(JsonRow::new).collect(),
            overall: JsonRow::new(&report.overall),
            malformed_truths: report.malformed_truths,
            non_transacting_cards: report.non_transacting_cards,
            dead_letters: dead_letters.as_ref().map(|(_, n)| *n),
            missed: config.show_misses.then_some(report.missed.as_slice()),
            false_alerts: config.show_misses.then_some(report.false_alerts.as_slice()),
        };
        let mut text =
            serde_json::to_string_pretty(&json).map_err(|e| Error::encode("the evaluation", e))?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| Error::file("write", path, e))?;
    }
    Ok(Evaluation {
        report,
        dead_letters,
        show_misses: config.show_misses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantau_core::jsonl::JsonLines;
    use serde_json::json;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn truth(cat: &str, entity_type: &str, id: &str, start: &str, end: &str) -> Truth {
        Truth {
            category: cat.to_string(),
            entity_type: entity_type.to_string(),
            entity_id: id.to_string(),
            regency_code: "3604".to_string(),
            start: at(start),
            end: at(end),
            outlets: Vec::new(),
            params: serde_json::Map::new(),
        }
    }

    fn alert(cat: &str, entity_type: &str, id: &str, start: &str, end: &str) -> Alert {
        Alert {
            alert_id: format!("{cat}-{id}-{start}"),
            rule_id: cat.to_string(),
            rule_version: "1".to_string(),
            category: cat.to_string(),
            severity: pantau_core::model::Severity::High,
            entity_type: entity_type.to_string(),
            entity_id: id.to_string(),
            regency_code: "3604".to_string(),
            window_start: at(start),
            window_end: at(end),
            detected_at: at("2030-01-01T00:00:00+07:00"),
            score: 1.0,
            title: String::new(),
            summary: String::new(),
            evidence: serde_json::Map::new(),
            shadow: false,
        }
    }

    const D1: &str = "2024-03-01T00:00:00+07:00";
    const D2: &str = "2024-03-02T00:00:00+07:00";
    const D3: &str = "2024-03-03T00:00:00+07:00";
    const D5: &str = "2024-03-05T00:00:00+07:00";
    const D9: &str = "2024-03-09T00:00:00+07:00";

    #[test]
    fn exact_match_is_found_and_true() {
        let t = [truth("seasonal_outlet", "outlet", "O1", D1, D5)];
        let a = [alert("seasonal_outlet", "outlet", "O1", D2, D3)];
        let r = evaluate(&t, &a);
        let row = r.row("seasonal_outlet").unwrap();
        assert_eq!(
            (row.truths, row.detected, row.alerts, row.true_alerts),
            (1, 1, 1, 1)
        );
        assert_eq!((row.recall(), row.precision()), (1.0, 1.0));
        assert!(r.missed.is_empty() && r.false_alerts.is_empty());
    }

    #[test]
    fn wrong_category_neither_finds_nor_counts_as_true() {
        let t = [truth("price_markup", "outlet", "O1", D1, D5)];
        let a = [alert("short_quantity", "outlet", "O1", D2, D3)];
        let r = evaluate(&t, &a);
        let markup = r.row("price_markup").unwrap();
        assert_eq!((markup.detected, markup.alerts), (0, 0));
        let short = r.row("short_quantity").unwrap();
        assert_eq!((short.truths, short.alerts, short.true_alerts), (0, 1, 0));
        assert_eq!(r.missed.len(), 1);
        assert_eq!(r.false_alerts.len(), 1);
    }

    #[test]
    fn spans_that_do_not_overlap_do_not_match() {
        let t = [truth("price_markup", "outlet", "O1", D2, D3)];
        // Ends exactly where the truth starts: the window is half-open.
        let before = alert("price_markup", "outlet", "O1", D1, D2);
        let after = alert("price_markup", "outlet", "O1", D5, D9);
        let r = evaluate(&t, &[before, after]);
        let row = r.row("price_markup").unwrap();
        assert_eq!((row.detected, row.true_alerts, row.alerts), (0, 0, 2));
        // A window starting on the truth's last instant still overlaps.
        let r = evaluate(&t, &[alert("price_markup", "outlet", "O1", D3, D5)]);
        assert_eq!(r.row("price_markup").unwrap().detected, 1);
    }

    #[test]
    fn ring_is_found_through_any_member_outlet() {
        let mut ring = truth("supplier_dependent", "ring", "CP9", D1, D9);
        ring.outlets = vec!["O1".to_string(), "O2".to_string(), "O3".to_string()];
        let member = alert("supplier_dependent", "outlet", "O2", D2, D3);
        let supplier = alert("supplier_dependent", "counterparty", "CP9", D2, D5);
        let mut listing = alert("supplier_dependent", "counterparty", "CPX", D2, D5);
        listing
            .evidence
            .insert("outlets".into(), json!(["O7", "O3"]));
        let stranger = alert("supplier_dependent", "outlet", "O4", D2, D3);
        let r = evaluate(&[ring], &[member, supplier, listing, stranger]);
        let row = r.row("supplier_dependent").unwrap();
        assert_eq!((row.detected, row.alerts, row.true_alerts), (1, 4, 3));
        assert_eq!(r.false_alerts[0].entity_id, "O4");
    }

    #[test]
    fn terminal_is_found_through_its_outlet() {
        let mut t = truth("card_collection", "terminal", "T1", D1, D2);
        t.params.insert("outlet_id".into(), json!("O1"));
        let on_outlet = alert("card_collection", "outlet", "O1", D1, D2);
        let mut on_sibling = alert("card_collection", "terminal", "T2", D1, D2);
        on_sibling.evidence.insert("outlet_id".into(), json!("O1"));
        let elsewhere = alert("card_collection", "outlet", "O2", D1, D2);
        let r = evaluate(&[t], &[on_outlet, on_sibling, elsewhere]);
        let row = r.row("card_collection").unwrap();
        assert_eq!((row.detected, row.true_alerts, row.alerts), (1, 2, 3));
    }

    #[test]
    fn category_with_alerts_but_no_truth_has_zero_precision() {
        let t = [truth("seasonal_outlet", "outlet", "O1", D1, D5)];
        let a = [
            alert("paperwork_mismatch", "outlet", "O1", D1, D2),
            alert("paperwork_mismatch", "outlet", "O2", D1, D2),
        ];
        let r = evaluate(&t, &a);
        let row = r.row("paperwork_mismatch").unwrap();
        assert_eq!((row.truths, row.alerts, row.true_alerts), (0, 2, 0));
        assert_eq!(row.precision(), 0.0);
        let seasonal = r.row("seasonal_outlet").unwrap();
        assert_eq!((seasonal.recall(), seasonal.alerts), (0.0, 0));
        let table = r.to_string();
        assert!(table.contains("paperwork_mismatch"), "{table}");
        assert!(table.contains("0.000"), "{table}");
    }

    #[test]
    fn delay_is_earliest_matching_window_end_after_truth_start() {
        let t = [
            truth("price_markup", "outlet", "O1", D1, D9),
            truth("price_markup", "outlet", "O2", D1, D9),
            truth("price_markup", "outlet", "O3", D1, D9),
        ];
        let a = [
            // Later alert listed first: the earliest window_end must still win.
            alert("price_markup", "outlet", "O1", D3, D5),
            alert("price_markup", "outlet", "O1", D1, D2),
            alert("price_markup", "outlet", "O2", D2, D3),
            alert(
                "price_markup",
                "outlet",
                "O3",
                D1,
                "2024-03-05T06:00:00+07:00",
            ),
        ];
        let r = evaluate(&t, &a);
        let row = r.row("price_markup").unwrap();
        // Delays 24 h, 48 h, 102 h.
        assert_eq!(row.median_delay_hours, Some(48.0));
        assert_eq!(row.max_delay_hours, Some(102.0));
        assert_eq!(r.overall.median_delay_hours, Some(48.0));
    }

    #[test]
    fn delay_respects_utc_offsets() {
        // 00:00 WITA is 23:00 WIB of the day before: one hour after the truth start.
        let t = [truth(
            "seasonal_outlet",
            "outlet",
            "O1",
            "2024-03-01T22:00:00+07:00",
            D5,
        )];
        let a = [alert(
            "seasonal_outlet",
            "outlet",
            "O1",
            D1,
            "2024-03-02T00:00:00+08:00",
        )];
        let r = evaluate(&t, &a);
        assert_eq!(r.row("seasonal_outlet").unwrap().max_delay_hours, Some(1.0));
    }

    #[test]
    fn card_level_non_transacting_and_malformed_lines_are_counted_not_scored() {
        let t = [
            truth("non_transacting", "outlet", "O1", D1, D9),
            truth("non_transacting", "card", "C1", D1, D9),
            truth("non_transacting", "card", "C2", D1, D9),
            truth("malformed", "record", "bpnt.transactions:17", D1, D1),
        ];
        let a = [alert("non_transacting", "outlet", "O1", D1, D9)];
        let r = evaluate(&t, &a);
        assert_eq!(r.malformed_truths, 1);
        assert_eq!(r.non_transacting_cards, 2);
        assert!(r.row("malformed").is_none());
        let outlets = r.row("non_transacting").unwrap();
        assert_eq!((outlets.truths, outlets.detected), (1, 1));
        assert_eq!((r.overall.truths, r.overall.detected), (1, 1));
        assert!(r.missed.is_empty());
    }

    #[test]
    fn check_fails_naming_the_category_below_the_bound() {
        let t = [
            truth("seasonal_outlet", "outlet", "O1", D1, D5),
            truth("price_markup", "outlet", "O2", D1, D5),
            truth("price_markup", "outlet", "O3", D1, D5),
        ];
        let a = [
            alert("seasonal_outlet", "outlet", "O1", D1, D2),
            alert("price_markup", "outlet", "O2", D1, D2),
            alert("card_collection", "terminal", "T1", D1, D2),
        ];
        let r = evaluate(&t, &a);
        assert!(r.check(Some(0.5), None).is_ok());
        let err = r.check(Some(0.8), None).unwrap_err().to_string();
        assert!(err.contains("price_markup: recall 0.500 (1/2)"), "{err}");
        assert!(!err.contains("seasonal_outlet"), "{err}");
        // card_collection has no truth: it is judged on precision only.
        assert!(!err.contains("card_collection"), "{err}");
        let err = r.check(None, Some(0.9)).unwrap_err().to_string();
        assert!(
            err.contains("card_collection: precision 0.000 (0/1)"),
            "{err}"
        );
        assert!(r.check(None, None).is_ok());
    }

    #[test]
    fn run_reads_files_and_gates_on_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let t = truth("seasonal_outlet", "outlet", "O1", D1, D5);
        let a = alert("seasonal_outlet", "outlet", "O2", D1, D2);
        let mut w = JsonLines::create(&dir.path().join("truth.jsonl")).unwrap();
        w.write(&[t]).unwrap();
        w.finish().unwrap();
        let alerts = dir.path().join("alerts.jsonl");
        let mut w = JsonLines::create(&alerts).unwrap();
        w.write(&[a]).unwrap();
        w.finish().unwrap();
        let json = dir.path().join("eval.json");
        let mut config = EvalConfig {
            dir: dir.path().to_path_buf(),
            alerts: alerts.clone(),
            json: Some(json.clone()),
            min_recall: None,
            min_precision: None,
            show_misses: true,
            dlq: None,
        };
        run(&config).unwrap();
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(written["categories"][0]["category"], "seasonal_outlet");
        assert_eq!(written["categories"][0]["recall"], 0.0);
        assert_eq!(written["overall"]["alerts"], 1);
        assert_eq!(written["missed"][0]["entity_id"], "O1");

        let evaluation = run(&config).unwrap();
        assert!(evaluation.to_string().contains("seasonal_outlet"));
        let err = evaluation
            .report
            .check(Some(0.5), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("seasonal_outlet"), "{err}");

        std::fs::write(&alerts, "{\"not\": \"an alert\"}\n").unwrap();
        let err = format!("{:#}", run(&config).unwrap_err());
        assert!(err.contains("alerts.jsonl:1"), "{err}");

        config.dir = dir.path().join("missing");
        let err = run(&config).unwrap_err().to_string();
        assert!(err.contains("truth.jsonl not found"), "{err}");
    }
}
