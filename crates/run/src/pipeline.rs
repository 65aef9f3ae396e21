//! The one place that wires a source, the engine and a sink together: `replay` over a
//! history folder, `run` over a Kafka consumer group. Both feed the same engine, so a
//! folder and the same records streamed through Kafka raise the same alerts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, FixedOffset, Utc};

use crate::backpressure::Backpressure;
use crate::detect::Detector;
use crate::dlq::DeadLetterPacer;
use crate::metrics::RunMetrics;
use crate::reload::{report_loaded, Change, Watcher};
use pantau_core::history::FolderSource;
use pantau_core::jsonl::{AlertFiles, JsonLines};
use pantau_core::model::Outgoing;
use pantau_core::model::PartitionId;
use pantau_core::model::{Alert, Stream, TOPIC_BY_PROVINCE};
use pantau_engine::checkpoint::CheckpointStore;
use pantau_engine::engine::{Engine, EngineConfig, RawRecord};
use pantau_engine::route::{self, InputClocks, InputRecord};
use pantau_engine::rules::RuleSet;
use pantau_engine::suppress::SnoozeList;
use pantau_kafka::sink::KafkaSink;
use pantau_kafka::source::{
    Assignment, CommitOffset, Group, KafkaSource, Origin, RebalanceHook, SourceConfig, Start,
};
use pantau_kafka::KafkaConfig;

/// What a run saw, for the closing summary.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub records: u64,
    pub dead_letters: u64,
    pub alerts: u64,
    pub by_category: BTreeMap<String, u64>,
    /// Alerts of rules in shadow mode (not in `alerts`).
    pub shadow_alerts: u64,
    /// Detections held back by a cooldown or a snooze.
    pub suppressed: u64,
    /// Rule runs that failed and were skipped; each is in the log with its error.
    pub rule_failures: u64,
    /// The most raw rows the engines held at once.
    pub peak_buffered_rows: usize,
    pub elapsed: Duration,
    /// The process's peak memory when the run ended, where the system says.
    pub peak_memory_mib: Option<f64>,
}

impl Summary {
    fn add_alerts(&mut self, alerts: &[Alert]) {
        for a in alerts {
            if a.shadow {
                self.shadow_alerts += 1;
            } else {
                self.alerts += 1;
                *self.by_category.entry(a.category.clone()).or_default() += 1;
            }
        }
    }

    /// The rows the engines hold now: to `pantau_buffered_rows` and the peak.
    fn buffered(&mut self, rows: usize, metrics: &RunMetrics) {
        metrics.engine.buffered_rows.set(rows as i64);
        self.peak_buffered_rows = self.peak_buffered_rows.max(rows);
    }

    /// Takes the counts only the metrics know, and the process's peak memory.
    fn add_metrics(&mut self, metrics: &RunMetrics) {
        self.rule_failures = pantau_kafka::metrics::total(&metrics.engine.rule_failures);
        self.suppressed = pantau_kafka::metrics::total(&metrics.engine.alerts_suppressed);
        self.peak_memory_mib = pantau_kafka::metrics::peak_memory_mib();
    }

    /// Records per second over the run.
    pub fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The closing summary as the CLI prints it.
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} records in {:.1} s ({:.0} records/s), {} dead letters, {} alerts, peak memory {:.0} MiB",
            self.records,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.dead_letters,
            self.alerts,
            self.peak_memory_mib.unwrap_or(f64::NAN)
        )?;
        for (category, n) in &self.by_category {
            writeln!(f, "  {category:<20} {n}")?;
        }
        write!(
            f,
            "peak {} raw rows buffered for open windows",
            self.peak_buffered_rows
        )?;
        if self.shadow_alerts > 0 {
            write!(
                f,
                "\n{} alerts of rules in shadow mode (not notified)",
                self.shadow_alerts
            )?;
        }
        if self.suppressed > 0 {
            write!(
                f,
                "\n{} detections held back by a cooldown or the snooze list (pantau_alerts_suppressed_total)",
                self.suppressed
            )?;
        }
        if self.rule_failures > 0 {
            write!(
                f,
                "\n{} rule runs failed and were skipped: their windows raised no alert from that rule (errors in the log)",
                self.rule_failures
            )?;
        }
        Ok(())
    }
}

