//! The one place that wires a source, the engine and a sink together: `replay` over a
//! history folder, `run` over a Kafka consumer group. Both feed the same engine, so a
//! folder and the same records streamed through Kafka raise the same alerts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{Engine, EngineConfig, RawRecord};
use crate::kafka::KafkaConfig;
use crate::metrics::Metrics;
use crate::model::{Alert, Stream};
use crate::rules;
use crate::sink::files::JsonLines;
use crate::sink::kafka::{KafkaSink, Outgoing};
use crate::source::files::FolderSource;
use crate::source::kafka::{Assignment, KafkaSource, SourceConfig};

/// What a run saw, for the closing summary.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub records: u64,
    pub dead_letters: u64,
    pub alerts: u64,
    pub by_category: BTreeMap<String, u64>,
    /// Rule runs that failed and were skipped; each is in the log with its error.
    pub rule_failures: u64,
    pub elapsed: Duration,
}

impl Summary {
    fn add_alerts(&mut self, alerts: &[Alert]) {
        self.alerts += alerts.len() as u64;
        for a in alerts {
            *self.by_category.entry(a.category.clone()).or_default() += 1;
        }
    }

    pub fn print(&self) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{} records in {:.1} s ({:.0} records/s), {} dead letters, {} alerts, peak memory {:.0} MiB",
            self.records,
            secs,
            self.records as f64 / secs,
            self.dead_letters,
            self.alerts,
            crate::metrics::peak_memory_mib().unwrap_or(f64::NAN)
        );
        for (category, n) in &self.by_category {
            println!("  {category:<20} {n}");
        }
        if self.rule_failures > 0 {
            println!(
                "{} rule runs failed and were skipped: their windows raised no alert from that rule (errors in the log)",
                self.rule_failures
            );
        }
    }
}

fn wall_clock_us() -> i64 {
    Utc::now().timestamp_micros()
}

fn to_raw(records: &[(Vec<u8>, i64)]) -> Vec<RawRecord<'_>> {
    records
        .iter()
        .map(|(payload, offset)| RawRecord {
            key: None,
            payload: Some(payload.as_slice()),
            offset: *offset,
        })
        .collect()
}

/// Options of `pantau replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayConfig {
    /// History folder (transactions.jsonl, disbursements.jsonl, transfers.jsonl, outlets.jsonl).
    pub dir: PathBuf,
    /// Where to write the alerts; `dlq.jsonl` is written beside it.
    #[arg(long, default_value = "alerts.jsonl")]
    pub out: PathBuf,
    /// Records read from a file at a time.
    #[arg(long, default_value_t = 4096)]
    pub batch_size: usize,
}

/// Runs the pipeline over a history folder as fast as it can. Streams are read in the
/// order of their event time (the one furthest behind first), so the watermark moves as
/// it would on a live broker.
pub async fn replay(
    config: &ReplayConfig,
    engine_config: &EngineConfig,
    metrics: Arc<Metrics>,
    mut on_alert: impl FnMut(&Alert),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let rules = rules::load_dir(&engine_config.rules)?;
    // Files never go idle: the next line is always there to read.
    let replay_engine = EngineConfig {
        idle_timeout: Duration::MAX,
        ..engine_config.clone()
    };
    let mut engine = Engine::new(&replay_engine, rules, metrics.clone());
    let mut source = FolderSource::open(&config.dir)?;
    let mut alerts_out = JsonLines::create(&config.out)?;
    let mut dlq_out = JsonLines::create(&dlq_path_for(&config.out))?;
    let progress = ProgressBar::new(source.total_bytes());
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let now = Instant::now();
    for stream in source.streams() {
        engine.assign((stream, 0), now);
    }
    let mut summary = Summary::default();
    // The registry first: rules look outlets up by id.
    while let Some(chunk) = source.read(Stream::Outlets, config.batch_size)? {
        progress.inc(chunk.bytes);
        summary.records += chunk.records.len() as u64;
        let dead = engine.ingest(Stream::Outlets, 0, &to_raw(&chunk.records), Instant::now())?;
        summary.dead_letters += dead.len() as u64;
        dlq_out.write(&dead)?;
    }
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
                progress.inc(chunk.bytes);
                summary.records += chunk.records.len() as u64;
                let dead = engine.ingest(stream, 0, &to_raw(&chunk.records), Instant::now())?;
                summary.dead_letters += dead.len() as u64;
                dlq_out.write(&dead)?;
                let alerts = engine.advance(Instant::now(), wall_clock_us()).await?;
                alerts.iter().for_each(&mut on_alert);
                summary.add_alerts(&alerts);
                alerts_out.write(&alerts)?;
            }
            None => engine.release((stream, 0)),
        }
    }
    let alerts = engine.finish().await?;
    alerts.iter().for_each(&mut on_alert);
    summary.add_alerts(&alerts);
    alerts_out.write(&alerts)?;
    alerts_out.finish()?;
    dlq_out.finish()?;
    progress.finish_and_clear();
    summary.rule_failures = metrics.rule_failures_total();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Options of `pantau run` beyond the broker and the group.
