//! What `run` and `replay` count beside their engines: offsets committed, checkpoints,
//! rebalances, paused inputs, rule reloads and the dead-letter queue's pacing.

use std::sync::Arc;

use prometheus::{HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec};

use crate::engine_metrics::EngineMetrics;
use pantau_kafka::health::Served;
use pantau_kafka::metrics::{counter, gauge_vec, registered, single};

pub struct RunMetrics {
    /// The registry these metrics and the engines' report to, and the broker's health.
    pub served: Served,
    pub engine: EngineMetrics,
    pub alert_produce_errors: IntCounter,
    pub rule_reloads: IntCounterVec,
    pub rules_loaded: IntGaugeVec,
    pub input_paused: IntGaugeVec,
    pub group_sessions_lost: IntCounter,
    pub consumer_lag: IntGaugeVec,
    pub offset_gaps: IntCounterVec,
    pub commits: IntCounter,
    pub checkpoints: IntCounter,
    pub checkpoints_restored: IntCounter,
    pub state_rebuilds: IntCounterVec,
    pub internal_rejected: IntCounter,
    pub checkpoint_seconds: prometheus::Histogram,
    pub dlq_wait: prometheus::Counter,
}

impl RunMetrics {
    /// A fresh registry holding the metrics of `run` and `replay`, their engines' and
    /// the broker's health.
    pub fn new() -> Arc<RunMetrics> {
        let served = Served::default();
        let r = &served.registry;
        Arc::new(RunMetrics {
            engine: EngineMetrics::register(r),
            alert_produce_errors: single(
                r,
                "pantau_alert_produce_errors_total",
                "Alerts or dead letters the broker refused",
            ),
            rule_reloads: counter(
                r,
                "pantau_rule_reloads_total",
                "Rule file changes picked up while running: `applied`, or `refused` (failed lint; the previous version keeps running)",
                &["outcome"],
            ),
            rules_loaded: gauge_vec(
                r,
                "pantau_rules_loaded",
                "Rules running, by mode (`live` or `shadow`)",
                &["mode"],
            ),
            input_paused: gauge_vec(
                r,
                "pantau_input_partitions_paused",
                "Input partitions the router paused: reason memory (the engines hold --max-buffered-rows while the watermark waits) or engines_behind (two batches forwarded and not yet read)",
                &["reason"],
            ),
            group_sessions_lost: single(
                r,
                "pantau_group_sessions_lost_total",
                "Times the consumer group session expired and the partitions were released without a commit, then the group rejoined",
            ),
            consumer_lag: gauge_vec(
                r,
                "pantau_consumer_lag_records",
                "High watermark minus position per partition (librdkafka's statistics, every 5 s)",
                &["topic", "partition"],
            ),
            offset_gaps: counter(
                r,
                "pantau_offset_gaps_total",
                "Jumps in a partition's offsets (records the broker no longer had)",
                &["topic"],
            ),
            commits: single(
                r,
                "pantau_offset_commits_total",
                "Offset commits made after acknowledgement",
            ),
            checkpoints: single(
                r,
                "pantau_checkpoints_total",
                "Checkpoints of the engines' state, each followed by an offset commit",
            ),
            checkpoints_restored: single(
                r,
                "pantau_checkpoints_restored_total",
                "Partitions whose state was restored from a checkpoint",
            ),
            state_rebuilds: counter(
                r,
                "pantau_state_rebuilds_total",
                "Checkpoints passed over on restore, by why: corrupt (unreadable files), format (written by another pantau), missing (a committed offset without its checkpoint); the state is rebuilt from an older checkpoint or the internal topic",
                &["reason"],
            ),
            internal_rejected: single(
                r,
                "pantau_internal_records_rejected_total",
                "Unreadable records on the internal topic (a bug or tampering), skipped",
            ),
            checkpoint_seconds: registered(
                r,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "pantau_checkpoint_seconds",
                        "Time to write one partition's checkpoint",
                    )
                    .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                ),
            ),
            dlq_wait: registered(
                r,
                prometheus::Counter::new(
                    "pantau_dlq_wait_seconds_total",
                    "Seconds consumption waited so that dead letters stay within --dlq-max-per-sec (none is dropped)",
                ),
            ),
            served,
        })
    }
}