fn wall_clock_us() -> i64 {
    Utc::now().timestamp_micros()
}

fn to_raw(records: &[(Vec<u8>, i64)], received: i64) -> Vec<RawRecord<'_>> {
    records
        .iter()
        .map(|(payload, offset)| RawRecord {
            key: None,
            payload: Some(payload.as_slice()),
            offset: *offset,
            received: Some(received),
        })
        .collect()
}

/// Options of `pantau replay`.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The history folder.
    pub dir: PathBuf,
    /// Where the alerts go; `dlq.jsonl` is written beside it.
    pub out: PathBuf,
    /// Records read from a file at a time.
    pub batch_size: usize,
    /// The moment the history is replayed "at" (every record counts as received then);
    /// `None`: the wall clock when the replay starts.
    pub now: Option<DateTime<FixedOffset>>,
}

/// Runs the pipeline over a history folder as fast as it can. Streams are read in the
/// order of their event time (the one furthest behind first), so the watermark moves as
/// it would on a live broker.
pub async fn replay(
    config: &ReplayConfig,
    engine_config: &EngineConfig,
    metrics: Arc<RunMetrics>,
    progress: &dyn ReadProgress,
    on_alert: impl FnMut(&Alert),
) -> anyhow::Result<Summary> {
    let rules = engine_config.rules_location().load()?;
    replay_rules(config, engine_config, rules, metrics, progress, on_alert).await
}

/// Told how far a replay has read its history files, in bytes: the command line draws
/// a bar from it; `()` is no one watching.
pub trait ReadProgress {
    fn started(&self, total_bytes: u64);
    fn read(&self, bytes: u64);
    fn finished(&self);
}

impl ReadProgress for () {
    fn started(&self, _: u64) {}
    fn read(&self, _: u64) {}
    fn finished(&self) {}
}

/// Reads the snooze list an engine config names (none: empty); a bad line is logged and
/// the rest kept.
pub(crate) fn load_snoozes(
    engine_config: &EngineConfig,
    metrics: &RunMetrics,
) -> anyhow::Result<Arc<SnoozeList>> {
    let Some(path) = &engine_config.snooze else {
        return Ok(Arc::default());
    };
    let list = SnoozeList::load(path)?;
    for problem in &list.problems {
        tracing::warn!(%problem, "snooze line ignored");
    }
    metrics.engine.snoozes.set(list.len() as i64);
    Ok(Arc::new(list))
}

