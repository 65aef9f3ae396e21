//! What `pantau notify` counts: notification tries by channel, regency and outcome,
//! alerts no route covers, and records it could not read.

use std::sync::Arc;

use prometheus::IntCounterVec;

use pantau_kafka::health::Served;
use pantau_kafka::metrics::counter;

pub struct NotifyMetrics {
    /// The registry these metrics report to, and the broker's health.
    pub served: Served,
    /// Records on a followed topic that could not be read.
    pub unreadable: IntCounterVec,
    pub notifications: IntCounterVec,
    pub notify_unrouted: IntCounterVec,
}

impl NotifyMetrics {
    pub fn new() -> Arc<NotifyMetrics> {
        let served = Served::default();
        let r = &served.registry;
        Arc::new(NotifyMetrics {
            unreadable: pantau_kafka::follow::unreadable_counter(r),
            notifications: counter(
                r,
                "pantau_notifications_total",
                "Notification tries of `pantau notify` by channel and regency: `sent`, `failed` (a try failed), `retried` (a try after a failure), `dead_lettered` (to pantau.notify.dlq after the last try)",
                &["channel", "regency", "outcome"],
            ),
            notify_unrouted: counter(
                r,
                "pantau_notify_unrouted_total",
                "Live alerts no route of the routing file covers, by regency",
                &["regency"],
            ),
            served,
        })
    }
}
