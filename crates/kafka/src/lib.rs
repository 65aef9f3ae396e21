//! pantau's Kafka side, the only library crate with a Kafka client: client settings and
//! topic creation (here and [`settings`]), the consumer groups of `run` ([`source`]),
//! the producers of alerts, dead letters and forwarded records ([`sink`]), the followers'
//! reading of `pantau.alerts` and `bpnt.outlets`, and the broker's health ([`health`]).

use std::time::Duration;

use anyhow::Context;
use prometheus::IntCounterVec;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

pub mod health;
mod settings;
pub mod sink;
pub mod source;

pub use settings::{create, create_with, ClientSettings, Property, SetDefault};

/// Settings of every client pantau makes against one cluster.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`.
    #[arg(long, env = "PANTAU_BROKERS")]
    pub brokers: String,
    /// Partitions for topics pantau creates when they do not exist yet.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    #[command(flatten)]
    pub settings: ClientSettings,
}

impl KafkaConfig {
    /// A cluster reached with librdkafka's defaults (the embedded and mock clusters).
    pub fn plain(brokers: impl Into<String>, partitions: i32) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            partitions,
            settings: ClientSettings::default(),
        }
    }

    /// The settings every client starts from: the brokers, the user's properties
    /// (secrets read), and pantau's quiet log level unless the user chose another.
    pub fn client(&self) -> anyhow::Result<ClientConfig> {
        let mut c = self.settings.client_config()?;
        c.set("bootstrap.servers", &self.brokers);
        Ok(c)
    }

    /// Connects and reads the cluster's metadata (of `topic`, or of every topic). A
    /// setting that can never work (a certificate that does not verify, a refused
    /// password) ends it at once with librdkafka's reason, instead of the 30 s wait
    /// for a broker that is merely away.
    pub fn metadata(
        &self,
        topic: Option<&str>,
    ) -> anyhow::Result<(BaseProducer<RefusalContext>, Metadata)> {
        let client: BaseProducer<RefusalContext> =
            create_with(&self.client()?, RefusalContext::default())?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = client
                .client()
                .fetch_metadata(topic, Duration::from_millis(500));
            // Serves the error callbacks, where librdkafka reports TLS and SASL failures.
            client.poll(Duration::ZERO);
            if let Some(reason) = client.context().refusal() {
                anyhow::bail!("the brokers at {} refused pantau: {reason}", self.brokers);
            }
            match attempt {
                Ok(metadata) => return Ok((client, metadata)),
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(e)
                        .with_context(|| format!("cannot reach the brokers at {}", self.brokers))
                }
                Err(_) => {}
            }
        }
    }

    /// A consumer in its own group that reads `topics` from their beginning, only what was
    /// committed, and commits nothing by itself: for the services that follow pantau's
    /// output (the alert store, the notifier). The topics are created if missing, since
    /// subscribing to one that does not exist yet waits for librdkafka's next metadata
    /// refresh (five minutes) after someone else creates it.
    pub async fn follower(
        &self,
        group: &str,
        topics: &[&str],
    ) -> anyhow::Result<rdkafka::consumer::StreamConsumer> {
        self.ensure_topics(topics)
            .await
            .with_context(|| format!("creating {}", topics.join(", ")))?;
        let consumer: rdkafka::consumer::StreamConsumer = create(
            self.client()?
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                // Alerts of an aborted transaction (pantau run --transactional) never happened.
                .set("isolation.level", "read_committed"),
        )
        .context("cannot create a Kafka consumer")?;
        consumer
            .subscribe(topics)
            .with_context(|| format!("subscribing to {}", topics.join(", ")))?;
        Ok(consumer)
    }

    /// Reads every record a topic holds now, from the beginning, outside any consumer
    /// group: what a follower needs to know before it follows (the outlet registry,
    /// before the first alert names an outlet). Blocking.
    pub fn read_to_end(
        &self,
        topic: &str,
        mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
    ) -> anyhow::Result<usize> {
        use rdkafka::consumer::Consumer;
        use rdkafka::Message;
        let (_, metadata) = self.metadata(Some(topic))?;
        let consumer: BaseConsumer = create(
            self.client()?
                .set("group.id", "pantau-read-to-end")
                .set("enable.auto.commit", "false")
                // The end is where the consumer says it is: on a transactional topic the
                // last offset is a commit marker, which is never delivered as a record.
                .set("enable.partition.eof", "true"),
        )
        .context("cannot create a Kafka consumer")?;
        let mut assignment = rdkafka::TopicPartitionList::new();
        let mut ends = std::collections::BTreeMap::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), Duration::from_secs(30))
                .with_context(|| {
                    format!("cannot read the offsets of {topic}/{}", partition.id())
                })?;
            if high > low {
                assignment.add_partition_offset(
                    topic,
                    partition.id(),
                    rdkafka::Offset::Beginning,
                )?;
                ends.insert(partition.id(), high);
            }
        }
        consumer.assign(&assignment)?;
        let mut read = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while !ends.is_empty() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "{topic} not read to its end within 5 minutes"
            );
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(message)) => {
                    each(&message);
                    read += 1;
                    if ends
                        .get(&message.partition())
                        .is_some_and(|end| message.offset() + 1 >= *end)
                    {
                        ends.remove(&message.partition());
                    }
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                    ends.remove(&partition);
                }
                Some(Err(e)) => {
                    tracing::warn!(topic, error = %e, "Kafka error while reading to the end")
                }
                None => {}
            }
        }
        Ok(read)
    }

    /// The topics the cluster does not know yet.
    fn missing_topics<'a>(&self, topics: &[&'a str]) -> anyhow::Result<Vec<&'a str>> {
        let (_, metadata) = self.metadata(None)?;
        let known: Vec<&str> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.name())
            .collect();
        Ok(topics
            .iter()
            .copied()
            .filter(|t| !known.contains(t))
            .collect())
    }

    /// How many partitions a topic has.
    pub fn partition_count(&self, topic: &str) -> anyhow::Result<i32> {
        let (_, metadata) = self.metadata(Some(topic))?;
        let n = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        anyhow::ensure!(n > 0, "topic {topic} has no partitions");
        Ok(n as i32)
    }

    /// Creates the topics if they are missing; an existing topic is left as it is.
    pub async fn ensure_topics(&self, topics: &[&str]) -> anyhow::Result<()> {
        let missing = self.missing_topics(topics)?;
        if missing.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> =
            create(&self.client()?).context("cannot create a Kafka admin client")?;
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| NewTopic::new(t, self.partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(new.iter(), &opts)
            .await
            .with_context(|| format!("cannot create topics on {}", self.brokers))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("cannot create topic {topic}: {code}"),
            }
        }
        Ok(())
    }
}

