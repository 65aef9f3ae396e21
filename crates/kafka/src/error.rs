//! What went wrong talking to Kafka, and what the caller should do about it. The
//! variants follow who has to act: the user's settings and secrets (librdkafka refusing a
//! property, a secret that cannot be read: stop), the cluster as a whole (refusing pantau:
//! stop; away: retry; a topic missing: stop), one librdkafka call of a consumer or
//! producer (decided by librdkafka's error code in [`kafka_recovery`], the one place that
//! reads those codes), and one record that cannot be read or sent (dead-letter).

use std::path::PathBuf;

use pantau_core::error::{io_recovery, Recoverable, Recovery};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// librdkafka refused a setting, or could not make a client of the settings (an
    /// unknown property, a bad value, a certificate it cannot load); the text, scrubbed
    /// of secrets, stands for librdkafka's error, whose own text may show one.
    #[error("{0}")]
    Setting(String),
    /// A property pantau sets itself, given by the user (the text says what to do
    /// instead).
    #[error("{0}")]
    PropertyRefused(String),
    /// A secret given as `env:NAME` whose variable is not set.
    #[error("{key}: the environment variable {name} is not set")]
    SecretUnset { key: String, name: String },
    /// A secret given as `file:PATH` that cannot be read.
    #[error("{key}: cannot read {path}")]
    SecretFile {
        key: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `--kafka-config` names a file that cannot be read.
    #[error("cannot read the Kafka properties file {}", path.display())]
    PropertiesFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of the properties file that is not `key=value`.
    #[error("{} line {line}: {problem}", path.display())]
    PropertiesLine {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    /// A client (`client` names it: "the Kafka producer", "a Kafka consumer") could
    /// not be made.
    #[error("cannot create {client}")]
    Client {
        client: &'static str,
        #[source]
        source: Box<Error>,
    },
    /// The cluster answered and refused pantau as configured (a certificate that does
    /// not verify, refused SASL credentials): librdkafka's `reason` says why.
    #[error("the brokers at {brokers} refused pantau: {reason}")]
    Refused { brokers: String, reason: String },
    /// No broker answered within the wait.
    #[error("cannot reach the brokers at {brokers}")]
    Unreachable {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    /// A topic pantau reads is not there (or has no partitions).
    #[error("topic {topic} has no partitions")]
    NoPartitions { topic: String },
    /// The request to create missing topics failed as a whole.
    #[error("cannot create topics on {brokers}")]
    CreateTopics {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    /// The cluster refused to create one topic (`code`: why).
    #[error("cannot create topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    /// A follower's topics (`topics`, joined) could not be made sure of.
    #[error("creating {topics}")]
    FollowedTopics {
        topics: String,
        #[source]
        source: Box<Error>,
    },
    /// A consumer's call failed (subscribing, committing, reading offsets, pausing);
    /// `action` says which, as the message.
    #[error("{action}")]
    Consumer {
        action: String,
        #[source]
        source: KafkaError,
    },
    /// The consumer has no group to commit a transaction's offsets as.
    #[error("no consumer group metadata")]
    NoGroupMetadata,
    /// A step of a Kafka transaction failed.
    #[error("cannot {step}")]
    Transaction {
        step: &'static str,
        #[source]
        source: KafkaError,
    },
    /// The broker did not take a record that was sent.
    #[error("the broker refused a record")]
    Delivery {
        #[source]
        source: KafkaError,
    },
    /// Sent records the broker had not acknowledged when the wait ended.
    #[error("records still unacknowledged at shutdown")]
    Unacknowledged {
        #[source]
        source: KafkaError,
    },
    /// A topic whose end was not reached within the wait.
    #[error("{topic} not read to its end within 5 minutes")]
    NotReadToEnd { topic: String },
    /// A record of `pantau.alerts` or `bpnt.outlets` that is not one.
    #[error(transparent)]
    Unreadable(serde_json::Error),
    /// librdkafka could not say what it was built with.
    #[error("cannot read librdkafka's built-in features")]
    Features {
        #[source]
        source: KafkaError,
    },
}

impl Error {
    /// Wraps the failure to make a client named `client`.
    pub(crate) fn client(client: &'static str) -> impl FnOnce(Error) -> Error {
        move |source| Error::Client {
            client,
            source: Box::new(source),
        }
    }

    /// Wraps a consumer's failed call, `action` being the message.
    pub(crate) fn consumer(action: impl Into<String>) -> impl FnOnce(KafkaError) -> Error {
        let action = action.into();
        move |source| Error::Consumer { action, source }
    }

    /// Wraps a failed step of a transaction.
    pub(crate) fn transaction(step: &'static str) -> impl FnOnce(KafkaError) -> Error {
        move |source| Error::Transaction { step, source }
    }
}

impl Recoverable for Error {
    fn recovery(&self) -> Recovery {
        match self {
            // The user's settings are wrong as written: restarting reads them again.
            Error::Setting(_)
            | Error::PropertyRefused(_)
            | Error::SecretUnset { .. }
            | Error::PropertiesLine { .. } => Recovery::Stop,
            // Missing or forbidden files stop; a full disk or an interrupted read may pass.
            Error::SecretFile { source, .. } | Error::PropertiesFile { source, .. } => {
                io_recovery(source)
            }
            Error::Client { source, .. } | Error::FollowedTopics { source, .. } => {
                source.recovery()
            }
            // A refused credential or certificate stays refused until someone changes it.
            Error::Refused { .. } => Recovery::Stop,
            // Brokers away (restarting, a network cut) come back.
            Error::Unreachable { .. } => Recovery::Retry,
            // pantau creates its topics at start; one missing later is set-up gone wrong.
            // Just after pantau created the topic, a broker that has not heard of it
            // yet answers so; it passes.
            Error::NoPartitions { .. } => Recovery::Retry,
            Error::CreateTopics { source, .. }
            | Error::Consumer { source, .. }
            | Error::Transaction { source, .. }
            | Error::Delivery { source }
            | Error::Unacknowledged { source } => kafka_recovery(source),
            Error::CreateTopic { code, .. } => kafka_recovery(&KafkaError::AdminOp(*code)),
            // A consumer made without a group: pantau's own set-up is broken.
            Error::NoGroupMetadata => Recovery::Stop,
            // A broker slow to serve a backlog, or away: it may answer later.
            Error::NotReadToEnd { .. } => Recovery::Retry,
            // One bad record; the ones after it may be fine.
            Error::Unreadable(_) => Recovery::DeadLetter,
            // This binary's librdkafka is what it is.
            Error::Features { .. } => Recovery::Stop,
        }
    }
}

/// What a librdkafka error asks for, by its error code: one record the broker will
/// never take is dead-lettered; a refused credential, a missing topic or a setting the
/// cluster rejects stops; anything else (timeouts, transport failures, brokers away, a
/// full queue, leader elections, rebalances) is a passing state of the cluster and is
/// retried.
pub(crate) fn kafka_recovery(error: &KafkaError) -> Recovery {
    use RDKafkaErrorCode as C;
    let code = match error {
        KafkaError::AdminOp(code) => *code,
        other => match other.rdkafka_error_code() {
            Some(code) => code,
            None => {
                return match other {
                    // librdkafka refused the settings, or a topic list, before any request.
                    KafkaError::ClientConfig(..)
                    | KafkaError::ClientCreation(_)
                    | KafkaError::AdminOpCreation(_)
                    | KafkaError::Subscription(_)
                    | KafkaError::Nul(_) => Recovery::Stop,
                    // A client dropped mid-call, a partition taken by a rebalance.
                    _ => Recovery::Retry,
                };
            }
        },
    };
    match code {
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::MessageBatchTooLarge
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::BadMessage
        | C::KeySerialization
        | C::ValueSerialization => Recovery::DeadLetter,
        // Credentials, certificates and ACLs.
        C::SSL
        | C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::UnacceptableCredential
        | C::SecurityDisabled
        | C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::DelegationTokenAuthorizationFailed
        // Topics that are not there, as the client itself knows. A broker's
        // UnknownTopicOrPartition is not here: brokers answer it for a while during a
        // leader election, a partition move or just after a topic is created.
        | C::UnknownTopic
        | C::InvalidTopic
        // Settings and features the client or the cluster rejects.
        | C::InvalidConfig
        | C::InvalidArgument
        | C::NotConfigured
        | C::InvalidPartitions
        | C::InvalidReplicationFactor
        | C::PolicyViolation
        | C::InvalidRequiredAcks
        | C::InvalidGroupId
        | C::InvalidSessionTimeout
        | C::InvalidTransactionTimeout
        | C::UnsupportedVersion
        | C::UnsupportedFeature
        | C::NotImplemented
        | C::UnsupportedCompressionType
        | C::UnsupportedAssignor
        // Another instance holds this transactional id or group instance.
        | C::ProducerFenced
        | C::Fenced
        | C::FencedInstanceId => Recovery::Stop,
        _ => Recovery::Retry,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use RDKafkaErrorCode as C;

    #[test]
    fn librdkafka_codes_split_into_dead_letters_stops_and_retries() {
        for (error, wanted) in [
            (
                KafkaError::MessageProduction(C::MessageSizeTooLarge),
                Recovery::DeadLetter,
            ),
            (
                KafkaError::MessageProduction(C::InvalidRecord),
                Recovery::DeadLetter,
            ),
            (KafkaError::Global(C::Authentication), Recovery::Stop),
            (
                KafkaError::MetadataFetch(C::TopicAuthorizationFailed),
                Recovery::Stop,
            ),
            (KafkaError::MetadataFetch(C::UnknownTopic), Recovery::Stop),
            (KafkaError::AdminOp(C::InvalidConfig), Recovery::Stop),
            (
                KafkaError::ClientCreation("ssl.ca.location failed".into()),
                Recovery::Stop,
            ),
            (KafkaError::Global(C::AllBrokersDown), Recovery::Retry),
            (
                KafkaError::MessageConsumption(C::BrokerTransportFailure),
                Recovery::Retry,
            ),
            (
                KafkaError::ConsumerCommit(C::RequestTimedOut),
                Recovery::Retry,
            ),
            (KafkaError::MessageProduction(C::QueueFull), Recovery::Retry),
            (
                KafkaError::MetadataFetch(C::BrokerNotAvailable),
                Recovery::Retry,
            ),
            (KafkaError::Canceled, Recovery::Retry),
        ] {
            assert_eq!(kafka_recovery(&error), wanted, "{error:?}");
        }
    }

    #[test]
    fn every_refusal_stops_and_every_broker_outage_retries() {
        for code in [
            C::SSL,
            C::Authentication,
            C::SaslAuthenticationFailed,
            C::UnsupportedSASLMechanism,
            C::IllegalSASLState,
            C::ClusterAuthorizationFailed,
        ] {
            let error = KafkaError::Global(code);
            assert!(crate::is_refusal(&error), "{code:?}");
            assert_eq!(kafka_recovery(&error), Recovery::Stop, "{code:?}");
        }
        for code in [
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::Resolve,
            C::BrokerNotAvailable,
            C::NetworkException,
            C::MessageTimedOut,
            C::RequestTimedOut,
            C::OperationTimedOut,
            C::TimedOutQueue,
        ] {
            let error = KafkaError::Global(code);
            assert!(crate::health::is_broker_outage(&error), "{code:?}");
            assert_eq!(kafka_recovery(&error), Recovery::Retry, "{code:?}");
        }
    }

    #[test]
    fn a_refused_credential_stops_rather_than_retries() {
        let refused = Error::Refused {
            brokers: "kafka:9093".into(),
            reason: "SASL SCRAM authentication failed".into(),
        };
        assert_eq!(refused.recovery(), Recovery::Stop);
        assert_eq!(
            refused.to_string(),
            "the brokers at kafka:9093 refused pantau: SASL SCRAM authentication failed"
        );
        let away = Error::Unreachable {
            brokers: "kafka:9093".into(),
            source: KafkaError::MetadataFetch(C::OperationTimedOut),
        };
        assert_eq!(away.recovery(), Recovery::Retry);
        assert_eq!(away.to_string(), "cannot reach the brokers at kafka:9093");
    }

    /// Brokers answer so for a while after a topic is created or while a partition
    /// moves: a restart then would stop a group for nothing.
    #[test]
    fn a_topic_the_broker_does_not_know_yet_retries_and_an_invalid_one_stops() {
        let new = Error::NoPartitions {
            topic: "pantau.by-province".into(),
        };
        assert_eq!(new.recovery(), Recovery::Retry);
        let moving = Error::Consumer {
            action: "cannot subscribe to the input topics".into(),
            source: KafkaError::MessageConsumption(C::UnknownTopicOrPartition),
        };
        assert_eq!(moving.recovery(), Recovery::Retry);
        let invalid = Error::Consumer {
            action: "cannot subscribe to the input topics".into(),
            source: KafkaError::MessageConsumption(C::InvalidTopic),
        };
        assert_eq!(invalid.recovery(), Recovery::Stop);
        let not_made = Error::CreateTopic {
            topic: "pantau.alerts".into(),
            code: C::InvalidReplicationFactor,
        };
        assert_eq!(not_made.recovery(), Recovery::Stop);
    }

    #[test]
    fn a_record_too_large_for_the_broker_is_dead_lettered() {
        let refused = Error::Delivery {
            source: KafkaError::MessageProduction(C::MessageSizeTooLarge),
        };
        assert_eq!(refused.recovery(), Recovery::DeadLetter);
        let away = Error::Delivery {
            source: KafkaError::MessageProduction(C::MessageTimedOut),
        };
        assert_eq!(away.recovery(), Recovery::Retry);
    }

    #[test]
    fn a_client_that_cannot_be_made_stops_whatever_it_was_for() {
        let error = Error::client("the Kafka producer")(Error::Setting(
            "Kafka setting ssl.ca.locaton=/tmp/ca.pem: no such configuration property".into(),
        ));
        assert_eq!(error.recovery(), Recovery::Stop);
        assert_eq!(error.to_string(), "cannot create the Kafka producer");
    }
}
