//! Records to Kafka: alerts to `pantau.alerts` (keyed by entity id), dead letters to
//! `pantau.dlq` (keyed by the original record's key), routed records to the internal
//! topic. `send_all` returns only when the broker has acknowledged every record: offsets
//! are committed after that, never before.
//!
//! With a transactional id the producer runs Kafka transactions: what it sends between
//! `begin` and `commit` becomes visible to `read_committed` consumers together with the
//! input offsets committed in the same transaction (consume-transform-produce), or not
//! at all. Without one it is an idempotent producer, and a restart may send an alert
//! again under the same deterministic id.

use std::sync::Arc;
use std::time::Duration;

use futures::future::try_join_all;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, TopicPartitionList};

use crate::error::{Error, Result};
use crate::health::Health;

use crate::{KafkaConfig, SetDefault};
use pantau_core::model::Outgoing;

/// How long a transaction step may wait for the broker before it counts as failed.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Reports the producer's broker errors to the health state: while the broker is away
/// the pipeline waits inside a send, and only the producer sees the outage.
pub(crate) struct ProducerContext {
    health: Option<Arc<Health>>,
}

impl ClientContext for ProducerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::health::report_client_error(self.health.as_deref(), &error, reason, "producer");
    }
}

pub struct KafkaSink {
    producer: FutureProducer<ProducerContext>,
    transactional: bool,
    health: Option<Arc<Health>>,
}

impl KafkaSink {
    /// An idempotent producer; with `transactional_id`, a transactional one whose
    /// earlier incarnations (same id, before a crash) are fenced off and their open
    /// transaction aborted.
    pub fn new(config: &KafkaConfig, transactional_id: Option<&str>) -> Result<KafkaSink> {
        KafkaSink::with_health(config, transactional_id, None)
    }

    /// As [`KafkaSink::new`], reporting broker outages to `health`.
    pub fn with_health(
        config: &KafkaConfig,
        transactional_id: Option<&str>,
        health: Option<Arc<Health>>,
    ) -> Result<KafkaSink> {
        let mut client = config.client()?;
        client
            .set("enable.idempotence", "true")
            .set_default("linger.ms", "5")
            .set_default("queue.buffering.max.messages", "1000000")
            // 0 = no limit: while the broker is away, records wait in the producer and
            // the pipeline waits for them (consumption pauses) instead of failing.
            .set("message.timeout.ms", "0");
        if let Some(id) = transactional_id {
            client
                .set("transactional.id", id)
                .set("transaction.timeout.ms", "60000");
        }
        let producer: FutureProducer<ProducerContext> = crate::create_with(
            &client,
            ProducerContext {
                health: health.clone(),
            },
        )
        .map_err(Error::client("the Kafka producer"))?;
        if transactional_id.is_some() {
            producer
                .init_transactions(TRANSACTION_TIMEOUT)
                .map_err(Error::transaction(
                    "initialise Kafka transactions (does the broker support them?)",
                ))?;
        }
        Ok(KafkaSink {
            producer,
            transactional: transactional_id.is_some(),
            health,
        })
    }

    pub fn is_transactional(&self) -> bool {
        self.transactional
    }

    /// Produces every record and waits for all acknowledgements; returns where each
    /// went (partition, offset), in order. The first refusal is returned as an error
    /// (nothing is committed then).
    pub async fn send_all(&self, records: &[Outgoing]) -> Result<Vec<(i32, i64)>> {
        let mut placed = Vec::with_capacity(records.len());
        for chunk in records.chunks(50_000) {
            let sends = chunk.iter().map(|r| {
                let mut record = FutureRecord::to(&r.topic).payload(&r.payload);
                if let Some(k) = &r.key {
                    record = record.key(k);
                }
                if let Some(p) = r.partition {
                    record = record.partition(p);
                }
                self.producer.send(record, Timeout::Never)
            });
            placed.extend(
                try_join_all(sends)
                    .await
                    .map_err(|(source, _)| Error::Delivery { source })?
                    .into_iter()
                    .map(|d| (d.partition, d.offset)),
            );
        }
        if let (false, Some(h)) = (records.is_empty(), &self.health) {
            // Acknowledged: the broker is there.
            h.broker_up();
        }
        Ok(placed)
    }

    pub fn begin(&self) -> Result<()> {
        self.producer
            .begin_transaction()
            .map_err(Error::transaction("begin a Kafka transaction"))
    }

    /// Commits the open transaction with the consumer offsets in `offsets`, then opens
    /// the next one (the source's and the group's `commit_in`).
    pub(crate) fn commit_transaction(
        &self,
        offsets: &TopicPartitionList,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        if offsets.count() > 0 {
            self.producer
                .send_offsets_to_transaction(offsets, group, TRANSACTION_TIMEOUT)
                .map_err(Error::transaction(
                    "add the input offsets to the transaction",
                ))?;
        }
        self.producer
            .commit_transaction(TRANSACTION_TIMEOUT)
            .map_err(Error::transaction("commit the Kafka transaction"))?;
        self.begin()
    }

    /// Waits until everything sent has been acknowledged (or the timeout passes).
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        self.producer
            .flush(timeout)
            .map_err(|source| Error::Unacknowledged { source })
    }
}
