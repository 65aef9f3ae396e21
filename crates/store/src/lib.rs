//! The alert store: alerts and the outlet registry kept in PostgreSQL, where the
//! district drill-down dashboard reads the outlets to visit, their latest alerts and
//! evidence (Grafana's built-in PostgreSQL data source; Prometheus labels stop at the
//! regency, so per-outlet detail cannot come from there).
//!
//! `pantau store run` follows `pantau.alerts` and `bpnt.outlets` in its own consumer
//! group and commits offsets only after the rows are in the database; `pantau store
//! load` writes the files of a replay. Writes are idempotent (an alert's id is
//! deterministic, the registry is latest-wins), so a redelivery or a second load changes
//! nothing. Shadow alerts are never read: the dashboards show what the Tikor is told.
//! The schema, including the BPS regency and kecamatan names the dashboard joins on, is
//! created on connect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::metrics::StoreMetrics;
use pantau_core::error::{chain, Recoverable, Recovery};
use pantau_core::model::{Alert, Outlet, Stream, TOPIC_ALERTS};
use pantau_core::pseudonym::Pseudonyms;
use pantau_core::regions::Regions;
use pantau_kafka::follow::{parse_followed, Followed};
use pantau_kafka::health::Backoff;
use pantau_kafka::KafkaConfig;

pub mod error;
pub mod metrics;
pub mod tls;

/// Where the store is.
#[derive(Clone)]
pub struct StoreConfig {
    /// The PostgreSQL connection string (URL or key=value, TLS as libpq); may hold a
    /// password, so `Debug` redacts it.
    pub postgres: String,
    /// Allow card references without a key (test data only).
    pub allow_unkeyed_references: bool,
}

/// Settings of `pantau store run`.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The store's own consumer group (it reads every alert).
    pub group: String,
    /// Most records written in one database transaction.
    pub batch_size: usize,
    /// How long to wait for a batch to fill before writing what there is.
    pub linger: Duration,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS regencies (
    regency_code  text PRIMARY KEY,
    name          text NOT NULL,
    province_code text NOT NULL,
    province      text NOT NULL
);
CREATE TABLE IF NOT EXISTS districts (
    district_code text PRIMARY KEY,
    regency_code  text NOT NULL,
    name          text NOT NULL
);
CREATE TABLE IF NOT EXISTS outlets (
    outlet_id     text PRIMARY KEY,
    name          text NOT NULL,
    regency_code  text NOT NULL,
    district_code text NOT NULL,
    bank          text NOT NULL,
    status        text NOT NULL,
    kpm_assigned  bigint NOT NULL,
    registered_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id     text PRIMARY KEY,
    rule_id      text NOT NULL,
    rule_version text NOT NULL,
    category     text NOT NULL,
    severity     text NOT NULL,
    severity_rank int NOT NULL,
    entity_type  text NOT NULL,
    entity_id    text NOT NULL,
    -- The outlet an alert is about: its entity, or the outlet its evidence names (a
    -- terminal's, a supplier ring's). Null for alerts about a card or a regency.
    outlet_id    text,
    regency_code text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    detected_at  timestamptz NOT NULL,
    score        double precision NOT NULL,
    title        text NOT NULL,
    summary      text NOT NULL,
    evidence     jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_regency ON alerts (regency_code, window_end);
CREATE INDEX IF NOT EXISTS alerts_by_outlet ON alerts (outlet_id, window_end);
-- What was removed from a row to store it (NUL characters PostgreSQL cannot hold);
-- null when nothing was.
ALTER TABLE alerts ADD COLUMN IF NOT EXISTS cleaned text;
ALTER TABLE outlets ADD COLUMN IF NOT EXISTS cleaned text;
";

/// PostgreSQL's `text` and `jsonb` cannot hold U+0000, which a bank's free text (an
/// outlet name, and so the alerts that quote it) may carry. Such characters are removed,
/// and the row's `cleaned` says from which fields.
fn strip_nul(field: &str, text: &mut String, cleaned: &mut Vec<String>) {
    if text.contains('\0') {
        text.retain(|c| c != '\0');
        cleaned.push(field.to_owned());
    }
}

/// [`strip_nul`] for every string and key of a JSON value; true when one changed.
fn strip_nul_json(value: &mut Value) -> bool {
    match value {
        Value::String(text) if text.contains('\0') => {
            text.retain(|c| c != '\0');
            true
        }
        // Every element is cleaned: no short-circuit.
        Value::Array(items) => items.iter_mut().map(strip_nul_json).filter(|c| *c).count() > 0,
        Value::Object(map) => {
            let mut changed = false;
            if map.keys().any(|k| k.contains('\0')) {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                for (k, v) in entries {
                    map.insert(k.replace('\0', ""), v);
                }
                changed = true;
            }
            map.values_mut().map(strip_nul_json).filter(|c| *c).count() > 0 || changed
        }
        _ => false,
    }
}

fn cleaned_note(cleaned: Vec<String>) -> Option<String> {
    (!cleaned.is_empty()).then(|| format!("NUL characters removed from: {}", cleaned.join(", ")))
}

fn clean_alert(mut a: Alert) -> (Alert, Option<String>) {
    let mut cleaned = Vec::new();
    strip_nul("entity_id", &mut a.entity_id, &mut cleaned);
    strip_nul("title", &mut a.title, &mut cleaned);
    strip_nul("summary", &mut a.summary, &mut cleaned);
    let mut evidence = Value::Object(std::mem::take(&mut a.evidence));
    if strip_nul_json(&mut evidence) {
        cleaned.push("evidence".to_owned());
    }
    if let Value::Object(map) = evidence {
        a.evidence = map;
    }
    (a, cleaned_note(cleaned))
}

fn clean_outlet(outlet: &Outlet) -> (Outlet, Option<String>) {
    let mut o = outlet.clone();
    let mut cleaned = Vec::new();
    strip_nul("outlet_id", &mut o.outlet_id, &mut cleaned);
    strip_nul("name", &mut o.name, &mut cleaned);
    strip_nul("district_code", &mut o.district_code, &mut cleaned);
    (o, cleaned_note(cleaned))
}

/// A record the database refused for its values (too long for an index, out of range):
/// left out so the rest is stored. Retrying it could never succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub table: &'static str,
    /// The alert id or outlet id; never an alert's entity, which may be a card.
    pub id: String,
    /// PostgreSQL's SQLSTATE, e.g. `54000` (program limit exceeded).
    pub code: String,
    pub error: String,
}