#[derive(Debug, Clone, clap::Args)]
pub struct RunConfig {
    /// Stop once every partition has been idle for the idle timeout and every window
    /// has closed (for batch jobs and tests); by default run until SIGINT or SIGTERM.
    #[arg(long)]
    pub exit_when_idle: bool,
}

/// Runs the pipeline as a member of a consumer group until shut down (or idle, when
/// asked). Each turn: take a batch, decode it, close windows, produce alerts and dead
/// letters, wait for their acknowledgements, then commit what is safe.
pub async fn run(
    kafka: &KafkaConfig,
    source_config: &SourceConfig,
    run_config: &RunConfig,
    engine_config: &EngineConfig,
    metrics: Arc<Metrics>,
    mut on_alert: impl FnMut(&Alert),
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let rules = rules::load_dir(&engine_config.rules)?;
    kafka
        .ensure_topics(&[
            crate::model::TOPIC_TRANSACTIONS,
            crate::model::TOPIC_DISBURSEMENTS,
            crate::model::TOPIC_TRANSFERS,
            crate::model::TOPIC_OUTLETS,
            crate::model::TOPIC_ALERTS,
            crate::model::TOPIC_DLQ,
        ])
        .await?;
    let mut engine = Engine::new(engine_config, rules, metrics.clone());
    let mut source = KafkaSource::subscribe(kafka, source_config)?;
    let sink = KafkaSink::new(kafka)?;
    let mut summary = Summary::default();
    let mut shutdown = Box::pin(shutdown_signal());
    // Idle-looking partitions that the broker says still have records, checked once a second.
    let mut behind = Vec::new();
    let mut last_backlog_check: Option<Instant> = None;
    loop {
        let batches = tokio::select! {
            biased;
            _ = &mut shutdown => {
                tracing::info!("shutdown requested; finishing the batch in hand");
                break;
            }
            batches = source.next_batch() => batches?,
        };
        let now = Instant::now();
        for event in source.take_rebalances() {
            match event {
                Assignment::Assigned(parts) => {
                    parts.into_iter().for_each(|p| engine.assign(p, now))
                }
                Assignment::Revoked(parts) => parts.into_iter().for_each(|p| engine.release(p)),
            }
        }
        let mut outgoing = Vec::new();
        for batch in &batches {
            let raw: Vec<RawRecord> = batch
                .records
                .iter()
                .map(|r| RawRecord {
                    key: r.key.as_deref(),
                    payload: r.payload.as_deref(),
                    offset: r.offset,
                })
                .collect();
            summary.records += raw.len() as u64;
            let dead = engine.ingest(batch.partition.0, batch.partition.1, &raw, now)?;
            summary.dead_letters += dead.len() as u64;
            for d in &dead {
                outgoing.push(Outgoing::dead_letter(d)?);
            }
        }
        let turn = Instant::now();
        if last_backlog_check.is_none_or(|t| turn.duration_since(t) >= Duration::from_secs(1)) {
            behind = source.backlog(&engine.idle_partitions(turn));
            last_backlog_check = Some(turn);
            for ((stream, partition), lag) in &behind {
                metrics
                    .consumer_lag
                    .with_label_values(&[stream.topic(), &partition.to_string()])
                    .set(*lag);
            }
        }
        for (partition, _) in &behind {
            engine.keep_alive(*partition, turn);
        }
        let alerts = engine.advance(turn, wall_clock_us()).await?;
        alerts.iter().for_each(&mut on_alert);
        summary.add_alerts(&alerts);
        for a in &alerts {
            outgoing.push(Outgoing::alert(a)?);
        }
        if let Err(e) = sink.send_all(&outgoing).await {
            metrics.alert_produce_errors.inc();
            // Nothing is committed: on restart these records are read again.
            return Err(e.context("producing alerts and dead letters"));
        }
        if source.commit(&engine.committable(), false)? {
            metrics.commits.inc();
        }
        metrics
            .offset_gaps
            .with_label_values(&["all"])
            .inc_by(source.gaps);
        source.gaps = 0;
        if run_config.exit_when_idle && summary.records > 0 && engine.all_idle(turn) {
            tracing::info!("every partition idle and every window closed; exiting");
            break;
        }
    }
    // Everything produced so far is acknowledged: make the last commit durable.
    source.commit(&engine.committable(), true)?;
    summary.rule_failures = metrics.rule_failures_total();
    summary.elapsed = started.elapsed();
    Ok(summary)
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
