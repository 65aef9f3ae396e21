//! Without drowning: the digests. A channel past its hourly limit gets the rest folded
//! into one message ([`folded_message`]); each district gets a daily digest of the
//! alerts since its last one, by category and outlet, with realization so far
//! ([`daily_message`]).
//!
//! The alerts not yet in a daily digest are kept in `--state-dir/tally.jsonl`, and a
//! digest that fell due in `digests.jsonl` until every channel has it, so a stop in the
//! middle of sending (a SIGTERM at 07:00) neither loses nor repeats it: after the
//! restart it goes, with the same alerts, to the channels the delivered log lacks. A
//! digest that fell due while the notifier was down goes out as soon as it is back. Each district's digest falls due at `[digest] at` in
//! its own time zone (WIB, WITA, WIT). Realization comes from the Prometheus that
//! scrapes `pantau run` (`[digest] prometheus_url`), the figures the dashboards show.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::message::{Message, Templates};
use crate::routes::{DigestSchedule, Routes};
use pantau_core::regions::Regions;
use pantau_core::text::{format_id_number, tanggal};

/// Digested entries are kept this long, so an alert read again after a restart is
/// known and not counted twice.
const KEEP_DIGESTED_DAYS: i64 = 7;
const TOP_OUTLETS: usize = 5;

/// One alert of a district, as its daily digest counts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TallyEntry {
    pub alert_id: String,
    pub regency_code: String,
    pub category: String,
    pub outlet_id: Option<String>,
    pub outlet_name: Option<String>,
    pub kecamatan: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The end of the digest that counts it, once one fell due.
    #[serde(default)]
    pub counted_in: Option<DateTime<Utc>>,
    /// That digest went out on every channel.
    #[serde(default)]
    pub digested: bool,
}

/// The alerts each district's next digest counts and the digests not yet sent, on disk.
pub struct Tally {
    entries: Vec<TallyEntry>,
    ids: HashSet<String>,
    digests: Vec<Due>,
    path: PathBuf,
    digests_path: PathBuf,
    file: std::fs::File,
}

fn append_only(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::state("opening", path))
}

/// The lines of a JSON-lines state file; a line cut short by a crash mid-write is
/// skipped (its alert is read again from Kafka if it was not yet delivered).
fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::state("reading", path)(e)),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match serde_json::from_str::<T>(line) {
            Ok(item) => out.push(item),
            Err(e) => {
                tracing::warn!(file = %path.display(), line = i + 1, error = %e, "unreadable digest state line skipped")
            }
        }
    }
    Ok(out)
}

/// Written aside and renamed, so a crash leaves the old file or the new one.
fn replace_lines<T: Serialize>(path: &Path, items: &[T]) -> Result<()> {
    let fresh = path.with_extension("jsonl.new");
    let writing = || Error::state("writing", &fresh);
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&fresh).map_err(writing())?);
        for item in items {
            let line = serde_json::to_string(item).map_err(Error::encode("a digest state line"))?;
            writeln!(out, "{line}").map_err(writing())?;
        }
        out.into_inner()
            .map_err(std::io::IntoInnerError::into_error)
            .and_then(|file| file.sync_all())
            .map_err(writing())?;
    }
    std::fs::rename(&fresh, path).map_err(Error::state("replacing", path))
}

impl Tally {
    pub fn open(dir: &Path) -> Result<Tally> {
        std::fs::create_dir_all(dir).map_err(Error::state("creating", dir))?;
        let path = dir.join("tally.jsonl");
        let digests_path = dir.join("digests.jsonl");
        let entries: Vec<TallyEntry> = read_lines(&path)?;
        let digests = read_lines(&digests_path)?;
        let ids = entries.iter().map(|e| e.alert_id.clone()).collect();
        let file = append_only(&path)?;
        Ok(Tally {
            entries,
            ids,
            digests,
            path,
            digests_path,
            file,
        })
    }

