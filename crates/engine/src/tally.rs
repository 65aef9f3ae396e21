//! What the engine counted, timed and computed since it was last asked. The engine
//! returns its figures instead of publishing them: whoever drives it ([`Engine::take_tally`])
//! turns a tally into Prometheus series (`pantau-run`'s metrics), so the engine needs no
//! registry, and a test reads the figures straight from the tally.
//!
//! Durations are stopwatch readings of the engine's own work; they never decide anything.
//!
//! [`Engine::take_tally`]: crate::engine::Engine::take_tally

use std::collections::BTreeMap;
use std::time::Duration;

/// An alert's labels: rule, category, severity, regency.
pub(crate) type AlertLabels = [String; 4];

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    /// Input records read, by topic.
    pub records_consumed: BTreeMap<&'static str, u64>,
    /// Dead letters by topic and reason.
    pub dead_letters: BTreeMap<(&'static str, String), u64>,
    /// Records older than the watermark, by topic.
    pub late_records: BTreeMap<&'static str, u64>,
    /// Redelivered records counted once, by topic.
    pub duplicates: BTreeMap<&'static str, u64>,
    pub alerts: BTreeMap<AlertLabels, u64>,
    /// Alerts of rules in shadow mode.
    pub shadow_alerts: BTreeMap<AlertLabels, u64>,
    /// Detections held back, by rule and reason (`cooldown`, `snoozed`).
    pub alerts_suppressed: BTreeMap<(String, &'static str), u64>,
    /// Evaluations skipped for a window, by rule (`view:…`, `figures:…` for those) and
    /// failure.
    pub rule_failures: BTreeMap<(String, RuleFailure), u64>,
    /// Each window closed, by its spec, with the time closing it took.
    pub windows_closed: Vec<(String, Duration)>,
    /// Each evaluation of a rule (or figure query) with the time it took.
    pub rule_evaluations: Vec<(String, Duration)>,
    /// Each batch decoded, by topic, with the time decoding took.
    pub batches_decoded: Vec<(&'static str, Duration)>,
    /// The program figures of closed days and periods, in the order computed.
    pub program: Vec<ProgramFigure>,
}

/// Why a rule (or a view, or a figure query) was skipped for a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleFailure {
    /// The query failed, or its result could not make alerts.
    Error,
    /// It ran longer than its budget.
    Timeout,
}

impl RuleFailure {
    pub(crate) fn of(error: &crate::error::RuleError) -> RuleFailure {
        match error {
            crate::error::RuleError::OverBudget(_) => RuleFailure::Timeout,
            _ => RuleFailure::Error,
        }
    }

    /// The `reason` label of `pantau_rule_failures_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleFailure::Error => "error",
            RuleFailure::Timeout => "timeout",
        }
    }
}

/// A program figure of the monitoring team's dashboards (`program` computes them).
#[derive(Debug, Clone, PartialEq)]
pub enum ProgramFigure {
    /// A closed local day's purchases of one regency and payment kind: to add.
    DayPurchases {
        regency: String,
        payment: String,
        purchases: u64,
        rupiah: u64,
    },
    /// The median KKS unit price of a closed local day: replaces the previous one.
    UnitPriceMedian {
        regency: String,
        commodity: String,
        unit: String,
        rupiah: f64,
    },
    /// A regency's current benefit period so far. `replaces`: the period it succeeds,
    /// whose series are to be dropped.
    Period {
        regency: String,
        period: String,
        replaces: Option<String>,
        credited_kpm: f64,
        spending_kpm: f64,
        credited_rupiah: f64,
        spent_rupiah: f64,
    },
}

impl Tally {
    /// Adds `by` to `key`'s count. A count of zero is kept: its series is published at
    /// zero, so a dashboard shows "none late" rather than "no data".
    pub(crate) fn count<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, by: u64) {
        *map.entry(key).or_default() += by;
    }
}
