//! The flags of the Kafka clients: the cluster, its librdkafka settings, and `run`'s
//! consumer group.

use std::path::PathBuf;
use std::time::Duration;

use pantau_core::text::parse_duration;
use pantau_kafka::source::SourceConfig;
use pantau_kafka::{ClientSettings, KafkaConfig, Property};

#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]`.
    #[arg(long, env = "PANTAU_BROKERS")]
    pub brokers: String,
    /// Partitions for topics pantau creates when they do not exist yet.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    #[command(flatten)]
    pub settings: ClientArgs,
}

impl From<KafkaArgs> for KafkaConfig {
    fn from(a: KafkaArgs) -> Self {
        KafkaConfig {
            brokers: a.brokers,
            partitions: a.partitions,
            settings: a.settings.into(),
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// A librdkafka property for every Kafka client pantau makes (consumers, producers,
    /// admin), as kcat's -X: `-X security.protocol=SASL_SSL`. Repeatable; overrides
    /// --kafka-config. A value `env:NAME` is read from the environment variable NAME and
    /// `file:PATH` from a file, so no secret has to sit on a command line.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = Property::parse)]
    pub properties: Vec<Property>,
    /// A librdkafka properties file (`key=value` lines, `#` comments; kcat's -F), read
    /// before -X.
    #[arg(long, value_name = "FILE", env = "PANTAU_KAFKA_CONFIG")]
    pub kafka_config: Option<PathBuf>,
}

impl ClientArgs {
    /// The flags that give a child process these same settings; secrets stay the
    /// references they were given as.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        if let Some(file) = &self.kafka_config {
            args.push("--kafka-config".into());
            args.push(file.clone().into_os_string());
        }
        for property in &self.properties {
            args.push("-X".into());
            args.push(format!("{}={}", property.key, property.value).into());
        }
        args
    }
}

impl From<ClientArgs> for ClientSettings {
    fn from(a: ClientArgs) -> Self {
        ClientSettings {
            properties: a.properties,
            kafka_config: a.kafka_config,
        }
    }
}

/// Consumer group settings for `pantau run`.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceArgs {
    /// Consumer group id; instances with the same id share the partitions.
    #[arg(long, default_value = "pantau")]
    pub group: String,
    /// Largest number of records decoded together.
    #[arg(long, default_value_t = 5000)]
    pub batch_size: usize,
    /// Longest wait for a batch to fill, e.g. `200ms`.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub linger: Duration,
    /// How long the group coordinator waits for this member's heartbeat before handing
    /// its partitions to others (librdkafka's `session.timeout.ms`). A broker busy
    /// serving a backlog answers heartbeats late: 10 s was seen to expire there. A lost
    /// session ends in a rejoin, never a stall.
    #[arg(long, default_value = "45s", value_parser = parse_duration)]
    pub session_timeout: Duration,
}

impl From<SourceArgs> for SourceConfig {
    fn from(a: SourceArgs) -> Self {
        SourceConfig {
            group: a.group,
            batch_size: a.batch_size,
            linger: a.linger,
            session_timeout: a.session_timeout,
        }
    }
}
