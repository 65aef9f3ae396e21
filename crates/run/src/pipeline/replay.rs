//! `pantau replay`: a history folder read into one engine as fast as it goes, the
//! streams in the order of their event time, so the watermark moves as it would on a
//! live broker; the rule tools replay the same way with a rule set of their own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, FixedOffset};

use super::{load_snoozes, wall_clock_us, Summary};
use crate::error::{Error, Result};
use crate::metrics::RunMetrics;
use crate::reload::report_loaded;
use pantau_core::history::FolderSource;
use pantau_core::jsonl::{AlertFiles, JsonLines};
use pantau_core::model::{Alert, Stream};
use pantau_core::progress::ReadProgress;
use pantau_engine::engine::{Engine, EngineConfig, RawRecord};
use pantau_engine::rules::RuleSet;

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
) -> Result<Summary> {
    let rules = engine_config.rules_location().load()?;
    replay_rules(config, engine_config, rules, metrics, progress, on_alert).await
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
) -> Result<Summary> {
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
    progress.started(Some(source.total_bytes()));
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
) -> Result<Vec<Alert>> {
    // The replay's output files are not kept: the alerts come back in memory.
    let scratch = tempfile::tempdir().map_err(Error::Scratch)?;
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
    .map_err(|e| Error::Replay {
        history: history.to_path_buf(),
        source: Box::new(e),
    })?;
    Ok(alerts)
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

/// Path of the DLQ file written beside an alerts file.
pub fn dlq_path_for(alerts: &Path) -> PathBuf {
    alerts
        .parent()
        .map(|p| p.join("dlq.jsonl"))
        .unwrap_or_else(|| PathBuf::from("dlq.jsonl"))
}