    /// Counts an alert once, however often it is read.
    pub(crate) fn add(&mut self, entry: TallyEntry) -> Result<()> {
        if !self.ids.insert(entry.alert_id.clone()) {
            return Ok(());
        }
        let line = serde_json::to_string(&entry).map_err(Error::encode("a tally entry"))?;
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.sync_data())
            .map_err(Error::state("writing", &self.path))?;
        self.entries.push(entry);
        Ok(())
    }

    /// What a district's digest due at `end` counts.
    pub(crate) fn counted(&self, regency_code: &str, end: DateTime<Utc>) -> Vec<&TallyEntry> {
        self.entries
            .iter()
            .filter(|e| e.regency_code == regency_code && e.counted_in == Some(end))
            .collect()
    }

    /// Gives each digest that fell due the alerts that arrived before it and no earlier
    /// digest counts, and keeps it until [`Tally::sent`]. A province's catch-all with
    /// nothing to say is sent by saying nothing. Returns the digests to send.
    pub(crate) fn fall_due(&mut self, due: Vec<Due>) -> Result<Vec<Due>> {
        let mut to_send = Vec::new();
        for mut d in due {
            let mut counts = 0;
            for e in &mut self.entries {
                if e.counted_in.is_none()
                    && e.regency_code == d.regency_code
                    && e.received_at < d.end
                {
                    e.counted_in = Some(d.end);
                    counts += 1;
                }
            }
            d.sent = d.catch_all && counts == 0;
            if !d.sent {
                to_send.push(d.clone());
            }
            self.digests.push(d);
        }
        self.save()?;
        Ok(to_send)
    }

    /// The digests that fell due and have not reached every channel yet.
    pub(crate) fn unsent(&self) -> Vec<Due> {
        self.digests.iter().filter(|d| !d.sent).cloned().collect()
    }

    /// The end of the district's last digest that fell due, if one is remembered.
    pub(crate) fn last_end(&self, regency_code: &str) -> Option<DateTime<Utc>> {
        self.digests
            .iter()
            .filter(|d| d.regency_code == regency_code)
            .map(|d| d.end)
            .max()
    }

    /// Marks a digest delivered (or dead-lettered) on every channel: its alerts are
    /// digested, and what was digested long ago is forgotten.
    pub(crate) fn sent(&mut self, regency_code: &str, end: DateTime<Utc>) -> Result<()> {
        for d in &mut self.digests {
            if d.regency_code == regency_code && d.end == end {
                d.sent = true;
            }
        }
        for e in &mut self.entries {
            if e.regency_code == regency_code && e.counted_in == Some(end) {
                e.digested = true;
            }
        }
        let forget_before = end - chrono::Duration::days(KEEP_DIGESTED_DAYS);
        self.entries
            .retain(|e| !(e.digested && e.received_at < forget_before));
        self.ids = self.entries.iter().map(|e| e.alert_id.clone()).collect();
        // The latest of each district stays, so the schedule knows what it last sent.
        let latest: HashMap<String, DateTime<Utc>> =
            self.digests.iter().fold(HashMap::new(), |mut m, d| {
                let end = m.entry(d.regency_code.clone()).or_insert(d.end);
                *end = (*end).max(d.end);
                m
            });
        self.digests.retain(|d| {
            !d.sent || d.end >= forget_before || latest.get(&d.regency_code) == Some(&d.end)
        });
        self.save()
    }

    fn save(&mut self) -> Result<()> {
        replace_lines(&self.path, &self.entries)?;
        replace_lines(&self.digests_path, &self.digests)?;
        self.file = append_only(&self.path)?;
        Ok(())
    }
}

/// The first time after `now` that is `at` plus a whole number of `every` in the
/// district's local time.
pub(crate) fn next_boundary(
    now: DateTime<Utc>,
    offset: FixedOffset,
    at: NaiveTime,
    every: Duration,
) -> DateTime<Utc> {
    use chrono::Timelike;
    let every = (every.as_secs() as i64).max(1);
    let local = now.timestamp() + i64::from(offset.local_minus_utc());
    let since = (local - i64::from(at.num_seconds_from_midnight())).rem_euclid(every);
    DateTime::from_timestamp(now.timestamp() - since + every, 0).unwrap_or(now)
}

/// When each district with a route gets its next digest.
pub(crate) struct Schedule {
    schedule: DigestSchedule,
    next: BTreeMap<String, DateTime<Utc>>,
}

/// A district's digest that fell due. The tally keeps it until every channel has it,
/// so a restart resends it to the channels that do not, with the same alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    pub regency_code: String,
    pub end: DateTime<Utc>,
    pub channels: Vec<String>,
    /// Through a province's catch-all: sent only when there is something to say.
    pub catch_all: bool,
    /// Delivered or dead-lettered on every channel.
    pub sent: bool,
}

impl Due {
    /// The receivers' idempotency key, and the delivered log's.
    pub fn key(&self) -> String {
        format!("digest-{}-{}", self.regency_code, self.end.timestamp())
    }
}

