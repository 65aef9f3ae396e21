//! Event-time windows: what is kept, and when a window closes.
//!
//! Accepted rows are buffered as Arrow batches. A window `[start, end)` closes once the
//! watermark reaches `end`; closing hands the window's rows to `rules` as tables. Windows
//! of every spec close in one global order (end instant, then daily rollups before the
//! rules that read them), so the same input gives the same windows whatever the batch
//! sizes, partitions or arrival order, as long as the disorder stays within the
//! lateness. Raw rows are kept only as long as the longest raw window needs them; long
//! horizons read the per-day rollups that `engine` stores here when a local day closes.
//! Pure: batches in, closed windows out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Int32Array, RecordBatch, Scalar, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::{and, filter_record_batch, kernels::cmp};
use datafusion::arrow::datatypes::{Date32Type, Int32Type, Int64Type, TimestampMicrosecondType};

use crate::decode::OutletRow;
use crate::error::{BadWindow, Error, Result};
use crate::tables;
use pantau_core::model::PartitionId;
use pantau_core::model::Stream;

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub(crate) const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;
/// Indonesia's three zones, in seconds east of UTC: WIB, WITA, WIT.
pub(crate) const ZONES: [i32; 3] = [7 * 3600, 8 * 3600, 9 * 3600];
/// Days of rollups a window over raw events sees as recent history; rollups are kept at
/// least this long.
const MIN_HISTORY_DAYS: i32 = 28;
/// Day-range windows close when the westernmost zone's (WIB's) last day has ended.
const LATEST_ZONE: i32 = 7 * 3600;

/// The window a rule declares in its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WindowSpec {
    /// Fixed-size windows on the UTC grid, e.g. `tumbling 30m`.
    Tumbling { size_us: i64 },
    /// Overlapping windows, e.g. `hopping 1h every 15m`.
    Hopping { size_us: i64, slide_us: i64 },
    /// The district's local calendar day (WIB, WITA or WIT), over raw events.
    LocalDay,
    /// A run of local days read from the daily rollups, e.g. `local_days 56 every 28`.
    LocalDays { days: i64, every: i64 },
}

fn parse_duration(s: &str) -> Result<i64, BadWindow> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().map_err(BadWindow::number(format!(
        "{s:?}: expected a number followed by s, m, h or d"
    )))?;
    let unit_us = match unit {
        "s" => MICROS_PER_SEC,
        "m" => 60 * MICROS_PER_SEC,
        "h" => 3600 * MICROS_PER_SEC,
        "d" => MICROS_PER_DAY,
        _ => return Err(BadWindow::new(format!("{s:?}: unit must be s, m, h or d"))),
    };
    if n <= 0 {
        return Err(BadWindow::new(format!(
            "{s:?}: a window length must be positive"
        )));
    }
    n.checked_mul(unit_us)
        .filter(|us| *us <= MAX_WINDOW_US)
        .ok_or_else(|| {
            BadWindow::new(format!(
                "{s:?}: a window may be at most {MAX_WINDOW_DAYS} days"
            ))
        })
}

/// The longest window a rule may declare: rollups are kept as long as the longest
/// window, and window arithmetic must stay far inside `i64` µs.
const MAX_WINDOW_DAYS: i64 = 400;
const MAX_WINDOW_US: i64 = MAX_WINDOW_DAYS * MICROS_PER_DAY;

fn format_duration(us: i64) -> String {
    for (unit, size) in [
        ("d", MICROS_PER_DAY),
        ("h", 3600 * MICROS_PER_SEC),
        ("m", 60 * MICROS_PER_SEC),
    ] {
        if us % size == 0 {
            return format!("{}{unit}", us / size);
        }
    }
    format!("{}s", us / MICROS_PER_SEC)
}

impl FromStr for WindowSpec {
    type Err = BadWindow;

