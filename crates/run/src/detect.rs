//! The stateful half of `pantau run`: one engine per partition of `pantau.by-province`
//! this instance owns, each with its position (the next internal offset to read) and its
//! checkpoints.
//!
//! A partition's engine is restored from the checkpoint its committed offset names when
//! the partition is assigned, and checkpointed (then committed) when it is revoked, at
//! every checkpoint interval and at shutdown. A partition with a committed offset but no
//! checkpoint for it (the state directory was lost) is rebuilt from the start of the
//! partition, loudly: the alternative, empty state from the committed offset, would
//! silently forget months of rollups.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::RunMetrics;
use crate::reload::Change;
use pantau_core::error::chain;
use pantau_core::model::PartitionId;
use pantau_core::model::{Alert, DeadLetter};
use pantau_engine::checkpoint::CheckpointStore;
use pantau_engine::engine::{Engine, EngineConfig, RawRecord};
use pantau_engine::route::Envelope;
use pantau_engine::rules::RuleSet;
use pantau_engine::suppress::SnoozeList;
use pantau_kafka::source::{CommitOffset, Origin, Record, Start};

struct PartitionEngine {
    engine: Engine,
    /// The next internal offset to process: everything before it is in the engine.
    position: i64,
    /// Whether a checkpoint exists for this partition (restored or written).
    checkpointed: bool,
}

pub struct Detector {
    engines: BTreeMap<i32, PartitionEngine>,
    store: CheckpointStore,
    config: EngineConfig,
    /// The rule set in force: engines of partitions assigned later start with it.
    rules: RuleSet,
    snoozes: Arc<SnoozeList>,
    metrics: Arc<RunMetrics>,
}

impl Detector {
    pub fn new(
        store: CheckpointStore,
        config: &EngineConfig,
        rules: RuleSet,
        metrics: Arc<RunMetrics>,
    ) -> Detector {
        Detector {
            engines: BTreeMap::new(),
            store,
            config: config.clone(),
            rules,
            snoozes: Arc::default(),
            metrics,
        }
    }

    fn new_engine(&self) -> Engine {
        let mut engine = Engine::new(&self.config, self.rules.clone());
        engine.set_snoozes(self.snoozes.clone());
        engine
    }

    /// Hands every engine, and those of partitions assigned later, a change of the rules
    /// or of the snooze list; window state stays.
    pub(crate) fn apply(&mut self, change: Change) {
        match change {
            Change::Rules(set) => {
                for pe in self.engines.values_mut() {
                    pe.engine.reload(set.clone());
                }
                self.rules = set;
            }
            Change::Snoozes(list) => {
                for pe in self.engines.values_mut() {
                    pe.engine.set_snoozes(list.clone());
                }
                self.snoozes = list;
            }
        }
    }

    /// Takes up a partition. `committed` is the group's committed offset and its
    /// metadata, if any.
    pub fn assign(
        &mut self,
        partition: i32,
        committed: Option<(i64, String)>,
    ) -> crate::error::Result<Start> {
        let mut engine = self.new_engine();
        tracing::debug!(partition, ?committed, "assigning");
        let (start, position, checkpointed) = match committed {
            None => (Start::Beginning, 0, false),
            Some((offset, metadata)) => {
                let restoration = self.store.for_commit(partition, offset, &metadata);
                for (name, error) in &restoration.skipped {
                    let reason = error.reason();
                    self.metrics
                        .state_rebuilds
                        .with_label_values(&[reason])
                        .inc();
                    tracing::error!(
                        partition,
                        checkpoint = %name,
                        reason,
                        error = %chain(error),
                        "a checkpoint cannot be read; passed over"
                    );
                }
                match restoration.restored {
                    Some(restored) => {
                        let position = restored.position;
                        if position == offset {
                            tracing::info!(partition, checkpoint = %restored.name, offset, "restored the state of a partition");
                        } else {
                            // Records from there to the commit are read again; alerts
                            // they raise again carry the same ids.
                            tracing::warn!(partition, checkpoint = %restored.name, from = position, committed = offset, "restored an older checkpoint; reading the internal topic again from it");
                        }
                        engine.restore(restored.snapshot);
                        self.metrics.checkpoints_restored.inc();
                        (Start::At(position), position, true)
                    }
                    None => {
                        if restoration.skipped.is_empty() {
                            self.metrics
                                .state_rebuilds
                                .with_label_values(&["missing"])
                                .inc();
                        }
                        tracing::error!(
                            partition,
                            offset,
                            checkpoint = %metadata,
                            "no usable checkpoint for the committed offset: rebuilding this partition's state from the beginning"
                        );
                        (Start::Beginning, 0, false)
                    }
                }
            }
        };
        self.engines.insert(
            partition,
            PartitionEngine {
                engine,
                position,
                checkpointed,
            },
        );
        Ok(start)
    }

    /// Lets a partition go (after `checkpoint` when it was revoked in order).
    pub fn release(&mut self, partition: i32) {
        self.engines.remove(&partition);
    }

    pub fn partitions(&self) -> Vec<i32> {
        self.engines.keys().copied().collect()
    }