/// `replay` with a rule set given rather than read from `--rules` (`pantau rules test`
/// and `backtest` run fixtures and candidate rules this way). Alerts of shadow rules
/// go to `on_alert` too, marked, and to the shadow file beside `--out`.
pub(crate) async fn replay_rules(
    config: &ReplayConfig,
    engine_config: &EngineConfig,
    rules: RuleSet,
    metrics: Arc<RunMetrics>,
    progress: &dyn ReadProgress,
    mut on_alert: impl FnMut(&Alert),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let has_shadow = rules.rules.iter().any(|r| r.shadow);
    report_loaded(&rules, &metrics);
    // Files never go idle: the next line is always there to read, and an exhausted
    // file is released.
    let mut engine = Engine::new(engine_config, rules).without_figures();
    engine.set_snoozes(load_snoozes(engine_config, &metrics)?);
    let mut source = FolderSource::open(&config.dir)?;
    let mut alerts_out = AlertFiles::create(&config.out, has_shadow)?;
    let mut dlq_out = JsonLines::create(&dlq_path_for(&config.out))?;
    progress.started(source.total_bytes());
    for stream in source.streams() {
        engine.assign((stream, 0));
    }
    let mut summary = Summary::default();
    let received = config
        .now
        .map_or_else(wall_clock_us, |t| t.timestamp_micros());
    // The registry first: rules look outlets up by id.
    while let Some(chunk) = source.read(Stream::Outlets, config.batch_size)? {
        progress.read(chunk.bytes);
        summary.records += chunk.records.len() as u64;
        let raw = to_raw(&chunk.records, received);
        let dead = engine.ingest(Stream::Outlets, 0, &raw, wall_clock_us())?;
        summary.dead_letters += dead.len() as u64;
        dlq_out.write(&dead)?;
    }
    engine.release((Stream::Outlets, 0));
    loop {
        let open = source.open_streams();
        // The stream furthest behind in event time goes next.
        let Some(stream) = open
            .iter()
            .copied()
            .min_by_key(|s| engine.partition_max_event((*s, 0)).unwrap_or(i64::MIN))
        else {
            break;
        };
        match source.read(stream, config.batch_size)? {
            Some(chunk) => {
                progress.read(chunk.bytes);
                summary.records += chunk.records.len() as u64;
                let raw = to_raw(&chunk.records, received);
                let dead = engine.ingest(stream, 0, &raw, wall_clock_us())?;
                summary.dead_letters += dead.len() as u64;
                summary.buffered(engine.buffered_rows(), &metrics);
                dlq_out.write(&dead)?;
                // The tally goes to the metrics the summary counts from; the watermark
                // gauges are left alone, since a replay serves no /metrics.
                let alerts = engine.advance(wall_clock_us()).await;
                metrics.engine.publish(engine.take_tally());
                let alerts = alerts?;
                alerts.iter().for_each(&mut on_alert);
                summary.add_alerts(&alerts);
                alerts_out.write(&alerts)?;
            }
            None => engine.release((stream, 0)),
        }
    }
    let alerts = engine.finish(wall_clock_us()).await;
    metrics.engine.publish(engine.take_tally());
    let alerts = alerts?;
    alerts.iter().for_each(&mut on_alert);
    summary.add_alerts(&alerts);
    alerts_out.write(&alerts)?;
    alerts_out.finish()?;
    dlq_out.finish()?;
    progress.finished();
    summary.add_metrics(&metrics);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Replays a folder with a rule set and returns every alert (shadow ones too).
pub async fn replay_alerts(
    history: &Path,
    engine: &EngineConfig,
    set: RuleSet,
) -> anyhow::Result<Vec<Alert>> {
    // The replay's output files are not kept: the alerts come back in memory.
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let config = ReplayConfig {
        dir: history.to_path_buf(),
        out: scratch.path().join("alerts.jsonl"),
        batch_size: 4096,
        now: None,
    };
    let mut alerts = Vec::new();
    replay_rules(&config, engine, set, RunMetrics::new(), &(), |a| {
        alerts.push(a.clone())
    })
    .await
    .with_context(|| format!("replaying {}", history.display()))?;
    Ok(alerts)
}

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
    /// Test only: a pause after every batch read, standing in for a slow machine.
    pub batch_delay: Option<Duration>,
}

/// What the rebalance callback and the pipeline loop share: the loop parks its worker
/// here while it waits for records (when rebalances happen), and takes it back to work.
struct Shared {
    worker: Mutex<Option<Worker>>,
    /// An error met inside a rebalance callback, for the loop to stop on.
    failure: Mutex<Option<String>>,
    metrics: Arc<RunMetrics>,
}

struct Worker {
    detector: Detector,
    /// Alerts and dead letters (in transactions when asked for).
    alerts: KafkaSink,
    /// Next offsets of input partitions whose forwarded copies are acknowledged.
    routed: BTreeMap<PartitionId, i64>,
}

