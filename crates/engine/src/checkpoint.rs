//! Checkpoints: an engine's state written to local files beside the input offset it
//! corresponds to, so a restarted instance (or the one a partition moves to) carries on
//! without re-reading months of input.
//!
//! One checkpoint is a directory `<state-dir>/<partition>/ckpt-<seq>/`: `manifest.json`
//! (the position, i.e. the next input offset, watermark, window progress, registry),
//! one Arrow IPC file per buffered table and per rollup table, and `seen.arrow` (the
//! dedup keys). It is written under a temporary name, synced, then renamed: a crash
//! leaves either the whole checkpoint or none of it. The checkpoint's name goes into the
//! offset commit's metadata, which pairs the committed offset with exactly the state
//! that belongs to it (in a Kafka transaction, both become visible at once). The last
//! few checkpoints are kept, so the one the group committed is always still there.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use serde::{Deserialize, Serialize};

use crate::decode::OutletRow;
use crate::engine::EngineSnapshot;
use crate::error::{Error, Result};
use crate::suppress::Episode;
use crate::tables;
use crate::watermark::WatermarkSnapshot;
use crate::window::{BufferedMeta, Series, WindowSnapshot};
use pantau_core::error::{Recoverable, Recovery};
use pantau_core::model::PartitionId;
use pantau_core::model::{Bank, OutletStatus, Stream};

/// Checkpoints kept per partition: the one the group committed is among the newest two
/// (a commit follows every checkpoint), and one more covers a commit still in flight.
const KEEP: usize = 3;
const FORMAT_VERSION: u32 = 2;
const PREFIX: &str = "ckpt-";

#[derive(Serialize, Deserialize)]
struct SourcePartition {
    topic: String,
    partition: i32,
}

impl SourcePartition {
    fn of(pid: PartitionId) -> Self {
        SourcePartition {
            topic: pid.0.topic().to_string(),
            partition: pid.1,
        }
    }

    fn id(&self) -> Result<PartitionId> {
        let stream = Stream::from_topic(&self.topic).ok_or_else(|| Error::UnknownInCheckpoint {
            what: "topic",
            value: self.topic.clone(),
        })?;
        Ok((stream, self.partition))
    }
}

#[derive(Serialize, Deserialize)]
struct BufferedEntry {
    source: SourcePartition,
    min_time: i64,
    max_time: i64,
    min_offset: i64,
}

#[derive(Serialize, Deserialize)]
struct SeriesEnd {
    window: String,
    zone: Option<i32>,
    end: i64,
}

#[derive(Serialize, Deserialize)]
struct Progress {
    source: SourcePartition,
    value: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct StoredOutlet {
    outlet_id: String,
    name: String,
    regency_code: String,
    district_code: String,
    bank: String,
    registered_at: i64,
    status: String,
    kpm_assigned: i64,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    /// The next input offset: everything before it is in this state.
    position: i64,
    watermark: Option<i64>,
    partition_max_event: Vec<Progress>,
    /// Source partitions their router declared idle.
    idle_sources: Vec<SourcePartition>,
    evicted_at: Option<i64>,
    max_event: Option<i64>,
    next_end: Vec<SeriesEnd>,
    next_offset: Vec<Progress>,
    /// Table → one entry per batch, in the order of the table's IPC file.
    raw: Vec<(String, Vec<BufferedEntry>)>,
    /// Table → the local date of each batch, in file order.
    rollups: Vec<(String, Vec<i32>)>,
    registry: Vec<StoredOutlet>,
    /// Cooldown episodes: (rule id, entity id, episode). Absent in checkpoints written
    /// before suppression existed.
    #[serde(default)]
    episodes: Vec<(String, String, Episode)>,
}

/// Why a checkpoint cannot be used. Either way the caller does the same: passes it over
/// for an older one, or rebuilds the partition's state from the internal topic; the
/// kind only says why (the `reason` of `pantau_state_rebuilds_total`).
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// Written by a pantau whose format this one does not read (after an upgrade).
    #[error("checkpoint {dir} has format {found}, this pantau reads {FORMAT_VERSION}")]
    OtherFormat { dir: String, found: u32 },
    /// Missing, damaged or inconsistent files (a crash mid-write, a bad disk).
    #[error(transparent)]
    Corrupt(#[from] Error),
}

impl Recoverable for Unusable {
    /// For whoever asked for this very checkpoint, it will not become readable: stop.
    /// [`CheckpointStore::for_commit`] does not ask for one: it passes an unusable one
    /// over for an older one, or for a rebuild.
    fn recovery(&self) -> Recovery {
        Recovery::Stop
    }
}

impl Unusable {
    pub fn reason(&self) -> &'static str {
        match self {
            Unusable::OtherFormat { .. } => "format",
            Unusable::Corrupt(_) => "corrupt",
        }
    }
}