/// The SQLSTATE of an error PostgreSQL raised about the values written: data exceptions
/// (22), integrity violations (23) and program limits (54), the errors that are the
/// record's ([`Recovery::DeadLetter`]). Connection and resource errors are not: those
/// are retried.
fn refused_value(error: &Error) -> Option<String> {
    let code = error.postgres()?.code()?.code().to_owned();
    (error.recovery() == Recovery::DeadLetter).then_some(code)
}

/// Low to critical as 1 to 4, so a dashboard can sort and take the worst.
fn severity_rank(alert: &Alert) -> i32 {
    use pantau_core::model::Severity::*;
    match alert.severity {
        Low => 1,
        Medium => 2,
        High => 3,
        Critical => 4,
    }
}

/// Wraps a failed step of putting the schema in place; `step` is the message.
fn schema(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |source| Error::Schema { step, source }
}

/// Wraps a failed write of records; `what` is the message.
fn write(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |source| Error::Write { what, source }
}

/// A connection to the store with its schema in place.
pub struct Store {
    client: Client,
    pseudonyms: Pseudonyms,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("postgres", &tls::redacted(&self.postgres))
            .field("allow_unkeyed_references", &self.allow_unkeyed_references)
            .finish()
    }
}

impl Store {
    pub async fn connect(config: &StoreConfig) -> Result<Store> {
        let pseudonyms = Pseudonyms::from_env(
            pantau_core::pseudonym::KEY_ENV,
            config.allow_unkeyed_references,
        )?;
        let client = tls::connect(&config.postgres)
            .await
            .map_err(|source| Error::Connect {
                source: Box::new(source),
            })?;
        let store = Store { client, pseudonyms };
        store.migrate().await?;
        Ok(store)
    }

