//! pantau's own metrics, the `/metrics` endpoint (Prometheus text format) and `/health`
//! (JSON from [`Health::status`]; 503 while the broker is unreachable).
//!
//! Metrics are updated per batch or per window, never per row, and their labels go no
//! finer than the regency (about 514 values nationally): never an outlet or a card.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::health::Health;

pub struct Metrics {
    pub registry: Registry,
    pub records_consumed: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub late_records: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub alerts: IntCounterVec,
    pub alert_produce_errors: IntCounter,
    pub windows_closed: IntCounterVec,
    pub rule_failures: IntCounterVec,
    pub shadow_alerts: IntCounterVec,
    pub alerts_suppressed: IntCounterVec,
    pub rule_reloads: IntCounterVec,
    pub rules_loaded: IntGaugeVec,
    pub snoozes: IntGauge,
    pub rule_seconds: HistogramVec,
    pub window_close_seconds: HistogramVec,
    pub decode_seconds: HistogramVec,
    pub watermark: Gauge,
    pub watermark_lag: Gauge,
    pub partition_max_event: GaugeVec,
    pub buffered_rows: IntGauge,
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
    pub broker_up: IntGauge,
    pub broker_outages: IntCounter,
    pub topic_watermark: GaugeVec,
    pub topic_watermark_lag: GaugeVec,
    pub purchases: IntCounterVec,
    pub purchase_rupiah: IntCounterVec,
    pub unit_price_median: GaugeVec,
    pub kpm_credited: GaugeVec,
    pub kpm_spending: GaugeVec,
    pub realization: GaugeVec,
    pub benefit_credited: GaugeVec,
    pub benefit_spent: GaugeVec,
    pub regency_info: IntGaugeVec,
    pub stored: IntCounterVec,
    pub unreadable: IntCounterVec,
    pub store_errors: IntCounter,
    pub store_skipped: IntCounterVec,
    pub notifications: IntCounterVec,
    pub notify_unrouted: IntCounterVec,
    /// One per registry, so every holder of these metrics reports to the same state that
    /// `/health` and `pantau_broker_up` show.
    health: Arc<Health>,
}

/// Registers a metric and hands it back; names are fixed in this file, so a clash or a
/// malformed name is a bug caught by every test that makes `Metrics`.
fn registered<M: Collector + Clone + 'static>(r: &Registry, metric: prometheus::Result<M>) -> M {
    let metric = metric.expect("valid metric");
    r.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(r, IntCounterVec::new(Opts::new(name, help), labels))
}

fn single(r: &Registry, name: &str, help: &str) -> IntCounter {
    registered(r, IntCounter::new(name, help))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    registered(r, IntGaugeVec::new(Opts::new(name, help), labels))
}

fn float_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    registered(r, GaugeVec::new(Opts::new(name, help), labels))
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    registered(r, IntGauge::new(name, help))
}

fn float_gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    registered(r, Gauge::new(name, help))
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ];
    registered(
        r,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels),
    )
}