/// What a partition restarts from: the newest usable checkpoint at or before the
/// committed offset (none: rebuild from the start of the partition), and the
/// checkpoints passed over on the way, each with why.
pub struct Restoration {
    pub restored: Option<Restored>,
    pub skipped: Vec<(String, Unusable)>,
}

/// A checkpoint read back: the state and the input offset it stands for.
pub struct Restored {
    pub name: String,
    pub position: i64,
    pub snapshot: EngineSnapshot,
}

/// The checkpoints of one state directory, one subdirectory per partition.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    root: PathBuf,
}

/// The batches of `<dir>/<stem>.arrow`, which the manifest says number `listed`.
fn read_listed(dir: &Path, stem: &str, listed: usize) -> Result<Vec<RecordBatch>> {
    let batches = read_batches(&dir.join(format!("{stem}.arrow")))?;
    if batches.len() != listed {
        return Err(Error::CheckpointInconsistent {
            dir: dir.to_path_buf(),
            problem: format!(
                "{stem} has {} batches, the manifest lists {listed}",
                batches.len()
            ),
        });
    }
    Ok(batches)
}

fn static_table(name: &str) -> Result<&'static str> {
    tables::RAW_TABLES
        .iter()
        .chain(tables::ROLLUP_TABLES.iter())
        .copied()
        .find(|t| *t == name)
        .ok_or_else(|| Error::UnknownInCheckpoint {
            what: "table",
            value: name.to_string(),
        })
}

fn write_batches(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let Some(first) = batches.first() else {
        return Err(Error::Invariant(format!(
            "no batches to write to {}",
            path.display()
        )));
    };
    let file = File::create(path).map_err(Error::checkpoint_file("creating", path))?;
    let mut writer = FileWriter::try_new(file, &first.schema())
        .map_err(Error::checkpoint_arrow("writing", path))?;
    for b in batches {
        writer
            .write(b)
            .map_err(Error::checkpoint_arrow("writing", path))?;
    }
    writer
        .finish()
        .map_err(Error::checkpoint_arrow("writing", path))?;
    writer
        .into_inner()
        .map_err(Error::checkpoint_arrow("writing", path))?
        .sync_all()
        .map_err(Error::checkpoint_file("syncing", path))?;
    Ok(())
}

fn read_batches(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(Error::checkpoint_file("opening", path))?;
    FileReader::try_new(file, None)
        .map_err(Error::checkpoint_arrow("reading", path))?
        .map(|b| b.map_err(Error::checkpoint_arrow("reading", path)))
        .collect()
}

fn seen_batch(seen: &[(String, i64)]) -> Result<RecordBatch> {
    let schema = Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("event_time", DataType::Int64, false),
    ]);
    let keys: StringArray = seen.iter().map(|(k, _)| Some(k.as_str())).collect();
    let times: Int64Array = seen.iter().map(|(_, t)| Some(*t)).collect();
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(keys), Arc::new(times)],
    )?)
}

