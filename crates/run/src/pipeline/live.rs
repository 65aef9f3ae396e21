//! `pantau run`: one member of a consumer group. Each turn of [`run`]'s loop takes a
//! batch, forwards input records to the internal topic by province ([`route`]), feeds
//! internal records to their partition's engine ([`Detector`]), closes windows, produces
//! alerts and dead letters, and at each checkpoint interval checkpoints the engines and
//! commits the internal offsets with them. The steps of a turn are the methods of
//! [`Live`], in the order the loop calls them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::rebalance::{Shared, Worker};
use super::{load_snoozes, wall_clock_us, Summary};
use crate::backpressure::{Backpressure, RowsPerRecord};
use crate::detect::Detector;
use crate::dlq::DeadLetterPacer;
use crate::error::{Error, Result};
use crate::metrics::RunMetrics;
use crate::reload::{report_loaded, Change, Watcher};
use pantau_core::error::chain;
use pantau_core::model::{Alert, Outgoing, PartitionId, TOPIC_BY_PROVINCE};
use pantau_engine::checkpoint::CheckpointStore;
use pantau_engine::engine::{EngineConfig, RawRecord};
use pantau_engine::route::{self, InputClocks, InputRecord};
use pantau_kafka::health::Health;
use pantau_kafka::sink::KafkaSink;
use pantau_kafka::source::{
    Assignment, CommitOffset, KafkaSource, Origin, PartitionBatch, SourceConfig,
};
use pantau_kafka::KafkaConfig;

/// Options of `pantau run` beyond the broker and the group.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Stop once every partition is idle and every window closed, instead of at a signal.
    pub exit_when_idle: bool,
    /// Where engine state is checkpointed; shared by the instances of one group.
    pub state_dir: PathBuf,
    /// How often state is checkpointed and the internal offsets committed with it.
    pub checkpoint_interval: Duration,
    /// Produce alerts and commit offsets in Kafka transactions.
    pub transactional: bool,
    /// This instance's name, from which transactional ids derive.
    pub instance_id: String,
    /// At shutdown, the longest wait to finish the batch in hand, checkpoint and commit.
    pub shutdown_timeout: Duration,
    /// How often the rules folder and the snooze file are looked at for changes.
    pub reload_interval: Duration,
    /// Dead letters produced per second on average at most (0: no limit).
    pub dlq_max_per_sec: u32,
    /// Raw rows the engines may hold for open windows before partitions running ahead
    /// are paused (0: no limit); `None`: half the memory limit's worth.
    pub max_buffered_rows: Option<usize>,
    /// Tests only: pauses standing in for a slow machine.
    pub slow_down: SlowDown,
}

/// Pauses the end-to-end tests put into a run to stand in for a slow machine; none in
/// any real deployment.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlowDown {
    /// After every batch read: the whole member is slow.
    pub per_batch: Option<Duration>,
    /// Before every batch of the internal topic an engine takes: the engines fall behind
    /// the routers.
    pub per_engine_batch: Option<Duration>,
}