    /// A store written by a pantau that stored card alerts by the card's id: the ids
    /// are replaced by their references, so Grafana's role never reads one.
    async fn reference_stored_card_ids(&self) -> Result<()> {
        let types: Vec<&str> = pantau_core::pseudonym::PERSON_ENTITY_TYPES.to_vec();
        let rows = self
            .client
            .query(
                "SELECT alert_id, entity_id FROM alerts WHERE entity_type = ANY($1) AND entity_id !~ $2",
                &[&types, &pantau_core::pseudonym::REFERENCE_PATTERN],
            )
            .await
            .map_err(schema("reading the stored alerts about a person"))?;
        if rows.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let references: Vec<String> = rows
            .iter()
            .map(|r| self.pseudonyms.reference(r.get(1)))
            .collect();
        self.client
            .execute(
                "UPDATE alerts SET entity_id = r.reference
                 FROM unnest($1::text[], $2::text[]) AS r(alert_id, reference)
                 WHERE alerts.alert_id = r.alert_id",
                &[&ids, &references],
            )
            .await
            .map_err(schema("replacing stored card ids by their references"))?;
        tracing::info!(
            alerts = ids.len(),
            "card ids stored by an older pantau replaced by their references"
        );
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn migrate(&self) -> Result<()> {
        self.client
            .batch_execute(SCHEMA)
            .await
            .map_err(schema("creating the store's tables"))?;
        self.reference_stored_card_ids().await?;
        let regions = Regions::get();
        let regencies = regions.regencies();
        let column = |f: fn(&pantau_core::regions::Regency) -> &str| -> Vec<&str> {
            regencies.iter().map(f).collect()
        };
        self.client
            .execute(
                "INSERT INTO regencies SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 ON CONFLICT (regency_code) DO NOTHING",
                &[
                    &column(|r| &r.code),
                    &column(|r| &r.name),
                    &column(|r| &r.province_code),
                    &column(|r| &r.province_name),
                ],
            )
            .await
            .map_err(schema("writing the regency names"))?;
        let districts: Vec<_> = regencies
            .iter()
            .flat_map(|r| regions.districts(&r.code))
            .collect();
        let codes: Vec<&str> = districts.iter().map(|d| d.code.as_str()).collect();
        let regency_codes: Vec<&str> = districts.iter().map(|d| d.regency_code.as_str()).collect();
        let names: Vec<&str> = districts.iter().map(|d| d.name.as_str()).collect();
        self.client
            .execute(
                "INSERT INTO districts SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                 ON CONFLICT (district_code) DO NOTHING",
                &[&codes, &regency_codes, &names],
            )
            .await
            .map_err(schema("writing the kecamatan names"))?;
        Ok(())
    }

    /// Writes alerts and registry entries, one transaction when the database takes
    /// them all. When it refuses a value, each record is written alone and those it
    /// refuses are returned, not retried: one record never stalls the store. Other
    /// errors (the database away) are returned for the caller to retry.
    pub async fn write(&mut self, alerts: &[Alert], outlets: &[Outlet]) -> Result<Vec<Skipped>> {
        let Err(e) = self.write_all(alerts, outlets).await else {
            return Ok(Vec::new());
        };
        if refused_value(&e).is_none() {
            return Err(e);
        }
        let mut skipped = Vec::new();
        for alert in alerts {
            if let Err(e) = self.write_all(std::slice::from_ref(alert), &[]).await {
                let code = refused_value(&e).ok_or(e)?;
                skipped.push(Skipped {
                    table: "alerts",
                    id: alert.alert_id.clone(),
                    code,
                    error: "the database refused a value of this alert".to_owned(),
                });
            }
        }
        for outlet in outlets {
            if let Err(e) = self.write_all(&[], std::slice::from_ref(outlet)).await {
                let code = refused_value(&e).ok_or(e)?;
                skipped.push(Skipped {
                    table: "outlets",
                    id: outlet.outlet_id.chars().take(64).collect(),
                    code,
                    error: "the database refused a value of this outlet".to_owned(),
                });
            }
        }
        Ok(skipped)
    }

    /// Writes alerts and registry entries in one transaction: both or neither.
    async fn write_all(&mut self, alerts: &[Alert], outlets: &[Outlet]) -> Result<()> {
        let (alerts, alerts_cleaned): (Vec<Alert>, Vec<Option<String>>) = alerts
            .iter()
            .map(|a| clean_alert(self.pseudonyms.for_people(a.clone())))
            .unzip();
        let (outlets, outlets_cleaned): (Vec<Outlet>, Vec<Option<String>>) =
            outlets.iter().map(clean_outlet).unzip();
        let (alerts, outlets) = (alerts.as_slice(), outlets.as_slice());
        let tx = self.client.transaction().await?;
        if !alerts.is_empty() {
            let text = |f: fn(&Alert) -> &str| -> Vec<&str> { alerts.iter().map(f).collect() };
            let time = |f: fn(&Alert) -> DateTime<FixedOffset>| -> Vec<DateTime<FixedOffset>> {
                alerts.iter().map(f).collect()
            };
            let severity: Vec<&str> = alerts.iter().map(|a| a.severity.as_str()).collect();
            let ranks: Vec<i32> = alerts.iter().map(severity_rank).collect();
            let outlet_ids: Vec<Option<&str>> = alerts.iter().map(Alert::outlet_id).collect();
            let scores: Vec<f64> = alerts.iter().map(|a| a.score).collect();
            let evidence: Vec<Value> = alerts
                .iter()
                .map(|a| Value::Object(a.evidence.clone()))
                .collect();
            tx.execute(
                "INSERT INTO alerts (alert_id, rule_id, rule_version, category, severity,
                                     severity_rank, entity_type, entity_id, outlet_id,
                                     regency_code, window_start, window_end, detected_at,
                                     score, title, summary, evidence, cleaned)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::int[], $7::text[], $8::text[], $9::text[], $10::text[],
                                      $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
                                      $14::float8[], $15::text[], $16::text[], $17::jsonb[],
                                      $18::text[])
                 ON CONFLICT (alert_id) DO NOTHING",
                &[
                    &text(|a| &a.alert_id),
                    &text(|a| &a.rule_id),
                    &text(|a| &a.rule_version),
                    &text(|a| &a.category),
                    &severity,
                    &ranks,
                    &text(|a| &a.entity_type),
                    &text(|a| &a.entity_id),
                    &outlet_ids,
                    &text(|a| &a.regency_code),
                    &time(|a| a.window_start),
                    &time(|a| a.window_end),
                    &time(|a| a.detected_at),
                    &scores,
                    &text(|a| &a.title),
                    &text(|a| &a.summary),
                    &evidence,
                    &alerts_cleaned,
                ],
            )
            .await
            .map_err(write("writing alerts"))?;
        }
        // The registry is latest-wins; within one batch, the last record of an outlet.
        let latest: BTreeMap<&str, (&Outlet, &Option<String>)> = outlets
            .iter()
            .zip(&outlets_cleaned)
            .map(|(o, c)| (o.outlet_id.as_str(), (o, c)))
            .collect();
        if !latest.is_empty() {
            let (rows, cleaned): (Vec<&Outlet>, Vec<&Option<String>>) =
                latest.into_values().unzip();
            let text =
                |f: fn(&Outlet) -> &str| -> Vec<&str> { rows.iter().map(|o| f(o)).collect() };
            let kpm: Vec<i64> = rows.iter().map(|o| o.kpm_assigned).collect();
            let registered: Vec<DateTime<FixedOffset>> =
                rows.iter().map(|o| o.registered_at).collect();
            tx.execute(
                "INSERT INTO outlets (outlet_id, name, regency_code, district_code, bank,
                                      status, kpm_assigned, registered_at, cleaned)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::bigint[], $8::timestamptz[], $9::text[])
                 ON CONFLICT (outlet_id) DO UPDATE SET
                    name = EXCLUDED.name, regency_code = EXCLUDED.regency_code,
                    district_code = EXCLUDED.district_code, bank = EXCLUDED.bank,
                    status = EXCLUDED.status, kpm_assigned = EXCLUDED.kpm_assigned,
                    registered_at = EXCLUDED.registered_at, cleaned = EXCLUDED.cleaned",
                &[
                    &text(|o| &o.outlet_id),
                    &text(|o| &o.name),
                    &text(|o| &o.regency_code),
                    &text(|o| &o.district_code),
                    &text(|o| o.bank.as_str()),
                    &text(|o| o.status.as_str()),
                    &kpm,
                    &registered,
                    &cleaned,
                ],
            )
            .await
            .map_err(write("writing the outlet registry"))?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Counts of one load.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub alerts: usize,
    pub outlets: usize,
    /// `file:line: why`, for every line that could not be read.
    pub problems: Vec<String>,
}

