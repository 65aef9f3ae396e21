//! The services that follow pantau's output (the alert store, the notifier, the
//! report): a consumer of their own group reading `pantau.alerts` and `bpnt.outlets`,
//! and a read of a topic from its beginning to its current end. Records come out as
//! [`Read`] and [`Followed`], so no follower names an rdkafka type.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus::IntCounterVec;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::{create, KafkaConfig};

/// A record as read: where it sits and its value.
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub payload: &'a [u8],
}

impl<'a> Read<'a> {
    fn of(message: &'a impl Message) -> Read<'a> {
        Read {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            payload: message.payload().unwrap_or_default(),
        }
    }
}

/// A record of the topics that follow pantau's output read: an alert or a registry entry.
pub enum Followed {
    Alert(Box<pantau_core::model::Alert>),
    Outlet(Box<pantau_core::model::Outlet>),
}

/// Reads a record of `pantau.alerts` or `bpnt.outlets` (by its topic).
pub fn parse_followed(topic: &str, payload: &[u8]) -> Result<Followed> {
    Ok(if topic == pantau_core::model::TOPIC_OUTLETS {
        Followed::Outlet(Box::new(
            serde_json::from_slice(payload).map_err(Error::Unreadable)?,
        ))
    } else {
        Followed::Alert(Box::new(
            serde_json::from_slice(payload).map_err(Error::Unreadable)?,
        ))
    })
}

/// `pantau_unreadable_records_total`, registered by the followers (`store`, `notify`).
pub fn unreadable_counter(r: &prometheus::Registry) -> IntCounterVec {
    crate::metrics::counter(
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
pub fn read_followed(read: &Read<'_>, unreadable: &IntCounterVec) -> Option<Followed> {
    match parse_followed(read.topic, read.payload) {
        Ok(record) => Some(record),
        Err(e) => {
            unreadable.with_label_values(&[read.topic]).inc();
            tracing::warn!(topic = read.topic, partition = read.partition, offset = read.offset, error = %e, "unreadable record skipped");
            None
        }
    }
}

/// One record a [`Follower`] read, and what it held (`None`: unreadable, already
/// counted and logged).
pub struct FollowedAt {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record: Option<Followed>,
}

/// A consumer in its own group that commits only what its owner says is done.
pub struct Follower {
    consumer: StreamConsumer,
    unreadable: IntCounterVec,
}

impl Follower {
    /// The next record. A Kafka error (a broker away) is logged and the read goes on:
    /// librdkafka reconnects by itself.
    pub async fn next(&self) -> FollowedAt {
        loop {
            match self.consumer.recv().await {
                Ok(message) => {
                    let read = Read::of(&message);
                    return FollowedAt {
                        topic: read.topic.to_owned(),
                        partition: read.partition,
                        offset: read.offset,
                        record: read_followed(&read, &self.unreadable),
                    };
                }
                Err(e) => tracing::warn!(error = %e, "Kafka error while following"),
            }
        }
    }

    /// Commits, per topic and partition, the next offset to read. A failed commit is
    /// logged: what came after the last commit is read again after a restart, which
    /// the followers take without harm (the store rewrites the same rows, the notifier
    /// keeps a log of what it delivered).
    pub fn commit(&self, next: &BTreeMap<(String, i32), i64>) {
        if next.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(error = %e, "bad offset to commit");
            }
        }
        if let Err(e) = self.consumer.commit(&list, CommitMode::Sync) {
            tracing::warn!(error = %e, "offset commit failed; what follows the last commit may be read again");
        }
    }
}

impl KafkaConfig {
    /// A follower in `group` that reads `topics` from their beginning, only what was
    /// committed, and commits nothing by itself. The topics are created if missing,
    /// since subscribing to one that does not exist yet waits for librdkafka's next
    /// metadata refresh (five minutes) after someone else creates it.
    pub async fn follower(
        &self,
        group: &str,
        topics: &[&str],
        unreadable: IntCounterVec,
    ) -> Result<Follower> {
        self.ensure_topics(topics)
            .await
            .map_err(|source| Error::FollowedTopics {
                topics: topics.join(", "),
                source: Box::new(source),
            })?;
        let consumer: StreamConsumer = create(
            self.client()?
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                // Alerts of an aborted transaction (pantau run --transactional) never happened.
                .set("isolation.level", "read_committed"),
        )
        .map_err(Error::client("a Kafka consumer"))?;
        consumer.subscribe(topics).map_err(Error::consumer(format!(
            "subscribing to {}",
            topics.join(", ")
        )))?;
        Ok(Follower {
            consumer,
            unreadable,
        })
    }

    /// Reads every record a topic holds now, from the beginning, outside any consumer
    /// group: what a follower needs to know before it follows (the outlet registry,
    /// before the first alert names an outlet). Blocking.
    pub fn read_to_end(&self, topic: &str, mut each: impl FnMut(Read<'_>)) -> Result<usize> {
        let (_, metadata) = self.metadata(Some(topic))?;
        let consumer: BaseConsumer = create(
            self.client()?
                .set("group.id", "pantau-read-to-end")
                .set("enable.auto.commit", "false")
                // The end is where the consumer says it is: on a transactional topic the
                // last offset is a commit marker, which is never delivered as a record.
                .set("enable.partition.eof", "true"),
        )
        .map_err(Error::client("a Kafka consumer"))?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition.id(), Duration::from_secs(30))
                .map_err(Error::consumer(format!(
                    "cannot read the offsets of {topic}/{}",
                    partition.id()
                )))?;
            if high > low {
                assignment
                    .add_partition_offset(topic, partition.id(), Offset::Beginning)
                    .map_err(Error::consumer(format!(
                        "cannot assign {topic}/{}",
                        partition.id()
                    )))?;
                ends.insert(partition.id(), high);
            }
        }
        consumer
            .assign(&assignment)
            .map_err(Error::consumer(format!(
                "cannot assign the partitions of {topic}"
            )))?;
        let mut read = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while !ends.is_empty() {
            if std::time::Instant::now() >= deadline {
                return Err(Error::NotReadToEnd {
                    topic: topic.to_string(),
                });
            }
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(message)) => {
                    each(Read::of(&message));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    #[test]
    fn an_unreadable_followed_record_is_dead_lettered() {
        use pantau_core::error::{Recoverable, Recovery};
        let Err(error) = parse_followed(pantau_core::model::TOPIC_OUTLETS, b"{not json") else {
            panic!("a broken record was read");
        };
        assert_eq!(error.recovery(), Recovery::DeadLetter);
    }

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
                read.push(String::from_utf8_lossy(m.payload).into_owned());
            })
            .unwrap();
        assert_eq!(n, 3);
        read.sort();
        assert_eq!(read, vec!["record 0", "record 1", "record 2"]);
    }
}