/// The dedup keys of `seen.arrow`; what is wrong with it, if its columns are not those.
fn seen_of(batches: &[RecordBatch]) -> Result<Vec<(String, i64)>, String> {
    let mut out = Vec::new();
    for b in batches {
        // File contents decide these types: check them, never assume (a cast panics).
        let (Some(keys), Some(times)) = (
            b.columns().first().and_then(|c| c.as_string_opt::<i32>()),
            b.columns()
                .get(1)
                .and_then(|c| c.as_primitive_opt::<Int64Type>()),
        ) else {
            return Err(format!(
                "expected (key: Utf8, event_time: Int64), found {}",
                b.schema()
            ));
        };
        for i in 0..b.num_rows() {
            out.push((keys.value(i).to_string(), times.value(i)));
        }
    }
    Ok(out)
}

/// The batches of a table as the engine made them: anything else in a checkpoint file
/// would panic a window operation later instead of failing the read now.
fn check_schemas(dir: &Path, table: &str, batches: &[RecordBatch]) -> Result<()> {
    let expected = tables::schema_of(table).ok_or_else(|| Error::UnknownInCheckpoint {
        what: "table",
        value: table.to_string(),
    })?;
    if let Some(bad) = batches.iter().find(|b| !expected.contains(&b.schema())) {
        return Err(Error::CheckpointInconsistent {
            dir: dir.to_path_buf(),
            problem: format!(
                "a batch of {table} does not have the table's schema ({})",
                bad.schema()
            ),
        });
    }
    Ok(())
}

fn outlet_of(stored: StoredOutlet) -> Result<OutletRow> {
    let bank = Bank::parse(&stored.bank).ok_or_else(|| Error::UnknownInCheckpoint {
        what: "bank",
        value: stored.bank.clone(),
    })?;
    let status = OutletStatus::parse(&stored.status).ok_or_else(|| Error::UnknownInCheckpoint {
        what: "status",
        value: stored.status.clone(),
    })?;
    Ok(OutletRow {
        outlet_id: stored.outlet_id,
        name: stored.name,
        regency_code: stored.regency_code,
        district_code: stored.district_code,
        bank: bank.as_str(),
        registered_at: stored.registered_at,
        status: status.as_str(),
        kpm_assigned: stored.kpm_assigned,
    })
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::checkpoint_file("syncing", dir))
}

impl CheckpointStore {
    pub fn new(root: impl Into<PathBuf>) -> CheckpointStore {
        CheckpointStore { root: root.into() }
    }

    fn partition_dir(&self, partition: i32) -> PathBuf {
        self.root.join(partition.to_string())
    }

