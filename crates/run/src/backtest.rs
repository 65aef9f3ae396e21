//! `pantau rules backtest RULE --history DIR`: one rule, new or changed, over a history
//! folder before it goes live.
//!
//! The candidate runs beside the live version of the same rule id (from `--rules`), in
//! one replay, with the rules folder's views. The report gives the alerts by district and
//! by ISO week for both, precision and recall of each when the folder has a
//! `truth.jsonl` (as `pantau eval` scores them), and the diff: alerts the candidate adds
//! and alerts it removes, matched on entity and window.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Datelike;

use crate::error::Result;
use crate::pipeline::replay_alerts;
use pantau_core::jsonl::read_jsonl;
use pantau_core::model::{Alert, Truth};
use pantau_core::regions::Regions;
use pantau_engine::engine::EngineConfig;
use pantau_engine::rules::{self, Rule, RuleSet};
use pantau_sim::eval::{self, CategoryRow};

/// Options of `pantau rules backtest`.
#[derive(Debug, Clone)]
pub struct BacktestConfig {
    /// The rule file to try (new, or a changed copy of a live rule).
    pub rule: PathBuf,
    /// The history folder to run it over (`truth.jsonl` optional).
    pub history: PathBuf,
    /// The live rules folder (its views, and the live version of the rule); `None`:
    /// `./rules` when that exists, else the built-in rules.
    pub rules: Option<PathBuf>,
    /// How many alerts added and removed are listed in full, each.
    pub show: usize,
}

/// The id the live version runs under, so its cooldowns and alerts stay apart from the
/// candidate's in the same replay.
fn live_id(id: &str) -> String {
    format!("{id}__live")
}

/// Alerts of one version, and its scores against the truth.
#[derive(Debug, Default)]
pub struct Side {
    pub alerts: Vec<Alert>,
    pub score: Option<CategoryRow>,
}

#[derive(Debug)]
pub struct Backtest {
    pub candidate: Rule,
    pub candidate_side: Side,
    /// None: there is no live rule of that id, or it is the same file content.
    pub live: Option<(Rule, Side)>,
}

type Match = (String, i64);

fn match_key(a: &Alert) -> Match {
    (a.entity_id.clone(), a.window_start.timestamp_micros())
}

fn week_of(a: &Alert) -> String {
    let week = a.window_start.iso_week();
    format!("{}-W{:02}", week.year(), week.week())
}

fn counts_by(alerts: &[Alert], key: impl Fn(&Alert) -> String) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in alerts {
        *counts.entry(key(a)).or_default() += 1;
    }
    counts
}

fn district(a: &Alert) -> String {
    match Regions::get().regency(&a.regency_code) {
        Some(r) => format!("{} {}", a.regency_code, r.name),
        None => a.regency_code.clone(),
    }
}

fn score(truth: Option<&[Truth]>, category: &str, alerts: &[Alert]) -> Option<CategoryRow> {
    let truth: Vec<Truth> = truth?
        .iter()
        .filter(|t| t.category == category)
        .cloned()
        .collect();
    let report = eval::evaluate(&truth, alerts);
    Some(
        report
            .row(category)
            .cloned()
            .unwrap_or_else(|| report.overall.clone()),
    )
}

/// Runs the candidate (and the live version, if different) over the history.
pub async fn backtest(config: &BacktestConfig) -> Result<Backtest> {
    let text = std::fs::read_to_string(&config.rule)
        .map_err(pantau_core::error::Error::file("read", &config.rule))?;
    let candidate = Rule::parse(&config.rule, &text)?;
    let live_set = rules::Location::resolve(config.rules.as_deref()).load()?;
    let live = live_set
        .rules
        .iter()
        .find(|r| r.id == candidate.id && r.version != candidate.version)
        .cloned();
    let mut set = RuleSet {
        rules: vec![candidate.clone()],
        views: live_set.views.clone(),
        tables: live_set.tables.clone(),
    };
    if let Some(live) = &live {
        let mut renamed = live.clone();
        renamed.id = live_id(&live.id);
        set.rules.push(renamed);
    }
    // Shadow or live, the candidate is judged the same; and detections are compared,
    // not what a cooldown lets through, which would shift with the first detection.
    for rule in &mut set.rules {
        rule.shadow = false;
        rule.cooldown = Duration::ZERO;
    }
    let alerts = replay_alerts(
        &config.history,
        &EngineConfig::for_rule_author(config.rules.as_deref(), None),
        set,
    )
    .await?;
    let truth_path = config.history.join("truth.jsonl");
    let truth: Option<Vec<Truth>> = truth_path
        .is_file()
        .then(|| read_jsonl(&truth_path))
        .transpose()?;
    let (mut candidate_alerts, mut live_alerts): (Vec<Alert>, Vec<Alert>) =
        alerts.into_iter().partition(|a| a.rule_id == candidate.id);
    for a in &mut live_alerts {
        a.rule_id = candidate.id.clone();
    }
    candidate_alerts.sort_by_key(match_key);
    live_alerts.sort_by_key(match_key);
    let candidate_side = Side {
        score: score(truth.as_deref(), &candidate.category, &candidate_alerts),
        alerts: candidate_alerts,
    };
    let live = live.map(|rule| {
        let side = Side {
            score: score(truth.as_deref(), &rule.category, &live_alerts),
            alerts: live_alerts,
        };
        (rule, side)
    });
    Ok(Backtest {
        candidate,
        candidate_side,
        live,
    })
}