impl Shared {
    fn fail(&self, message: String) {
        tracing::error!(error = %message, "rebalance failed");
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(message);
        }
    }

    fn park(&self, worker: Worker) {
        if let Ok(mut slot) = self.worker.lock() {
            *slot = Some(worker);
        }
    }

    fn take(&self) -> anyhow::Result<Worker> {
        self.worker
            .lock()
            .ok()
            .and_then(|mut w| w.take())
            .context("the pipeline worker was lost in a rebalance")
    }

    /// Restores the assigned internal partitions from their checkpoints and says where
    /// each starts; input partitions start from their committed offsets.
    fn assign(
        worker: &mut Worker,
        group: &Group<'_>,
        assigned: &[Origin],
    ) -> anyhow::Result<Vec<(Origin, Start)>> {
        let internal: Vec<Origin> = assigned
            .iter()
            .copied()
            .filter(|o| matches!(o, Origin::ByProvince(_)))
            .collect();
        if internal.is_empty() {
            return Ok(Vec::new());
        }
        let mut starts = Vec::new();
        for (origin, commit) in group.committed(&internal)? {
            starts.push((origin, worker.detector.assign(origin.partition(), commit)?));
        }
        Ok(starts)
    }

    fn revoke(
        worker: &mut Worker,
        group: &Group<'_>,
        revoked: &[Origin],
        metrics: &RunMetrics,
    ) -> anyhow::Result<()> {
        let internal: Vec<i32> = revoked
            .iter()
            .filter_map(|o| match o {
                Origin::ByProvince(p) => Some(*p),
                Origin::Input(_) => None,
            })
            .collect();
        if group.assignment_lost() {
            // The session expired (a busy broker, a stalled host): the partitions are
            // already someone else's and no commit of this member is accepted. Release
            // them; librdkafka rejoins, and whoever takes them resumes from the last
            // commit (alerts since then come again under the same ids).
            metrics.group_sessions_lost.inc();
            tracing::warn!(
                partitions = revoked.len(),
                "the consumer group session was lost; releasing the partitions without a commit and rejoining"
            );
            release(worker, &internal, revoked);
            return Ok(());
        }
        let mut offsets = worker.detector.checkpoint(&internal)?;
        if worker.alerts.is_transactional() {
            // Input offsets went with their forwarded copies, in the router's transactions.
            group.commit_in(&worker.alerts, &offsets)?;
        } else {
            offsets.extend(revoked.iter().filter_map(|o| match o {
                Origin::Input(pid) => worker.routed.get(pid).map(|offset| CommitOffset {
                    origin: *o,
                    offset: *offset,
                    metadata: None,
                }),
                Origin::ByProvince(_) => None,
            }));
            if !offsets.is_empty() {
                if let Err(e) = group.commit(&offsets) {
                    // The new owner resumes from the last commit that went through.
                    tracing::warn!(error = %e, "cannot commit the revoked partitions; their new owner re-reads from the last commit");
                }
            }
        }
        release(worker, &internal, revoked);
        Ok(())
    }
}

/// Forgets revoked partitions: their engines and what was routed from them.
fn release(worker: &mut Worker, internal: &[i32], revoked: &[Origin]) {
    for p in internal {
        worker.detector.release(*p);
    }
    for o in revoked {
        if let Origin::Input(pid) = o {
            worker.routed.remove(pid);
        }
    }
}

impl Shared {
    /// Runs a rebalance step on the parked worker; a failure is kept for the loop.
    fn with_parked(&self, step: impl FnOnce(&mut Worker) -> anyhow::Result<()>) {
        let Ok(mut slot) = self.worker.lock() else {
            return self.fail("worker lock poisoned".into());
        };
        let Some(worker) = slot.as_mut() else {
            return self.fail("rebalance while the worker was busy".into());
        };
        if let Err(e) = step(worker) {
            drop(slot);
            self.fail(format!("{e:#}"));
        }
    }
}

impl RebalanceHook for Shared {
    fn assigning(&self, group: &Group<'_>, assigned: &[Origin]) -> Vec<(Origin, Start)> {
        let mut starts = Vec::new();
        self.with_parked(|worker| {
            starts = Shared::assign(worker, group, assigned)?;
            Ok(())
        });
        starts
    }

    fn revoking(&self, group: &Group<'_>, revoked: &[Origin]) {
        self.with_parked(|worker| Shared::revoke(worker, group, revoked, &self.metrics));
    }
}

