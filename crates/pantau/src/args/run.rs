//! The flags of `replay`, `run` and `rules backtest`.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use pantau_core::text::parse_duration;
use pantau_run::backtest::BacktestConfig;
use pantau_run::pipeline::{ReplayConfig, RunConfig, SlowDown};

fn parse_now(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time with an offset: {e}"))
}

/// Options of `pantau replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// History folder (transactions.jsonl, disbursements.jsonl, transfers.jsonl, outlets.jsonl).
    pub dir: PathBuf,
    /// Where to write the alerts; `dlq.jsonl` is written beside it.
    #[arg(long, default_value = "alerts.jsonl")]
    pub out: PathBuf,
    /// Records read from a file at a time.
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
    /// The moment the history is replayed "at", e.g. `2023-05-01T00:00:00+07:00`: every
    /// record counts as received then, so an event time past it by more than
    /// `--max-future` is dead-lettered as `future`. Default: the wall clock when the
    /// replay starts, since a history of what happened cannot hold sales yet to come.
    #[arg(long, value_parser = parse_now)]
    pub now: Option<DateTime<FixedOffset>>,
}

impl From<ReplayArgs> for ReplayConfig {
    fn from(a: ReplayArgs) -> Self {
        ReplayConfig {
            dir: a.dir,
            out: a.out,
            batch_size: a.batch_size,
            now: a.now,
        }
    }
}

/// Options of `pantau run` beyond the broker and the group.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Stop once every partition has been idle for the idle timeout and every window
    /// has closed (for batch jobs and tests); by default run until SIGINT or SIGTERM.
    #[arg(long)]
    pub exit_when_idle: bool,
    /// Where engine state is checkpointed. Instances of one group must share it (a
    /// shared volume): the instance a partition moves to restores it from there.
    #[arg(long, default_value = "pantau-state")]
    pub state_dir: PathBuf,
    /// How often engine state is checkpointed and the internal offsets committed with it.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
    /// Produce alerts and commit offsets in Kafka transactions, so a `read_committed`
    /// consumer of pantau.alerts sees each alert exactly once. Needs a broker with
    /// transactions (not tansu 0.6).
    #[arg(long)]
    pub transactional: bool,
    /// This instance's name; transactional ids derive from it. A restarted instance must
    /// keep its name, so that it fences off its former self.
    #[arg(long, env = "PANTAU_INSTANCE_ID", default_value = "pantau-1")]
    pub instance_id: String,
    /// At shutdown, the longest wait to finish the batch in hand, checkpoint and commit.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// How often the rules folder and the snooze file are looked at for changes, which
    /// are then taken up without a restart.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// Dead letters produced per second on average at most: beyond it consumption waits
    /// (pantau_dlq_wait_seconds_total), so a flood of bad input cannot flood the DLQ and
    /// no dead letter is dropped. 0: no limit.
    #[arg(long, default_value_t = 1000)]
    pub dlq_max_per_sec: u32,
    /// Raw rows this instance's engines may hold for open windows. Past it, while one
    /// input partition holds the watermark back, the input partitions that run ahead are
    /// paused until windows close (`pantau_input_partitions_paused`); nothing is
    /// dropped. A row costs about 1 KiB of memory. Default: rows filling half the
    /// memory limit (the container's, else the machine's). 0: no limit.
    #[arg(long)]
    pub max_buffered_rows: Option<usize>,
    /// Test only: a pause after every batch read, standing in for a slow machine.
    #[arg(long, hide = true, value_parser = parse_duration)]
    pub batch_delay: Option<Duration>,
    /// Test only: a pause before every batch an engine takes, so the engines fall
    /// behind the routers.
    #[arg(long, hide = true, value_parser = parse_duration)]
    pub engine_batch_delay: Option<Duration>,
}

impl From<RunArgs> for RunConfig {
    fn from(a: RunArgs) -> Self {
        RunConfig {
            exit_when_idle: a.exit_when_idle,
            state_dir: a.state_dir,
            checkpoint_interval: a.checkpoint_interval,
            transactional: a.transactional,
            instance_id: a.instance_id,
            shutdown_timeout: a.shutdown_timeout,
            reload_interval: a.reload_interval,
            dlq_max_per_sec: a.dlq_max_per_sec,
            max_buffered_rows: a.max_buffered_rows,
            slow_down: SlowDown {
                per_batch: a.batch_delay,
                per_engine_batch: a.engine_batch_delay,
            },
        }
    }
}

/// Options of `pantau rules backtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// The rule file to try (new, or a changed copy of a live rule).
    pub rule: PathBuf,
    /// History folder to run it over (as `pantau replay` reads; `truth.jsonl` optional).
    #[arg(long)]
    pub history: PathBuf,
    /// The live rules folder: its views are used, and its rule of the same id is the
    /// live version compared with. Without it: `./rules` when that exists, else the
    /// rules built into this binary.
    #[arg(long, env = "PANTAU_RULES")]
    pub rules: Option<PathBuf>,
    /// Alerts added and removed listed in full up to this many each.
    #[arg(long, default_value_t = 20)]
    pub show: usize,
}

impl From<BacktestArgs> for BacktestConfig {
    fn from(a: BacktestArgs) -> Self {
        BacktestConfig {
            rule: a.rule,
            history: a.history,
            rules: a.rules,
            show: a.show,
        }
    }
}
