//! The engines' Prometheus series: what an engine's [`Tally`] holds (records read and
//! dead-lettered, windows closed, rules run and their alerts, the program figures of the
//! dashboards by regency and period), and the watermarks read from the engines.

use std::collections::BTreeMap;

use prometheus::{Gauge, GaugeVec, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Registry};

use pantau_core::regions::Regions;
use pantau_engine::engine::Engine;
use pantau_engine::tally::{ProgramFigure, Tally};
use pantau_kafka::metrics::{
    counter, float_gauge, float_gauge_vec, gauge_vec, histogram, int_gauge,
};

pub struct EngineMetrics {
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
    pub fn register(r: &Registry) -> EngineMetrics {
        EngineMetrics {
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

    /// Publishes what an engine counted since it was last asked.
    pub(crate) fn publish(&self, tally: Tally) {
        for (topic, n) in tally.records_consumed {
            self.records_consumed.with_label_values(&[topic]).inc_by(n);
        }
        for ((topic, reason), n) in tally.dead_letters {
            self.dead_letters
                .with_label_values(&[topic, &reason])
                .inc_by(n);
        }
        for (topic, n) in tally.late_records {
            self.late_records.with_label_values(&[topic]).inc_by(n);
        }
        for (topic, n) in tally.duplicates {
            self.duplicates.with_label_values(&[topic]).inc_by(n);
        }
        for (counter, counts) in [
            (&self.alerts, tally.alerts),
            (&self.shadow_alerts, tally.shadow_alerts),
        ] {
            for (labels, n) in counts {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                counter.with_label_values(&labels).inc_by(n);
            }
        }
        for ((rule, reason), n) in tally.alerts_suppressed {
            self.alerts_suppressed
                .with_label_values(&[&rule, reason])
                .inc_by(n);
        }
        for ((rule, failure), n) in tally.rule_failures {
            self.rule_failures
                .with_label_values(&[&rule, failure.as_str()])
                .inc_by(n);
        }
        for (window, took) in tally.windows_closed {
            self.windows_closed.with_label_values(&[&window]).inc();
            self.window_close_seconds
                .with_label_values(&[&window])
                .observe(took.as_secs_f64());
        }
        for (rule, took) in tally.rule_evaluations {
            self.rule_seconds
                .with_label_values(&[&rule])
                .observe(took.as_secs_f64());
        }
        for (topic, took) in tally.batches_decoded {
            self.decode_seconds
                .with_label_values(&[topic])
                .observe(took.as_secs_f64());
        }
        for figure in tally.program {
            self.publish_figure(figure);
        }
    }

    fn publish_figure(&self, figure: ProgramFigure) {
        match figure {
            ProgramFigure::DayPurchases {
                regency,
                payment,
                purchases,
                rupiah,
            } => {
                let labels = [regency.as_str(), payment.as_str()];
                self.purchases.with_label_values(&labels).inc_by(purchases);
                self.purchase_rupiah
                    .with_label_values(&labels)
                    .inc_by(rupiah);
                self.name_regency(&regency);
            }
            ProgramFigure::UnitPriceMedian {
                regency,
                commodity,
                unit,
                rupiah,
            } => self
                .unit_price_median
                .with_label_values(&[&regency, &commodity, &unit])
                .set(rupiah),
            ProgramFigure::Period {
                regency,
                period,
                replaces,
                credited_kpm,
                spending_kpm,
                credited_rupiah,
                spent_rupiah,
            } => {
                if let Some(previous) = replaces {
                    self.forget_period(&regency, &previous);
                }
                let labels = [regency.as_str(), period.as_str()];
                self.kpm_credited
                    .with_label_values(&labels)
                    .set(credited_kpm);
                self.kpm_spending
                    .with_label_values(&labels)
                    .set(spending_kpm);
                if credited_kpm > 0.0 {
                    self.realization
                        .with_label_values(&labels)
                        .set(spending_kpm / credited_kpm);
                }
                self.benefit_credited
                    .with_label_values(&labels)
                    .set(credited_rupiah);
                self.benefit_spent
                    .with_label_values(&labels)
                    .set(spent_rupiah);
                self.name_regency(&regency);
            }
        }
    }

    /// Names the regency in `pantau_regency_info`, so dashboards can show and group by
    /// names and provinces without a label on every series.
    fn name_regency(&self, regency: &str) {
        if let Some(r) = Regions::get().regency(regency) {
            self.regency_info
                .with_label_values(&[&r.code, &r.name, &r.province_code, &r.province_name])
                .set(1);
        }
    }

    /// The watermark gauges after `engine` advanced at the wall clock's `now` (µs).
    pub(crate) fn observe_watermarks(&self, engine: &Engine, now: i64) {
        let Some(watermark) = engine.watermark() else {
            return;
        };
        self.watermark.set(watermark as f64 / 1e6);
        self.watermark_lag.set((now - watermark) as f64 / 1e6);
        let mut oldest_per_topic: BTreeMap<&str, i64> = BTreeMap::new();
        for ((stream, partition), max) in engine.partition_maxima() {
            if let Some(max) = max {
                self.partition_max_event
                    .with_label_values(&[stream.topic(), &partition.to_string()])
                    .set(max as f64 / 1e6);
                oldest_per_topic
                    .entry(stream.topic())
                    .and_modify(|t| *t = (*t).min(max))
                    .or_insert(max);
            }
        }
        for (topic, t) in oldest_per_topic {
            self.topic_watermark
                .with_label_values(&[topic])
                .set(t as f64 / 1e6);
            self.topic_watermark_lag
                .with_label_values(&[topic])
                .set((now - t) as f64 / 1e6);
        }
    }

    /// Drops a regency's series of a period that is no longer its current one.
    fn forget_period(&self, regency: &str, period: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn period(period: &str, replaces: Option<&str>, credited_kpm: f64) -> ProgramFigure {
        ProgramFigure::Period {
            regency: "3604".into(),
            period: period.into(),
            replaces: replaces.map(String::from),
            credited_kpm,
            spending_kpm: 2.0,
            credited_rupiah: 800_000.0,
            spent_rupiah: 320_000.0,
        }
    }

    #[test]
    fn a_period_publishes_its_realization_names_its_regency_and_drops_the_period_it_replaces() {
        let registry = Registry::new();
        let metrics = EngineMetrics::register(&registry);
        let mut tally = Tally::default();
        tally.program.push(period("2023-01", None, 4.0));
        metrics.publish(tally);
        let january = ["3604", "2023-01"];
        assert_eq!(metrics.realization.with_label_values(&january).get(), 0.5);
        let text = pantau_kafka::metrics::render(&registry);
        assert!(
            text.contains(r#"pantau_regency_info{name="Kabupaten Serang",province="Banten",province_code="36",regency="3604"} 1"#),
            "{text}"
        );
        let mut tally = Tally::default();
        tally.program.push(period("2023-02", Some("2023-01"), 1.0));
        metrics.publish(tally);
        let text = pantau_kafka::metrics::render(&registry);
        assert!(
            text.contains(r#"pantau_kpm_credited{period="2023-02",regency="3604"} 1"#),
            "{text}"
        );
        assert!(!text.contains(r#"period="2023-01""#), "{text}");
    }
}