    fn from_str(s: &str) -> Result<Self, BadWindow> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let spec = match words.as_slice() {
            ["tumbling", size] => WindowSpec::Tumbling {
                size_us: parse_duration(size)?,
            },
            ["hopping", size, "every", slide] => WindowSpec::Hopping {
                size_us: parse_duration(size)?,
                slide_us: parse_duration(slide)?,
            },
            ["local_day"] => WindowSpec::LocalDay,
            ["local_days", days, "every", every] => {
                let days: i64 = days
                    .parse()
                    .map_err(BadWindow::number("local_days: days must be a number"))?;
                let every: i64 = every
                    .parse()
                    .map_err(BadWindow::number("local_days: every must be a number"))?;
                if days <= 0 || every <= 0 {
                    return Err(BadWindow::new(
                        "local_days: days and every must be positive",
                    ));
                }
                if days > MAX_WINDOW_DAYS || every > MAX_WINDOW_DAYS {
                    return Err(BadWindow::new(format!(
                        "local_days: days and every may be at most {MAX_WINDOW_DAYS}"
                    )));
                }
                WindowSpec::LocalDays { days, every }
            }
            _ => {
                return Err(BadWindow::new(format!(
                    "window {s:?} is not one of: `tumbling 30m`, `hopping 1h every 15m`, \
                     `local_day`, `local_days 56 every 28`"
                )))
            }
        };
        if let WindowSpec::Hopping { size_us, slide_us } = spec {
            if slide_us > size_us {
                return Err(BadWindow::new(format!(
                    "window {s:?}: the slide must not exceed the size"
                )));
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WindowSpec::Tumbling { size_us } => write!(f, "tumbling {}", format_duration(size_us)),
            WindowSpec::Hopping { size_us, slide_us } => write!(
                f,
                "hopping {} every {}",
                format_duration(size_us),
                format_duration(slide_us)
            ),
            WindowSpec::LocalDay => write!(f, "local_day"),
            WindowSpec::LocalDays { days, every } => write!(f, "local_days {days} every {every}"),
        }
    }
}

/// One series of windows: a spec, and for local days the zone it runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Series {
    pub spec: WindowSpec,
    /// Seconds east of UTC for `LocalDay`; `None` for windows over every zone.
    pub zone: Option<i32>,
}

impl Series {
    /// (size, slide, phase) of the series' grid: windows are
    /// `[k·slide + phase, k·slide + phase + size)` in µs since the epoch.
    fn grid(&self) -> (i64, i64, i64) {
        match self.spec {
            WindowSpec::Tumbling { size_us } => (size_us, size_us, 0),
            WindowSpec::Hopping { size_us, slide_us } => (size_us, slide_us, 0),
            WindowSpec::LocalDay => {
                let zone = self.zone.unwrap_or(LATEST_ZONE) as i64;
                (MICROS_PER_DAY, MICROS_PER_DAY, -zone * MICROS_PER_SEC)
            }
            WindowSpec::LocalDays { days, every } => (
                days * MICROS_PER_DAY,
                every * MICROS_PER_DAY,
                -(LATEST_ZONE as i64) * MICROS_PER_SEC,
            ),
        }
    }

    /// The end of the first window that contains `t`.
    fn first_end_containing(&self, t: i64) -> i64 {
        let (size, slide, phase) = self.grid();
        // Smallest k with k·slide + phase + size > t.
        let k = (t - phase - size).div_euclid(slide) + 1;
        k * slide + phase + size
    }

    fn size_and_slide(&self) -> (i64, i64) {
        let (size, slide, _) = self.grid();
        (size, slide)
    }

    pub(crate) fn reads_rollups(&self) -> bool {
        matches!(self.spec, WindowSpec::LocalDays { .. })
    }
}

/// What a closed window is for: building the daily rollups, or running rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Purpose {
    /// Rollups of a local day; ordered before rules so same-instant rules see them.
    Rollup,
    Rules,
}

/// A window whose end the watermark has passed, with its tables.
#[derive(Debug, Clone)]
pub(crate) struct ClosedWindow {
    pub series: Series,
    pub purpose: Purpose,
    pub start: i64,
    pub end: i64,
    /// Table name → batches, every batch carrying `window_start` and `window_end`.
    pub tables: BTreeMap<&'static str, Vec<RecordBatch>>,
}

impl ClosedWindow {
    /// True when the window has none of its own rows: raw events for a window over
    /// events, daily rollups for a run of days. The registry and the recent history that
    /// ride along do not count, so rules are not run over windows without data.
    pub fn is_empty(&self) -> bool {
        let own: &[&str] = if self.series.reads_rollups() {
            &tables::ROLLUP_TABLES
        } else {
            &tables::RAW_TABLES
        };
        own.iter()
            .filter_map(|name| self.tables.get(name))
            .all(|batches| batches.iter().all(|b| b.num_rows() == 0))
    }
}

