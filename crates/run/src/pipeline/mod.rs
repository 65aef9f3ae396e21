//! The one place that wires a source, the engine and a sink together: [`replay`] over a
//! history folder, [`run`] over a Kafka consumer group (its loop in [`live`], its
//! rebalances in [`rebalance`]). Both feed the same engine, so a folder and the same
//! records streamed through Kafka raise the same alerts.

mod live;
mod rebalance;
mod replay;

pub use live::{run, RunConfig, SlowDown};
pub use replay::{dlq_path_for, replay, replay_alerts, ReplayConfig};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::metrics::RunMetrics;
use pantau_core::model::Alert;
use pantau_engine::engine::EngineConfig;
use pantau_engine::suppress::SnoozeList;

/// What a run saw, for the closing summary.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub records: u64,
    pub dead_letters: u64,
    pub alerts: u64,
    pub by_category: BTreeMap<String, u64>,
    /// Alerts of rules in shadow mode (not in `alerts`).
    pub shadow_alerts: u64,
    /// Detections held back by a cooldown or a snooze.
    pub suppressed: u64,
    /// Rule runs that failed and were skipped; each is in the log with its error.
    pub rule_failures: u64,
    /// The most raw rows the engines held at once.
    pub peak_buffered_rows: usize,
    pub elapsed: Duration,
    /// The process's peak memory when the run ended, where the system says.
    pub peak_memory_mib: Option<f64>,
}

impl Summary {
    pub(super) fn add_alerts(&mut self, alerts: &[Alert]) {
        for a in alerts {
            if a.shadow {
                self.shadow_alerts += 1;
            } else {
                self.alerts += 1;
                *self.by_category.entry(a.category.clone()).or_default() += 1;
            }
        }
    }

    /// The rows the engines hold now: to `pantau_buffered_rows` and the peak.
    pub(super) fn buffered(&mut self, rows: usize, metrics: &RunMetrics) {
        metrics.engine.buffered_rows.set(rows as i64);
        self.peak_buffered_rows = self.peak_buffered_rows.max(rows);
    }

    /// Takes the counts only the metrics know, and the process's peak memory.
    pub(super) fn add_metrics(&mut self, metrics: &RunMetrics) {
        self.rule_failures = pantau_kafka::metrics::total(&metrics.engine.rule_failures);
        self.suppressed = pantau_kafka::metrics::total(&metrics.engine.alerts_suppressed);
        self.peak_memory_mib = pantau_kafka::metrics::peak_memory_mib();
    }

    /// Records per second over the run.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The closing summary as the CLI prints it.
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} records in {:.1} s ({:.0} records/s), {} dead letters, {} alerts, peak memory {:.0} MiB",
            self.records,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.dead_letters,
            self.alerts,
            self.peak_memory_mib.unwrap_or(f64::NAN)
        )?;
        for (category, n) in &self.by_category {
            writeln!(f, "  {category:<20} {n}")?;
        }
        write!(
            f,
            "peak {} raw rows buffered for open windows",
            self.peak_buffered_rows
        )?;
        if self.shadow_alerts > 0 {
            write!(
                f,
                "\n{} alerts of rules in shadow mode (not notified)",
                self.shadow_alerts
            )?;
        }
        if self.suppressed > 0 {
            write!(
                f,
                "\n{} detections held back by a cooldown or the snooze list (pantau_alerts_suppressed_total)",
                self.suppressed
            )?;
        }
        if self.rule_failures > 0 {
            write!(
                f,
                "\n{} rule runs failed and were skipped: their windows raised no alert from that rule (errors in the log)",
                self.rule_failures
            )?;
        }
        Ok(())
    }
}

fn wall_clock_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// Reads the snooze list an engine config names (none: empty); a bad line is logged and
/// the rest kept.
fn load_snoozes(
    engine_config: &EngineConfig,
    metrics: &RunMetrics,
) -> crate::error::Result<Arc<SnoozeList>> {
    let Some(path) = &engine_config.snooze else {
        return Ok(Arc::default());
    };
    let list = SnoozeList::load(path)?;
    for problem in &list.problems {
        tracing::warn!(%problem, "snooze line ignored");
    }
    metrics.engine.snoozes.set(list.len() as i64);
    Ok(Arc::new(list))
}
