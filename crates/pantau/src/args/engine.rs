//! The engine's flags, shared by `replay`, `run`, `demo`, `bench` and `report`.

use std::path::PathBuf;
use std::time::Duration;

use pantau_core::text::parse_duration;
use pantau_engine::engine::EngineConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// How far behind the newest event time a record may arrive and still count, e.g.
    /// `10m`. Later records go to the DLQ with reason `late`.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub lateness: Duration,
    /// An input partition silent this long (with nothing waiting in the broker) is
    /// declared idle and stops holding the watermark back; when all are idle the
    /// watermark follows the wall clock so the last windows close.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Folder of rule files (`*.sql`, shared queries in `views/`). Without it: `./rules`
    /// when that exists, else the rules built into this binary.
    #[arg(long, env = "PANTAU_RULES")]
    pub rules: Option<PathBuf>,
    /// The longest one rule may run over one window; past it the rule is skipped for
    /// that window (pantau_rule_failures_total{reason="timeout"}) and the others run.
    /// A rule's `-- budget:` line overrides it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub rule_budget: Duration,
    /// How far past the moment it was received a record's event time may lie, e.g. `5m`.
    /// A later one (a terminal whose clock is wrong) goes to the DLQ with reason
    /// `future` and moves no watermark. Keep it below `--lateness`: then no record ahead
    /// of its time can make a punctual one late. In `run` a record is received when the
    /// router reads it (its wall clock); in `replay` at `--now`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub max_future: Duration,
    /// Snooze list the monitoring team edits: CSV with `entity_id,rule_id,until,reason,who`
    /// (`*` as rule_id: every rule). `pantau run` re-reads it when it changes.
    #[arg(long)]
    pub snooze: Option<PathBuf>,
}

impl From<EngineArgs> for EngineConfig {
    fn from(a: EngineArgs) -> Self {
        EngineConfig {
            lateness: a.lateness,
            idle_timeout: a.idle_timeout,
            rules: a.rules,
            rule_budget: a.rule_budget,
            max_future: a.max_future,
            snooze: a.snooze,
        }
    }
}
