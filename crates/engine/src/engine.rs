//! The pipeline's core, without I/O: records in, alerts and dead letters out.
//!
//! `ingest` decodes a chunk of one partition, dead-letters what is invalid or late and
//! buffers the rest; `advance` moves the watermark and closes every window it passed,
//! building the daily rollups and running the rules of each; `finish` closes everything
//! at the end of a replay. Sources and sinks (`source`, `sink`) drive it; the same
//! engine runs a replayed folder and a Kafka consumer group, which is why both give the
//! same alerts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, Utc};
use sha2::{Digest, Sha256};

use crate::alert::{make_alerts, mark_ongoing};
use crate::decode::{self, Input, Provenance, Reason, Rejection};
use crate::error::{chain, Error, Result, RuleError};
use crate::program::{self, Figures};
use crate::rules::{Rule, RuleSet, SqlRunner, View, ROLLUPS};
use crate::suppress::{Cooldowns, Episode, SnoozeList, Verdict};
use crate::tables::rows_of;
use crate::tally::{RuleFailure, Tally};
use crate::watermark::{WatermarkSnapshot, Watermarks};
use crate::window::{first_date, ClosedWindow, Purpose, WindowSnapshot, WindowSpec, WindowState};
use pantau_core::model::{
    Alert, DeadLetter, PartitionId, Stream, Whole, MAX_FORWARDED_BYTES, MAX_KEY_BYTES,
};

/// Engine settings shared by `replay`, `run` and `demo`.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How far behind the newest event time a record may arrive and still count; later
    /// ones are dead-lettered as `late`.
    pub lateness: Duration,
    /// How long an input partition with nothing waiting may stay silent before it stops
    /// holding the watermark back.
    pub idle_timeout: Duration,
    /// The rules folder; `None`: `./rules` when that exists, else the built-in rules.
    pub rules: Option<PathBuf>,
    /// The longest one rule may run over one window (a rule's `-- budget:` overrides it).
    pub rule_budget: Duration,
    /// How far past its receipt a record's event time may lie before it is dead-lettered
    /// as `future`.
    pub max_future: Duration,
    /// The snooze list (CSV) the monitoring team edits.
    pub snooze: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lateness: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(10),
            rules: None,
            rule_budget: Duration::from_secs(30),
            max_future: Duration::from_secs(300),
            snooze: None,
        }
    }
}

impl EngineConfig {
    /// The settings the rule author's commands replay with: the defaults (replay lifts
    /// the idle timeout itself), a generous budget, an optional snooze file.
    pub fn for_rule_author(rules_dir: Option<&Path>, snooze: Option<PathBuf>) -> EngineConfig {
        EngineConfig {
            rules: rules_dir.map(Path::to_path_buf),
            rule_budget: Duration::from_secs(60),
            snooze,
            ..EngineConfig::default()
        }
    }

    pub fn rules_location(&self) -> crate::rules::Location {
        crate::rules::Location::resolve(self.rules.as_deref())
    }
}

/// Registers a rule set's reference tables. It cannot fail but by a bug (a name taken
/// twice), which is logged: the rules reading them then fail and are counted.
fn install_reference_tables(runner: &SqlRunner, tables: &[crate::reference::ReferenceTable]) {
    if let Err(e) = runner.set_reference_tables(tables) {
        tracing::error!(error = %chain(&e), "reference tables not registered; rules reading them will fail");
    }
}

/// One record as a source delivers it.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub offset: i64,
    /// When pantau received it (µs since the epoch): the router's wall clock in `run`,
    /// `--now` in `replay`; `None` for records forwarded before receipt times were kept.
    pub received: Option<i64>,
}

impl RawRecord<'_> {
    /// The latest event time the record may carry, given `--max-future`.
    pub(crate) fn latest_event(&self, max_future: Duration) -> i64 {
        self.received.map_or(decode::NO_LATEST, |r| {
            RawRecord::latest_event_at(r, max_future)
        })
    }

    /// The latest event time of a record received at `received`.
    pub fn latest_event_at(received: i64, max_future: Duration) -> i64 {
        received.saturating_add(i64::try_from(max_future.as_micros()).unwrap_or(i64::MAX))
    }
}

pub struct Engine {
    rules: Vec<Rule>,
    /// Views not yet registered: creating one needs the async SQL context, so it waits
    /// for the first window to close.
    views_pending: Vec<View>,
    /// Views registered in the SQL context, to drop when the rules are reloaded.
    views_registered: Vec<String>,
    cooldowns: Cooldowns,
    snoozes: Arc<SnoozeList>,
    rule_budget: Duration,
    max_future: Duration,
    window: WindowState,
    watermarks: Watermarks,
    runner: SqlRunner,
    /// What was counted since the caller last took it.
    tally: Tally,
    /// Watermark of the last eviction.
    evicted_at: Option<i64>,
    /// The dashboards' figures; `None` where no one scrapes them (a replay).
    figures: Option<Figures>,
}

/// The window series an engine keeps: its rules', and the program figures' if it
/// publishes them.
fn window_specs(rules: &[Rule], figures: bool) -> Vec<WindowSpec> {
    let mut specs: Vec<WindowSpec> = rules.iter().map(|r| r.window).collect();
    if figures {
        specs.push(program::WINDOW);
    }
    specs
}

const EVICT_EVERY_US: i64 = 3_600_000_000;