impl Schedule {
    /// `last_end` is when each district's last digest (if any is remembered) fell due:
    /// one that fell due while the notifier was down falls due at once.
    pub fn new(
        routes: &Routes,
        schedule: DigestSchedule,
        now: DateTime<Utc>,
        last_end: impl Fn(&str) -> Option<DateTime<Utc>>,
    ) -> Schedule {
        let regions = Regions::get();
        let every = chrono::Duration::from_std(schedule.every).unwrap_or(chrono::Duration::days(1));
        let next = regions
            .regencies()
            .iter()
            .filter(|r| !routes.digest_channels(&r.code).0.is_empty())
            .map(|r| {
                let next = next_boundary(now, r.utc_offset, schedule.at, schedule.every);
                let missed = last_end(&r.code).is_some_and(|last| last < next - every);
                (r.code.clone(), if missed { next - every } else { next })
            })
            .collect();
        Schedule { schedule, next }
    }

    pub fn districts(&self) -> usize {
        self.next.len()
    }

    /// The digests due by `now`; each district's next one is moved on.
    pub(crate) fn due(&mut self, routes: &Routes, now: DateTime<Utc>) -> Vec<Due> {
        let regions = Regions::get();
        let mut due = Vec::new();
        for (code, at) in &mut self.next {
            if *at > now {
                continue;
            }
            let (channels, catch_all) = routes.digest_channels(code);
            due.push(Due {
                regency_code: code.clone(),
                end: *at,
                channels: channels.into_iter().map(str::to_owned).collect(),
                catch_all,
                sent: false,
            });
            *at = next_boundary(
                now,
                regions.offset_of(code),
                self.schedule.at,
                self.schedule.every,
            );
        }
        due
    }
}

/// Realization of a district's current period, as `pantau run` exports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Realization {
    pub period: String,
    pub ratio: f64,
    pub credited: f64,
    pub spending: f64,
}

/// Realization per regency from Prometheus' query API. Blocking.
pub(crate) fn fetch_realization(prometheus_url: &str) -> Result<HashMap<String, Realization>> {
    let query = |metric: &'static str| -> Result<HashMap<String, (String, f64)>> {
        let answer = crate::channel::http()
            .get(format!("{prometheus_url}/api/v1/query"))
            .query("query", metric)
            .config()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .call()
            .map_err(|source| Error::PrometheusQuery {
                metric,
                url: prometheus_url.to_owned(),
                source: Box::new(source),
            })?
            .body_mut()
            .read_to_string()
            .map_err(|source| Error::PrometheusAnswer {
                metric,
                source: Box::new(source),
            })?;
        let answer: Value = serde_json::from_str(&answer)
            .map_err(|source| Error::PrometheusNotJson { metric, source })?;
        let result =
            answer["data"]["result"]
                .as_array()
                .ok_or_else(|| Error::PrometheusNoResult {
                    metric,
                    answer: answer.to_string(),
                })?;
        Ok(result
            .iter()
            .filter_map(|series| {
                let regency = series["metric"]["regency"].as_str()?.to_owned();
                let period = series["metric"]["period"].as_str().unwrap_or("").to_owned();
                let value = series["value"][1].as_str()?.parse().ok()?;
                Some((regency, (period, value)))
            })
            .collect())
    };
    let ratio = query("pantau_realization_ratio")?;
    let credited = query("pantau_kpm_credited")?;
    let spending = query("pantau_kpm_spending")?;
    Ok(ratio
        .into_iter()
        .map(|(regency, (period, ratio))| {
            let of = |m: &HashMap<String, (String, f64)>| m.get(&regency).map_or(0.0, |v| v.1);
            let realization = Realization {
                credited: of(&credited),
                spending: of(&spending),
                period,
                ratio,
            };
            (regency, realization)
        })
        .collect())
}

/// How realization reads in a digest, or why it is missing.
pub(crate) fn realization_text(realization: Result<Option<&Realization>, &str>) -> String {
    match realization {
        Ok(Some(r)) => format!(
            "{}% KPM sudah berbelanja ({} dari {} KPM penerima bantuan periode {})",
            format!("{:.1}", r.ratio * 100.0).replace('.', ","),
            format_id_number(&Value::from(r.spending.round() as i64)),
            format_id_number(&Value::from(r.credited.round() as i64)),
            r.period
        ),
        Ok(None) => "belum ada penyaluran tercatat untuk periode ini".to_owned(),
        Err(why) => format!("tidak tersedia ({why})"),
    }
}