fn score_text(row: &Option<CategoryRow>) -> String {
    match row {
        Some(r) if r.truths == 0 => format!(
            "truth.jsonl has no case of this category: {} of {} alerts matched none",
            r.alerts - r.true_alerts,
            r.alerts
        ),
        Some(r) => format!(
            "recall {:.2} ({} of {} injected), precision {:.2} ({} of {} alerts)",
            r.recall(),
            r.detected,
            r.truths,
            r.precision(),
            r.true_alerts,
            r.alerts
        ),
        None => "no truth.jsonl: precision and recall not known".into(),
    }
}

fn alert_line(a: &Alert) -> String {
    format!(
        "{} {} {} score {:.3} — {}",
        a.window_start.format("%Y-%m-%d %H:%M%:z"),
        a.regency_code,
        a.entity_id,
        a.score,
        a.summary
    )
}

impl Backtest {
    /// Alerts of the candidate the live version does not raise, and the reverse.
    pub(crate) fn diff(&self) -> (Vec<&Alert>, Vec<&Alert>) {
        let Some((_, live)) = &self.live else {
            return (Vec::new(), Vec::new());
        };
        let theirs: BTreeSet<Match> = live.alerts.iter().map(match_key).collect();
        let ours: BTreeSet<Match> = self.candidate_side.alerts.iter().map(match_key).collect();
        let added = self
            .candidate_side
            .alerts
            .iter()
            .filter(|a| !theirs.contains(&match_key(a)))
            .collect();
        let removed = live
            .alerts
            .iter()
            .filter(|a| !ours.contains(&match_key(a)))
            .collect();
        (added, removed)
    }

    pub fn report(&self, show: usize) -> String {
        let mut out = String::new();
        let c = &self.candidate;
        let _ = writeln!(
            out,
            "rule {} version {} ({}), window {}",
            c.id,
            c.version,
            c.path.display(),
            c.window
        );
        let live_alerts = self.live.as_ref().map(|(_, s)| s.alerts.as_slice());
        match &self.live {
            Some((rule, _)) => {
                let _ = writeln!(
                    out,
                    "live version {} ({})",
                    rule.version,
                    rule.path.display()
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "no other live version of {} (new rule, or unchanged)",
                    c.id
                );
            }
        }
        let _ = writeln!(
            out,
            "\nalerts are detections per window: cooldowns are off here (live, they hold repeats back)"
        );
        let _ = writeln!(
            out,
            "candidate: {} alerts; {}",
            self.candidate_side.alerts.len(),
            score_text(&self.candidate_side.score)
        );
        if let Some((_, live)) = &self.live {
            let _ = writeln!(
                out,
                "live:      {} alerts; {}",
                live.alerts.len(),
                score_text(&live.score)
            );
        }
        for (title, key) in [
            ("by district", &district as &dyn Fn(&Alert) -> String),
            ("by week", &week_of),
        ] {
            let ours = counts_by(&self.candidate_side.alerts, key);
            let theirs = live_alerts.map(|l| counts_by(l, key)).unwrap_or_default();
            let keys: BTreeSet<&String> = ours.keys().chain(theirs.keys()).collect();
            let _ = writeln!(out, "\n{title:<28} candidate   live");
            if keys.is_empty() {
                let _ = writeln!(out, "  (no alerts)");
            }
            for k in keys {
                let live_count = match live_alerts {
                    Some(_) => theirs.get(k).copied().unwrap_or(0).to_string(),
                    None => "-".into(),
                };
                let _ = writeln!(
                    out,
                    "  {k:<26} {:>9} {:>6}",
                    ours.get(k).copied().unwrap_or(0),
                    live_count
                );
            }
        }
        if self.live.is_some() {
            let (added, removed) = self.diff();
            for (what, list) in [("added", added), ("removed", removed)] {
                let _ = writeln!(out, "\n{} alerts {what} by the candidate", list.len());
                for a in list.iter().take(show) {
                    let _ = writeln!(out, "  {what:<7} {}", alert_line(a));
                }
                if list.len() > show {
                    let _ = writeln!(out, "  ... and {} more", list.len() - show);
                }
            }
        }
        out
    }
}