/// Runs the pipeline as a member of a consumer group until shut down (or idle, when
/// asked). Each turn: take a batch; forward input records to the internal topic by
/// province (`route`) and commit their offsets; feed internal records to their
/// partition's engine (`detect`), close windows, produce alerts and dead letters; at
/// each checkpoint interval, checkpoint the engines and commit the internal offsets
/// with them. With `--transactional` the forwarding and the alerts each go in Kafka
/// transactions with the offsets they consumed.
pub async fn run(
    kafka: &KafkaConfig,
    source_config: &SourceConfig,
    run_config: &RunConfig,
    engine_config: &EngineConfig,
    metrics: Arc<RunMetrics>,
    mut on_alert: impl FnMut(&Alert),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    // Fail on a broken rule set before joining the group.
    let rules_location = engine_config.rules_location();
    let rule_set = rules_location.load()?;
    report_loaded(&rule_set, &metrics);
    let snoozes = load_snoozes(engine_config, &metrics)?;
    let mut watcher = Watcher::new(
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
    let transactional_id = |role: &str| {
        run_config
            .transactional
            .then(|| format!("{}-{role}", run_config.instance_id))
    };
    let router = KafkaSink::with_health(
        kafka,
        transactional_id("route").as_deref(),
        Some(health.clone()),
    )?;
    let alerts_sink = KafkaSink::with_health(
        kafka,
        transactional_id("detect").as_deref(),
        Some(health.clone()),
    )?;
    if run_config.transactional {
        router.begin()?;
        alerts_sink.begin()?;
    }
    let shared = Arc::new(Shared {
        worker: Mutex::new(Some(Worker {
            detector,
            alerts: alerts_sink,
            routed: BTreeMap::new(),
        })),
        failure: Mutex::new(None),
        metrics: metrics.clone(),
    });
    let mut source = KafkaSource::subscribe(
        kafka,
        source_config,
        Some(health.clone()),
        Some(metrics.consumer_lag.clone()),
    )?;
    source.start(shared.clone())?;
    let mut pacer = DeadLetterPacer::new(run_config.dlq_max_per_sec);
    let max_buffered_rows = run_config
        .max_buffered_rows
        .unwrap_or_else(crate::backpressure::default_cap);
    tracing::info!(
        max_buffered_rows,
        "input partitions that run ahead pause when the engines hold this many rows"
    );
    let mut backpressure = Backpressure::new(
        max_buffered_rows,
        source_config.batch_size,
        engine_config.lateness,
    );
    // Where this instance's router has written the internal topic up to: what its
    // engines have yet to read of it will be buffered too.
    let mut internal_ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut rows_per_record = crate::backpressure::RowsPerRecord::default();
    // Test-only: slows every engine batch, so the routers run far ahead of the engines
    // (tests/e2e/hostile.rs); unset in any real deployment.
    let engine_delay = std::env::var("PANTAU_TEST_ENGINE_DELAY")
        .ok()
        .and_then(|d| pantau_core::text::parse_duration(&d).ok());
    let mut summary = Summary::default();
    let mut shutdown = Box::pin(shutdown_signal());
    let mut clocks = InputClocks::new(engine_config.idle_timeout);
    let mut last_idle_check: Option<Instant> = None;
    let mut last_checkpoint = Instant::now();
    loop {
        let batches = tokio::select! {
            biased;
            _ = &mut shutdown => {
                tracing::info!("shutdown requested; checkpointing and committing");
                break;
            }
            batches = source.next_batch() => batches?,
        };
        if let Some(delay) = run_config.batch_delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(failure) = shared.failure.lock().ok().and_then(|mut f| f.take()) {
            anyhow::bail!("rebalance failed: {failure}");
        }
        let mut worker = shared.take()?;
        let now = Instant::now();
        for change in watcher.poll(now, &metrics).await {
            worker.detector.apply(change);
        }
        let mut forwarded = Vec::new();
        for event in source.take_rebalances() {
            match event {
                Assignment::Assigned(parts) => {
                    tracing::info!(
                        partitions = %parts.iter().map(|o| format!("{}:{}", o.topic(), o.partition())).collect::<Vec<_>>().join(","),
                        "partitions assigned"
                    );
                    for o in parts {
                        if let Origin::Input(pid) = o {
                            clocks.assign(pid, now);
                            // Engines hold the watermark for it until it speaks or idles.
                            forwarded.extend(route::progress(
                                pid,
                                None,
                                false,
                                internal_partitions,
                            ));
                        }
                    }
                }
                Assignment::Revoked(parts) => {
                    for o in parts {
                        if let Origin::Input(pid) = o {
                            clocks.revoke(pid);
                            backpressure.revoke(pid);
                        }
                    }
                }
            }
        }

        // Forward input records by province, with progress markers behind them.
        let mut input_offsets = Vec::new();
        for batch in &batches {
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
            summary.records += records.len() as u64;
            let received = wall_clock_us();
            let latest = RawRecord::latest_event_at(received, engine_config.max_future);
            forwarded.extend(route::forward(pid, &records, internal_partitions, received));
            let max_event = route::max_event_time(pid.0, &records, latest);
            backpressure.forwarded(pid, max_event);
            forwarded.extend(route::progress(pid, max_event, false, internal_partitions));
            clocks.hold(pid, now);
            if let Some(last) = records.last() {
                input_offsets.push(CommitOffset {
                    origin: batch.origin,
                    offset: last.offset + 1,
                    metadata: None,
                });
            }
        }
        let turn = Instant::now();
        if !health.is_healthy() {
            // Silence while the broker is away says nothing about the sources: declaring
            // them idle would run the watermark to the wall clock and make everything
            // after the outage late.
            clocks.hold_all(turn);
        } else if last_idle_check.is_none_or(|t| turn.duration_since(t) >= Duration::from_secs(1)) {
            last_idle_check = Some(turn);
            let candidates = clocks.candidates(turn);
            if !candidates.is_empty() {
                let origins: Vec<Origin> = candidates.iter().map(|p| Origin::Input(*p)).collect();
                let behind = source.backlog(&origins);
                for (origin, _) in &behind {
                    if let Origin::Input(pid) = origin {
                        // Records waiting: stalled, not idle.
                        clocks.hold(*pid, turn);
                    }
                }
                for pid in candidates {
                    if !behind.iter().any(|(o, _)| *o == Origin::Input(pid)) {
                        tracing::debug!(
                            topic = pid.0.topic(),
                            partition = pid.1,
                            "input partition idle"
                        );
                        clocks.declare_idle(pid);
                        forwarded.extend(route::progress(pid, None, true, internal_partitions));
                    }
                }
            }
        }
        match router.send_all(&forwarded).await {
            Ok(placed) => {
                for (partition, offset) in placed {
                    let end = internal_ends.entry(partition).or_insert(offset + 1);
                    *end = (*end).max(offset + 1);
                }
            }
            Err(e) => {
                metrics.alert_produce_errors.inc();
                return Err(e.context("forwarding input records to the internal topic"));
            }
        }
        if run_config.transactional {
            source.commit_in(&router, &input_offsets)?;
        } else {
            for c in &input_offsets {
                if let Origin::Input(pid) = c.origin {
                    worker.routed.insert(pid, c.offset);
                }
            }
            commit_or_warn(&mut source, &input_offsets, false, &metrics);
        }

        // Engines: internal records in, alerts and dead letters out.
        let mut outgoing = Vec::new();
        let mut dead_this_turn = 0;
        let buffered_before = worker.detector.buffered_rows();
        let mut read_this_turn = 0;
        for batch in &batches {
            let Origin::ByProvince(p) = batch.origin else {
                continue;
            };
            if let Some(delay) = engine_delay {
                tokio::time::sleep(delay).await;
            }
            let dead = worker.detector.ingest(p, &batch.records, wall_clock_us())?;
            read_this_turn += batch.records.len();
            summary.dead_letters += dead.len() as u64;
            for d in &dead {
                outgoing.push(Outgoing::dead_letter(d)?);
            }
            dead_this_turn += dead.len();
        }
        let buffered = worker.detector.buffered_rows();
        // Windows close only in `advance`, below: what this turn added.
        rows_per_record.turn(read_this_turn, buffered.saturating_sub(buffered_before));
        summary.buffered(buffered, &metrics);
        let unread = worker.detector.unread(&internal_ends);
        let decision = backpressure.decide(
            unread,
            buffered + rows_per_record.of(unread),
            worker.detector.watermark(),
        );
        if !decision.pause.is_empty() {
            tracing::info!(
                buffered_rows = buffered,
                unread_internal_records = unread,
                cap = max_buffered_rows,
                partitions = %describe(&decision.pause),
                "the watermark waits for a slower input: pausing the input partitions that run ahead"
            );
            source.pause(&input_origins(&decision.pause))?;
        }
        if !decision.resume.is_empty() {
            tracing::info!(
                buffered_rows = buffered,
                partitions = %describe(&decision.resume),
                "resuming paused input partitions"
            );
            source.resume(&input_origins(&decision.resume))?;
        }
        for (reason, paused) in backpressure.paused_by_reason() {
            metrics
                .input_paused
                .with_label_values(&[reason])
                .set(paused as i64);
        }
        // Every dead letter is produced; a flood is paced by waiting before reading on.
        // One wait stays far below librdkafka's max.poll.interval.ms (300 s); a larger
        // debt is waited off over the next turns (the pacer keeps it).
        let dlq_wait = pacer
            .charge(dead_this_turn, turn)
            .min(Duration::from_secs(30));
        let alerts = worker.detector.advance(wall_clock_us()).await?;
        alerts.iter().for_each(&mut on_alert);
        summary.add_alerts(&alerts);
        for a in &alerts {
            outgoing.push(Outgoing::alert(a)?);
        }
        if let Err(e) = worker.alerts.send_all(&outgoing).await {
            metrics.alert_produce_errors.inc();
            // Nothing is committed: on restart these records are read again.
            return Err(e.context("producing alerts and dead letters"));
        }
        // Every input idle, and every engine has read that and everything before it.
        let idle = run_config.exit_when_idle
            && clocks.all_idle()
            && worker.detector.all_idle()
            && source
                .backlog(&origins_of(&worker.detector.partitions()))
                .is_empty();
        if idle || turn.duration_since(last_checkpoint) >= run_config.checkpoint_interval {
            checkpoint_and_commit(
                &mut worker,
                &mut source,
                run_config.transactional,
                false,
                &metrics,
            )?;
            last_checkpoint = turn;
        }
        metrics
            .offset_gaps
            .with_label_values(&["all"])
            .inc_by(source.gaps);
        source.gaps = 0;
        shared.park(worker);
        if idle {
            tracing::info!("every partition idle and every window closed; exiting");
            break;
        }
        if !dlq_wait.is_zero() {
            metrics.dlq_wait.inc_by(dlq_wait.as_secs_f64());
            tracing::debug!(wait = ?dlq_wait, "dead letters over --dlq-max-per-sec: consumption waits");
            tokio::select! {
                _ = tokio::time::sleep(dlq_wait) => {}
                _ = &mut shutdown => {
                    tracing::info!("shutdown requested; checkpointing and committing");
                    break;
                }
            }
        }
    }
    source.stop_hook();
    let mut worker = shared.take()?;
    let finish = async {
        // Synchronous: the process is about to exit, an async commit could be lost.
        checkpoint_and_commit(
            &mut worker,
            &mut source,
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
        anyhow::Ok(())
    };
    tokio::time::timeout(run_config.shutdown_timeout, finish)
        .await
        .context("shutdown took longer than --shutdown-timeout")??;
    summary.add_metrics(&metrics);
    summary.elapsed = started.elapsed();
    Ok(summary)
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
) -> anyhow::Result<()> {
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
            tracing::warn!(error = %format!("{e:#}"), "offset commit failed; the next one will cover it")
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

/// Path of the DLQ file written beside an alerts file.
pub fn dlq_path_for(alerts: &Path) -> PathBuf {
    alerts
        .parent()
        .map(|p| p.join("dlq.jsonl"))
        .unwrap_or_else(|| PathBuf::from("dlq.jsonl"))
}