/// An engine's state as plain data; `checkpoint` writes and reads it.
#[derive(Debug, Clone, Default)]
pub struct EngineSnapshot {
    pub window: WindowSnapshot,
    pub watermark: WatermarkSnapshot,
    pub evicted_at: Option<i64>,
    /// Cooldown episodes per (rule, entity).
    pub episodes: Vec<(String, String, Episode)>,
}

fn dead_letter(
    stream: Stream,
    partition: i32,
    record: &RawRecord<'_>,
    rejection: &Rejection,
    rejected_at: DateTime<FixedOffset>,
) -> DeadLetter {
    let bytes = record.payload.unwrap_or_default();
    let kept = &bytes[..bytes.len().min(decode::MAX_DEAD_LETTER_ORIGINAL)];
    // A cut inside a UTF-8 character leaves text that is still UTF-8 up to the cut.
    let text = match std::str::from_utf8(kept) {
        Ok(text) => Some(text),
        Err(e) if kept.len() < bytes.len() && e.error_len().is_none() => {
            std::str::from_utf8(&kept[..e.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    // JSON writes a control character as six bytes: text made of them would outgrow the
    // producer's limit where base64 of the same bytes does not.
    let base64_len = kept.len().div_ceil(3) * 4;
    let (original, original_encoding) = match text.filter(|t| json_escaped_len(t) <= base64_len) {
        Some(text) => (text.to_string(), "text"),
        None => (
            base64::engine::general_purpose::STANDARD.encode(kept),
            "base64",
        ),
    };
    DeadLetter {
        original,
        original_encoding: original_encoding.to_string(),
        original_length: bytes.len() as u64,
        original_sha256: pantau_core::text::hex_prefix(&Sha256::digest(bytes), 64),
        original_truncated: kept.len() < bytes.len(),
        key: record
            .key
            .map(|k| String::from_utf8_lossy(&k[..k.len().min(MAX_KEY_BYTES)]).into_owned()),
        topic: stream.topic().to_string(),
        partition,
        offset: record.offset,
        reason: rejection.reason.as_str().to_string(),
        error: rejection.message.clone(),
        rejected_at,
    }
}

/// A moment given in µs since the epoch; one out of chrono's range is the epoch.
fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// The length of `text` as a JSON string's contents.
fn json_escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

impl Engine {
    pub fn new(config: &EngineConfig, set: RuleSet) -> Engine {
        let RuleSet {
            rules,
            views,
            tables,
        } = set;
        let specs = window_specs(&rules, true);
        let runner = SqlRunner::new();
        install_reference_tables(&runner, &tables);
        Engine {
            rules,
            views_pending: views,
            views_registered: Vec::new(),
            cooldowns: Cooldowns::default(),
            snoozes: Arc::default(),
            rule_budget: config.rule_budget,
            max_future: config.max_future,
            window: WindowState::new(&specs),
            watermarks: Watermarks::new(config.lateness),
            runner,
            tally: Tally::default(),
            evicted_at: None,
            figures: Some(Figures::default()),
        }
    }

    /// An engine that does not compute the program figures: a replay serves no
    /// `/metrics`, and the daily realization query over a hundred days of card rollups
    /// costs a fifth of its throughput (README, Benchmark).
    pub fn without_figures(mut self) -> Engine {
        self.figures = None;
        self.window.set_specs(&window_specs(&self.rules, false));
        self
    }

    /// What the engine counted, timed and computed since the last call.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Takes up a new rule set while running. Window state is kept: windows of specs
    /// still in use keep their progress, a new spec starts after the last closed day,
    /// and cooldown episodes carry on for rules that keep their id.
    pub fn reload(&mut self, set: RuleSet) {
        let RuleSet {
            rules,
            views,
            tables,
        } = set;
        for name in self.views_registered.drain(..) {
            if let Err(e) = self.runner.context().deregister_table(name.as_str()) {
                tracing::warn!(view = %name, error = %e, "could not drop a view on reload");
            }
        }
        self.runner.forget_plans();
        // Before the views are created again: they may read a reference table, and a
        // view's plan keeps the table it was created against.
        install_reference_tables(&self.runner, &tables);
        self.views_pending = views;
        self.window
            .set_specs(&window_specs(&rules, self.figures.is_some()));
        self.rules = rules;
    }

    /// The snooze list in force from the next window on.
    pub fn set_snoozes(&mut self, snoozes: Arc<SnoozeList>) {
        self.snoozes = snoozes;
    }

    /// A partition was assigned to this instance (or a replay file opened). It holds
    /// the watermark until it speaks or is declared idle; a registry partition, which
    /// has no event time, holds it until it is declared idle (read up to date), so no
    /// window closes on a registry that is still loading.
    pub fn assign(&mut self, partition: PartitionId) {
        self.watermarks.assign(partition);
    }

    /// What a router upstream says of a source partition: how far it has got
    /// (`max_event`, when it delivered anything) and whether it has gone idle. The
    /// records themselves may have gone to other engines; this one must still wait for
    /// that partition unless it is idle.
    pub fn observe_progress(&mut self, partition: PartitionId, max_event: Option<i64>, idle: bool) {
        self.watermarks.declare(partition, max_event, idle);
    }

    /// Everything the engine must remember across a restart.
    pub fn snapshot(&self) -> EngineSnapshot {
        EngineSnapshot {
            window: self.window.snapshot(),
            watermark: self.watermarks.snapshot(),
            evicted_at: self.evicted_at,
            episodes: self.cooldowns.snapshot(),
        }
    }

    /// Takes up the state of a snapshot, as if this engine had processed what the
    /// snapshot's engine had.
    pub fn restore(&mut self, snapshot: EngineSnapshot) {
        let specs = window_specs(&self.rules, self.figures.is_some());
        self.window = WindowState::restore(&specs, snapshot.window);
        self.watermarks.restore(&snapshot.watermark);
        self.evicted_at = snapshot.evicted_at;
        self.cooldowns = Cooldowns::restore(snapshot.episodes);
    }

    /// A partition was revoked, or a replay file is exhausted.
    pub fn release(&mut self, partition: PartitionId) {
        self.watermarks.release(partition);
    }

    /// Decodes and buffers one chunk of one partition at `now` (µs since the epoch).
    /// Returns the dead letters (invalid or late records); everything else is accounted
    /// for in the window state.
    pub fn ingest(
        &mut self,
        stream: Stream,
        partition: i32,
        records: &[RawRecord<'_>],
        now: i64,
    ) -> Result<Vec<DeadLetter>> {
        let topic = stream.topic();
        let pid = (stream, partition);
        let rejection_time = at(now).fixed_offset();
        Tally::count(
            &mut self.tally.records_consumed,
            topic,
            records.len() as u64,
        );
        let inputs: Vec<Input> = records
            .iter()
            .map(|r| Input {
                payload: r.payload,
                provenance: Provenance {
                    partition,
                    offset: r.offset,
                },
                latest: r.latest_event(self.max_future),
            })
            .collect();
        let started = Instant::now();
        let mut dead = Vec::new();
        if let Some(last) = records.iter().map(|r| r.offset).max() {
            self.window.note_offset(pid, last + 1);
        }
        if stream == Stream::Outlets {
            let (rows, rejected) = decode::decode_outlets(&inputs);
            for (i, r) in &rejected {
                dead.push(dead_letter(
                    stream,
                    partition,
                    &records[*i],
                    r,
                    rejection_time,
                ));
            }
            self.window.apply_outlets(rows);
            self.count_dead(topic, &dead);
            return Ok(dead);
        }
        let decoded = decode::decode_events(stream, &inputs)?;
        self.tally.batches_decoded.push((topic, started.elapsed()));
        let rejected_at: HashSet<usize> = decoded.rejected.iter().map(|(i, _)| *i).collect();
        for (i, r) in &decoded.rejected {
            dead.push(dead_letter(
                stream,
                partition,
                &records[*i],
                r,
                rejection_time,
            ));
        }
        // Decoded row n is the n-th input that was not rejected.
        let valid_inputs: Vec<usize> = (0..records.len())
            .filter(|i| !rejected_at.contains(i))
            .collect();
        let max_event = decoded.event_times.iter().copied().max();
        if let Some(batch) = &decoded.batch {
            let admission = self.window.admit(
                stream,
                pid,
                batch,
                &decoded.event_times,
                &decoded.dedup_keys,
                self.watermarks.current(),
            )?;
            let watermark = self.watermarks.current().unwrap_or(i64::MIN);
            for row in &admission.late {
                let record = &records[valid_inputs[*row]];
                let lag = (watermark - decoded.event_times[*row]) / 1_000_000;
                let rejection = Rejection {
                    reason: Reason::Late,
                    message: format!(
                        "event time is {lag} s older than the watermark; its windows may have closed"
                    ),
                };
                dead.push(dead_letter(
                    stream,
                    partition,
                    record,
                    &rejection,
                    rejection_time,
                ));
            }
            Tally::count(
                &mut self.tally.late_records,
                topic,
                admission.late.len() as u64,
            );
            Tally::count(
                &mut self.tally.duplicates,
                topic,
                admission.duplicates as u64,
            );
            if let Some(items) = &decoded.items {
                let kept_offsets: HashSet<i64> = admission
                    .kept
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| **k)
                    .map(|(row, _)| records[valid_inputs[row]].offset)
                    .collect();
                self.window.admit_items(pid, items, &kept_offsets)?;
            }
        }
        self.watermarks.observe(pid, max_event);
        self.count_dead(topic, &dead);
        Ok(dead)
    }

    /// A record the router could only forward cut short: dead-lettered as `too_large`
    /// at `now` with the whole record's length and hash, never decoded.
    pub fn reject_too_large(
        &mut self,
        stream: Stream,
        partition: i32,
        record: &RawRecord<'_>,
        whole: &Whole,
        now: i64,
    ) -> DeadLetter {
        Tally::count(&mut self.tally.records_consumed, stream.topic(), 1);
        self.window
            .note_offset((stream, partition), record.offset + 1);
        let rejection = Rejection {
            reason: Reason::TooLarge,
            message: format!(
                "the record is {} bytes, more than the {} pantau forwards whole; its first bytes are kept",
                whole.length,
                MAX_FORWARDED_BYTES
            ),
        };
        let mut dead = dead_letter(
            stream,
            partition,
            record,
            &rejection,
            at(now).fixed_offset(),
        );
        dead.original_length = whole.length;
        dead.original_sha256 = whole.sha256.clone();
        dead.original_truncated = true;
        self.count_dead(stream.topic(), std::slice::from_ref(&dead));
        dead
    }

    fn count_dead(&mut self, topic: &'static str, dead: &[DeadLetter]) {
        for d in dead {
            Tally::count(&mut self.tally.dead_letters, (topic, d.reason.clone()), 1);
        }
    }

    /// Recomputes the watermark at the wall clock's `now` (µs since the epoch: idle
    /// partitions let it follow the clock) and closes every window it has passed; the
    /// alerts are detected at `now`.
    pub async fn advance(&mut self, now: i64) -> Result<Vec<Alert>> {
        let Some(watermark) = self.watermarks.advance(now) else {
            return Ok(Vec::new());
        };
        self.close_until(watermark, now).await
    }

    /// End of input at `now`: every window that holds data closes.
    pub async fn finish(&mut self, now: i64) -> Result<Vec<Alert>> {
        let Some(max) = self.window.max_event() else {
            return Ok(Vec::new());
        };
        let end = max + self.window.longest_window_us();
        self.watermarks.force(end);
        self.close_until(end, now).await
    }

    /// The largest event time a partition has delivered.
    pub fn partition_max_event(&self, partition: PartitionId) -> Option<i64> {
        self.watermarks
            .partition_maxima()
            .find(|(p, _)| *p == partition)
            .and_then(|(_, max)| max)
    }

    /// True when every source partition has been declared idle.
    pub fn all_idle(&self) -> bool {
        self.watermarks.all_idle()
    }

    pub fn watermark(&self) -> Option<i64> {
        self.watermarks.current()
    }

    /// Every source partition with the largest event time it has delivered.
    pub fn partition_maxima(&self) -> impl Iterator<Item = (PartitionId, Option<i64>)> + '_ {
        self.watermarks.partition_maxima()
    }

    async fn close_until(&mut self, watermark: i64, now: i64) -> Result<Vec<Alert>> {
        let mut alerts = Vec::new();
        while let Some(window) = self.window.close_next(watermark)? {
            let started = Instant::now();
            if !window.is_empty() {
                alerts.extend(self.close(&window, now).await?);
            }
            self.tally
                .windows_closed
                .push((window.series.spec.to_string(), started.elapsed()));
        }
        // Eviction walks every buffer and the dedup keys: once per hour of event time is
        // enough, and keeps that walk off the per-batch path.
        if self
            .evicted_at
            .is_none_or(|at| watermark - at >= EVICT_EVERY_US)
        {
            self.window.evict(watermark, self.watermarks.lateness_us());
            // A window still open may have started long before the watermark (a 100-day
            // window) and so still continue an episode: keep episodes until no open
            // window can. Evicting by the watermark alone dropped them earlier or later
            // depending on how the watermark moved, so `run` and `replay` disagreed on
            // `ongoing_since`.
            self.cooldowns
                .evict(watermark.saturating_sub(self.window.longest_window_us()));
            self.evicted_at = Some(watermark);
        }
        Ok(alerts)
    }

    /// Registers the views in passes, so a view may read another whatever their file
    /// names; what still fails when a pass makes no progress is reported and skipped.
    async fn register_views(&mut self) {
        let mut pending = std::mem::take(&mut self.views_pending);
        loop {
            let attempted = pending.len();
            let mut failed = Vec::new();
            for view in pending {
                match self.runner.create_view(&view).await {
                    Ok(()) => self.views_registered.push(view.name.clone()),
                    Err(e) => failed.push((view, e)),
                }
            }
            if failed.is_empty() {
                return;
            }
            if failed.len() == attempted {
                for (view, e) in failed {
                    // The rules reading it fail on their own and are counted there.
                    Tally::count(
                        &mut self.tally.rule_failures,
                        (format!("view:{}", view.name), RuleFailure::Error),
                        1,
                    );
                    tracing::error!(view = %view.name, error = %format!("{e:#}"), "view failed to register; rules reading it will fail");
                }
                return;
            }
            pending = failed.into_iter().map(|(view, _)| view).collect();
        }
    }

    async fn close(&mut self, window: &ClosedWindow, now: i64) -> Result<Vec<Alert>> {
        if !self.views_pending.is_empty() {
            self.register_views().await;
        }
        self.runner.register(&window.tables)?;
        if window.purpose == Purpose::Rollup {
            self.build_rollups().await?;
            if let Some(figures) = &self.figures {
                figures.day_closed(&self.runner, &mut self.tally).await;
            }
        }
        if window.series.spec == program::WINDOW {
            // After the input ends, a replay closes day-range windows for as long as any
            // rollup could fall into them; the figures of those empty days would describe
            // no one, so they stop with the data.
            let has_data = self
                .window
                .max_event()
                .is_some_and(|max| window.end <= max + crate::window::MICROS_PER_DAY);
            if let Some(figures) = self.figures.as_mut().filter(|_| has_data) {
                figures.period_closed(&self.runner, &mut self.tally).await;
            }
        }
        let mut alerts = Vec::new();
        let detected_at = at(now);
        for rule in self.rules.iter().filter(|r| r.window == window.series.spec) {
            let started = Instant::now();
            let budget = rule.budget.unwrap_or(self.rule_budget);
            let outcome = match tokio::time::timeout(budget, self.runner.query(&rule.sql)).await {
                Ok(Ok(batches)) => rows_of(&batches).and_then(|rows| {
                    Ok(make_alerts(
                        rule,
                        window.start,
                        window.end,
                        rows,
                        detected_at,
                    )?)
                }),
                Ok(Err(e)) => Err(RuleError::from(e)),
                Err(_) => Err(RuleError::OverBudget(budget)),
            };
            self.tally
                .rule_evaluations
                .push((rule.id.clone(), started.elapsed()));
            match outcome {
                Ok(found) => alerts.extend(hold_back(
                    &mut self.cooldowns,
                    &self.snoozes,
                    &mut self.tally,
                    rule,
                    window,
                    found,
                )),
                Err(e) => {
                    // One failing rule must not stop the others or the pipeline.
                    let failure = RuleFailure::of(&e);
                    Tally::count(&mut self.tally.rule_failures, (rule.id.clone(), failure), 1);
                    tracing::error!(rule = %rule.id, version = %rule.version, window_start = window.start, reason = failure.as_str(), error = %chain(&e), "rule skipped for this window");
                }
            }
        }
        // Deterministic order whatever the rule or batch order was.
        alerts.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        Ok(alerts)
    }

    async fn build_rollups(&mut self) -> Result<()> {
        for (table, sql) in ROLLUPS {
            let schema = crate::tables::schema_of(table).ok_or_else(|| {
                Error::Invariant(format!("rollup {table} has no declared schema"))
            })?;
            let batches = self
                .runner
                .query(sql)
                .await
                .map_err(|source| Error::RollupQuery { table, source })?;
            let batches = batches
                .iter()
                .filter(|b| b.num_rows() > 0)
                .map(|b| crate::rules::conform(b, &schema))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| Error::Rollup {
                    table,
                    source: Box::new(e),
                })?;
            let Some(date) = batches.first().and_then(|b| first_date(b, "local_date")) else {
                continue;
            };
            // A local day's rows share one date; keep them as that day's rollup.
            self.window.store_rollup(table, date, batches);
        }
        Ok(())
    }

    pub fn buffered_rows(&self) -> usize {
        self.window.buffered_rows()
    }
}

/// Applies the snooze list and the rule's cooldown to what one rule found in one
/// window; counts what it holds back and what it raises.
fn hold_back(
    cooldowns: &mut Cooldowns,
    snoozes: &SnoozeList,
    tally: &mut Tally,
    rule: &Rule,
    window: &ClosedWindow,
    found: Vec<Alert>,
) -> Vec<Alert> {
    let mut raised = Vec::with_capacity(found.len());
    for mut alert in found {
        let snooze = snoozes.covering(&rule.id, &alert.entity_type, &alert.entity_id, window.end);
        let verdict = cooldowns.judge(
            &rule.id,
            &alert.entity_id,
            rule.cooldown,
            (window.start, window.end),
            snooze.is_some(),
        );
        let reason = match verdict {
            Verdict::Raise { ongoing } => {
                if let Some(ongoing) = ongoing {
                    mark_ongoing(&mut alert, ongoing);
                }
                let counter = if alert.shadow {
                    &mut tally.shadow_alerts
                } else {
                    &mut tally.alerts
                };
                let labels = [
                    alert.rule_id.clone(),
                    alert.category.clone(),
                    alert.severity.as_str().to_owned(),
                    alert.regency_code.clone(),
                ];
                Tally::count(counter, labels, 1);
                raised.push(alert);
                continue;
            }
            Verdict::Cooldown => "cooldown",
            Verdict::Snoozed => "snoozed",
        };
        Tally::count(&mut tally.alerts_suppressed, (rule.id.clone(), reason), 1);
        // The alert id, not the entity: a card entity is personal data.
        match snooze {
            Some(s) => {
                tracing::info!(alert_id = %alert.alert_id, rule = %rule.id, until = %s.until, who = %s.who, reason = %s.reason, "alert snoozed")
            }
            None => {
                tracing::debug!(alert_id = %alert.alert_id, rule = %rule.id, "alert held back by the cooldown")
            }
        }
    }
    raised
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::ProgramFigure;

    fn txn(id: usize, at: &str) -> String {
        format!(
            r#"{{"txn_id":"T{id}","bank":"BNI","occurred_at":"{at}","outlet_id":"O1","terminal_id":"T1","regency_code":"3604","card_id":"C{id}","payment":"QRIS","type":"purchase","amount":5000}}"#
        )
    }

    /// Before, 200 KB of zero bytes (valid UTF-8) went into the dead letter as text,
    /// which JSON writes as 1.2 MB of `\u0000`: over the producer's 1 MB limit, so `run`
    /// stopped on it at every restart.
    #[test]
    fn a_dead_letter_of_control_bytes_stays_under_the_message_limit() {
        for payload in [vec![0u8; 200_000], vec![0x1fu8; 2_000_000]] {
            let record = RawRecord {
                key: Some(b"O1"),
                payload: Some(&payload),
                offset: 1,
                received: None,
            };
            let rejection = Rejection {
                reason: Reason::InvalidJson,
                message: "not valid JSON".into(),
            };
            let dead = dead_letter(
                Stream::Transactions,
                0,
                &record,
                &rejection,
                at(0).fixed_offset(),
            );
            let produced = serde_json::to_vec(&dead).unwrap();
            assert!(produced.len() < 500_000, "{}", produced.len());
            assert_eq!(dead.original_encoding, "base64");
            assert_eq!(dead.original_length, payload.len() as u64);
        }
        let text = RawRecord {
            key: None,
            payload: Some(b"{\"a\":\n1"),
            offset: 2,
            received: None,
        };
        let rejection = Rejection {
            reason: Reason::InvalidJson,
            message: "x".into(),
        };
        assert_eq!(
            dead_letter(
                Stream::Transactions,
                0,
                &text,
                &rejection,
                at(0).fixed_offset()
            )
            .original_encoding,
            "text"
        );
    }

    #[tokio::test]
    async fn a_record_dated_2099_or_1970_moves_no_watermark_and_is_dead_lettered() {
        let mut e = engine();
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_micros()
        };
        let received = at("2023-01-05T12:00:00+07:00");
        let payloads = [
            txn(1, "2023-01-05T10:00:00+07:00"),
            txn(2, "2099-01-05T10:00:00+07:00"),
            txn(3, "1970-01-01T07:00:00+07:00"),
            txn(4, "2023-01-05T11:00:00+07:00"),
        ];
        let records: Vec<RawRecord> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| RawRecord {
                key: Some(b"O1"),
                payload: Some(p.as_bytes()),
                offset: i as i64,
                received: Some(received),
            })
            .collect();
        let dead = e.ingest(Stream::Transactions, 0, &records, 0).unwrap();
        let reasons: Vec<(&str, i64)> =
            dead.iter().map(|d| (d.reason.as_str(), d.offset)).collect();
        assert_eq!(reasons, vec![("future", 1), ("before_program", 2)]);
        let last = at("2023-01-05T11:00:00+07:00");
        assert_eq!(e.partition_max_event((Stream::Transactions, 0)), Some(last));
        e.advance(0).await.unwrap();
        assert_eq!(e.watermark(), Some(last - 600_000_000));
        // The next punctual record is on time, not late.
        let next = txn(5, "2023-01-05T11:30:00+07:00");
        let record = RawRecord {
            key: Some(b"O1"),
            payload: Some(next.as_bytes()),
            offset: 4,
            received: Some(received),
        };
        assert!(e
            .ingest(Stream::Transactions, 0, &[record], 0)
            .unwrap()
            .is_empty());
    }

    fn engine() -> Engine {
        let config = EngineConfig {
            lateness: Duration::from_secs(600),
            max_future: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(3600),
            rules: None,
            rule_budget: Duration::from_secs(30),
            snooze: None,
        };
        Engine::new(&config, RuleSet::default())
    }

    fn ingest(engine: &mut Engine, payload: &str, offset: i64) -> Vec<DeadLetter> {
        let record = RawRecord {
            key: Some(b"O1"),
            payload: Some(payload.as_bytes()),
            offset,
            received: None,
        };
        engine
            .ingest(Stream::Transactions, 2, &[record], 0)
            .unwrap()
    }

    #[tokio::test]
    async fn a_record_older_than_the_watermark_is_dead_lettered_as_late_with_its_provenance() {
        let mut e = engine();
        assert!(ingest(&mut e, &txn(1, "2023-01-05T12:00:00+07:00"), 0).is_empty());
        e.advance(0).await.unwrap();
        // The watermark is 11:50; 11:55 is within the lateness, 11:00 is not.
        assert!(ingest(&mut e, &txn(2, "2023-01-05T11:55:00+07:00"), 1).is_empty());
        let late_payload = txn(3, "2023-01-05T11:00:00+07:00");
        let dead = ingest(&mut e, &late_payload, 2);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "late");
        assert_eq!(dead[0].original, late_payload);
        assert_eq!(
            (dead[0].topic.as_str(), dead[0].partition, dead[0].offset),
            ("bpnt.transactions", 2, 2)
        );
        assert_eq!(dead[0].key.as_deref(), Some("O1"));
        assert_eq!(e.take_tally().late_records["bpnt.transactions"], 1);
    }

    #[tokio::test]
    async fn a_redelivery_counts_once_and_is_not_dead_lettered() {
        let mut e = engine();
        let payload = txn(1, "2023-01-05T12:00:00+07:00");
        assert!(ingest(&mut e, &payload, 0).is_empty());
        assert!(ingest(&mut e, &payload, 1).is_empty());
        assert_eq!(e.buffered_rows(), 1);
        let tally = e.take_tally();
        assert_eq!(tally.duplicates["bpnt.transactions"], 1);
        // Nothing late is a count of zero, published as such: a dashboard's "late
        // records" panel shows 0, not "no data".
        assert_eq!(tally.late_records.get("bpnt.transactions"), Some(&0));
    }

    fn rule(id: &str, extra_header: &str, select: &str) -> Rule {
        let text = format!(
            "-- id: {id}\n-- title: Uji\n-- category: price_markup\n-- severity: low\n\
             -- window: local_day\n-- entity: outlet\n-- summary: {{entity_id}}\n{extra_header}{select}\n"
        );
        Rule::parse(std::path::Path::new(&format!("{id}.sql")), &text).unwrap()
    }

    const PER_OUTLET: &str =
        "SELECT outlet_id AS entity_id, regency_code, 1.0 AS score FROM transactions GROUP BY outlet_id, regency_code";

    fn engine_with(rules: Vec<Rule>) -> Engine {
        let mut e = engine();
        e.reload(RuleSet {
            rules,
            ..RuleSet::default()
        });
        e
    }

    #[tokio::test]
    async fn a_rule_over_its_budget_is_skipped_and_counted_while_the_others_run() {
        let slow = rule(
            "slow",
            "-- budget: 200ms\n",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100000000) \
             SELECT t.outlet_id AS entity_id, t.regency_code, CAST(count(*) AS DOUBLE) AS score \
             FROM transactions t CROSS JOIN r GROUP BY t.outlet_id, t.regency_code",
        );
        let mut e = engine_with(vec![slow, rule("fast", "", PER_OUTLET)]);
        ingest(&mut e, &txn(1, "2023-01-05T12:00:00+07:00"), 0);
        let alerts = e.finish(0).await.unwrap();
        let rules: Vec<&str> = alerts.iter().map(|a| a.rule_id.as_str()).collect();
        assert_eq!(rules, vec!["fast"]);
        let failures = e.take_tally().rule_failures;
        let slow = |failure| failures.get(&("slow".to_owned(), failure)).copied();
        assert_eq!(
            (slow(RuleFailure::Timeout), slow(RuleFailure::Error)),
            (Some(1), None)
        );
    }

    #[tokio::test]
    async fn a_reloaded_rule_keeps_the_open_windows_and_its_alerts_carry_the_new_version() {
        let v1 = rule("per_outlet", "", PER_OUTLET);
        let mut e = engine_with(vec![v1.clone()]);
        ingest(&mut e, &txn(1, "2023-01-05T12:00:00+07:00"), 0);
        ingest(&mut e, &txn(2, "2023-01-06T12:00:00+07:00"), 1);
        let day_one = e.advance(0).await.unwrap();
        assert_eq!(day_one.len(), 1);
        assert_eq!(day_one[0].rule_version, v1.version);

        // Shadow, and another version: the day already buffered runs under it.
        let v2 = rule("per_outlet", "-- mode: shadow\n", PER_OUTLET);
        assert_ne!(v2.version, v1.version);
        e.reload(RuleSet {
            rules: vec![v2.clone()],
            ..RuleSet::default()
        });
        ingest(&mut e, &txn(3, "2023-01-07T12:00:00+07:00"), 2);
        let day_two = e.advance(0).await.unwrap();
        assert_eq!(day_two.len(), 1, "the buffered day was lost on reload");
        assert_eq!(day_two[0].rule_version, v2.version);
        assert!(day_two[0].shadow);
        let labels = ["per_outlet", "price_markup", "low", "3604"].map(String::from);
        assert_eq!(e.take_tally().shadow_alerts[&labels], 1);

        // Snoozed from now on: detected, counted, not raised.
        e.set_snoozes(Arc::new(SnoozeList::parse(
            "snooze.csv",
            "entity_id,rule_id,until,reason,who\nO1,*,2023-01-31,cek,Tikor\n",
        )));
        assert!(e.finish(0).await.unwrap().is_empty());
        let suppressed = e.take_tally().alerts_suppressed;
        assert_eq!(suppressed[&("per_outlet".to_owned(), "snoozed")], 1);
    }

    fn reference_prices(premium_zone_1: i64) -> crate::reference::ReferenceTable {
        let text = format!(
            "commodity,grade,unit,zone,valid_from,valid_to,price,kind,confidence,source\n\
             BERAS,premium,kg,1,2023-03-14,2024-03-31,{premium_zone_1},HET,verified,Perbadan 7/2023\n"
        );
        crate::reference::ReferenceTable::parse(
            std::path::Path::new("tables/reference_prices.csv"),
            &text,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_reload_replaces_a_reference_tables_rows_for_rules_and_views() {
        // Through a view, as a shared price comparison would read it: the view's plan
        // must not keep the rows of the table it was first created against.
        let view = View::parse(
            std::path::Path::new("views/premium_het.sql"),
            "-- view: premium_het\nSELECT max(price) AS het FROM reference_prices WHERE grade = 'premium'\n",
        )
        .unwrap();
        let het = rule(
            "het",
            "",
            "SELECT t.outlet_id AS entity_id, t.regency_code, 1.0 AS score, \
                    max(h.het) AS het, max(r.price) AS direct \
             FROM transactions t CROSS JOIN premium_het h CROSS JOIN reference_prices r \
             GROUP BY t.outlet_id, t.regency_code",
        );
        let set = |price| RuleSet {
            rules: vec![het.clone()],
            views: vec![view.clone()],
            tables: vec![reference_prices(price)],
        };
        let mut e = engine();
        e.reload(set(13900));
        ingest(&mut e, &txn(1, "2023-01-05T12:00:00+07:00"), 0);
        ingest(&mut e, &txn(2, "2023-01-06T12:00:00+07:00"), 1);
        let day_one = e.advance(0).await.unwrap();
        assert_eq!(day_one.len(), 1);
        assert_eq!(day_one[0].evidence["het"], serde_json::json!(13900));
        assert_eq!(day_one[0].evidence["direct"], serde_json::json!(13900));

        e.reload(set(14900));
        ingest(&mut e, &txn(3, "2023-01-07T12:00:00+07:00"), 2);
        let day_two = e.advance(0).await.unwrap();
        assert_eq!(day_two.len(), 1);
        assert_eq!(day_two[0].evidence["het"], serde_json::json!(14900));
        assert_eq!(day_two[0].evidence["direct"], serde_json::json!(14900));
        let failures = e.take_tally().rule_failures;
        assert!(failures.is_empty(), "{failures:?}");
    }

    fn ingest_disbursements(engine: &mut Engine, payloads: &[String]) {
        let records: Vec<RawRecord> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| RawRecord {
                key: Some(b"K"),
                payload: Some(p.as_bytes()),
                offset: i as i64,
                received: None,
            })
            .collect();
        let dead = engine
            .ingest(Stream::Disbursements, 0, &records, 0)
            .unwrap();
        assert!(dead.is_empty(), "{dead:?}");
    }

    #[tokio::test]
    async fn closed_days_publish_realization_purchases_and_prices_per_regency() {
        let mut e = engine();
        let credit = |card: &str, at: &str| {
            format!(
                r#"{{"disbursement_id":"D{card}","bank":"BNI","card_id":"{card}","regency_code":"3604","period":"2023-01","months":1,"amount":200000,"credited_at":"{at}"}}"#
            )
        };
        let kks = |id: &str, card: &str, at: &str, price: i64| {
            format!(
                r#"{{"txn_id":"{id}","bank":"BNI","occurred_at":"{at}","outlet_id":"O1","terminal_id":"T1","regency_code":"3604","card_id":"{card}","payment":"KKS","type":"purchase","amount":{amount},"balance_after":0,"items":[{{"commodity":"BERAS","qty":10,"unit":"kg","unit_price":{price}}}]}}"#,
                amount = 10 * price
            )
        };
        let credits: Vec<String> = ["K1", "K2", "K3", "K4"]
            .iter()
            .map(|c| credit(c, "2023-01-02T09:00:00+07:00"))
            .collect();
        ingest_disbursements(&mut e, &credits);
        for (offset, (id, card, price)) in [
            ("T1", "K1", 12_000),
            ("T2", "K2", 13_000),
            ("T3", "K2", 20_000),
        ]
        .into_iter()
        .enumerate()
        {
            ingest(
                &mut e,
                &kks(id, card, "2023-01-03T10:00:00+07:00", price),
                offset as i64,
            );
        }
        ingest(&mut e, &txn(9, "2023-01-03T11:00:00+07:00"), 3);
        e.finish(0).await.unwrap();
        let figures = e.take_tally().program;
        let period = figures
            .iter()
            .rev()
            .find_map(|f| match f {
                ProgramFigure::Period {
                    regency,
                    period,
                    credited_kpm,
                    spending_kpm,
                    credited_rupiah,
                    spent_rupiah,
                    ..
                } if regency == "3604" && period == "2023-01" => Some((
                    *credited_kpm,
                    *spending_kpm,
                    *credited_rupiah,
                    *spent_rupiah,
                )),
                _ => None,
            })
            .expect("the period's figures");
        // K2 spent 330,000 from a 200,000 credit: counted up to its credit.
        assert_eq!(period, (4.0, 2.0, 800_000.0, 320_000.0));
        let mut purchases: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for f in &figures {
            if let ProgramFigure::DayPurchases {
                payment,
                purchases: n,
                rupiah,
                ..
            } = f
            {
                let sum = purchases.entry(payment.as_str()).or_default();
                *sum = (sum.0 + n, sum.1 + rupiah);
            }
        }
        assert_eq!(purchases["KKS"], (3, 450_000));
        assert_eq!(purchases["QRIS"].0, 1);
        assert!(figures.contains(&ProgramFigure::UnitPriceMedian {
            regency: "3604".into(),
            commodity: "BERAS".into(),
            unit: "kg".into(),
            rupiah: 13_000.0,
        }));
    }

    #[tokio::test]
    async fn commodity_and_unit_labels_from_input_are_bounded_to_a_known_list() {
        let mut e = engine();
        let item = |id: &str, commodity: &str, unit: &str| {
            format!(
                r#"{{"txn_id":"{id}","bank":"BNI","occurred_at":"2023-01-03T10:00:00+07:00","outlet_id":"O1","terminal_id":"T1","regency_code":"3604","card_id":"K1","payment":"KKS","type":"purchase","amount":10000,"balance_after":0,"items":[{{"commodity":"{commodity}","qty":1,"unit":"{unit}","unit_price":10000}}]}}"#
            )
        };
        for (offset, (id, commodity, unit)) in [
            ("T1", "TELUR", "kg"),
            ("T2", "KARTU-3604-000123", "kg"),
            ("T3", "BERAS", "sak-K1"),
        ]
        .into_iter()
        .enumerate()
        {
            ingest(&mut e, &item(id, commodity, unit), offset as i64);
        }
        e.finish(0).await.unwrap();
        let labels: Vec<(String, String)> = e
            .take_tally()
            .program
            .into_iter()
            .filter_map(|f| match f {
                ProgramFigure::UnitPriceMedian {
                    commodity, unit, ..
                } => Some((commodity, unit)),
                _ => None,
            })
            .collect();
        let has = |c: &str, u: &str| labels.contains(&(c.to_owned(), u.to_owned()));
        assert!(
            has("TELUR", "kg") && has("other", "kg") && has("BERAS", "other"),
            "{labels:?}"
        );
        assert!(
            labels
                .iter()
                .all(|(c, u)| !c.contains("KARTU") && !u.contains("sak-K1")),
            "{labels:?}"
        );
    }

    #[tokio::test]
    async fn a_new_period_replaces_the_previous_periods_realization_series() {
        let mut e = engine();
        let credits: Vec<String> = [("2023-01", "2023-01-02"), ("2023-02", "2023-02-01")]
            .iter()
            .map(|(period, day)| {
                format!(
                    r#"{{"disbursement_id":"D{period}","bank":"BNI","card_id":"K1","regency_code":"3604","period":"{period}","months":1,"amount":200000,"credited_at":"{day}T09:00:00+07:00"}}"#
                )
            })
            .collect();
        ingest_disbursements(&mut e, &credits);
        e.finish(0).await.unwrap();
        let periods: Vec<(String, Option<String>, f64)> = e
            .take_tally()
            .program
            .into_iter()
            .filter_map(|f| match f {
                ProgramFigure::Period {
                    period,
                    replaces,
                    credited_kpm,
                    ..
                } => Some((period, replaces, credited_kpm)),
                _ => None,
            })
            .collect();
        let last = periods.last().expect("period figures");
        assert_eq!((last.0.as_str(), last.2), ("2023-02", 1.0));
        // The move from January to February says which series it replaces, once.
        let replacing: Vec<_> = periods.iter().filter(|p| p.1.is_some()).collect();
        assert_eq!(replacing.len(), 1, "{periods:?}");
        assert_eq!(
            (replacing[0].0.as_str(), replacing[0].1.as_deref()),
            ("2023-02", Some("2023-01"))
        );
    }
}
