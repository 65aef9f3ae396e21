//! The input topics and the internal `pantau.by-province` topic as one Kafka consumer
//! group member.
//!
//! **Invariant: an offset is committed only after everything derived from the records
//! before it is durable.** For an input partition that is the forwarded copy on the
//! internal topic; for an internal partition it is the alerts of every window those
//! records closed and the engine's checkpoint at that offset (`detect`). Auto-commit is
//! off.
//!
//! Records arrive in batches: up to `batch_size` records or `linger`, whichever comes
//! first. Rebalances are handed to a [`RebalanceHook`] *inside* librdkafka's rebalance
//! callback, before partitions are released or fetched: that is where revoked
//! partitions' state is checkpointed and committed, and where assigned ones are restored
//! and told which offset to start from. They are also logged for the pipeline loop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGaugeVec;
use rdkafka::bindings::rd_kafka_resp_err_t as RDKafkaRespErr;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::error::{Error, Result};
use crate::health::Health;
use crate::sink::KafkaSink;
use crate::{KafkaConfig, SetDefault};
use pantau_core::model::PartitionId;
use pantau_core::model::Stream;
use pantau_core::model::TOPIC_BY_PROVINCE;

/// The lag [`KafkaSource::backlog`] reports for a partition the broker did not answer
/// about: unknown, so held as behind.
pub(crate) const UNKNOWN_LAG: i64 = -1;

/// Consumer group settings for `pantau run`.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Consumer group id; instances with the same id share the partitions.
    pub group: String,
    /// Largest number of records decoded together.
    pub batch_size: usize,
    /// Longest wait for a batch to fill.
    pub linger: Duration,
    /// librdkafka's `session.timeout.ms`: long, because a broker serving a backlog
    /// answers heartbeats late (10 s was seen to expire).
    pub session_timeout: Duration,
}

/// Where a partition's records come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// An input topic's partition.
    Input(PartitionId),
    /// A partition of the internal topic, by province.
    ByProvince(i32),
}

impl Origin {
    fn of(topic: &str, partition: i32) -> Option<Origin> {
        if topic == TOPIC_BY_PROVINCE {
            return Some(Origin::ByProvince(partition));
        }
        Stream::from_topic(topic).map(|s| Origin::Input((s, partition)))
    }

    pub fn topic(&self) -> &'static str {
        match self {
            Origin::Input((stream, _)) => stream.topic(),
            Origin::ByProvince(_) => TOPIC_BY_PROVINCE,
        }
    }

    pub fn partition(&self) -> i32 {
        match self {
            Origin::Input((_, p)) | Origin::ByProvince(p) => *p,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Assigned(Vec<Origin>),
    Revoked(Vec<Origin>),
}

/// Partitions of a list that pantau knows.
fn origins(list: &TopicPartitionList) -> Vec<Origin> {
    list.elements()
        .iter()
        .filter_map(|e| Origin::of(e.topic(), e.partition()))
        .collect()
}

/// Where an assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From this offset, with the state of the checkpoint taken there.
    At(i64),
    /// From the beginning, with empty state.
    Beginning,
}

/// What runs inside the rebalance callback, while librdkafka waits for it.
pub trait RebalanceHook: Send + Sync {
    /// Partitions are about to be assigned: restore their state and say where each is
    /// to be read from (one not named: from its committed offset).
    fn assigning(&self, group: &Group<'_>, assigned: &[Origin]) -> Vec<(Origin, Start)>;
    /// Partitions are about to be taken away: checkpoint and commit them now, the last
    /// moment this member may.
    fn revoking(&self, group: &Group<'_>, revoked: &[Origin]);
}

/// A committed offset and the metadata beside it (the name of the checkpoint taken there).
pub(crate) type Committed = (i64, String);

/// The consumer group member as a rebalance hook may use it.
pub struct Group<'a> {
    consumer: &'a BaseConsumer<RecordingContext>,
}

impl Group<'_> {
    /// The committed offset of each partition with its metadata; `None` where nothing
    /// was committed.
    pub fn committed(&self, partitions: &[Origin]) -> Result<Vec<(Origin, Option<Committed>)>> {
        let committed = self
            .consumer
            .committed_offsets(partition_list(partitions), Duration::from_secs(30))
            .map_err(Error::consumer("cannot read the committed offsets"))?;
        Ok(partitions
            .iter()
            .map(|o| {
                let commit =
                    committed
                        .find_partition(o.topic(), o.partition())
                        .and_then(|e| match e.offset() {
                            Offset::Offset(offset) => Some((offset, e.metadata().to_string())),
                            _ => None,
                        });
                (*o, commit)
            })
            .collect())
    }