/// Where a buffered batch came from and what it spans.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BufferedMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub partition: PartitionId,
    pub min_offset: i64,
}

/// The window state as plain data, for `checkpoint` to write and read back.
#[derive(Debug, Clone, Default)]
pub struct WindowSnapshot {
    pub raw: Vec<(&'static str, Vec<(BufferedMeta, RecordBatch)>)>,
    /// Per rollup table, (local date, batch).
    pub rollups: Vec<(&'static str, Vec<(i32, RecordBatch)>)>,
    pub registry: Vec<OutletRow>,
    /// Dedup key and event time.
    pub seen: Vec<(String, i64)>,
    pub next_end: Vec<(Series, i64)>,
    pub next_offset: Vec<(PartitionId, i64)>,
    pub max_event: Option<i64>,
}

#[derive(Debug, Clone)]
struct Buffered {
    batch: RecordBatch,
    min_time: i64,
    max_time: i64,
    partition: PartitionId,
    min_offset: i64,
}

#[derive(Debug, Clone)]
struct Rollup {
    date: i32,
    batch: RecordBatch,
}

/// Outcome of offering rows to the window state.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Admission {
    /// Row indices (into the decoded batch) older than the watermark.
    pub late: Vec<usize>,
    /// Redeliveries of rows already accepted.
    pub duplicates: usize,
    pub accepted: usize,
    /// Per decoded row: kept in the window buffers.
    pub kept: Vec<bool>,
}

/// Everything the windows keep between closes.
#[derive(Debug, Default)]
pub(crate) struct WindowState {
    raw: BTreeMap<&'static str, Vec<Buffered>>,
    /// Rows in `raw`, kept as it changes: read every turn, so not counted each time.
    raw_rows: usize,
    rollups: BTreeMap<&'static str, Vec<Rollup>>,
    registry: HashMap<String, OutletRow>,
    registry_batch: Option<RecordBatch>,
    /// Dedup key → event time, forgotten when the row could no longer be on time.
    seen: HashMap<String, i64>,
    /// Per series, the end of the next window to close.
    next_end: BTreeMap<Series, i64>,
    series: Vec<Series>,
    /// Largest offset seen + 1 per partition.
    next_offset: HashMap<PartitionId, i64>,
    max_event: Option<i64>,
    /// How long raw rows are kept after their time, in µs.
    raw_retention_us: i64,
    /// How many days of rollups are kept before the window being closed.
    rollup_retention_days: i32,
}

fn table_of(stream: Stream) -> &'static str {
    match stream {
        Stream::Transactions => tables::TRANSACTIONS,
        Stream::Disbursements => tables::DISBURSEMENTS,
        Stream::Transfers => tables::TRANSFERS,
        Stream::Outlets => tables::OUTLETS,
    }
}

fn time_column(table: &str) -> &'static str {
    if table == tables::DISBURSEMENTS {
        "credited_at"
    } else {
        "occurred_at"
    }
}

fn min_max(values: &[i64]) -> Option<(i64, i64)> {
    let min = *values.iter().min()?;
    let max = *values.iter().max()?;
    Some((min, max))
}

impl WindowState {
    /// `series` are the rule windows; local-day rollups are always kept.
    pub fn new(rule_specs: &[WindowSpec]) -> Self {
        let mut state = WindowState::default();
        state.set_specs(rule_specs);
        state
    }

    /// Replaces the set of rule windows (rules were added or removed). Series already
    /// running keep their progress; new ones start after the last closed day.
    pub(crate) fn set_specs(&mut self, rule_specs: &[WindowSpec]) {
        let mut specs: Vec<WindowSpec> = rule_specs.to_vec();
        specs.push(WindowSpec::LocalDay);
        specs.sort();
        specs.dedup();
        let mut series = Vec::new();
        let mut raw_retention = MICROS_PER_DAY;
        let mut rollup_days = 1;
        for spec in specs {
            match spec {
                WindowSpec::LocalDay => {
                    series.extend(ZONES.iter().map(|z| Series {
                        spec,
                        zone: Some(*z),
                    }));
                }
                _ => series.push(Series { spec, zone: None }),
            }
            match spec {
                WindowSpec::Tumbling { size_us } | WindowSpec::Hopping { size_us, .. } => {
                    raw_retention = raw_retention.max(size_us)
                }
                WindowSpec::LocalDays { days, .. } => rollup_days = rollup_days.max(days as i32),
                WindowSpec::LocalDay => {}
            }
        }
        // A local day can end up to the zone spread after a UTC day would.
        self.raw_retention_us = raw_retention + 3 * 3600 * MICROS_PER_SEC;
        self.rollup_retention_days = (rollup_days + 1).max(MIN_HISTORY_DAYS);
        self.series = series;
        let keep: HashSet<Series> = self.series.iter().copied().collect();
        self.next_end.retain(|s, _| keep.contains(s));
    }