fn read_lines(
    path: &Path,
    topic: &str,
    out: &mut Vec<Followed>,
    problems: &mut Vec<String>,
) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_followed(topic, line.as_bytes()) {
            Ok(entry) => out.push(entry),
            Err(source) => problems.push(chain(&Error::Line {
                path: path.to_path_buf(),
                line: n + 1,
                source: Box::new(source),
            })),
        }
    }
    Ok(())
}

/// Writes alert files (a replay's `alerts.jsonl`) and registry files (a history's
/// `outlets.jsonl`). Unreadable lines are reported, the rest is written.
pub async fn load(
    config: &StoreConfig,
    alert_files: &[PathBuf],
    outlet_files: &[PathBuf],
) -> Result<Loaded> {
    let mut entries = Vec::new();
    let mut loaded = Loaded::default();
    for path in alert_files {
        read_lines(path, TOPIC_ALERTS, &mut entries, &mut loaded.problems)?;
    }
    for path in outlet_files {
        read_lines(
            path,
            Stream::Outlets.topic(),
            &mut entries,
            &mut loaded.problems,
        )?;
    }
    let (alerts, outlets) = split(entries);
    let mut store = Store::connect(config).await?;
    let mut skipped = Vec::new();
    for chunk in alerts.chunks(5000) {
        skipped.extend(store.write(chunk, &[]).await?);
    }
    skipped.extend(store.write(&[], &outlets).await?);
    loaded.alerts = alerts.len() - skipped.iter().filter(|s| s.table == "alerts").count();
    loaded.outlets = outlets.len() - skipped.iter().filter(|s| s.table == "outlets").count();
    loaded.problems.extend(skipped.iter().map(|s| {
        format!(
            "{} {}: not stored, PostgreSQL refused a value (SQLSTATE {})",
            s.table, s.id, s.code
        )
    }));
    Ok(loaded)
}