    /// The session expired: the partitions are already someone else's and no commit
    /// of this member is accepted.
    pub fn assignment_lost(&self) -> bool {
        self.consumer.assignment_lost()
    }

    /// Commits `offsets` and waits for the broker's answer.
    pub fn commit(&self, offsets: &[CommitOffset]) -> Result<()> {
        self.consumer
            .commit(&offset_list(offsets)?, CommitMode::Sync)
            .map_err(Error::consumer("cannot commit offsets"))
    }

    /// Commits `offsets` with `sink`'s open transaction, and opens the next.
    pub fn commit_in(&self, sink: &KafkaSink, offsets: &[CommitOffset]) -> Result<()> {
        commit_with(self.consumer, sink, offsets)
    }
}

/// Consumer context: runs the rebalance hook, records rebalances for the pipeline loop,
/// and reports broker outages to the health state.
pub(crate) struct RecordingContext {
    events: Mutex<Vec<Assignment>>,
    hook: Mutex<Option<Arc<dyn RebalanceHook>>>,
    health: Option<Arc<Health>>,
    /// `pantau_consumer_lag_records`, filled from librdkafka's statistics.
    lag: Option<IntGaugeVec>,
}

impl ClientContext for RecordingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::health::report_client_error(self.health.as_deref(), &error, reason, "consumer");
    }

    /// librdkafka's own view of each assigned partition's lag (its high watermark minus
    /// the position), for every partition and not just the ones being read.
    fn stats(&self, statistics: Statistics) {
        let Some(lag) = &self.lag else { return };
        for (topic, t) in &statistics.topics {
            for p in t.partitions.values() {
                // -1: the internal "unassigned" partition, or a lag not known yet.
                if p.partition >= 0 && p.consumer_lag >= 0 {
                    lag.with_label_values(&[topic, &p.partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl RecordingContext {
    fn record(&self, event: Assignment) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    fn hook(&self) -> Option<Arc<dyn RebalanceHook>> {
        self.hook.lock().ok().and_then(|h| h.clone())
    }
}

impl ConsumerContext for RecordingContext {
    // Eager rebalancing only (the default assignors): every rebalance revokes everything,
    // then assigns afresh.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Some(hook) = self.hook() {
                    for (origin, start) in hook.assigning(&Group { consumer }, &origins(list)) {
                        let offset = match start {
                            Start::At(o) => Offset::Offset(o),
                            Start::Beginning => Offset::Beginning,
                        };
                        if let Err(e) =
                            list.set_partition_offset(origin.topic(), origin.partition(), offset)
                        {
                            tracing::error!(error = %e, "cannot set where an assigned partition starts");
                        }
                    }
                }
                if let Err(e) = consumer.assign(list) {
                    tracing::error!(error = %e, "cannot take up the assigned partitions");
                }
                // librdkafka keeps a partition's pause across a revoke and a new
                // assignment; the router forgot it at the revoke, so nobody would
                // resume it.
                if let Err(e) = consumer.resume(list) {
                    tracing::error!(error = %e, "cannot resume the assigned partitions");
                }
                self.record(Assignment::Assigned(origins(list)));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Some(hook) = self.hook() {
                    hook.revoking(&Group { consumer }, &origins(list));
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "cannot release the revoked partitions");
                }
                self.record(Assignment::Revoked(origins(list)));
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
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
    pub origin: Origin,
    pub records: Vec<Record>,
}

pub struct KafkaSource {
    consumer: StreamConsumer<RecordingContext>,
    config: SourceConfig,
    last_offset: BTreeMap<Origin, i64>,
    committed: BTreeMap<Origin, i64>,
    /// Offsets that jumped: records the broker no longer had (counted, logged).
    pub gaps: u64,
}

/// A commit: the next offset of a partition, and what to note beside it (the name of
/// the checkpoint that holds the state at that offset).
pub struct CommitOffset {
    pub origin: Origin,
    pub offset: i64,
    pub metadata: Option<String>,
}

/// Commits `offsets` with `sink`'s open transaction as `consumer`'s group, and opens the
/// next transaction.
fn commit_with(
    consumer: &impl Consumer<RecordingContext>,
    sink: &KafkaSink,
    offsets: &[CommitOffset],
) -> Result<()> {
    let group = consumer.group_metadata().ok_or(Error::NoGroupMetadata)?;
    sink.commit_transaction(&offset_list(offsets)?, &group)
}

/// The offsets as librdkafka wants them.
fn offset_list(offsets: &[CommitOffset]) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for c in offsets {
        let mut e = list.add_partition(c.origin.topic(), c.origin.partition());
        e.set_offset(Offset::Offset(c.offset))
            .map_err(Error::consumer(format!(
                "cannot set the offset of {}/{}",
                c.origin.topic(),
                c.origin.partition()
            )))?;
        if let Some(m) = &c.metadata {
            e.set_metadata(m.as_str());
        }
    }
    Ok(list)
}

fn partition_list(partitions: &[Origin]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for o in partitions {
        list.add_partition(o.topic(), o.partition());
    }
    list
}

impl KafkaSource {
    pub fn subscribe(
        kafka: &KafkaConfig,
        config: &SourceConfig,
        health: Option<Arc<Health>>,
        lag: Option<IntGaugeVec>,
    ) -> Result<KafkaSource> {
        let stats_interval = if lag.is_some() { "5000" } else { "0" };
        let context = RecordingContext {
            events: Mutex::new(Vec::new()),
            hook: Mutex::new(None),
            health,
            lag,
        };
        let mut client = kafka.client()?;
        client
            .set("statistics.interval.ms", stats_interval)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            // Routed records and alerts written in an aborted transaction are never read.
            .set("isolation.level", "read_committed")
            // librdkafka prefetches up to 64 MB per partition by default; records of one
            // partition can then wait behind other partitions' for many seconds, which
            // looks like an idle partition. A short local queue keeps delivery fair and
            // memory bounded.
            .set_default("queued.max.messages.kbytes", "4096");
        let consumer: StreamConsumer<RecordingContext> =
            crate::create_with(&client, context).map_err(Error::client("the Kafka consumer"))?;
        Ok(KafkaSource {
            consumer,
            config: config.clone(),
            last_offset: BTreeMap::new(),
            committed: BTreeMap::new(),
            gaps: 0,
        })
    }

    /// Joins the group on the input topics and the internal topic; `hook` runs in every
    /// rebalance from then on.
    pub fn start(&self, hook: Arc<dyn RebalanceHook>) -> Result<()> {
        if let Ok(mut h) = self.consumer.context().hook.lock() {
            *h = Some(hook);
        }
        let mut topics: Vec<&str> = Stream::ALL.iter().map(|s| s.topic()).collect();
        topics.push(TOPIC_BY_PROVINCE);
        self.consumer
            .subscribe(&topics)
            .map_err(Error::consumer("cannot subscribe to the input topics"))
    }

    /// No more rebalance work: at shutdown the state is already checkpointed and
    /// committed, and closing the consumer revokes everything once more.
    pub fn stop_hook(&self) {
        if let Ok(mut h) = self.consumer.context().hook.lock() {
            *h = None;
        }
    }

    /// Rebalances since the last call, in order. Offsets read before a rebalance say
    /// nothing about the records after it.
    pub fn take_rebalances(&mut self) -> Vec<Assignment> {
        let events = self
            .consumer
            .context()
            .events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default();
        for event in &events {
            let (Assignment::Assigned(origins) | Assignment::Revoked(origins)) = event;
            for o in origins {
                self.last_offset.remove(o);
                self.committed.remove(o);
            }
        }
        events
    }

    /// Waits for up to `batch_size` records or `linger`, grouped by partition.
    pub async fn next_batch(&mut self) -> Result<Vec<PartitionBatch>> {
        let deadline = Instant::now() + self.config.linger;
        let mut by_partition: BTreeMap<Origin, Vec<Record>> = BTreeMap::new();
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
                    match &self.consumer.context().health {
                        Some(h) => h.on_client_error(&e, "consuming"),
                        None => tracing::warn!(error = %e, "consumer error"),
                    }
                    break;
                }
                Ok(Ok(m)) => m,
            };
            let Some(origin) = Origin::of(msg.topic(), msg.partition()) else {
                continue;
            };
            if let Some(last) = self.last_offset.get(&origin) {
                // The registry is compacted: its offsets jump by design.
                if msg.offset() > last + 1
                    && origin != Origin::Input((Stream::Outlets, origin.partition()))
                {
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
            self.last_offset.insert(origin, msg.offset());
            by_partition.entry(origin).or_default().push(Record {
                key: msg.key().map(<[u8]>::to_vec),
                payload: msg.payload().map(<[u8]>::to_vec),
                offset: msg.offset(),
            });
            n += 1;
        }
        if n > 0 {
            if let Some(h) = &self.consumer.context().health {
                h.broker_up();
            }
        }
        Ok(by_partition
            .into_iter()
            .map(|(origin, records)| PartitionBatch { origin, records })
            .collect())
    }

    /// Commits the given next-offsets (only those that moved and are still assigned).
    /// Call only once everything derived from the records before them is durable.
    ///
    /// `sync` waits for the coordinator's answer (at shutdown); otherwise the commit is
    /// sent in order behind earlier ones and the loop goes on.
    pub fn commit(&mut self, offsets: &[CommitOffset], sync: bool) -> Result<bool> {
        let assigned: std::collections::BTreeSet<Origin> = self
            .consumer
            .assignment()
            .map(|a| origins(&a).into_iter().collect())
            .unwrap_or_default();
        let moved: Vec<CommitOffset> = offsets
            .iter()
            .filter(|c| assigned.contains(&c.origin))
            .filter(|c| sync || self.committed.get(&c.origin) != Some(&c.offset))
            .map(|c| CommitOffset {
                origin: c.origin,
                offset: c.offset,
                metadata: c.metadata.clone(),
            })
            .collect();
        if moved.is_empty() {
            return Ok(false);
        }
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        self.consumer
            .commit(&offset_list(&moved)?, mode)
            .map_err(Error::consumer("offset commit failed"))?;
        for c in moved {
            self.committed.insert(c.origin, c.offset);
        }
        Ok(true)
    }

    /// Stops fetching these partitions; their records wait in the broker, and reading
    /// resumes after the last one handed out.
    pub fn pause(&self, partitions: &[Origin]) -> Result<()> {
        self.consumer
            .pause(&partition_list(partitions))
            .map_err(Error::consumer("cannot pause input partitions"))
    }

    pub fn resume(&self, partitions: &[Origin]) -> Result<()> {
        self.consumer
            .resume(&partition_list(partitions))
            .map_err(Error::consumer("cannot resume input partitions"))
    }

    /// Of the given partitions, those with records still to read, and how many: the
    /// consumer's position is behind the partition's high watermark. A partition that is
    /// behind is stalled, not idle, and must keep holding the watermark however long it
    /// stays silent. Asks the broker, so call it only for partitions that look idle.
    ///
    /// A question the broker does not answer (a busy broker times out serving a backlog)
    /// counts as behind, with [`UNKNOWN_LAG`]: before, no answer counted as no backlog,
    /// and declaring a partition idle on no answer runs the watermark past everything
    /// still unread.
    pub fn backlog(&self, candidates: &[Origin]) -> Vec<(Origin, i64)> {
        let Ok(positions) = self.consumer.position() else {
            return candidates.iter().map(|o| (*o, UNKNOWN_LAG)).collect();
        };
        candidates
            .iter()
            .filter_map(|origin| {
                let answered = tokio::task::block_in_place(|| {
                    self.consumer.fetch_watermarks(
                        origin.topic(),
                        origin.partition(),
                        Duration::from_secs(2),
                    )
                });
                let Ok((low, high)) = answered else {
                    return Some((*origin, UNKNOWN_LAG));
                };
                // The broker answered: whatever outage there was is over.
                if let Some(h) = &self.consumer.context().health {
                    h.broker_up();
                }
                let position = match positions
                    .find_partition(origin.topic(), origin.partition())
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(p)) => p,
                    // Nothing fetched since the assignment: reading starts at the
                    // committed offset, or at the start of the partition.
                    _ => self
                        .committed
                        .get(origin)
                        .copied()
                        .or_else(|| self.group_committed(origin))
                        .unwrap_or(low),
                };
                let lag = high - position;
                (lag > 0).then_some((*origin, lag))
            })
            .collect()
    }

    /// The group's committed offset of one partition, if it has one.
    fn group_committed(&self, origin: &Origin) -> Option<i64> {
        let mut query = TopicPartitionList::new();
        query.add_partition(origin.topic(), origin.partition());
        let committed = tokio::task::block_in_place(|| {
            self.consumer
                .committed_offsets(query, Duration::from_secs(2))
        })
        .ok()?;
        match committed
            .find_partition(origin.topic(), origin.partition())?
            .offset()
        {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    }

    /// Commits `offsets` with `sink`'s open transaction, and opens the next.
    pub fn commit_in(&self, sink: &KafkaSink, offsets: &[CommitOffset]) -> Result<()> {
        commit_with(&self.consumer, sink, offsets)
    }
}