    /// Offers decoded rows of one chunk. Rows older than the watermark are reported as
    /// late (their windows may be closed) and kept out; redeliveries are counted once.
    pub(crate) fn admit(
        &mut self,
        stream: Stream,
        partition: PartitionId,
        batch: &RecordBatch,
        event_times: &[i64],
        dedup_keys: &[Option<String>],
        watermark: Option<i64>,
    ) -> Result<Admission> {
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut admission = Admission::default();
        for (row, (&t, key)) in event_times.iter().zip(dedup_keys).enumerate() {
            if let Some(key) = key {
                if self.seen.contains_key(key) {
                    admission.duplicates += 1;
                    keep.push(false);
                    continue;
                }
            }
            if watermark.is_some_and(|w| t < w) {
                admission.late.push(row);
                keep.push(false);
                continue;
            }
            if let Some(key) = key {
                self.seen.insert(key.clone(), t);
            }
            keep.push(true);
        }
        if let Some(offsets) = batch.column_by_name(tables::SRC_OFFSET) {
            let offsets = offsets.as_primitive::<Int64Type>();
            if let Some(max) = offsets.values().iter().max() {
                let next = self.next_offset.entry(partition).or_insert(0);
                *next = (*next).max(max + 1);
            }
        }
        admission.accepted = keep.iter().filter(|k| **k).count();
        admission.kept = keep.clone();
        if admission.accepted == 0 {
            return Ok(admission);
        }
        let kept_times: Vec<i64> = event_times
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(t, _)| *t)
            .collect();
        let kept = if admission.accepted == batch.num_rows() {
            batch.clone()
        } else {
            filter_record_batch(batch, &BooleanArray::from(keep))?
        };
        self.push_raw(table_of(stream), partition, kept, &kept_times);
        Ok(admission)
    }

    /// Buffers item lines of transactions admitted from the same chunk. Items of rows that
    /// were late or duplicated are dropped with them.
    pub(crate) fn admit_items(
        &mut self,
        partition: PartitionId,
        items: &RecordBatch,
        accepted_txns: &HashSet<i64>,
    ) -> Result<()> {
        let offsets = items
            .column_by_name(tables::SRC_OFFSET)
            .ok_or_else(|| Error::Invariant("items batch without src_offset".into()))?
            .as_primitive::<Int64Type>();
        let keep: BooleanArray = offsets
            .values()
            .iter()
            .map(|o| Some(accepted_txns.contains(o)))
            .collect();
        let kept = filter_record_batch(items, &keep)?;
        if kept.num_rows() == 0 {
            return Ok(());
        }
        let times: Vec<i64> = kept
            .column_by_name("occurred_at")
            .ok_or_else(|| Error::Invariant("items batch without occurred_at".into()))?
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec();
        self.push_raw(tables::TRANSACTION_ITEMS, partition, kept, &times);
        Ok(())
    }

    fn push_raw(
        &mut self,
        table: &'static str,
        partition: PartitionId,
        batch: RecordBatch,
        times: &[i64],
    ) {
        let Some((min_time, max_time)) = min_max(times) else {
            return;
        };
        let min_offset = batch
            .column_by_name(tables::SRC_OFFSET)
            .and_then(|c| c.as_primitive::<Int64Type>().values().iter().min().copied())
            .unwrap_or(i64::MAX);
        self.max_event = Some(self.max_event.map_or(max_time, |m| m.max(max_time)));
        for series in &self.series {
            if series.reads_rollups() {
                continue;
            }
            let first = series.first_end_containing(min_time);
            self.next_end
                .entry(*series)
                .and_modify(|e| *e = (*e).min(first))
                .or_insert(first);
        }
        self.raw_rows += batch.num_rows();
        self.raw.entry(table).or_default().push(Buffered {
            batch,
            min_time,
            max_time,
            partition,
            min_offset,
        });
    }

    /// Applies registry records (compacted topic: the latest record per outlet wins).
    pub(crate) fn apply_outlets(&mut self, rows: Vec<OutletRow>) {
        for row in rows {
            self.registry.insert(row.outlet_id.clone(), row);
        }
        self.registry_batch = None;
    }

    fn registry_table(&mut self) -> Result<RecordBatch> {
        if self.registry_batch.is_none() {
            self.registry_batch = Some(crate::decode::outlets_batch(&self.registry)?);
        }
        Ok(self
            .registry_batch
            .clone()
            .expect("registry batch was just built"))
    }

    /// Stores the rollups of a closed local day (see `rules::ROLLUPS`).
    pub(crate) fn store_rollup(
        &mut self,
        table: &'static str,
        date: i32,
        batches: Vec<RecordBatch>,
    ) {
        self.rollups
            .entry(table)
            .or_default()
            .extend(batches.into_iter().map(|batch| Rollup { date, batch }));
        // Every day-range window containing this day is still open: they close at the
        // end of WIB's day, after every zone's day has ended.
        let day_start = date as i64 * MICROS_PER_DAY - LATEST_ZONE as i64 * MICROS_PER_SEC;
        for series in self.series.iter().filter(|s| s.reads_rollups()) {
            let end = series.first_end_containing(day_start);
            self.next_end
                .entry(*series)
                .and_modify(|e| *e = (*e).min(end))
                .or_insert(end);
        }
    }

    /// The windows that close at this watermark, in closing order. Call repeatedly until
    /// it returns nothing: rollups stored in between may open day-range windows.
    pub(crate) fn close_next(&mut self, watermark: i64) -> Result<Option<ClosedWindow>> {
        // The series whose next window ends first; rollups before rules at equal ends.
        let candidate = self
            .next_end
            .iter()
            .filter(|(_, end)| **end <= watermark)
            .map(|(s, end)| {
                let purpose = if s.spec == WindowSpec::LocalDay {
                    Purpose::Rollup
                } else {
                    Purpose::Rules
                };
                (*end, purpose, *s)
            })
            .min();
        let Some((end, purpose, series)) = candidate else {
            return Ok(None);
        };
        let (size, slide) = series.size_and_slide();
        let start = end - size;
        let mut next = end + slide;
        // Skip windows that no retained row can fall into.
        if let Some(t) = self.earliest_after(&series, end) {
            next = next.max(series.first_end_containing(t));
        } else {
            self.next_end.remove(&series);
            return self.window(series, purpose, start, end).map(Some);
        }
        self.next_end.insert(series, next);
        self.window(series, purpose, start, end).map(Some)
    }

    /// The earliest time of any retained data that a window of `series` ending after
    /// `end` could still contain.
    fn earliest_after(&self, series: &Series, end: i64) -> Option<i64> {
        let (size, slide) = series.size_and_slide();
        let next_start = end + slide - size;
        if series.reads_rollups() {
            self.rollups
                .values()
                .flatten()
                .map(|r| r.date as i64 * MICROS_PER_DAY - LATEST_ZONE as i64 * MICROS_PER_SEC)
                .filter(|t| *t + MICROS_PER_DAY > next_start)
                .min()
                .map(|t| t.max(next_start))
        } else {
            self.raw
                .values()
                .flatten()
                .filter(|b| b.max_time >= next_start)
                .map(|b| b.min_time.max(next_start))
                .min()
        }
    }

    fn window(
        &mut self,
        series: Series,
        purpose: Purpose,
        start: i64,
        end: i64,
    ) -> Result<ClosedWindow> {
        let mut out: BTreeMap<&'static str, Vec<RecordBatch>> = BTreeMap::new();
        if series.reads_rollups() {
            let days = local_date_of(start)..local_date_of(end);
            self.rollups_into(&mut out, days, start, end)?;
        } else {
            for table in tables::RAW_TABLES {
                let mut batches = Vec::new();
                for buffered in self.raw.get(table).into_iter().flatten() {
                    if buffered.max_time < start || buffered.min_time >= end {
                        continue;
                    }
                    let slice =
                        slice_window(&buffered.batch, time_column(table), start, end, series.zone)?;
                    if slice.num_rows() > 0 {
                        batches.push(with_window(&slice, start, end)?);
                    }
                }
                out.insert(table, batches);
            }
            // Closed days before this window: the entity's recent history, always the
            // same span so the result does not depend on when rollups were evicted, and
            // no longer than that: every raw window pays for copying it.
            let first = local_date_of(start);
            self.rollups_into(&mut out, first - MIN_HISTORY_DAYS..first, start, end)?;
        }
        out.insert(
            tables::OUTLETS,
            vec![with_window(&self.registry_table()?, start, end)?],
        );
        Ok(ClosedWindow {
            series,
            purpose,
            start,
            end,
            tables: out,
        })
    }

    /// Adds the rollups of the local dates in `days` to a window's tables.
    fn rollups_into(
        &self,
        out: &mut BTreeMap<&'static str, Vec<RecordBatch>>,
        days: std::ops::Range<i32>,
        start: i64,
        end: i64,
    ) -> Result<()> {
        for table in tables::ROLLUP_TABLES {
            let batches = self
                .rollups
                .get(table)
                .into_iter()
                .flatten()
                .filter(|r| days.contains(&r.date))
                .map(|r| with_window(&r.batch, start, end))
                .collect::<Result<Vec<_>>>()?;
            out.insert(table, batches);
        }
        Ok(())
    }

    /// Forgets raw rows no open window can need, rollups older than any day-range window
    /// will read, and dedup keys of rows that could no longer arrive on time.
    pub(crate) fn evict(&mut self, watermark: i64, lateness_us: i64) {
        let horizon = watermark - self.raw_retention_us;
        for batches in self.raw.values_mut() {
            batches.retain(|b| b.max_time >= horizon);
        }
        self.recount_raw_rows();
        let dedup_horizon = horizon - lateness_us;
        self.seen.retain(|_, t| *t >= dedup_horizon);
        let oldest = local_date_of(watermark) - self.rollup_retention_days - 1;
        for store in self.rollups.values_mut() {
            store.retain(|r| r.date >= oldest);
        }
    }

    /// Everything the windows keep, for a checkpoint: batches shared, not copied.
    pub fn snapshot(&self) -> WindowSnapshot {
        WindowSnapshot {
            raw: self
                .raw
                .iter()
                .map(|(table, buffers)| {
                    let parts = buffers
                        .iter()
                        .map(|b| {
                            (
                                BufferedMeta {
                                    min_time: b.min_time,
                                    max_time: b.max_time,
                                    partition: b.partition,
                                    min_offset: b.min_offset,
                                },
                                b.batch.clone(),
                            )
                        })
                        .collect();
                    (*table, parts)
                })
                .collect(),
            rollups: self
                .rollups
                .iter()
                .map(|(table, days)| {
                    (
                        *table,
                        days.iter().map(|r| (r.date, r.batch.clone())).collect(),
                    )
                })
                .collect(),
            registry: self.registry.values().cloned().collect(),
            seen: self.seen.iter().map(|(k, t)| (k.clone(), *t)).collect(),
            next_end: self.next_end.iter().map(|(s, e)| (*s, *e)).collect(),
            next_offset: self.next_offset.iter().map(|(p, o)| (*p, *o)).collect(),
            max_event: self.max_event,
        }
    }

    /// The state a snapshot was taken of, under the current rule windows: series that no
    /// rule declares any more are dropped, new ones start with the next data.
    pub fn restore(rule_specs: &[WindowSpec], snapshot: WindowSnapshot) -> WindowState {
        let mut state = WindowState::new(rule_specs);
        for (table, parts) in snapshot.raw {
            state.raw.insert(
                table,
                parts
                    .into_iter()
                    .map(|(meta, batch)| Buffered {
                        batch,
                        min_time: meta.min_time,
                        max_time: meta.max_time,
                        partition: meta.partition,
                        min_offset: meta.min_offset,
                    })
                    .collect(),
            );
        }
        state.recount_raw_rows();
        for (table, days) in snapshot.rollups {
            state.rollups.insert(
                table,
                days.into_iter()
                    .map(|(date, batch)| Rollup { date, batch })
                    .collect(),
            );
        }
        state.apply_outlets(snapshot.registry);
        state.seen = snapshot.seen.into_iter().collect();
        let known: HashSet<Series> = state.series.iter().copied().collect();
        state.next_end = snapshot
            .next_end
            .into_iter()
            .filter(|(s, _)| known.contains(s))
            .collect();
        state.next_offset = snapshot.next_offset.into_iter().collect();
        state.max_event = snapshot.max_event;
        state
    }

    /// Records that a partition's offsets up to `next` are accounted for without rows
    /// (every record in them was rejected).
    pub(crate) fn note_offset(&mut self, partition: PartitionId, next: i64) {
        let o = self.next_offset.entry(partition).or_insert(0);
        *o = (*o).max(next);
    }

    /// The largest event time accepted so far.
    pub(crate) fn max_event(&self) -> Option<i64> {
        self.max_event
    }

    /// The span of the longest window: past the last event by this much, every window
    /// has closed.
    pub(crate) fn longest_window_us(&self) -> i64 {
        self.series
            .iter()
            .map(|s| s.size_and_slide().0)
            .max()
            .unwrap_or(MICROS_PER_DAY)
            + MICROS_PER_DAY
    }

    fn recount_raw_rows(&mut self) {
        self.raw_rows = self
            .raw
            .values()
            .flatten()
            .map(|b| b.batch.num_rows())
            .sum();
    }

    /// Rows currently buffered, for the memory metrics and the row cap.
    pub fn buffered_rows(&self) -> usize {
        self.raw_rows
    }
}

