//! What the engine counts and publishes: records read and dead-lettered, windows
//! closed, rules run and their alerts, the watermark, and the program figures of the
//! dashboards (realization, spending, prices) by regency and period.

use std::sync::Arc;

use prometheus::{Gauge, GaugeVec, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use pantau_core::metrics::{
    counter, float_gauge, float_gauge_vec, gauge_vec, histogram, int_gauge,
};

pub struct EngineMetrics {
    /// Where these metrics are registered: the process's registry, or their own.
    registry: Registry,
    pub records_consumed: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub late_records: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub alerts: IntCounterVec,
    pub windows_closed: IntCounterVec,
    pub rule_failures: IntCounterVec,
    pub shadow_alerts: IntCounterVec,
    pub alerts_suppressed: IntCounterVec,
    pub snoozes: IntGauge,
    pub rule_seconds: HistogramVec,
    pub window_close_seconds: HistogramVec,
    pub decode_seconds: HistogramVec,
    pub watermark: Gauge,
    pub watermark_lag: Gauge,
    pub partition_max_event: GaugeVec,
    pub buffered_rows: IntGauge,
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
}

impl EngineMetrics {
    /// The engine's metrics in a registry of their own, for replays and tests that
    /// serve nothing.
    pub fn new() -> Arc<EngineMetrics> {
        Arc::new(EngineMetrics::register(&Registry::new()))
    }

    pub fn register(r: &Registry) -> EngineMetrics {
        EngineMetrics {
            registry: r.clone(),
            records_consumed: counter(
                r,
                "pantau_records_consumed_total",
                "Input records read",
                &["topic"],
            ),
            dead_letters: counter(
                r,
                "pantau_dlq_records_total",
                "Records sent to the dead-letter queue",
                &["topic", "reason"],
            ),
            late_records: counter(
                r,
                "pantau_late_records_total",
                "Records older than the watermark",
                &["topic"],
            ),
            duplicates: counter(
                r,
                "pantau_duplicate_records_total",
                "Redelivered records counted once",
                &["topic"],
            ),
            alerts: counter(
                r,
                "pantau_alerts_total",
                "Alerts raised",
                &["rule", "category", "severity", "regency"],
            ),
            windows_closed: counter(
                r,
                "pantau_windows_closed_total",
                "Windows closed",
                &["window"],
            ),
            rule_failures: counter(
                r,
                "pantau_rule_failures_total",
                "Rule evaluations skipped for a window: `error` (the query failed) or `timeout` (over its time budget)",
                &["rule", "reason"],
            ),
            shadow_alerts: counter(
                r,
                "pantau_shadow_alerts_total",
                "Alerts raised by rules in shadow mode (to pantau.alerts.shadow, notifying no one)",
                &["rule", "category", "severity", "regency"],
            ),
            alerts_suppressed: counter(
                r,
                "pantau_alerts_suppressed_total",
                "Detections not raised: `cooldown` (the entity was alerted within the rule's cooldown) or `snoozed` (on the snooze list)",
                &["rule", "reason"],
            ),
            snoozes: int_gauge(
                r,
                "pantau_snoozes",
                "Entries of the snooze list in force",
            ),
            rule_seconds: histogram(
                r,
                "pantau_rule_eval_seconds",
                "Time to evaluate one rule on one window",
                &["rule"],
            ),
            window_close_seconds: histogram(
                r,
                "pantau_window_close_seconds",
                "Time to close one window, rollups and rules included",
                &["window"],
            ),
            decode_seconds: histogram(
                r,
                "pantau_batch_decode_seconds",
                "Time to decode one batch",
                &["topic"],
            ),
            watermark: float_gauge(
                r,
                "pantau_watermark_seconds",
                "Current watermark, seconds since the epoch",
            ),
            watermark_lag: float_gauge(
                r,
                "pantau_watermark_lag_seconds",
                "Wall-clock time minus the watermark",
            ),
            partition_max_event: float_gauge_vec(
                r,
                "pantau_partition_event_time_seconds",
                "Largest event time seen per input topic and partition",
                &["topic", "partition"],
            ),
            buffered_rows: int_gauge(r, "pantau_buffered_rows", "Raw rows held for open windows"),
            topic_watermark: float_gauge_vec(
                r,
                "pantau_topic_watermark_seconds",
                "Per input topic: the oldest of its partitions' newest event times, seconds since the epoch (how far that topic has got)",
                &["topic"],
            ),
            topic_watermark_lag: float_gauge_vec(
                r,
                "pantau_topic_watermark_lag_seconds",
                "Per input topic: wall-clock time minus pantau_topic_watermark_seconds",
                &["topic"],
            ),
            purchases: counter(
                r,
                "pantau_purchases_total",
                "Purchases (reversals not counted) by regency and payment kind (KKS, DEBIT, QRIS), added when their local day closes",
                &["regency", "payment"],
            ),
            purchase_rupiah: counter(
                r,
                "pantau_purchase_rupiah_total",
                "Rupiah of purchases by regency and payment kind, added when their local day closes",
                &["regency", "payment"],
            ),
            unit_price_median: float_gauge_vec(
                r,
                "pantau_unit_price_median_rupiah",
                "Median unit price of KKS sales on the latest closed local day, by regency, commodity and unit",
                &["regency", "commodity", "unit"],
            ),
            kpm_credited: float_gauge_vec(
                r,
                "pantau_kpm_credited",
                "KPM (cards) credited for the regency's current benefit period",
                &["regency", "period"],
            ),
            kpm_spending: float_gauge_vec(
                r,
                "pantau_kpm_spending",
                "KPM credited for the current period who have spent since their credit",
                &["regency", "period"],
            ),
            realization: float_gauge_vec(
                r,
                "pantau_realization_ratio",
                "Realization: pantau_kpm_spending / pantau_kpm_credited for the regency's current period (0 to 1)",
                &["regency", "period"],
            ),
            benefit_credited: float_gauge_vec(
                r,
                "pantau_benefit_credited_rupiah",
                "Rupiah credited for the regency's current benefit period",
                &["regency", "period"],
            ),
            benefit_spent: float_gauge_vec(
                r,
                "pantau_benefit_spent_rupiah",
                "Rupiah of the current period's credit spent so far (each card counted up to its credit)",
                &["regency", "period"],
            ),
            regency_info: gauge_vec(
                r,
                "pantau_regency_info",
                "Always 1: the name and province of a regency pantau reports on, to join on `regency`",
                &["regency", "name", "province_code", "province"],
            ),
        }
    }

    /// The registry these metrics are in, in Prometheus' text format.
    pub fn render(&self) -> String {
        pantau_core::metrics::render(&self.registry)
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
}
