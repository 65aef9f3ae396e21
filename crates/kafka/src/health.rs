//! Whether pantau can reach its Kafka broker (and, for the alert store, write its
//! database), and how long to wait before trying again.
//!
//! This module owns the broker-connection state behind `/health` (served by
//! the binary's `/metrics` server) and the `pantau_broker_up` / `pantau_broker_outages_total`
//! metrics, the rule for which rdkafka errors count as an outage ([`is_broker_outage`]),
//! and the retry delay ([`Backoff`]). It only records and reports: nothing here drops
//! buffered state, so callers can hold their windows and offsets through an outage and
//! carry on when the broker answers again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge, Registry};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::{Deserialize, Serialize};

use crate::metrics::{int_gauge, single};

/// Broker-connection state, shared as `Arc<Health>` between the Kafka clients that report
/// on it and the `/health` endpoint that reads it.
pub struct Health {
    outage: Mutex<Option<Outage>>,
    /// The alert store's database, for `pantau store run`: while it cannot be written at
    /// all, the process is not healthy either.
    database: Mutex<Option<Outage>>,
    broker_up: IntGauge,
    outages: IntCounter,
}

struct Outage {
    reason: String,
    since: Instant,
}

/// What a long-running process (`run`, `store`, `notify`) serves on `/metrics` and
/// `/health`: the one registry all its components register their metrics in, and its
/// broker health (whose gauges are in that registry too).
pub struct Served {
    pub registry: Registry,
    pub health: Arc<Health>,
}

impl Default for Served {
    /// A fresh registry with the broker health in it.
    fn default() -> Served {
        let registry = Registry::new();
        let health = Health::register(&registry);
        Served { registry, health }
    }
}

/// What `/health` answers, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthStatus {
    pub healthy: bool,
    pub broker: BrokerState,
    pub reason: Option<String>,
    pub down_for_seconds: Option<f64>,
    /// Why the alert store's database cannot be written, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerState {
    Up,
    Down,
}

impl Health {
    /// Starts healthy: until a client fails there is no evidence of an outage, and a
    /// freshly started pantau should not be restarted by its orchestrator for that.
    /// The health of a process's broker connection, its `pantau_broker_up` and
    /// `pantau_broker_outages_total` registered in the registry that process serves.
    pub fn register(r: &Registry) -> Arc<Health> {
        let broker_up = int_gauge(
            r,
            "pantau_broker_up",
            "1 while the Kafka broker is reachable, 0 during an outage",
        );
        let outages = single(
            r,
            "pantau_broker_outages_total",
            "Times the Kafka broker became unreachable",
        );
        Arc::new(Health::new(broker_up, outages))
    }

    fn new(broker_up: IntGauge, outages: IntCounter) -> Health {
        broker_up.set(1);
        Health {
            outage: Mutex::new(None),
            database: Mutex::new(None),
            broker_up,
            outages,
        }
    }