/// Rows of `batch` whose time is in `[start, end)` and, for a local day, whose regency is
/// in that zone.
fn slice_window(
    batch: &RecordBatch,
    time_column: &str,
    start: i64,
    end: i64,
    zone: Option<i32>,
) -> Result<RecordBatch> {
    let times = batch
        .column_by_name(time_column)
        .ok_or_else(|| Error::Invariant(format!("batch without {time_column}")))?
        .as_primitive::<TimestampMicrosecondType>();
    let bound = |t: i64| Scalar::new(TimestampMicrosecondArray::from(vec![t]).with_timezone("UTC"));
    let in_range = and(
        &cmp::gt_eq(times, &bound(start))?,
        &cmp::lt(times, &bound(end))?,
    )?;
    let mask = match zone {
        None => in_range,
        Some(zone) => {
            let offsets = batch
                .column_by_name("utc_offset_minutes")
                .ok_or_else(|| Error::Invariant("batch without utc_offset_minutes".into()))?
                .as_primitive::<Int32Type>();
            let in_zone = cmp::eq(offsets, &Int32Array::new_scalar(zone / 60))?;
            and(&in_range, &in_zone)?
        }
    };
    Ok(filter_record_batch(batch, &mask)?)
}

/// Appends constant `window_start` and `window_end` columns.
fn with_window(batch: &RecordBatch, start: i64, end: i64) -> Result<RecordBatch> {
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;
    let n = batch.num_rows();
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    for (name, value) in [(tables::WINDOW_START, start), (tables::WINDOW_END, end)] {
        fields.push(Arc::new(Field::new(name, tables::timestamp_type(), false)));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![value; n]).with_timezone("UTC"),
        ));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The WIB calendar date (days since the epoch) of an instant.