fn split(entries: Vec<Followed>) -> (Vec<Alert>, Vec<Outlet>) {
    let mut alerts = Vec::new();
    let mut outlets = Vec::new();
    for entry in entries {
        match entry {
            Followed::Alert(a) if !a.shadow => alerts.push(*a),
            // A shadow alert on the live topic is a misrouting upstream; the dashboards
            // show only what the Tikor is told.
            Followed::Alert(_) => {}
            Followed::Outlet(o) => outlets.push(*o),
        }
    }
    (alerts, outlets)
}

/// Follows `pantau.alerts` and `bpnt.outlets` into the store until interrupted. A batch
/// is committed to Kafka only once it is in the database; while the database is away
/// the batch is retried and nothing further is read.
pub async fn follow(
    kafka: &KafkaConfig,
    config: &StoreConfig,
    follow: &FollowConfig,
    metrics: Arc<StoreMetrics>,
) -> Result<()> {
    let topics = [TOPIC_ALERTS, Stream::Outlets.topic()];
    let follower = kafka
        .follower(&follow.group, &topics, metrics.unreadable.clone())
        .await?;
    let mut store = Store::connect(config).await?;
    tracing::info!(group = %follow.group, "store following pantau.alerts and bpnt.outlets");
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let mut entries = Vec::new();
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + follow.linger;
        while entries.len() < follow.batch_size {
            let read = tokio::select! {
                read = follower.next() => read,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = &mut stop => {
                    tracing::info!("store stopping");
                    return Ok(());
                }
            };
            next.insert((read.topic, read.partition), read.offset + 1);
            entries.extend(read.record);
        }
        if next.is_empty() {
            continue;
        }
        let (alerts, outlets) = split(entries);
        let mut backoff = Backoff::new();
        let health = metrics.served.health.clone();
        loop {
            if store.is_closed() {
                match Store::connect(config).await {
                    Ok(s) => store = s,
                    Err(e) => {
                        metrics.store_errors.inc();
                        health.database_down(&format!("store unreachable: {}", chain(&e)));
                        let wait = backoff.next_delay();
                        tracing::error!(error = %chain(&e), retry_in = ?wait, "store unreachable");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            match store.write(&alerts, &outlets).await {
                Ok(skipped) => {
                    health.database_up();
                    for s in &skipped {
                        metrics
                            .store_skipped
                            .with_label_values(&[s.table, &s.code])
                            .inc();
                        tracing::error!(table = s.table, id = %s.id, sqlstate = %s.code, "record not stored: PostgreSQL refused a value; the rest is stored");
                    }
                    break;
                }
                Err(e) => {
                    metrics.store_errors.inc();
                    health.database_down(&format!("store write failed: {}", chain(&e)));
                    let wait = backoff.next_delay();
                    tracing::error!(error = %chain(&e), retry_in = ?wait, "store write failed");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        metrics
            .stored
            .with_label_values(&["alerts"])
            .inc_by(alerts.len() as u64);
        metrics
            .stored
            .with_label_values(&["outlets"])
            .inc_by(outlets.len() as u64);
        // The rows are in; a redelivery after a failed commit writes nothing new.
        follower.commit(&next);
    }
}