    /// Checkpoint names of a partition, oldest first.
    pub fn list(&self, partition: i32) -> Result<Vec<String>> {
        let dir = self.partition_dir(partition);
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(Error::checkpoint_file("listing", &dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(PREFIX))
            .collect();
        // Zero-padded sequence numbers: names sort in the order they were written.
        names.sort();
        Ok(names)
    }

    /// Writes a checkpoint of `partition` at `position` and returns its name, for the
    /// offset commit's metadata. Older checkpoints beyond the last few are removed.
    pub fn write(
        &self,
        partition: i32,
        position: i64,
        snapshot: &EngineSnapshot,
    ) -> Result<String> {
        let dir = self.partition_dir(partition);
        fs::create_dir_all(&dir).map_err(Error::checkpoint_file("creating", &dir))?;
        let existing = self.list(partition)?;
        let seq = existing
            .last()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|n| n.parse::<u64>().ok())
            .map_or(0, |n| n + 1);
        let name = format!("{PREFIX}{seq:012}");
        let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(Error::checkpoint_file("removing", &tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(Error::checkpoint_file("creating", &tmp))?;
        let manifest = self.write_files(&tmp, position, snapshot)?;
        let manifest_path = tmp.join("manifest.json");
        let mut file = File::create(&manifest_path)
            .map_err(Error::checkpoint_file("creating", &manifest_path))?;
        file.write_all(&serde_json::to_vec(&manifest).map_err(Error::EncodeManifest)?)
            .and_then(|()| file.sync_all())
            .map_err(Error::checkpoint_file("writing", &manifest_path))?;
        sync_dir(&tmp)?;
        if let Err(source) = fs::rename(&tmp, dir.join(&name)) {
            return Err(Error::PublishCheckpoint {
                name,
                partition,
                source,
            });
        }
        sync_dir(&dir)?;
        for old in existing
            .iter()
            .take((existing.len() + 1).saturating_sub(KEEP))
        {
            if let Err(e) = fs::remove_dir_all(dir.join(old)) {
                tracing::warn!(partition, checkpoint = %old, error = %e, "cannot remove an old checkpoint");
            }
        }
        Ok(name)
    }

    fn write_files(
        &self,
        dir: &Path,
        position: i64,
        snapshot: &EngineSnapshot,
    ) -> Result<Manifest> {
        let w = &snapshot.window;
        let mut raw = Vec::new();
        for (table, parts) in &w.raw {
            if parts.is_empty() {
                continue;
            }
            let batches: Vec<RecordBatch> = parts.iter().map(|(_, b)| b.clone()).collect();
            write_batches(&dir.join(format!("raw-{table}.arrow")), &batches)?;
            let entries = parts
                .iter()
                .map(|(m, _)| BufferedEntry {
                    source: SourcePartition::of(m.partition),
                    min_time: m.min_time,
                    max_time: m.max_time,
                    min_offset: m.min_offset,
                })
                .collect();
            raw.push((table.to_string(), entries));
        }
        let mut rollups = Vec::new();
        for (table, days) in &w.rollups {
            if days.is_empty() {
                continue;
            }
            let batches: Vec<RecordBatch> = days.iter().map(|(_, b)| b.clone()).collect();
            write_batches(&dir.join(format!("rollup-{table}.arrow")), &batches)?;
            rollups.push((table.to_string(), days.iter().map(|(d, _)| *d).collect()));
        }
        if !w.seen.is_empty() {
            write_batches(&dir.join("seen.arrow"), &[seen_batch(&w.seen)?])?;
        }
        let progress = |entries: &[(PartitionId, Option<i64>)]| {
            entries
                .iter()
                .map(|(p, v)| Progress {
                    source: SourcePartition::of(*p),
                    value: *v,
                })
                .collect()
        };
        let offsets: Vec<(PartitionId, Option<i64>)> =
            w.next_offset.iter().map(|(p, o)| (*p, Some(*o))).collect();
        Ok(Manifest {
            version: FORMAT_VERSION,
            position,
            watermark: snapshot.watermark.current,
            partition_max_event: progress(&snapshot.watermark.partitions),
            idle_sources: snapshot
                .watermark
                .idle
                .iter()
                .map(|p| SourcePartition::of(*p))
                .collect(),
            evicted_at: snapshot.evicted_at,
            episodes: snapshot.episodes.clone(),
            max_event: w.max_event,
            next_end: w
                .next_end
                .iter()
                .map(|(s, end)| SeriesEnd {
                    window: s.spec.to_string(),
                    zone: s.zone,
                    end: *end,
                })
                .collect(),
            next_offset: progress(&offsets),
            raw,
            rollups,
            registry: w
                .registry
                .iter()
                .map(|o| StoredOutlet {
                    outlet_id: o.outlet_id.clone(),
                    name: o.name.clone(),
                    regency_code: o.regency_code.clone(),
                    district_code: o.district_code.clone(),
                    bank: o.bank.to_string(),
                    registered_at: o.registered_at,
                    status: o.status.to_string(),
                    kpm_assigned: o.kpm_assigned,
                })
                .collect(),
        })
    }

    /// Reads the checkpoint `name` of `partition`.
    pub fn read(&self, partition: i32, name: &str) -> Result<Restored, Unusable> {
        let dir = self.partition_dir(partition).join(name);
        let manifest = read_manifest(&dir)?;
        if manifest.version != FORMAT_VERSION {
            return Err(Unusable::OtherFormat {
                dir: dir.display().to_string(),
                found: manifest.version,
            });
        }
        Ok(read_state(&dir, name, manifest)?)
    }

    /// The checkpoint a committed offset restarts from: the one the commit's metadata
    /// names, else the newest at exactly that position, else (when those cannot be
    /// read) the newest readable one before it, from which the internal topic is read
    /// again. `restored` is `None` when there is no such checkpoint: the caller then
    /// rebuilds the state from the start of the partition. A checkpoint that cannot be
    /// read, whatever its files hold, is passed over and listed in `skipped`; this never
    /// fails, since a rebalance must not stop on a damaged disk.
    pub fn for_commit(&self, partition: i32, offset: i64, metadata: &str) -> Restoration {
        let mut skipped = Vec::new();
        let names = match self.list(partition) {
            Ok(names) => names,
            Err(e) => {
                skipped.push((
                    self.partition_dir(partition).display().to_string(),
                    Unusable::Corrupt(e),
                ));
                Vec::new()
            }
        };
        // The named one first, then newest first.
        let order = names
            .iter()
            .filter(|n| *n == metadata)
            .chain(names.iter().rev().filter(|n| *n != metadata));
        let mut earlier: Option<Restored> = None;
        for name in order {
            match self.read(partition, name) {
                Ok(r) if r.position == offset => {
                    return Restoration {
                        restored: Some(r),
                        skipped,
                    }
                }
                Ok(r) if r.position < offset => {
                    if earlier.as_ref().is_none_or(|e| e.position < r.position) {
                        earlier = Some(r);
                    }
                }
                Ok(r) => tracing::warn!(
                    partition,
                    checkpoint = %name,
                    position = r.position,
                    committed = offset,
                    "a checkpoint past the committed offset is not used"
                ),
                Err(e) => skipped.push((name.clone(), e)),
            }
        }
        Restoration {
            restored: earlier,
            skipped,
        }
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    serde_json::from_slice(
        &fs::read(dir.join("manifest.json"))
            .map_err(Error::checkpoint_file("reading checkpoint", dir))?,
    )
    .map_err(|source| Error::BadManifest {
        dir: dir.to_path_buf(),
        source,
    })
}

/// The state a checkpoint's files hold, as its manifest lists them.
fn read_state(dir: &Path, name: &str, manifest: Manifest) -> Result<Restored> {
    let mut raw = Vec::new();
    for (table, entries) in manifest.raw {
        let table = static_table(&table)?;
        let batches = read_listed(dir, &format!("raw-{table}"), entries.len())?;
        check_schemas(dir, table, &batches)?;
        let parts = entries
            .into_iter()
            .zip(batches)
            .map(|(e, b)| {
                Ok((
                    BufferedMeta {
                        min_time: e.min_time,
                        max_time: e.max_time,
                        partition: e.source.id()?,
                        min_offset: e.min_offset,
                    },
                    b,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        raw.push((table, parts));
    }
    let mut rollups = Vec::new();
    for (table, dates) in manifest.rollups {
        let table = static_table(&table)?;
        let batches = read_listed(dir, &format!("rollup-{table}"), dates.len())?;
        check_schemas(dir, table, &batches)?;
        rollups.push((table, dates.into_iter().zip(batches).collect()));
    }
    let seen_path = dir.join("seen.arrow");
    let seen = if seen_path.exists() {
        seen_of(&read_batches(&seen_path)?).map_err(|problem| Error::CheckpointInconsistent {
            dir: dir.to_path_buf(),
            problem: format!("bad seen.arrow: {problem}"),
        })?
    } else {
        Vec::new()
    };
    let next_end = manifest
        .next_end
        .into_iter()
        .map(|e| {
            Ok((
                Series {
                    spec: e.window.parse().map_err(|_| Error::UnknownInCheckpoint {
                        what: "window",
                        value: e.window.clone(),
                    })?,
                    zone: e.zone,
                },
                e.end,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let next_offset = manifest
        .next_offset
        .into_iter()
        .map(|p| Ok((p.source.id()?, p.value.unwrap_or(0))))
        .collect::<Result<Vec<_>>>()?;
    let partitions = manifest
        .partition_max_event
        .into_iter()
        .map(|p| Ok((p.source.id()?, p.value)))
        .collect::<Result<Vec<_>>>()?;
    let idle = manifest
        .idle_sources
        .iter()
        .map(SourcePartition::id)
        .collect::<Result<Vec<_>>>()?;
    let registry = manifest
        .registry
        .into_iter()
        .map(outlet_of)
        .collect::<Result<Vec<_>>>()?;
    Ok(Restored {
        name: name.to_string(),
        position: manifest.position,
        snapshot: EngineSnapshot {
            window: WindowSnapshot {
                raw,
                rollups,
                registry,
                seen,
                next_end,
                next_offset,
                max_event: manifest.max_event,
            },
            watermark: WatermarkSnapshot {
                current: manifest.watermark,
                partitions,
                idle,
            },
            evicted_at: manifest.evicted_at,
            episodes: manifest.episodes,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Engine, EngineConfig, RawRecord};
    use pantau_core::model::Alert;
    use pantau_core::model::Outgoing;
    use std::time::Duration;

    fn engine() -> Engine {
        let config = EngineConfig {
            lateness: Duration::from_secs(600),
            max_future: Duration::from_secs(300),
            idle_timeout: Duration::MAX,
            rules: Some(crate::rules::shipped_dir()),
            rule_budget: std::time::Duration::from_secs(30),
            snooze: None,
        };
        let rules = crate::rules::load_dir(&crate::rules::shipped_dir()).unwrap();
        let mut engine = Engine::new(&config, rules);
        // The registry comes first in the feed and is read up to date: it holds nothing.
        for stream in Stream::ALL.into_iter().filter(|s| *s != Stream::Outlets) {
            engine.assign((stream, 0));
        }
        engine
    }

    async fn feed(engine: &mut Engine, records: &[Outgoing], first_offset: i64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let mut offset = first_offset;
        for chunk in records.chunk_by(|a, b| a.topic == b.topic) {
            for part in chunk.chunks(500) {
                let stream = Stream::from_topic(&part[0].topic).unwrap();
                let raw: Vec<RawRecord> = part
                    .iter()
                    .enumerate()
                    .map(|(i, r)| RawRecord {
                        key: r.key.as_deref().map(str::as_bytes),
                        payload: Some(&r.payload),
                        offset: offset + i as i64,
                        received: None,
                    })
                    .collect();
                offset += part.len() as i64;
                assert!(engine.ingest(stream, 0, &raw, 0).unwrap().is_empty());
                alerts.extend(engine.advance(0).await.unwrap());
            }
        }
        alerts
    }

    /// A simulated history of a few regencies, as a bank would produce it.
    fn simulated(months: u32, seed: u64) -> Vec<Outgoing> {
        let sim = pantau_sim::SimConfig {
            months,
            scale: 0.3,
            seed,
            ..Default::default()
        };
        pantau_sim::simulate(&sim).unwrap().interleaved()
    }

    fn ids(alerts: &[Alert]) -> Vec<String> {
        let mut ids: Vec<String> = alerts.iter().map(|a| a.alert_id.clone()).collect();
        ids.sort();
        ids
    }

    /// An engine that never stopped, and one checkpointed and restored at 30 % and at
    /// 60 % of the stream, raise the same alerts. With `held`, a source partition
    /// that never speaks holds the watermark until the end (as a registry still loading
    /// or a starved partition does over Kafka), so the checkpoint is taken with every
    /// window still open.
    async fn restored_mid_stream_raises_the_same_alerts(held: bool) {
        let records = simulated(2, 3);
        let holder = (Stream::Transfers, 9);
        let engine = || {
            let mut e = engine();
            if held {
                e.assign(holder);
            }
            e
        };
        let mut whole = engine();
        let mut expected = feed(&mut whole, &records, 0).await;
        expected.extend(whole.finish(0).await.unwrap());
        assert!(
            expected.len() > 5,
            "too few alerts to compare: {}",
            expected.len()
        );

        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        let sorted = |mut v: Vec<_>| {
            v.sort();
            v
        };
        // Two hand-overs, as when a partition moves to a new instance and back.
        let cuts = [records.len() * 3 / 10, records.len() * 3 / 5];
        let mut current = engine();
        let mut got = Vec::new();
        let mut from = 0;
        for cut in cuts {
            got.extend(feed(&mut current, &records[from..cut], from as i64).await);
            if held {
                assert!(
                    got.is_empty(),
                    "a window closed while the watermark was held"
                );
            }
            let snapshot = current.snapshot();
            let name = store.write(0, cut as i64, &snapshot).unwrap();
            let restored = store.for_commit(0, cut as i64, &name).restored.unwrap();
            assert_eq!(
                sorted(restored.snapshot.window.next_end.clone()),
                sorted(snapshot.window.next_end.clone()),
                "window progress changed on its way through a checkpoint"
            );
            current = engine();
            current.restore(restored.snapshot);
            from = cut;
        }
        got.extend(feed(&mut current, &records[from..], from as i64).await);
        got.extend(current.finish(0).await.unwrap());
        assert_eq!(ids(&got), ids(&expected));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_engine_restored_mid_stream_raises_the_alerts_of_one_that_never_stopped() {
        restored_mid_stream_raises_the_same_alerts(false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_engine_restored_with_every_window_open_raises_the_same_alerts() {
        restored_mid_stream_raises_the_same_alerts(true).await;
    }

    /// The newest checkpoint damaged three ways (manifest cut short, an Arrow file
    /// overwritten, written by a newer format): before, the read failed the rebalance
    /// and the instance stopped, at every restart. Now the older checkpoint is restored,
    /// the input read again from it, and the alerts are those of an engine that never
    /// stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_damaged_newest_checkpoint_falls_back_to_an_older_one_and_raises_the_same_alerts() {
        let records = simulated(1, 8);
        let mut whole = engine();
        let mut expected = feed(&mut whole, &records, 0).await;
        expected.extend(whole.finish(0).await.unwrap());
        assert!(expected.len() > 3, "too few alerts: {}", expected.len());
        let (older, newer) = (records.len() * 3 / 10, records.len() * 3 / 5);
        type Damage = fn(&Path);
        let damages: [(&str, Damage); 3] = [
            ("corrupt", |dir| {
                let manifest = dir.join("manifest.json");
                let text = fs::read(&manifest).unwrap();
                fs::write(&manifest, &text[..text.len() / 2]).unwrap();
            }),
            ("corrupt", |dir| {
                let arrow = fs::read_dir(dir)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p.extension().is_some_and(|x| x == "arrow"))
                    .expect("an Arrow file");
                let mut bytes = fs::read(&arrow).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle..].iter_mut().for_each(|b| *b = !*b);
                fs::write(&arrow, bytes).unwrap();
            }),
            ("format", |dir| {
                let manifest = dir.join("manifest.json");
                let text = fs::read_to_string(&manifest).unwrap();
                let bumped = text.replace(
                    &format!("\"version\":{FORMAT_VERSION}"),
                    &format!("\"version\":{}", FORMAT_VERSION + 1),
                );
                assert_ne!(bumped, text);
                fs::write(&manifest, bumped).unwrap();
            }),
        ];
        for (reason, damage) in damages {
            let dir = tempfile::tempdir().unwrap();
            let store = CheckpointStore::new(dir.path());
            let mut first = engine();
            let mut got = feed(&mut first, &records[..older], 0).await;
            store.write(0, older as i64, &first.snapshot()).unwrap();
            got.extend(feed(&mut first, &records[older..newer], older as i64).await);
            let name = store.write(0, newer as i64, &first.snapshot()).unwrap();
            damage(&dir.path().join("0").join(&name));

            let restoration = store.for_commit(0, newer as i64, &name);
            assert_eq!(restoration.skipped.len(), 1, "{reason}");
            assert_eq!(restoration.skipped[0].0, name);
            assert_eq!(restoration.skipped[0].1.reason(), reason);
            let restored = restoration.restored.expect("the older checkpoint");
            assert_eq!(restored.position, older as i64);
            let mut second = engine();
            second.restore(restored.snapshot);
            got.extend(feed(&mut second, &records[older..], older as i64).await);
            got.extend(second.finish(0).await.unwrap());
            let mut unique = ids(&got);
            unique.dedup();
            assert_eq!(unique, ids(&expected), "after a {reason} checkpoint");
        }
    }

    #[test]
    fn a_checkpoint_file_with_other_columns_is_refused_not_panicked_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        let snapshot = EngineSnapshot {
            window: WindowSnapshot {
                seen: vec![("BRI\u{1f}T1".to_string(), 5)],
                ..Default::default()
            },
            ..Default::default()
        };
        let name = store.write(1, 7, &snapshot).unwrap();
        // seen.arrow with its columns the wrong way round.
        let swapped = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("event_time", DataType::Int64, false),
                Field::new("key", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![5])),
                Arc::new(StringArray::from(vec!["BRI\u{1f}T1"])),
            ],
        )
        .unwrap();
        write_batches(
            &dir.path().join("1").join(&name).join("seen.arrow"),
            &[swapped],
        )
        .unwrap();
        let restoration = store.for_commit(1, 7, &name);
        assert!(restoration.restored.is_none());
        assert_eq!(restoration.skipped[0].1.reason(), "corrupt");
    }

    #[test]
    fn a_damaged_checkpoint_asked_for_by_name_stops_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        let name = store.write(2, 5, &EngineSnapshot::default()).unwrap();
        let manifest = dir.path().join("2").join(&name).join("manifest.json");
        fs::write(&manifest, b"{\"version\":").unwrap();
        let Err(e) = store.read(2, &name) else {
            panic!("a cut manifest was read");
        };
        assert_eq!((e.recovery(), e.reason()), (Recovery::Stop, "corrupt"));
        let logged = crate::error::chain(&e);
        assert!(
            logged.contains("has a bad manifest: EOF while parsing"),
            "{logged}"
        );
        // The run loop does not stop on it: with nothing older, it rebuilds.
        let restoration = store.for_commit(2, 5, &name);
        assert!(restoration.restored.is_none());
        assert_eq!(restoration.skipped.len(), 1);
    }

    #[test]
    fn keeps_the_last_few_and_pairs_a_commit_with_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::new(dir.path());
        let mut names = Vec::new();
        for position in [10, 20, 20, 30] {
            let mut snapshot = EngineSnapshot::default();
            snapshot.watermark.current = Some(position * 1000);
            names.push(store.write(3, position, &snapshot).unwrap());
        }
        assert_eq!(store.list(3).unwrap(), names[1..].to_vec());
        // The metadata decides between two checkpoints at one position.
        let r = store.for_commit(3, 20, &names[1]).restored.unwrap();
        assert_eq!((r.name.as_str(), r.position), (names[1].as_str(), 20));
        // Without metadata, the newest at the committed position.
        let r = store.for_commit(3, 20, "").restored.unwrap();
        assert_eq!(r.name, names[2]);
        // A commit whose state is gone is reported, not papered over.
        assert!(store.for_commit(3, 10, &names[0]).restored.is_none());
        assert!(store.for_commit(4, 0, "").restored.is_none());
    }
}