fn local_date_of(t: i64) -> i32 {
    (t + LATEST_ZONE as i64 * MICROS_PER_SEC).div_euclid(MICROS_PER_DAY) as i32
}

/// Reads a Date32 column's first value; rollup batches are one day each.
pub(crate) fn first_date(batch: &RecordBatch, column: &str) -> Option<i32> {
    let col = batch.column_by_name(column)?;
    (!col.is_empty()).then(|| col.as_primitive::<Date32Type>().value(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode_events, Input, Provenance};

    fn txn(id: usize, at: &str, regency: &str) -> String {
        format!(
            r#"{{"txn_id":"T{id}","bank":"BRI","occurred_at":"{at}","outlet_id":"O1","terminal_id":"T1","regency_code":"{regency}","card_id":"C{id}","payment":"DEBIT","type":"purchase","amount":1000}}"#
        )
    }

    fn offer(
        state: &mut WindowState,
        records: &[String],
        first_offset: i64,
        watermark: Option<i64>,
    ) -> Admission {
        let inputs: Vec<Input> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Input {
                payload: Some(r.as_bytes()),
                provenance: Provenance {
                    partition: 0,
                    offset: first_offset + i as i64,
                },
                latest: crate::decode::NO_LATEST,
            })
            .collect();
        let d = decode_events(Stream::Transactions, &inputs).unwrap();
        state
            .admit(
                Stream::Transactions,
                (Stream::Transactions, 0),
                &d.batch.unwrap(),
                &d.event_times,
                &d.dedup_keys,
                watermark,
            )
            .unwrap()
    }

    fn us(t: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_micros()
    }

    fn rows(w: &ClosedWindow, table: &str) -> usize {
        w.tables[table].iter().map(|b| b.num_rows()).sum()
    }

    #[test]
    fn parses_and_prints_window_specs() {
        for text in [
            "tumbling 30m",
            "hopping 1h every 15m",
            "local_day",
            "local_days 56 every 28",
        ] {
            assert_eq!(text.parse::<WindowSpec>().unwrap().to_string(), text);
        }
        assert!("hopping 15m every 1h".parse::<WindowSpec>().is_err());
        assert!("tumbling 0m".parse::<WindowSpec>().is_err());
    }

    #[test]
    fn a_window_closes_only_when_the_watermark_passes_its_end() {
        let mut state = WindowState::new(&["tumbling 1h".parse().unwrap()]);
        offer(
            &mut state,
            &[txn(1, "2023-01-05T10:10:00+07:00", "3604")],
            0,
            None,
        );
        let tumbling = |s: &mut WindowState, w: i64| {
            let mut out = Vec::new();
            while let Some(c) = s.close_next(w).unwrap() {
                if c.series.spec != WindowSpec::LocalDay {
                    out.push(c);
                }
            }
            out
        };
        assert!(tumbling(&mut state, us("2023-01-05T10:59:59+07:00")).is_empty());
        let closed = tumbling(&mut state, us("2023-01-05T11:00:00+07:00"));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].start, us("2023-01-05T10:00:00+07:00"));
        assert_eq!(rows(&closed[0], tables::TRANSACTIONS), 1);
    }

    #[test]
    fn local_days_follow_each_zone_calendar() {
        let mut state = WindowState::new(&[]);
        // 23:30 in Serang (WIB) and 00:30 the next day in Makassar (WITA): same instant.
        offer(
            &mut state,
            &[
                txn(1, "2023-01-05T23:30:00+07:00", "3604"),
                txn(2, "2023-01-06T00:30:00+08:00", "7371"),
            ],
            0,
            None,
        );
        let mut closed = Vec::new();
        while let Some(c) = state.close_next(us("2023-01-08T00:00:00+07:00")).unwrap() {
            if !c.is_empty() {
                closed.push(c);
            }
        }
        assert_eq!(closed.len(), 2);
        let wib = closed
            .iter()
            .find(|c| c.series.zone == Some(7 * 3600))
            .unwrap();
        let wita = closed
            .iter()
            .find(|c| c.series.zone == Some(8 * 3600))
            .unwrap();
        assert_eq!(wib.start, us("2023-01-05T00:00:00+07:00"));
        assert_eq!(wita.start, us("2023-01-06T00:00:00+08:00"));
        assert_eq!(rows(wib, tables::TRANSACTIONS), 1);
        assert_eq!(rows(wita, tables::TRANSACTIONS), 1);
    }

    #[test]
    fn late_rows_and_redeliveries_are_kept_out_and_counted() {
        let mut state = WindowState::new(&[]);
        let watermark = Some(us("2023-01-05T12:00:00+07:00"));
        let a = offer(
            &mut state,
            &[
                txn(1, "2023-01-05T11:00:00+07:00", "3604"),
                txn(2, "2023-01-05T13:00:00+07:00", "3604"),
                txn(2, "2023-01-05T13:00:00+07:00", "3604"),
            ],
            0,
            watermark,
        );
        assert_eq!(a.late, vec![0]);
        assert_eq!(a.duplicates, 1);
        assert_eq!(a.accepted, 1);
        assert_eq!(a.kept, vec![false, true, false]);
    }
}