    fn database(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        self.database.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The alert store cannot write at all (connection gone, every try failing): `/health`
    /// answers 503 with the reason until [`Health::database_up`].
    pub fn database_down(&self, reason: &str) {
        let mut down = self.database();
        match down.as_mut() {
            Some(current) => current.reason = reason.to_owned(),
            None => {
                *down = Some(Outage {
                    reason: reason.to_owned(),
                    since: Instant::now(),
                })
            }
        }
    }

    pub fn database_up(&self) {
        *self.database() = None;
    }

    fn outage(&self) -> std::sync::MutexGuard<'_, Option<Outage>> {
        // The guarded state is replaced whole, so a panic while holding the lock cannot
        // leave it half-written; keep reporting rather than propagate the poison.
        self.outage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the broker unreachable. Repeated calls during one outage keep its start time
    /// (so `down_for_seconds` measures the whole outage) but take the latest reason, which
    /// says best what is failing now.
    pub fn broker_down(&self, reason: &str) {
        let mut outage = self.outage();
        match outage.as_mut() {
            Some(current) => {
                if current.reason != reason {
                    current.reason = reason.to_owned();
                }
            }
            None => {
                *outage = Some(Outage {
                    reason: reason.to_owned(),
                    since: Instant::now(),
                });
                self.broker_up.set(0);
                self.outages.inc();
                // Clients fail on every poll and every produce while the broker is away;
                // one line per outage keeps the log readable.
                tracing::warn!(reason, "Kafka broker unreachable; retrying with backoff");
            }
        }
    }

    pub fn broker_up(&self) {
        let mut outage = self.outage();
        if let Some(ended) = outage.take() {
            self.broker_up.set(1);
            tracing::info!(
                down_for_seconds = ended.since.elapsed().as_secs_f64(),
                "Kafka broker reachable again"
            );
        }
    }

    /// Whether the broker is reachable: what the pipeline waits on before it trusts
    /// silence. The database's state is in [`Health::status`] only.
    pub fn is_healthy(&self) -> bool {
        self.outage().is_none()
    }

    pub fn status(&self) -> HealthStatus {
        let database = self.database().as_ref().map(|d| d.reason.clone());
        let outage = self.outage();
        HealthStatus {
            healthy: outage.is_none() && database.is_none(),
            broker: if outage.is_none() {
                BrokerState::Up
            } else {
                BrokerState::Down
            },
            reason: outage.as_ref().map(|o| o.reason.clone()),
            down_for_seconds: outage.as_ref().map(|o| o.since.elapsed().as_secs_f64()),
            database,
        }
    }

    /// Records `error` as an outage when it is one, or when the cluster refuses pantau
    /// (a certificate or password that stopped working while it ran: librdkafka keeps
    /// retrying, /health says why); other errors (bad records, unknown topics) are the
    /// caller's to handle and leave the broker state alone. `reason` says what was being
    /// done, e.g. "consumer poll".
    pub(crate) fn on_client_error(&self, error: &KafkaError, reason: &str) {
        if is_broker_outage(error) || crate::is_refusal(error) {
            self.broker_down(&format!("{reason}: {error}"));
        }
    }
}

/// A Kafka client's error callback: to the health state when there is one, else to the
/// log. `client` names the client in the log ("producer", "client").
pub(crate) fn report_client_error(
    health: Option<&Health>,
    error: &KafkaError,
    reason: &str,
    client: &str,
) {
    match health {
        Some(h) => h.on_client_error(error, reason),
        None => tracing::warn!(%error, reason, client, "Kafka error"),
    }
}

/// Whether `error` means the broker cannot be reached (as opposed to the broker refusing
/// one request). librdkafka reports connection refused, resets and DNS failures as
/// transport or resolve errors, and a broker that is merely unresponsive as timeouts.
/// Leader elections and coordinator moves are left out: they are transient states of a
/// live cluster, which librdkafka rides out on its own.
pub(crate) fn is_broker_outage(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::Resolve
                | C::BrokerNotAvailable
                | C::NetworkException
                | C::MessageTimedOut
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::TimedOutQueue
        )
    )
}