fn zone(offset: FixedOffset) -> String {
    match offset.local_minus_utc() / 3600 {
        7 => "WIB".to_owned(),
        8 => "WITA".to_owned(),
        9 => "WIT".to_owned(),
        _ => offset.to_string(),
    }
}

fn moment(at: DateTime<Utc>, offset: FixedOffset) -> String {
    let local = at.with_timezone(&offset);
    format!("{} pukul {}", tanggal(local), local.format("%H.%M"))
}

/// A duration as a Tikor member says it: `1 jam`, `30 menit`, `5 detik`.
pub(crate) fn lama(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} jam", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} menit", secs / 60)
    } else {
        format!("{secs} detik")
    }
}

/// An outlet's alerts in a digest.
struct OutletCount<'a> {
    alerts: usize,
    /// The first, for the outlet's name and kecamatan.
    entry: &'a TallyEntry,
    categories: Vec<&'a str>,
}

/// A district's daily digest: the alerts since its last one by category, the outlets
/// with the most of them, realization so far, and the dashboard over the period.
pub(crate) fn daily_message(
    templates: &Templates,
    dashboard_url: &str,
    regency_code: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    entries: &[&TallyEntry],
    realization: String,
) -> Message {
    let regions = Regions::get();
    let offset = regions.offset_of(regency_code);
    let regency_name = regions
        .regency(regency_code)
        .map_or_else(|| regency_code.to_owned(), |r| r.name.clone());
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_outlet: BTreeMap<&str, OutletCount> = BTreeMap::new();
    for e in entries {
        *by_category.entry(&e.category).or_default() += 1;
        if let Some(id) = &e.outlet_id {
            let slot = by_outlet.entry(id).or_insert(OutletCount {
                alerts: 0,
                entry: e,
                categories: Vec::new(),
            });
            slot.alerts += 1;
            let name = templates.category_name(&e.category);
            if !slot.categories.contains(&name) {
                slot.categories.push(name);
            }
        }
    }
    let mut categories: Vec<(&str, usize)> = by_category.into_iter().collect();
    categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let by_category = if categories.is_empty() {
        "- tidak ada peringatan baru".to_owned()
    } else {
        categories
            .iter()
            .map(|(c, n)| format!("- {}: {n}", templates.category_name(c)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut outlets: Vec<(&str, &OutletCount)> = by_outlet.iter().map(|(k, v)| (*k, v)).collect();
    outlets.sort_by(|a, b| b.1.alerts.cmp(&a.1.alerts).then(a.0.cmp(b.0)));
    let top_outlets = if outlets.is_empty() {
        "- tidak ada".to_owned()
    } else {
        outlets
            .iter()
            .take(TOP_OUTLETS)
            .enumerate()
            .map(|(i, (id, count))| {
                let name = count.entry.outlet_name.as_deref().unwrap_or(id);
                let kecamatan = count
                    .entry
                    .kecamatan
                    .as_deref()
                    .map(|k| format!(", Kecamatan {k}"))
                    .unwrap_or_default();
                format!(
                    "{}. {name} ({id}){kecamatan}: {} peringatan ({})",
                    i + 1,
                    count.alerts,
                    count.categories.join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let link = format!(
        "{}/d/pantau-district?var-regency={regency_code}&from={}&to={}",
        dashboard_url.trim_end_matches('/'),
        start.timestamp_millis(),
        end.timestamp_millis()
    );
    let period = format!(
        "{} s.d. {} {}",
        moment(start, offset),
        moment(end, offset),
        zone(offset)
    );
    let values = [
        ("regency_name", regency_name.clone()),
        ("period", period),
        ("total", entries.len().to_string()),
        ("by_category", by_category),
        ("top_outlets", top_outlets),
        ("realization", realization),
        ("dashboard_link", link.clone()),
    ];
    let subject = format!(
        "[RINGKASAN HARIAN] {regency_name}: {} peringatan baru, {}",
        entries.len(),
        tanggal(end.with_timezone(&offset))
    );
    templates.daily_digest(subject, &values, link)
}

/// The alerts past a channel's limit in one message: each one's subject and link.
pub(crate) fn folded_message(
    templates: &Templates,
    messages: &[&Message],
    limit: u32,
    per: Duration,
) -> Message {
    let list = messages
        .iter()
        .map(|m| format!("- {}\n  {}", m.subject, m.dashboard_link))
        .collect::<Vec<_>>()
        .join("\n");
    let values = [
        ("count", messages.len().to_string()),
        ("limit", limit.to_string()),
        ("per", lama(per)),
        ("list", list),
    ];
    templates.folded(
        format!("[RINGKASAN] {} peringatan lain", messages.len()),
        &values,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_digest_falls_due_at_seven_in_each_districts_own_time_zone() {
        let seven = NaiveTime::from_hms_opt(7, 0, 0).unwrap();
        let day = Duration::from_secs(86_400);
        let wib = FixedOffset::east_opt(7 * 3600).unwrap();
        let wit = FixedOffset::east_opt(9 * 3600).unwrap();
        // 23:30 UTC is 06:30 WIB and 08:30 WIT the next morning.
        let now = utc("2026-11-23T23:30:00Z");
        assert_eq!(
            next_boundary(now, wib, seven, day),
            utc("2026-11-24T00:00:00Z")
        );
        assert_eq!(
            next_boundary(now, wit, seven, day),
            utc("2026-11-24T22:00:00Z")
        );
        // Exactly at the boundary: the next one.
        assert_eq!(
            next_boundary(utc("2026-11-24T00:00:00Z"), wib, seven, day),
            utc("2026-11-25T00:00:00Z")
        );
        let midnight = NaiveTime::from_hms_opt(0, 0, 0).unwrap();
        assert_eq!(
            next_boundary(
                utc("2026-11-24T00:00:03Z"),
                wib,
                midnight,
                Duration::from_secs(5)
            ),
            utc("2026-11-24T00:00:05Z")
        );
    }

    fn entry(id: &str, category: &str, outlet: Option<&str>, at: &str) -> TallyEntry {
        TallyEntry {
            alert_id: id.into(),
            regency_code: "3604".into(),
            category: category.into(),
            outlet_id: outlet.map(Into::into),
            outlet_name: outlet.map(|o| format!("Toko {o}")),
            kecamatan: outlet.map(|_| "Cikande".into()),
            received_at: utc(at),
            counted_in: None,
            digested: false,
        }
    }

    fn due(end: DateTime<Utc>) -> Due {
        Due {
            regency_code: "3604".into(),
            end,
            channels: vec!["tikor".into()],
            catch_all: false,
            sent: false,
        }
    }

    fn ids(entries: Vec<&TallyEntry>) -> Vec<&str> {
        entries.iter().map(|e| e.alert_id.as_str()).collect()
    }

    #[test]
    fn the_tally_counts_an_alert_once_and_keeps_what_is_not_yet_digested_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut tally = Tally::open(dir.path()).unwrap();
        for (id, category, outlet, at) in [
            ("a", "price_markup", "EW-1", "2026-11-23T01:00:00Z"),
            ("a", "price_markup", "EW-1", "2026-11-23T02:00:00Z"),
            ("b", "seasonal_outlet", "EW-2", "2026-11-23T03:00:00Z"),
            ("c", "seasonal_outlet", "EW-2", "2026-11-24T03:00:00Z"),
        ] {
            tally.add(entry(id, category, Some(outlet), at)).unwrap();
        }
        let end = utc("2026-11-24T00:00:00Z");
        assert_eq!(tally.fall_due(vec![due(end)]).unwrap().len(), 1);
        assert_eq!(ids(tally.counted("3604", end)), ["a", "b"]);
        tally.sent("3604", end).unwrap();
        drop(tally);
        let mut tally = Tally::open(dir.path()).unwrap();
        assert!(tally.unsent().is_empty());
        let later = utc("2026-11-25T00:00:00Z");
        // Read again after a restart: still counted once.
        tally
            .add(entry(
                "b",
                "seasonal_outlet",
                Some("EW-2"),
                "2026-11-24T05:00:00Z",
            ))
            .unwrap();
        tally.fall_due(vec![due(later)]).unwrap();
        assert_eq!(ids(tally.counted("3604", later)), ["c"]);
    }

    #[test]
    fn a_digest_that_fell_due_before_a_stop_is_sent_after_it_with_the_same_alerts() {
        let dir = tempfile::tempdir().unwrap();
        let mut tally = Tally::open(dir.path()).unwrap();
        tally
            .add(entry("a", "price_markup", None, "2026-11-23T01:00:00Z"))
            .unwrap();
        let end = utc("2026-11-24T00:00:00Z");
        tally.fall_due(vec![due(end)]).unwrap();
        // Arrives while the digest is being sent: the next one counts it.
        tally
            .add(entry("b", "price_markup", None, "2026-11-24T00:00:01Z"))
            .unwrap();
        drop(tally);

        let mut tally = Tally::open(dir.path()).unwrap();
        let unsent = tally.unsent();
        assert_eq!(unsent.len(), 1);
        assert_eq!(unsent[0].key(), format!("digest-3604-{}", end.timestamp()));
        assert_eq!(ids(tally.counted("3604", end)), ["a"]);
        assert_eq!(tally.last_end("3604"), Some(end));
        let later = utc("2026-11-25T00:00:00Z");
        tally.fall_due(vec![due(later)]).unwrap();
        assert_eq!(ids(tally.counted("3604", later)), ["b"]);
        tally.sent("3604", end).unwrap();
        drop(tally);

        let tally = Tally::open(dir.path()).unwrap();
        let unsent: Vec<DateTime<Utc>> = tally.unsent().iter().map(|d| d.end).collect();
        assert_eq!(unsent, [later]);
    }

    #[test]
    fn a_digest_missed_while_the_notifier_was_down_falls_due_at_once() {
        let routes = Routes::parse(
            r#"
dashboard_url = "http://grafana.example"
[digest]
at = "07:00"
[channels.tikor]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
[[routes]]
regency = "3604"
channels = ["tikor"]
"#,
        )
        .unwrap();
        let schedule = routes.digest.clone().unwrap();
        // 09:00 WIB: this morning's 07:00 digest is past.
        let now = utc("2026-11-24T02:00:00Z");
        let this_morning = utc("2026-11-24T00:00:00Z");
        let yesterday = utc("2026-11-23T00:00:00Z");
        let mut missed = Schedule::new(&routes, schedule.clone(), now, |_| Some(yesterday));
        let due = missed.due(&routes, now);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].end, this_morning);
        assert!(missed.due(&routes, now).is_empty());
        // Sent this morning, or a first start: tomorrow's is the next.
        for last in [Some(this_morning), None] {
            let mut schedule = Schedule::new(&routes, schedule.clone(), now, |_| last);
            assert!(schedule.due(&routes, now).is_empty());
        }
    }

    #[test]
    fn a_daily_digest_counts_by_category_ranks_outlets_and_states_realization() {
        let templates = Templates::load(&Templates::shipped_dir()).unwrap();
        let entries = [
            entry("a", "price_markup", Some("EW-1"), "2026-11-23T01:00:00Z"),
            entry("b", "seasonal_outlet", Some("EW-2"), "2026-11-23T02:00:00Z"),
            entry("c", "price_markup", Some("EW-2"), "2026-11-23T03:00:00Z"),
            entry("d", "price_markup", Some("EW-3"), "2026-11-23T04:00:00Z"),
        ];
        let refs: Vec<&TallyEntry> = entries.iter().collect();
        let realization = Realization {
            period: "2026-11".into(),
            ratio: 0.625,
            credited: 1975.0,
            spending: 1234.0,
        };
        let m = daily_message(
            &templates,
            "http://grafana",
            "3604",
            utc("2026-11-23T00:00:00Z"),
            utc("2026-11-24T00:00:00Z"),
            &refs,
            realization_text(Ok(Some(&realization))),
        );
        let markup = templates.category_name("price_markup");
        let seasonal = templates.category_name("seasonal_outlet");
        for expected in [
            "Kabupaten Serang".to_owned(),
            "23 November 2026 pukul 07.00 s.d. 24 November 2026 pukul 07.00 WIB".to_owned(),
            "Peringatan baru: 4".to_owned(),
            format!("- {markup}: 3\n- {seasonal}: 1"),
            format!("1. Toko EW-2 (EW-2), Kecamatan Cikande: 2 peringatan ({seasonal}, {markup})"),
            "62,5% KPM sudah berbelanja (1.234 dari 1.975 KPM penerima bantuan periode 2026-11)"
                .to_owned(),
            "var-regency=3604&from=1795392000000&to=1795478400000".to_owned(),
        ] {
            assert!(
                m.text.contains(&expected),
                "{expected:?} missing from:\n{}",
                m.text
            );
        }
        assert!(m.subject.contains("4 peringatan baru"), "{}", m.subject);
        assert!(m.html.contains("<pre"));
    }
}