impl Metrics {
    /// A counter's value summed over all its labels.
    pub fn total(counter: &IntCounterVec) -> u64 {
        counter
            .collect()
            .iter()
            .flat_map(|family| family.get_metric())
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        let alert_produce_errors = single(
            &r,
            "pantau_alert_produce_errors_total",
            "Alerts or dead letters the broker refused",
        );
        let commits = single(
            &r,
            "pantau_offset_commits_total",
            "Offset commits made after acknowledgement",
        );
        let watermark = float_gauge(
            &r,
            "pantau_watermark_seconds",
            "Current watermark, seconds since the epoch",
        );
        let watermark_lag = float_gauge(
            &r,
            "pantau_watermark_lag_seconds",
            "Wall-clock time minus the watermark",
        );
        let partition_max_event = float_gauge_vec(
            &r,
            "pantau_partition_event_time_seconds",
            "Largest event time seen per input topic and partition",
            &["topic", "partition"],
        );
        let buffered_rows = int_gauge(&r, "pantau_buffered_rows", "Raw rows held for open windows");
        let input_paused = gauge_vec(
            &r,
            "pantau_input_partitions_paused",
            "Input partitions the router paused: reason memory (the engines hold --max-buffered-rows while the watermark waits) or engines_behind (two batches forwarded and not yet read)",
            &["reason"],
        );
        let consumer_lag = gauge_vec(
            &r,
            "pantau_consumer_lag_records",
            "High watermark minus position per partition (librdkafka's statistics, every 5 s)",
            &["topic", "partition"],
        );
        let broker_up = int_gauge(
            &r,
            "pantau_broker_up",
            "1 while the Kafka broker is reachable, 0 during an outage",
        );
        let broker_outages = single(
            &r,
            "pantau_broker_outages_total",
            "Times the Kafka broker became unreachable",
        );
        let health = Arc::new(Health::new(broker_up.clone(), broker_outages.clone()));
        Arc::new(Metrics {
            records_consumed: counter(
                &r,
                "pantau_records_consumed_total",
                "Input records read",
                &["topic"],
            ),
            dead_letters: counter(
                &r,
                "pantau_dlq_records_total",
                "Records sent to the dead-letter queue",
                &["topic", "reason"],
            ),
            late_records: counter(
                &r,
                "pantau_late_records_total",
                "Records older than the watermark",
                &["topic"],
            ),
            duplicates: counter(
                &r,
                "pantau_duplicate_records_total",
                "Redelivered records counted once",
                &["topic"],
            ),
            alerts: counter(
                &r,
                "pantau_alerts_total",
                "Alerts raised",
                &["rule", "category", "severity", "regency"],
            ),
            alert_produce_errors,
            windows_closed: counter(
                &r,
                "pantau_windows_closed_total",
                "Windows closed",
                &["window"],
            ),
            rule_failures: counter(
                &r,
                "pantau_rule_failures_total",
                "Rule evaluations skipped for a window: `error` (the query failed) or `timeout` (over its time budget)",
                &["rule", "reason"],
            ),
            shadow_alerts: counter(
                &r,
                "pantau_shadow_alerts_total",
                "Alerts raised by rules in shadow mode (to pantau.alerts.shadow, notifying no one)",
                &["rule", "category", "severity", "regency"],
            ),
            alerts_suppressed: counter(
                &r,
                "pantau_alerts_suppressed_total",
                "Detections not raised: `cooldown` (the entity was alerted within the rule's cooldown) or `snoozed` (on the snooze list)",
                &["rule", "reason"],
            ),
            rule_reloads: counter(
                &r,
                "pantau_rule_reloads_total",
                "Rule file changes picked up while running: `applied`, or `refused` (failed lint; the previous version keeps running)",
                &["outcome"],
            ),
            rules_loaded: gauge_vec(
                &r,
                "pantau_rules_loaded",
                "Rules running, by mode (`live` or `shadow`)",
                &["mode"],
            ),
            snoozes: int_gauge(
                &r,
                "pantau_snoozes",
                "Entries of the snooze list in force",
            ),
            rule_seconds: histogram(
                &r,
                "pantau_rule_eval_seconds",
                "Time to evaluate one rule on one window",
                &["rule"],
            ),
            window_close_seconds: histogram(
                &r,
                "pantau_window_close_seconds",
                "Time to close one window, rollups and rules included",
                &["window"],
            ),
            decode_seconds: histogram(
                &r,
                "pantau_batch_decode_seconds",
                "Time to decode one batch",
                &["topic"],
            ),
            watermark,
            watermark_lag,
            partition_max_event,
            buffered_rows,
            input_paused,
            group_sessions_lost: single(
                &r,
                "pantau_group_sessions_lost_total",
                "Times the consumer group session expired and the partitions were released without a commit, then the group rejoined",
            ),
            consumer_lag,
            offset_gaps: counter(
                &r,
                "pantau_offset_gaps_total",
                "Jumps in a partition's offsets (records the broker no longer had)",
                &["topic"],
            ),
            commits,
            checkpoints: single(
                &r,
                "pantau_checkpoints_total",
                "Checkpoints of the engines' state, each followed by an offset commit",
            ),
            checkpoints_restored: single(
                &r,
                "pantau_checkpoints_restored_total",
                "Partitions whose state was restored from a checkpoint",
            ),
            state_rebuilds: counter(
                &r,
                "pantau_state_rebuilds_total",
                "Checkpoints passed over on restore, by why: corrupt (unreadable files), format (written by another pantau), missing (a committed offset without its checkpoint); the state is rebuilt from an older checkpoint or the internal topic",
                &["reason"],
            ),
            internal_rejected: single(
                &r,
                "pantau_internal_records_rejected_total",
                "Unreadable records on the internal topic (a bug or tampering), skipped",
            ),
            checkpoint_seconds: registered(
                &r,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "pantau_checkpoint_seconds",
                        "Time to write one partition's checkpoint",
                    )
                    .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                ),
            ),
            dlq_wait: registered(
                &r,
                prometheus::Counter::new(
                    "pantau_dlq_wait_seconds_total",
                    "Seconds consumption waited so that dead letters stay within --dlq-max-per-sec (none is dropped)",
                ),
            ),
            broker_up,
            broker_outages,
            topic_watermark: float_gauge_vec(
                &r,
                "pantau_topic_watermark_seconds",
                "Per input topic: the oldest of its partitions' newest event times, seconds since the epoch (how far that topic has got)",
                &["topic"],
            ),
            topic_watermark_lag: float_gauge_vec(
                &r,
                "pantau_topic_watermark_lag_seconds",
                "Per input topic: wall-clock time minus pantau_topic_watermark_seconds",
                &["topic"],
            ),
            purchases: counter(
                &r,
                "pantau_purchases_total",
                "Purchases (reversals not counted) by regency and payment kind (KKS, DEBIT, QRIS), added when their local day closes",
                &["regency", "payment"],
            ),
            purchase_rupiah: counter(
                &r,
                "pantau_purchase_rupiah_total",
                "Rupiah of purchases by regency and payment kind, added when their local day closes",
                &["regency", "payment"],
            ),
            unit_price_median: float_gauge_vec(
                &r,
                "pantau_unit_price_median_rupiah",
                "Median unit price of KKS sales on the latest closed local day, by regency, commodity and unit",
                &["regency", "commodity", "unit"],
            ),
            kpm_credited: float_gauge_vec(
                &r,
                "pantau_kpm_credited",
                "KPM (cards) credited for the regency's current benefit period",
                &["regency", "period"],
            ),
            kpm_spending: float_gauge_vec(
                &r,
                "pantau_kpm_spending",
                "KPM credited for the current period who have spent since their credit",
                &["regency", "period"],
            ),
            realization: float_gauge_vec(
                &r,
                "pantau_realization_ratio",
                "Realization: pantau_kpm_spending / pantau_kpm_credited for the regency's current period (0 to 1)",
                &["regency", "period"],
            ),
            benefit_credited: float_gauge_vec(
                &r,
                "pantau_benefit_credited_rupiah",
                "Rupiah credited for the regency's current benefit period",
                &["regency", "period"],
            ),
            benefit_spent: float_gauge_vec(
                &r,
                "pantau_benefit_spent_rupiah",
                "Rupiah of the current period's credit spent so far (each card counted up to its credit)",
                &["regency", "period"],
            ),
            regency_info: gauge_vec(
                &r,
                "pantau_regency_info",
                "Always 1: the name and province of a regency pantau reports on, to join on `regency`",
                &["regency", "name", "province_code", "province"],
            ),
            stored: counter(
                &r,
                "pantau_store_rows_total",
                "Rows `pantau store` wrote to PostgreSQL, by table (alerts, outlets)",
                &["table"],
            ),
            unreadable: counter(
                &r,
                "pantau_unreadable_records_total",
                "Records on pantau.alerts or bpnt.outlets that `pantau store` or `pantau notify` could not read, by topic (each logged with its offset; pantau run dead-letters a bad registry record)",
                &["topic"],
            ),
            store_skipped: counter(
                &r,
                "pantau_store_skipped_total",
                "Records the alert store left out because PostgreSQL refused one of their values, by table and SQLSTATE",
                &["table", "sqlstate"],
            ),
            store_errors: single(
                &r,
                "pantau_store_errors_total",
                "Failed PostgreSQL connections or writes of `pantau store` (each retried)",
            ),
            notifications: counter(
                &r,
                "pantau_notifications_total",
                "Notification tries of `pantau notify` by channel and regency: `sent`, `failed` (a try failed), `retried` (a try after a failure), `dead_lettered` (to pantau.notify.dlq after the last try)",
                &["channel", "regency", "outcome"],
            ),
            notify_unrouted: counter(
                &r,
                "pantau_notify_unrouted_total",
                "Live alerts no route of the routing file covers, by regency",
                &["regency"],
            ),
            health,
            registry: r,
        })
    }

    /// Drops a regency's series of a period that is no longer its current one.
    pub fn forget_period(&self, regency: &str, period: &str) {
        for gauge in [
            &self.kpm_credited,
            &self.kpm_spending,
            &self.realization,
            &self.benefit_credited,
            &self.benefit_spent,
        ] {
            // Absent when the old period was never published here: nothing to drop.
            let _ = gauge.remove_label_values(&[regency, period]);
        }
    }

    /// The broker-connection state these metrics report.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Serves `/metrics` and `/health` until the returned task is aborted. `/health` answers
/// 503 while the broker is down so that an orchestrator's probe sees the outage, with the
/// same JSON body either way.
pub async fn serve(
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::{http::StatusCode, routing::get, Router};
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], m.render()) }
            }),
        )
        .route(
            "/health",
            get(move || {
                let status = health.status();
                async move {
                    let code = if status.healthy {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    // A struct of strings, bools and floats always serializes.
                    let body = serde_json::to_string(&status).unwrap_or_default();
                    (code, [("content-type", "application/json")], body)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for /metrics on {addr}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok((bound, task))
}
