//! pantau's Kafka side, the only library crate with a Kafka client: client settings and
//! topic creation (here and [`settings`]), the consumer groups of `run` ([`source`]),
//! the producers of alerts, dead letters and forwarded records ([`sink`]), the followers'
//! reading of `pantau.alerts` and `bpnt.outlets` ([`follow`]), the broker's health
//! ([`health`]), the shape of every process's Prometheus metrics ([`metrics`]), and what
//! a failure asks of its caller ([`error`]).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::error::{Error, Result};

pub mod error;
pub mod follow;
pub mod health;
pub mod metrics;
mod settings;
pub mod sink;
pub mod source;

pub use settings::{create, ClientSettings, Property};
pub(crate) use settings::{create_with, SetDefault};

/// Settings of every client pantau makes against one cluster.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, `HOST:PORT[,HOST:PORT...]`.
    pub brokers: String,
    /// Partitions of the topics pantau creates.
    pub partitions: i32,
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
    pub fn client(&self) -> Result<ClientConfig> {
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
    ) -> Result<(BaseProducer<RefusalContext>, Metadata)> {
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
                return Err(Error::Refused {
                    brokers: self.brokers.clone(),
                    reason,
                });
            }
            match attempt {
                Ok(metadata) => return Ok((client, metadata)),
                Err(source) if std::time::Instant::now() >= deadline => {
                    return Err(Error::Unreachable {
                        brokers: self.brokers.clone(),
                        source,
                    })
                }
                Err(_) => {}
            }
        }
    }

    /// The topics the cluster does not know yet.
    fn missing_topics<'a>(&self, topics: &[&'a str]) -> Result<Vec<&'a str>> {
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
    pub fn partition_count(&self, topic: &str) -> Result<i32> {
        let (_, metadata) = self.metadata(Some(topic))?;
        let n = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        if n == 0 {
            return Err(Error::NoPartitions {
                topic: topic.to_string(),
            });
        }
        Ok(n as i32)
    }

    /// Creates the topics if they are missing; an existing topic is left as it is.
    pub async fn ensure_topics(&self, topics: &[&str]) -> Result<()> {
        let missing = self.missing_topics(topics)?;
        if missing.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> =
            create(&self.client()?).map_err(Error::client("a Kafka admin client"))?;
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| NewTopic::new(t, self.partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(new.iter(), &opts)
            .await
            .map_err(|source| Error::CreateTopics {
                brokers: self.brokers.clone(),
                source,
            })?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(Error::CreateTopic { topic, code }),
            }
        }
        Ok(())
    }
}

/// Whether `error` means the cluster refuses this client as configured (TLS that does
/// not verify, SASL credentials or a mechanism it rejects), as opposed to a broker that
/// is away. librdkafka keeps retrying either; pantau stops at start on a refusal.
pub(crate) fn is_refusal(error: &KafkaError) -> bool {
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
pub fn builtin_features() -> Result<Vec<String>> {
    let features = |source| Error::Features { source };
    let native = ClientConfig::new()
        .create_native_config()
        .map_err(features)?;
    Ok(native
        .get("builtin.features")
        .map_err(features)?
        .split(',')
        .map(str::to_string)
        .collect())
}