/// Runs the pipeline as a member of a consumer group until shut down (or idle, when
/// asked). With `--transactional` the forwarding and the alerts each go in Kafka
/// transactions with the offsets they consumed.
pub async fn run(
    kafka: &KafkaConfig,
    source_config: &SourceConfig,
    run_config: &RunConfig,
    engine_config: &EngineConfig,
    metrics: Arc<RunMetrics>,
    mut on_alert: impl FnMut(&Alert),
) -> Result<Summary> {
    let started = Instant::now();
    let mut live = Live::join(kafka, source_config, run_config, engine_config, metrics).await?;
    let mut shutdown = Box::pin(shutdown_signal());
    let signalled = loop {
        let batches = tokio::select! {
            biased;
            _ = &mut shutdown => break true,
            batches = live.source.next_batch() => batches?,
        };
        if let Some(delay) = run_config.slow_down.per_batch {
            tokio::time::sleep(delay).await;
        }
        let mut worker = live.take_worker()?;
        let now = Instant::now();
        for change in live.watcher.poll(now, &live.metrics).await {
            worker.detector.apply(change);
        }
        let mut forwarded = live.rebalanced(now);
        let input_offsets = live.forward(&batches, now, &mut forwarded);
        let turn = Instant::now();
        live.declare_idle_inputs(turn, &mut forwarded);
        live.route(&mut worker, &forwarded, &input_offsets).await?;
        let (mut outgoing, dead) = live.ingest(&mut worker, &batches).await?;
        live.hold_back_inputs(&worker)?;
        // Every dead letter is produced; a flood is paced by waiting before reading on.
        // One wait stays far below librdkafka's max.poll.interval.ms (300 s); a larger
        // debt is waited off over the next turns (the pacer keeps it).
        let dlq_wait = live.pacer.charge(dead, turn).min(Duration::from_secs(30));
        let alerts = worker.detector.advance(wall_clock_us()).await?;
        alerts.iter().for_each(&mut on_alert);
        live.summary.add_alerts(&alerts);
        for a in &alerts {
            outgoing.push(Outgoing::alert(a)?);
        }
        live.produce(&worker, &outgoing).await?;
        let idle = live.checkpoint_when_due(&mut worker, turn)?;
        live.shared.park(worker);
        if idle {
            tracing::info!("every partition idle and every window closed; exiting");
            break false;
        }
        if !live.wait_off_dead_letters(dlq_wait, &mut shutdown).await {
            break true;
        }
    };
    if signalled {
        tracing::info!("shutdown requested; checkpointing and committing");
    }
    let mut summary = live.leave().await?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A member of the group at work: its clients, its engines (parked in `shared` between
/// turns, for the rebalance callbacks) and what it keeps from turn to turn.
struct Live<'a> {
    run_config: &'a RunConfig,
    engine_config: &'a EngineConfig,
    metrics: Arc<RunMetrics>,
    source: KafkaSource,
    /// Forwards input records to the internal topic.
    router: KafkaSink,
    shared: Arc<Shared>,
    watcher: Watcher,
    health: Arc<Health>,
    internal_partitions: i32,
    clocks: InputClocks,
    last_idle_check: Option<Instant>,
    backpressure: Backpressure,
    max_buffered_rows: usize,
    rows_per_record: RowsPerRecord,
    /// Where this instance's router has written the internal topic up to: what its
    /// engines have yet to read of it will be buffered too.
    internal_ends: BTreeMap<i32, i64>,
    pacer: DeadLetterPacer,
    last_checkpoint: Instant,
    summary: Summary,
}

impl<'a> Live<'a> {
    /// Loads the rules (a broken rule set fails here, before joining the group), creates
    /// the topics, clients and engines, and subscribes.
    async fn join(
        kafka: &KafkaConfig,
        source_config: &SourceConfig,
        run_config: &'a RunConfig,
        engine_config: &'a EngineConfig,
        metrics: Arc<RunMetrics>,
    ) -> Result<Live<'a>> {
        let rules_location = engine_config.rules_location();
        let rule_set = rules_location.load()?;
        report_loaded(&rule_set, &metrics);
        let snoozes = load_snoozes(engine_config, &metrics)?;
        let watcher = Watcher::new(
            rules_location.folder(),
            engine_config.snooze.as_deref(),
            run_config.reload_interval,
            rule_set.clone(),
        )?;
        let mut detector = Detector::new(
            CheckpointStore::new(run_config.state_dir.join(&source_config.group)),
            engine_config,
            rule_set,
            metrics.clone(),
        );
        detector.apply(Change::Snoozes(snoozes));
        kafka.ensure_topics(&pantau_core::model::ALL_TOPICS).await?;
        let internal_partitions = kafka.partition_count(TOPIC_BY_PROVINCE)?;
        let health = metrics.served.health.clone();
        let sink = |role: &str| {
            let transactional_id = run_config
                .transactional
                .then(|| format!("{}-{role}", run_config.instance_id));
            KafkaSink::with_health(kafka, transactional_id.as_deref(), Some(health.clone()))
        };
        let (router, alerts) = (sink("route")?, sink("detect")?);
        if run_config.transactional {
            router.begin()?;
            alerts.begin()?;
        }
        let shared = Arc::new(Shared::new(
            Worker {
                detector,
                alerts,
                routed: BTreeMap::new(),
            },
            metrics.clone(),
        ));
        let source = KafkaSource::subscribe(
            kafka,
            source_config,
            Some(health.clone()),
            Some(metrics.consumer_lag.clone()),
        )?;
        source.start(shared.clone())?;
        let max_buffered_rows = run_config
            .max_buffered_rows
            .unwrap_or_else(crate::backpressure::default_cap);
        tracing::info!(
            max_buffered_rows,
            "input partitions that run ahead pause when the engines hold this many rows"
        );
        Ok(Live {
            run_config,
            engine_config,
            source,
            router,
            shared,
            watcher,
            health,
            internal_partitions,
            clocks: InputClocks::new(engine_config.idle_timeout),
            last_idle_check: None,
            backpressure: Backpressure::new(
                max_buffered_rows,
                source_config.batch_size,
                engine_config.lateness,
            ),
            max_buffered_rows,
            rows_per_record: RowsPerRecord::default(),
            internal_ends: BTreeMap::new(),
            pacer: DeadLetterPacer::new(run_config.dlq_max_per_sec),
            last_checkpoint: Instant::now(),
            summary: Summary::default(),
            metrics,
        })
    }

    /// The worker back from where it waited for records, unless a rebalance failed.
    fn take_worker(&self) -> Result<Worker> {
        if let Some(failure) = self.shared.failure() {
            return Err(Error::Rebalance(Box::new(failure)));
        }
        self.shared.take()
    }

    /// Follows the assignments since the last turn; a newly assigned input partition
    /// holds the engines' watermark (a progress marker says so) until it speaks or idles.
    fn rebalanced(&mut self, now: Instant) -> Vec<Outgoing> {
        let mut forwarded = Vec::new();
        for event in self.source.take_rebalances() {
            match event {
                Assignment::Assigned(parts) => {
                    tracing::info!(
                        partitions = %parts.iter().map(|o| format!("{}:{}", o.topic(), o.partition())).collect::<Vec<_>>().join(","),
                        "partitions assigned"
                    );
                    for pid in input_partitions(&parts) {
                        self.clocks.assign(pid, now);
                        forwarded.extend(route::progress(
                            pid,
                            None,
                            false,
                            self.internal_partitions,
                        ));
                    }
                }
                Assignment::Revoked(parts) => {
                    for pid in input_partitions(&parts) {
                        self.clocks.revoke(pid);
                        self.backpressure.revoke(pid);
                    }
                }
            }
        }
        forwarded
    }

    /// Input records by province, each partition's with a progress marker behind them;
    /// returns the input offsets to commit once they are forwarded.
    fn forward(
        &mut self,
        batches: &[PartitionBatch],
        now: Instant,
        forwarded: &mut Vec<Outgoing>,
    ) -> Vec<CommitOffset> {
        let mut input_offsets = Vec::new();
        for batch in batches {
            let Origin::Input(pid) = batch.origin else {
                continue;
            };
            let records: Vec<InputRecord> = batch
                .records
                .iter()
                .map(|r| InputRecord {
                    key: r.key.as_deref(),
                    payload: r.payload.as_deref(),
                    offset: r.offset,
                })
                .collect();
            // pantau_records_consumed_total is counted where the engines take records in.
            self.summary.records += records.len() as u64;
            let received = wall_clock_us();
            let latest = RawRecord::latest_event_at(received, self.engine_config.max_future);
            let partitions = self.internal_partitions;
            forwarded.extend(route::forward(pid, &records, partitions, received));
            let max_event = route::max_event_time(pid.0, &records, latest);
            self.backpressure.forwarded(pid, max_event);
            forwarded.extend(route::progress(pid, max_event, false, partitions));
            self.clocks.hold(pid, now);
            if let Some(last) = records.last() {
                input_offsets.push(CommitOffset {
                    origin: batch.origin,
                    offset: last.offset + 1,
                    metadata: None,
                });
            }
        }
        input_offsets
    }

    /// At most once a second: an input partition silent past the idle timeout with
    /// nothing waiting on the broker is declared idle, so the watermark need not wait
    /// for it.
    fn declare_idle_inputs(&mut self, turn: Instant, forwarded: &mut Vec<Outgoing>) {
        if !self.health.is_healthy() {
            // Silence while the broker is away says nothing about the sources: declaring
            // them idle would run the watermark to the wall clock and make everything
            // after the outage late.
            self.clocks.hold_all(turn);
            return;
        }
        if self
            .last_idle_check
            .is_some_and(|t| turn.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_idle_check = Some(turn);
        let candidates = self.clocks.candidates(turn);
        if candidates.is_empty() {
            return;
        }
        let origins: Vec<Origin> = candidates.iter().map(|p| Origin::Input(*p)).collect();
        let behind = input_partitions(
            &self
                .source
                .backlog(&origins)
                .into_iter()
                .map(|(origin, _)| origin)
                .collect::<Vec<_>>(),
        );
        for pid in candidates {
            if behind.contains(&pid) {
                // Records waiting: stalled, not idle.
                self.clocks.hold(pid, turn);
            } else {
                tracing::debug!(
                    topic = pid.0.topic(),
                    partition = pid.1,
                    "input partition idle"
                );
                self.clocks.declare_idle(pid);
                forwarded.extend(route::progress(pid, None, true, self.internal_partitions));
            }
        }
    }

    /// Produces the forwarded records and commits the input offsets they came from (in
    /// the router's transaction, when transactional).
    async fn route(
        &mut self,
        worker: &mut Worker,
        forwarded: &[Outgoing],
        input_offsets: &[CommitOffset],
    ) -> Result<()> {
        match self.router.send_all(forwarded).await {
            Ok(placed) => {
                for (partition, offset) in placed {
                    let end = self.internal_ends.entry(partition).or_insert(offset + 1);
                    *end = (*end).max(offset + 1);
                }
            }
            Err(e) => {
                self.metrics.alert_produce_errors.inc();
                return Err(Error::Produce {
                    what: "forwarding input records to the internal topic",
                    source: Box::new(e),
                });
            }
        }
        if self.run_config.transactional {
            self.source.commit_in(&self.router, input_offsets)?;
        } else {
            for c in input_offsets {
                if let Origin::Input(pid) = c.origin {
                    worker.routed.insert(pid, c.offset);
                }
            }
            commit_or_warn(&mut self.source, input_offsets, false, &self.metrics);
        }
        Ok(())
    }

    /// Internal records into their partition's engine; returns the dead letters to
    /// produce and how many there are.
    async fn ingest(
        &mut self,
        worker: &mut Worker,
        batches: &[PartitionBatch],
    ) -> Result<(Vec<Outgoing>, usize)> {
        let mut outgoing = Vec::new();
        let buffered_before = worker.detector.buffered_rows();
        let mut read = 0;
        for batch in batches {
            let Origin::ByProvince(p) = batch.origin else {
                continue;
            };
            if let Some(delay) = self.run_config.slow_down.per_engine_batch {
                tokio::time::sleep(delay).await;
            }
            let dead = worker.detector.ingest(p, &batch.records, wall_clock_us())?;
            read += batch.records.len();
            for d in &dead {
                outgoing.push(Outgoing::dead_letter(d)?);
            }
        }
        let buffered = worker.detector.buffered_rows();
        // Windows close only in `advance`, after this: what this turn added.
        self.rows_per_record
            .turn(read, buffered.saturating_sub(buffered_before));
        self.summary.buffered(buffered, &self.metrics);
        self.summary.dead_letters += outgoing.len() as u64;
        let dead = outgoing.len();
        Ok((outgoing, dead))
    }

    /// Pauses the input partitions that run ahead while the watermark waits for a slower
    /// one and the engines hold too much; resumes them when that has passed.
    fn hold_back_inputs(&mut self, worker: &Worker) -> Result<()> {
        let buffered = worker.detector.buffered_rows();
        let unread = worker.detector.unread(&self.internal_ends);
        let decision = self.backpressure.decide(
            unread,
            buffered + self.rows_per_record.of(unread),
            worker.detector.watermark(),
        );
        if !decision.pause.is_empty() {
            tracing::info!(
                buffered_rows = buffered,
                unread_internal_records = unread,
                cap = self.max_buffered_rows,
                partitions = %describe(&decision.pause),
                "the watermark waits for a slower input: pausing the input partitions that run ahead"
            );
            self.source.pause(&input_origins(&decision.pause))?;
        }
        if !decision.resume.is_empty() {
            tracing::info!(
                buffered_rows = buffered,
                partitions = %describe(&decision.resume),
                "resuming paused input partitions"
            );
            self.source.resume(&input_origins(&decision.resume))?;
        }
        for (reason, paused) in self.backpressure.paused_by_reason() {
            self.metrics
                .input_paused
                .with_label_values(&[reason])
                .set(paused as i64);
        }
        Ok(())
    }

    /// Alerts and dead letters out; nothing is committed when it fails, so on restart
    /// their records are read again.
    async fn produce(&self, worker: &Worker, outgoing: &[Outgoing]) -> Result<()> {
        if let Err(e) = worker.alerts.send_all(outgoing).await {
            self.metrics.alert_produce_errors.inc();
            return Err(Error::Produce {
                what: "producing alerts and dead letters",
                source: Box::new(e),
            });
        }
        Ok(())
    }

    /// Checkpoints and commits at each interval, and when everything is idle (when
    /// asked to exit then), which it says.
    fn checkpoint_when_due(&mut self, worker: &mut Worker, turn: Instant) -> Result<bool> {
        // Every input idle, and every engine has read that and everything before it.
        let idle = self.run_config.exit_when_idle
            && self.clocks.all_idle()
            && worker.detector.all_idle()
            && self
                .source
                .backlog(&origins_of(&worker.detector.partitions()))
                .is_empty();
        if idle || turn.duration_since(self.last_checkpoint) >= self.run_config.checkpoint_interval
        {
            checkpoint_and_commit(
                worker,
                &mut self.source,
                self.run_config.transactional,
                false,
                &self.metrics,
            )?;
            self.last_checkpoint = turn;
        }
        self.metrics
            .offset_gaps
            .with_label_values(&["all"])
            .inc_by(self.source.gaps);
        self.source.gaps = 0;
        Ok(idle)
    }

    /// Waits off the dead-letter debt; false when a shutdown came meanwhile.
    async fn wait_off_dead_letters(
        &self,
        wait: Duration,
        shutdown: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> bool {
        if wait.is_zero() {
            return true;
        }
        self.metrics.dlq_wait.inc_by(wait.as_secs_f64());
        tracing::debug!(
            ?wait,
            "dead letters over --dlq-max-per-sec: consumption waits"
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = shutdown => false,
        }
    }

    /// Leaves the group: a last checkpoint and synchronous commit, every produced record
    /// acknowledged, within `--shutdown-timeout`.
    async fn leave(mut self) -> Result<Summary> {
        self.source.stop_hook();
        let mut worker = self.shared.take()?;
        let (run_config, metrics) = (self.run_config, self.metrics.clone());
        let source = &mut self.source;
        let router = &self.router;
        let finish = async {
            // Synchronous: the process is about to exit, an async commit could be lost.
            checkpoint_and_commit(
                &mut worker,
                source,
                run_config.transactional,
                true,
                &metrics,
            )?;
            let routed: Vec<CommitOffset> = worker
                .routed
                .iter()
                .map(|(pid, offset)| CommitOffset {
                    origin: Origin::Input(*pid),
                    offset: *offset,
                    metadata: None,
                })
                .collect();
            if !run_config.transactional {
                source.commit(&routed, true)?;
            }
            worker.alerts.flush(run_config.shutdown_timeout)?;
            router.flush(run_config.shutdown_timeout)?;
            Ok::<_, Error>(())
        };
        tokio::time::timeout(run_config.shutdown_timeout, finish)
            .await
            .map_err(|_| Error::ShutdownTimeout)??;
        self.summary.add_metrics(&metrics);
        Ok(self.summary)
    }
}

fn input_partitions(origins: &[Origin]) -> Vec<PartitionId> {
    origins
        .iter()
        .filter_map(|o| match o {
            Origin::Input(pid) => Some(*pid),
            Origin::ByProvince(_) => None,
        })
        .collect()
}

fn input_origins(partitions: &[PartitionId]) -> Vec<Origin> {
    partitions.iter().map(|p| Origin::Input(*p)).collect()
}

fn describe(partitions: &[PartitionId]) -> String {
    partitions
        .iter()
        .map(|(stream, p)| format!("{}:{p}", stream.topic()))
        .collect::<Vec<_>>()
        .join(",")
}

fn origins_of(internal: &[i32]) -> Vec<Origin> {
    internal.iter().map(|p| Origin::ByProvince(*p)).collect()
}

/// Checkpoints every engine and commits the internal offsets with the checkpoints'
/// names (in the alerts' transaction, when transactional).
fn checkpoint_and_commit(
    worker: &mut Worker,
    source: &mut KafkaSource,
    transactional: bool,
    sync: bool,
    metrics: &RunMetrics,
) -> Result<()> {
    let partitions = worker.detector.partitions();
    let offsets = worker.detector.checkpoint(&partitions)?;
    metrics.checkpoints.inc();
    if !offsets.is_empty() {
        tracing::info!(
            positions = %offsets.iter().map(|c| format!("{}:{}", c.origin.partition(), c.offset)).collect::<Vec<_>>().join(","),
            "checkpointed"
        );
    }
    if transactional {
        source.commit_in(&worker.alerts, &offsets)?;
        metrics.commits.inc();
    } else if sync {
        source.commit(&offsets, true)?;
    } else {
        commit_or_warn(source, &offsets, false, metrics);
    }
    Ok(())
}

/// A failed commit is not fatal: the next one covers it, and until then a restart only
/// reads a little more again.
fn commit_or_warn(
    source: &mut KafkaSource,
    offsets: &[CommitOffset],
    sync: bool,
    metrics: &RunMetrics,
) {
    match source.commit(offsets, sync) {
        Ok(true) => metrics.commits.inc(),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %chain(&e), "offset commit failed; the next one will cover it")
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