/// Retry delays: 100 ms, doubling each time, capped at 30 s. No jitter, so the sequence
/// can be tested and read back from logs; librdkafka already jitters its own reconnects
/// to the broker (`reconnect.backoff.ms`), which is where a herd would form.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(30);

    pub fn new() -> Backoff {
        Backoff {
            next: Self::INITIAL,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// Call after a success, so the next outage starts again with short waits.
    pub fn reset(&mut self) {
        self.next = Self::INITIAL;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> (Health, IntGauge, IntCounter) {
        let gauge = IntGauge::new("up", "test").unwrap();
        let counter = IntCounter::new("outages", "test").unwrap();
        (Health::new(gauge.clone(), counter.clone()), gauge, counter)
    }

    #[test]
    fn starts_healthy() {
        let (health, gauge, counter) = fresh();
        assert!(health.is_healthy());
        assert_eq!(gauge.get(), 1);
        assert_eq!(counter.get(), 0);
    }

    #[test]
    fn down_then_up() {
        let (health, gauge, _) = fresh();
        health.broker_down("connection refused");
        assert!(!health.is_healthy());
        assert_eq!(gauge.get(), 0);
        health.broker_up();
        assert!(health.is_healthy());
        assert_eq!(gauge.get(), 1);
        assert_eq!(health.status().reason, None);
    }

    /// Before, `/health` of `pantau store run` said 200 while every write to
    /// PostgreSQL failed.
    #[test]
    fn a_database_that_cannot_be_written_makes_health_say_so() {
        let (health, _, _) = fresh();
        health.database_down("store write failed: connection refused");
        let status = health.status();
        assert!(!status.healthy);
        assert_eq!(status.broker, BrokerState::Up);
        assert_eq!(
            status.database.as_deref(),
            Some("store write failed: connection refused")
        );
        // The broker's state, which the pipeline waits on, is unaffected.
        assert!(health.is_healthy());
        health.database_up();
        assert!(health.status().healthy);
        assert_eq!(health.status().database, None);
    }

    #[test]
    fn outage_counter_counts_transitions_not_calls() {
        let (health, _, counter) = fresh();
        health.broker_up();
        assert_eq!(counter.get(), 0);
        for _ in 0..5 {
            health.broker_down("all brokers down");
        }
        assert_eq!(counter.get(), 1);
        health.broker_up();
        health.broker_up();
        health.broker_down("all brokers down");
        assert_eq!(counter.get(), 2);
    }

    #[test]
    fn repeated_down_keeps_start_and_takes_latest_reason() {
        let (health, _, _) = fresh();
        health.broker_down("first");
        std::thread::sleep(Duration::from_millis(20));
        health.broker_down("second");
        let status = health.status();
        assert_eq!(status.reason.as_deref(), Some("second"));
        assert!(status.down_for_seconds.unwrap() >= 0.02);
    }

    #[test]
    fn status_json() {
        let (health, _, _) = fresh();
        let up: serde_json::Value = serde_json::to_value(health.status()).unwrap();
        assert_eq!(
            up,
            serde_json::json!({
                "healthy": true, "broker": "up", "reason": null, "down_for_seconds": null
            })
        );
        health.broker_down("Resolve");
        let down: serde_json::Value = serde_json::to_value(health.status()).unwrap();
        assert_eq!(down["healthy"], false);
        assert_eq!(down["broker"], "down");
        assert_eq!(down["reason"], "Resolve");
        assert!(down["down_for_seconds"].as_f64().unwrap() >= 0.0);
    }

    #[test]
    fn backoff_doubles_to_cap_and_resets() {
        let mut backoff = Backoff::new();
        let ms: Vec<u128> = (0..12).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        assert_eq!(backoff.next_delay(), Duration::from_millis(200));
    }

    #[test]
    fn classifies_outages() {
        use RDKafkaErrorCode as C;
        let outages = [
            KafkaError::Global(C::AllBrokersDown),
            KafkaError::MessageConsumption(C::BrokerTransportFailure),
            KafkaError::MetadataFetch(C::Resolve),
            KafkaError::MessageProduction(C::MessageTimedOut),
            KafkaError::ConsumerCommit(C::RequestTimedOut),
            KafkaError::MetadataFetch(C::OperationTimedOut),
            KafkaError::MessageConsumption(C::NetworkException),
            KafkaError::Flush(C::TimedOutQueue),
        ];
        for e in &outages {
            assert!(is_broker_outage(e), "{e} should be an outage");
        }
        let not_outages = [
            KafkaError::MessageProduction(C::MessageSizeTooLarge),
            KafkaError::MessageProduction(C::InvalidTopic),
            KafkaError::MetadataFetch(C::UnknownTopic),
            KafkaError::ConsumerCommit(C::NoOffset),
            KafkaError::MessageConsumption(C::NotLeaderForPartition),
            KafkaError::PartitionEOF(0),
            KafkaError::NoMessageReceived,
            KafkaError::Canceled,
        ];
        for e in &not_outages {
            assert!(!is_broker_outage(e), "{e} should not be an outage");
        }
    }

    #[test]
    fn on_client_error_ignores_non_outages() {
        let (health, _, counter) = fresh();
        health.on_client_error(
            &KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
            "alert produce",
        );
        assert!(health.is_healthy());
        health.on_client_error(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "consumer poll",
        );
        health.on_client_error(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "consumer poll",
        );
        assert!(!health.is_healthy());
        assert_eq!(counter.get(), 1);
        let reason = health.status().reason.unwrap();
        assert!(reason.starts_with("consumer poll: "), "{reason}");
    }

    #[test]
    fn a_password_refused_while_running_makes_health_503_with_the_reason() {
        let (health, _, _) = fresh();
        health.on_client_error(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "consumer poll",
        );
        assert!(!health.is_healthy());
        let reason = health.status().reason.unwrap();
        assert!(reason.starts_with("consumer poll: "), "{reason}");
    }

    #[test]
    fn metrics_expose_broker_state() {
        let registry = Registry::new();
        let health = Health::register(&registry);
        assert!(crate::metrics::render(&registry).contains("pantau_broker_up 1"));
        health.broker_down("gone");
        let text = crate::metrics::render(&registry);
        assert!(text.contains("pantau_broker_up 0"), "{text}");
        assert!(text.contains("pantau_broker_outages_total 1"), "{text}");
    }
}
