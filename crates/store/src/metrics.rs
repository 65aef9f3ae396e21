//! What `pantau store` counts: rows written by table, rows PostgreSQL refused, failed
//! connections and writes, and records it could not read.

use std::sync::Arc;

use prometheus::{IntCounter, IntCounterVec};

use pantau_kafka::health::Served;
use pantau_kafka::metrics::{counter, single};

pub struct StoreMetrics {
    /// The registry these metrics report to, and the broker's health.
    pub served: Served,
    /// Records on a followed topic that could not be read.
    pub unreadable: IntCounterVec,
    pub stored: IntCounterVec,
    pub store_errors: IntCounter,
    pub store_skipped: IntCounterVec,
}

impl StoreMetrics {
    pub fn new() -> Arc<StoreMetrics> {
        let served = Served::default();
        let r = &served.registry;
        Arc::new(StoreMetrics {
            unreadable: pantau_kafka::follow::unreadable_counter(r),
            stored: counter(
                r,
                "pantau_store_rows_total",
                "Rows `pantau store` wrote to PostgreSQL, by table (alerts, outlets)",
                &["table"],
            ),
            store_errors: single(
                r,
                "pantau_store_errors_total",
                "Failed PostgreSQL connections or writes of `pantau store` (each retried)",
            ),
            store_skipped: counter(
                r,
                "pantau_store_skipped_total",
                "Records the alert store left out because PostgreSQL refused one of their values, by table and SQLSTATE",
                &["table", "sqlstate"],
            ),
            served,
        })
    }
}
