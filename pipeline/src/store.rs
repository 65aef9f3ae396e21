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

use anyhow::Context;
use chrono::{DateTime, FixedOffset};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use tokio_postgres::{Client, NoTls};

use crate::health::Backoff;
use crate::kafka::{parse_followed, read_followed, Followed, KafkaConfig};
use crate::metrics::Metrics;
use crate::model::{Alert, Outlet, Stream, TOPIC_ALERTS};
use crate::regions::Regions;

/// Where the store is.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreConfig {
    /// PostgreSQL connection string, e.g. `postgres://pantau:pantau@localhost/pantau`
    /// or `host=/run/postgresql user=pantau dbname=pantau`.
    #[arg(long, env = "PANTAU_POSTGRES")]
    pub postgres: String,
}

/// Settings of `pantau store run`.
#[derive(Debug, Clone, clap::Args)]
pub struct FollowConfig {
    /// Consumer group of the store (its own: it reads every alert whatever pantau does).
    #[arg(long, default_value = "pantau-store")]
    pub group: String,
    /// Most records written in one database transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// How long to wait for a batch to fill before writing what there is.
    #[arg(long, default_value = "500ms", value_parser = crate::engine::parse_duration)]
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
";

/// Low to critical as 1 to 4, so a dashboard can sort and take the worst.
fn severity_rank(alert: &Alert) -> i32 {
    use crate::model::Severity::*;
    match alert.severity {
        Low => 1,
        Medium => 2,
        High => 3,
        Critical => 4,
    }
}

/// A connection to the store with its schema in place.
pub struct Store {
    client: Client,
}

impl Store {
    pub async fn connect(config: &StoreConfig) -> anyhow::Result<Store> {
        let (client, connection) = tokio_postgres::connect(&config.postgres, NoTls)
            .await
            .context("cannot connect to PostgreSQL (--postgres)")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::error!(error = %e, "PostgreSQL connection closed");
            }
        });
        let store = Store { client };
        store.migrate().await?;
        Ok(store)
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        self.client
            .batch_execute(SCHEMA)
            .await
            .context("creating the store's tables")?;
        let regions = Regions::get();
        let regencies = regions.regencies();
        let column = |f: fn(&crate::regions::Regency) -> &str| -> Vec<&str> {
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
            .context("writing the regency names")?;
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
            .context("writing the kecamatan names")?;
        Ok(())
    }

    /// Writes alerts and registry entries in one transaction: both or neither.
    pub async fn write(&mut self, alerts: &[Alert], outlets: &[Outlet]) -> anyhow::Result<()> {
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
                "INSERT INTO alerts
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::int[], $7::text[], $8::text[], $9::text[], $10::text[],
                                      $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
                                      $14::float8[], $15::text[], $16::text[], $17::jsonb[])
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
                ],
            )
            .await
            .context("writing alerts")?;
        }
        // The registry is latest-wins; within one batch, the last record of an outlet.
        let latest: BTreeMap<&str, &Outlet> =
            outlets.iter().map(|o| (o.outlet_id.as_str(), o)).collect();
        if !latest.is_empty() {
            let rows: Vec<&Outlet> = latest.into_values().collect();
            let text =
                |f: fn(&Outlet) -> &str| -> Vec<&str> { rows.iter().map(|o| f(o)).collect() };
            let kpm: Vec<i64> = rows.iter().map(|o| o.kpm_assigned).collect();
            let registered: Vec<DateTime<FixedOffset>> =
                rows.iter().map(|o| o.registered_at).collect();
            tx.execute(
                "INSERT INTO outlets
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::bigint[], $8::timestamptz[])
                 ON CONFLICT (outlet_id) DO UPDATE SET
                    name = EXCLUDED.name, regency_code = EXCLUDED.regency_code,
                    district_code = EXCLUDED.district_code, bank = EXCLUDED.bank,
                    status = EXCLUDED.status, kpm_assigned = EXCLUDED.kpm_assigned,
                    registered_at = EXCLUDED.registered_at",
                &[
                    &text(|o| &o.outlet_id),
                    &text(|o| &o.name),
                    &text(|o| &o.regency_code),
                    &text(|o| &o.district_code),
                    &text(|o| o.bank.as_str()),
                    &text(|o| o.status.as_str()),
                    &kpm,
                    &registered,
                ],
            )
            .await
            .context("writing the outlet registry")?;
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
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_followed(topic, line.as_bytes()) {
            Ok(entry) => out.push(entry),
            Err(e) => problems.push(format!("{}:{}: {e}", path.display(), n + 1)),
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
) -> anyhow::Result<Loaded> {
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
    for chunk in alerts.chunks(5000) {
        store.write(chunk, &[]).await?;
    }
    store.write(&[], &outlets).await?;
    loaded.alerts = alerts.len();
    loaded.outlets = outlets.len();
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
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let consumer = kafka
        .follower(&follow.group, &[TOPIC_ALERTS, Stream::Outlets.topic()])
        .await?;
    let mut store = Store::connect(config).await?;
    tracing::info!(group = %follow.group, "store following pantau.alerts and bpnt.outlets");
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let mut entries = Vec::new();
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + follow.linger;
        while entries.len() < follow.batch_size {
            let message = tokio::select! {
                m = consumer.recv() => m,
                _ = tokio::time::sleep_until(deadline) => break,
                _ = &mut stop => {
                    tracing::info!("store stopping");
                    return Ok(());
                }
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka error while following");
                    continue;
                }
            };
            next.insert(
                (message.topic().to_owned(), message.partition()),
                message.offset() + 1,
            );
            entries.extend(read_followed(&message, &metrics));
        }
        if next.is_empty() {
            continue;
        }
        let (alerts, outlets) = split(entries);
        let mut backoff = Backoff::new();
        loop {
            if store.is_closed() {
                match Store::connect(config).await {
                    Ok(s) => store = s,
                    Err(e) => {
                        metrics.store_errors.inc();
                        let wait = backoff.next_delay();
                        tracing::error!(error = %format!("{e:#}"), retry_in = ?wait, "store unreachable");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            match store.write(&alerts, &outlets).await {
                Ok(()) => break,
                Err(e) => {
                    metrics.store_errors.inc();
                    let wait = backoff.next_delay();
                    tracing::error!(error = %format!("{e:#}"), retry_in = ?wait, "store write failed");
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
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in &next {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
            // The rows are in; a redelivery after a failed commit writes nothing new.
            tracing::warn!(error = %e, "offset commit failed; the batch may be read again");
        }
    }
}
