//! The four input topics as a Kafka consumer group.
//!
//! **Invariant: an offset is committed only after everything derived from the records
//! before it has been acknowledged by the broker** — the alerts of every window those
//! records belong to, and their dead letters. `pipeline` asks the engine which offsets
//! are safe (`Engine::committable`), produces, awaits the acknowledgements, and only
//! then calls [`KafkaSource::commit`]. Auto-commit is off.
//!
//! Records arrive in batches: up to `batch_size` records or `linger`, whichever comes
//! first. Rebalances are recorded by the consumer context and handed to the pipeline,
//! which tells the watermark which partitions to wait for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::kafka::KafkaConfig;
use crate::model::Stream;
use crate::watermark::PartitionId;

/// Consumer group settings for `pantau run`.
#[derive(Debug, Clone, clap::Args)]
pub struct SourceConfig {
    /// Consumer group id; instances with the same id share the partitions.
    #[arg(long, default_value = "pantau")]
    pub group: String,
    /// Largest number of records decoded together.
    #[arg(long, default_value_t = 5000)]
    pub batch_size: usize,
    /// Longest wait for a batch to fill, e.g. `200ms`.
    #[arg(long, default_value = "200ms", value_parser = crate::engine::parse_duration)]
    pub linger: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Assigned(Vec<PartitionId>),
    Revoked(Vec<PartitionId>),
}

#[derive(Default)]
pub struct RebalanceLog {
    events: Mutex<Vec<Assignment>>,
}

impl RebalanceLog {
    fn partitions(list: &TopicPartitionList) -> Vec<PartitionId> {
        list.elements()
            .iter()
            .filter_map(|e| Stream::from_topic(e.topic()).map(|s| (s, e.partition())))
            .collect()
    }
}

/// Consumer context that records rebalances for the pipeline loop.
pub struct RecordingContext {
    log: Arc<RebalanceLog>,
}

impl ClientContext for RecordingContext {}

impl ConsumerContext for RecordingContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let event = match rebalance {
            Rebalance::Assign(list) => Assignment::Assigned(RebalanceLog::partitions(list)),
            Rebalance::Revoke(list) => Assignment::Revoked(RebalanceLog::partitions(list)),
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        if let Ok(mut events) = self.log.events.lock() {
            events.push(event);
        }
    }
}

/// An owned input record.
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub offset: i64,
}

/// Records of one partition from one poll, in offset order.
pub struct PartitionBatch {
    pub partition: PartitionId,
    pub records: Vec<Record>,
}

pub struct KafkaSource {
    consumer: StreamConsumer<RecordingContext>,
    log: Arc<RebalanceLog>,
    config: SourceConfig,
    last_offset: BTreeMap<PartitionId, i64>,
    committed: BTreeMap<PartitionId, i64>,
    /// Offsets that jumped: records the broker no longer had (counted, logged).
    pub gaps: u64,
}

impl KafkaSource {
    pub fn subscribe(kafka: &KafkaConfig, config: &SourceConfig) -> anyhow::Result<KafkaSource> {
        let log = Arc::new(RebalanceLog::default());
        let consumer: StreamConsumer<RecordingContext> = kafka
            .client()
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", "10000")
            // librdkafka prefetches up to 64 MB per partition by default; records of one
            // partition can then wait behind other partitions' for many seconds, which
            // looks like an idle partition. A short local queue keeps delivery fair and
            // memory bounded.
            .set("queued.max.messages.kbytes", "4096")
            .create_with_context(RecordingContext { log: log.clone() })
            .context("cannot create the Kafka consumer")?;
        let topics: Vec<&str> = Stream::ALL.iter().map(|s| s.topic()).collect();
        consumer
            .subscribe(&topics)
            .context("cannot subscribe to the input topics")?;
        Ok(KafkaSource {
            consumer,
            log,
            config: config.clone(),
            last_offset: BTreeMap::new(),
            committed: BTreeMap::new(),
            gaps: 0,
        })
    }

    /// Rebalances since the last call, in order.
    pub fn take_rebalances(&self) -> Vec<Assignment> {
        self.log
            .events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }

    /// Waits for up to `batch_size` records or `linger`, grouped by partition.
    pub async fn next_batch(&mut self) -> anyhow::Result<Vec<PartitionBatch>> {
        let deadline = Instant::now() + self.config.linger;
        let mut by_partition: BTreeMap<PartitionId, Vec<Record>> = BTreeMap::new();
        let mut n = 0;
        while n < self.config.batch_size {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let msg = match tokio::time::timeout(left, self.consumer.recv()).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    // Broker-side trouble is retried by librdkafka; report and go on.
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                Ok(Ok(m)) => m,
            };
            let Some(stream) = Stream::from_topic(msg.topic()) else {
                continue;
            };
            let pid = (stream, msg.partition());
            if let Some(last) = self.last_offset.get(&pid) {
                if msg.offset() > last + 1 && stream != Stream::Outlets {
                    self.gaps += 1;
                    tracing::warn!(
                        topic = msg.topic(),
                        partition = msg.partition(),
                        from = last + 1,
                        to = msg.offset(),
                        "offsets jumped: records missing from the broker"
                    );
                }
            }
            self.last_offset.insert(pid, msg.offset());
            by_partition.entry(pid).or_default().push(Record {
                key: msg.key().map(<[u8]>::to_vec),
                payload: msg.payload().map(<[u8]>::to_vec),
                offset: msg.offset(),
            });
            n += 1;
        }
        Ok(by_partition
            .into_iter()
            .map(|(partition, records)| PartitionBatch { partition, records })
            .collect())
    }

    /// Commits the given next-offsets (only those that moved). Call only once everything
    /// derived from the records before them has been acknowledged.
    ///
    /// `sync` waits for the coordinator's answer (at shutdown); otherwise the commit is
    /// sent in order behind earlier ones and the loop goes on.
    pub fn commit(
        &mut self,
        offsets: &BTreeMap<PartitionId, i64>,
        sync: bool,
    ) -> anyhow::Result<bool> {
        let assigned: std::collections::BTreeSet<(String, i32)> = self
            .consumer
            .assignment()
            .map(|a| {
                a.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect()
            })
            .unwrap_or_default();
        let mut list = TopicPartitionList::new();
        for (pid, offset) in offsets {
            // A revoked partition is no longer ours to commit. At shutdown everything is
            // committed again, synchronously, so an async commit still in flight cannot
            // be the last word.
            let unchanged = !sync && self.committed.get(pid) == Some(offset);
            if unchanged || !assigned.contains(&(pid.0.topic().to_string(), pid.1)) {
                continue;
            }
            list.add_partition_offset(pid.0.topic(), pid.1, Offset::Offset(*offset))?;
        }
        if list.count() == 0 {
            return Ok(false);
        }
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        self.consumer
            .commit(&list, mode)
            .context("offset commit failed")?;
        for e in list.elements() {
            if let (Some(stream), Offset::Offset(o)) = (Stream::from_topic(e.topic()), e.offset()) {
                self.committed.insert((stream, e.partition()), o);
            }
        }
        Ok(true)
    }

    /// Of the given partitions, those with records still to read, and how many: the
    /// consumer's position is behind the partition's high watermark. A partition that is
    /// behind is stalled, not idle, and must keep holding the watermark however long it
    /// stays silent. Asks the broker, so call it only for partitions that look idle.
    pub fn backlog(&self, idle: &[PartitionId]) -> Vec<(PartitionId, i64)> {
        let Ok(positions) = self.consumer.position() else {
            return Vec::new();
        };
        idle.iter()
            .filter_map(|pid| {
                let position = positions
                    .find_partition(pid.0.topic(), pid.1)
                    .map(|e| e.offset());
                let (_, high) = tokio::task::block_in_place(|| {
                    self.consumer
                        .fetch_watermarks(pid.0.topic(), pid.1, Duration::from_secs(2))
                })
                .ok()?;
                let lag = match position {
                    Some(Offset::Offset(p)) => high - p,
                    _ => high,
                };
                (lag > 0).then_some((*pid, lag))
            })
            .collect()
    }

    pub fn consumer(&self) -> &StreamConsumer<RecordingContext> {
        &self.consumer
    }
}