    /// Processes records of one internal partition at the wall clock's `now` (µs).
    /// Records before the position were processed before a restore or rewind, and are
    /// skipped.
    pub fn ingest(
        &mut self,
        partition: i32,
        records: &[Record],
        now: i64,
    ) -> crate::error::Result<Vec<DeadLetter>> {
        let Some(pe) = self.engines.get_mut(&partition) else {
            // Fetched before this partition was revoked: the new owner reads them.
            return Ok(Vec::new());
        };
        let mut dead = Vec::new();
        let mut run: Vec<RawRecord> = Vec::new();
        let mut run_source: Option<PartitionId> = None;
        let flush = |engine: &mut Engine,
                     source: Option<PartitionId>,
                     run: &mut Vec<RawRecord>,
                     dead: &mut Vec<DeadLetter>|
         -> crate::error::Result<()> {
            if let (Some(source), false) = (source, run.is_empty()) {
                dead.extend(engine.ingest(source.0, source.1, run, now)?);
            }
            run.clear();
            Ok(())
        };
        if let Some(first) = records.first() {
            if first.offset > pe.position {
                // Only pantau writes this topic and never compacts it: a jump is records
                // lost in the broker (tansu 0.6's memory storage skips the rest of a
                // batch when a fetch starts inside it) or transaction markers.
                self.metrics
                    .offset_gaps
                    .with_label_values(&[pantau_core::model::TOPIC_BY_PROVINCE])
                    .inc();
                tracing::warn!(
                    partition,
                    position = pe.position,
                    first = first.offset,
                    "internal records skipped: the fetch did not start at the engine's position"
                );
            }
        }
        for record in records {
            if record.offset < pe.position {
                continue;
            }
            pe.position = record.offset + 1;
            let envelope = match Envelope::decode(record.payload.as_deref().unwrap_or_default()) {
                Ok(e) => e,
                Err(e) => {
                    // Only pantau writes this topic: a bad record here is a bug or
                    // tampering, not bank input, and has no source to dead-letter to.
                    self.metrics.internal_rejected.inc();
                    tracing::error!(partition, offset = record.offset, error = %chain(&e), "unreadable record on the internal topic; skipped");
                    continue;
                }
            };
            match envelope {
                Envelope::Record {
                    source,
                    offset,
                    payload,
                    received,
                    whole: Some(whole),
                } => {
                    flush(&mut pe.engine, run_source, &mut run, &mut dead)?;
                    let cut = RawRecord {
                        key: record.key.as_deref(),
                        payload,
                        offset,
                        received,
                    };
                    dead.push(
                        pe.engine
                            .reject_too_large(source.0, source.1, &cut, &whole, now),
                    );
                }
                Envelope::Record {
                    source,
                    offset,
                    payload,
                    received,
                    whole: None,
                } => {
                    if run_source != Some(source) {
                        flush(&mut pe.engine, run_source, &mut run, &mut dead)?;
                        run_source = Some(source);
                    }
                    run.push(RawRecord {
                        key: record.key.as_deref(),
                        payload,
                        offset,
                        received,
                    });
                }
                Envelope::Progress {
                    source,
                    max_event,
                    idle,
                } => {
                    flush(&mut pe.engine, run_source, &mut run, &mut dead)?;
                    pe.engine.observe_progress(source, max_event, idle);
                }
            }
        }
        flush(&mut pe.engine, run_source, &mut run, &mut dead)?;
        self.metrics.engine.publish(pe.engine.take_tally());
        Ok(dead)
    }

    /// Closes what every engine's watermark has passed.
    pub async fn advance(&mut self, wall_clock_us: i64) -> crate::error::Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        for pe in self.engines.values_mut() {
            let closed = pe.engine.advance(wall_clock_us).await;
            self.metrics.engine.publish(pe.engine.take_tally());
            self.metrics
                .engine
                .observe_watermarks(&pe.engine, wall_clock_us);
            alerts.extend(closed?);
        }
        Ok(alerts)
    }

    /// Raw rows every engine holds for open windows.
    pub fn buffered_rows(&self) -> usize {
        self.engines
            .values()
            .map(|pe| pe.engine.buffered_rows())
            .sum()
    }

    /// Internal records before `ends` (the next offset per partition) that the engines
    /// have not read yet.
    pub(crate) fn unread(&self, ends: &BTreeMap<i32, i64>) -> usize {
        self.engines
            .iter()
            .filter_map(|(p, pe)| ends.get(p).map(|end| (end - pe.position).max(0) as usize))
            .sum()
    }

    /// The lowest engine's watermark: `None` while one waits for its first, or there is
    /// no engine.
    pub fn watermark(&self) -> Option<i64> {
        let mut watermarks = self.engines.values().map(|pe| pe.engine.watermark());
        let first = watermarks.next()??;
        watermarks.try_fold(first, |low, w| Some(low.min(w?)))
    }

    /// True when every engine's sources have been declared idle (and there is an engine).
    pub fn all_idle(&self) -> bool {
        !self.engines.is_empty() && self.engines.values().all(|pe| pe.engine.all_idle())
    }

    /// Writes a checkpoint of each of `partitions` (except those never read from), and
    /// returns the offsets to commit with them: the position, named by the checkpoint.
    /// Call only when every alert the engines returned so far is durable (acknowledged,
    /// or in the transaction this commit closes).
    pub fn checkpoint(&mut self, partitions: &[i32]) -> crate::error::Result<Vec<CommitOffset>> {
        let mut offsets = Vec::new();
        for p in partitions {
            let Some(pe) = self.engines.get_mut(p) else {
                continue;
            };
            // A partition that was never read from has nothing worth a checkpoint.
            if pe.position == 0 && !pe.checkpointed {
                continue;
            }
            let started = Instant::now();
            let name = self.store.write(*p, pe.position, &pe.engine.snapshot())?;
            self.metrics
                .checkpoint_seconds
                .observe(started.elapsed().as_secs_f64());
            pe.checkpointed = true;
            offsets.push(CommitOffset {
                origin: Origin::ByProvince(*p),
                offset: pe.position,
                metadata: Some(name),
            });
        }
        Ok(offsets)
    }
}