/// Whether `error` means the cluster refuses this client as configured (TLS that does
/// not verify, SASL credentials or a mechanism it rejects), as opposed to a broker that
/// is away. librdkafka keeps retrying either; pantau stops at start on a refusal.
pub fn is_refusal(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        error.rdkafka_error_code(),
        Some(
            C::SSL
                | C::Authentication
                | C::SaslAuthenticationFailed
                | C::UnsupportedSASLMechanism
                | C::IllegalSASLState
                | C::ClusterAuthorizationFailed
        )
    )
}

/// Keeps the first refusal librdkafka reports (see [`is_refusal`]).
#[derive(Default)]
pub struct RefusalContext {
    refusal: std::sync::Mutex<Option<String>>,
}

impl RefusalContext {
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().ok().and_then(|r| r.clone())
    }
}

impl ClientContext for RefusalContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_refusal(&error) {
            if let Ok(mut refusal) = self.refusal.lock() {
                refusal.get_or_insert_with(|| reason.to_string());
            }
        } else {
            tracing::debug!(%error, reason, "Kafka error while connecting");
        }
    }
}

// The probe is a producer that never produces.
impl rdkafka::producer::ProducerContext for RefusalContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// What this binary's librdkafka was built with (`builtin.features`: ssl, sasl_scram,
/// zstd, ...).
pub fn builtin_features() -> anyhow::Result<Vec<String>> {
    let native = ClientConfig::new().create_native_config()?;
    Ok(native
        .get("builtin.features")?
        .split(',')
        .map(str::to_string)
        .collect())
}

/// A record of the topics that follow pantau's output read: an alert or a registry entry.
pub enum Followed {
    Alert(Box<pantau_core::model::Alert>),
    Outlet(Box<pantau_core::model::Outlet>),
}

/// Reads a record of `pantau.alerts` or `bpnt.outlets` (by its topic).
pub fn parse_followed(topic: &str, payload: &[u8]) -> anyhow::Result<Followed> {
    Ok(if topic == pantau_core::model::TOPIC_OUTLETS {
        Followed::Outlet(Box::new(serde_json::from_slice(payload)?))
    } else {
        Followed::Alert(Box::new(serde_json::from_slice(payload)?))
    })
}

/// `pantau_unreadable_records_total`, registered by the followers (`store`, `notify`).
pub fn unreadable_counter(r: &prometheus::Registry) -> IntCounterVec {
    pantau_core::metrics::counter(
        r,
        "pantau_unreadable_records_total",
        "Records on pantau.alerts or bpnt.outlets that `pantau store` or `pantau notify` could not read, by topic (each logged with its offset; pantau run dead-letters a bad registry record)",
        &["topic"],
    )
}

/// Reads a followed record; one that cannot be read is counted in
/// `pantau_unreadable_records_total` and logged with its offset. `pantau run`
/// dead-letters a bad registry record, and an unreadable alert is a bug upstream: the
/// follower can only say so and go on.
pub fn read_followed(
    message: &rdkafka::message::BorrowedMessage<'_>,
    unreadable: &IntCounterVec,
) -> Option<Followed> {
    use rdkafka::Message;
    match parse_followed(message.topic(), message.payload().unwrap_or_default()) {
        Ok(record) => Some(record),
        Err(e) => {
            unreadable.with_label_values(&[message.topic()]).inc();
            tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), error = %e, "unreadable record skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::BaseRecord;

    #[test]
    fn read_to_end_finishes_on_a_transactional_topic_ending_in_a_commit_marker() {
        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        mock.create_topic("t", 2, 1).unwrap();
        let kafka = KafkaConfig::plain(mock.bootstrap_servers(), 2);
        let producer: BaseProducer = kafka
            .client()
            .unwrap()
            .set("transactional.id", "read-to-end-test")
            .create()
            .unwrap();
        let timeout = Duration::from_secs(10);
        producer.init_transactions(timeout).unwrap();
        producer.begin_transaction().unwrap();
        for (i, partition) in [0, 1, 0].into_iter().enumerate() {
            let payload = format!("record {i}");
            producer
                .send(
                    BaseRecord::<(), String>::to("t")
                        .partition(partition)
                        .payload(&payload),
                )
                .unwrap();
        }
        producer.commit_transaction(timeout).unwrap();
        // Before, it waited for the offset the commit marker holds, and failed at its
        // 5-minute limit.
        let mut read = Vec::new();
        let n = kafka
            .read_to_end("t", |m| {
                use rdkafka::Message;
                read.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
            })
            .unwrap();
        assert_eq!(n, 3);
        read.sort();
        assert_eq!(read, vec!["record 0", "record 1", "record 2"]);
    }
}
