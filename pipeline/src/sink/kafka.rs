//! Alerts to `pantau.alerts` (keyed by entity id) and dead letters to `pantau.dlq`
//! (keyed by the original record's key), through an idempotent producer. `send_all`
//! returns only when the broker has acknowledged every record: the source commits
//! offsets after that, never before.

use std::time::Duration;

use anyhow::Context;
use futures::future::try_join_all;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::kafka::KafkaConfig;
use crate::model::{Alert, DeadLetter, TOPIC_ALERTS, TOPIC_DLQ};

pub struct KafkaSink {
    producer: FutureProducer,
}

/// One record to produce: topic, key and payload.
pub struct Outgoing {
    pub topic: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

impl Outgoing {
    pub fn alert(a: &Alert) -> anyhow::Result<Outgoing> {
        Ok(Outgoing {
            topic: TOPIC_ALERTS.to_string(),
            key: Some(a.entity_id.clone()),
            payload: serde_json::to_vec(a)?,
        })
    }

    pub fn dead_letter(d: &DeadLetter) -> anyhow::Result<Outgoing> {
        Ok(Outgoing {
            topic: TOPIC_DLQ.to_string(),
            key: d.key.clone(),
            payload: serde_json::to_vec(d)?,
        })
    }
}

impl KafkaSink {
    pub fn new(config: &KafkaConfig) -> anyhow::Result<KafkaSink> {
        let producer: FutureProducer = config
            .client()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .set("message.timeout.ms", "120000")
            .create()
            .context("cannot create the Kafka producer")?;
        Ok(KafkaSink { producer })
    }

    /// Produces every record and waits for all acknowledgements; the first refusal is
    /// returned as an error (nothing is committed then).
    pub async fn send_all(&self, records: &[Outgoing]) -> anyhow::Result<()> {
        for chunk in records.chunks(50_000) {
            let sends = chunk.iter().map(|r| {
                let mut record = FutureRecord::to(&r.topic).payload(&r.payload);
                if let Some(k) = &r.key {
                    record = record.key(k);
                }
                self.producer
                    .send(record, Timeout::After(Duration::from_secs(120)))
            });
            try_join_all(sends)
                .await
                .map_err(|(e, _)| anyhow::anyhow!("the broker refused a record: {e}"))?;
        }
        Ok(())
    }
}
