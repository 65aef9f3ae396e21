//! `pantau bench`: throughput and memory on a history folder. Replay (decode → windows
//! → rules → alerts, no broker), then, with a broker, a bare rdkafka consumer that only
//! reads the topics next to `pantau run` on the same records: the ratio is what pantau
//! costs over reading. Figures are printed, never asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde::Deserialize;

use pantau_core::history::FolderSource;
use pantau_core::model::Stream;
use pantau_engine::engine::EngineConfig;
use pantau_kafka::metrics::peak_memory_mib;
use pantau_kafka::sink::KafkaSink;
use pantau_kafka::KafkaConfig;
use pantau_run::feed;
use pantau_run::metrics::RunMetrics;
use pantau_run::pipeline::{self, ReplayConfig};

use crate::args::{ClientArgs, EngineArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchConfig {
    /// History folder to measure on (made by `pantau simulate --out DIR`).
    #[arg(long)]
    pub history: PathBuf,
    /// Also measure through this broker. Use a fresh one: the bench produces the history
    /// to its input topics first.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Partitions of the topics created on the broker.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    #[command(flatten)]
    pub kafka_settings: ClientArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Deserialize)]
struct Keys {
    outlet_id: Option<String>,
    card_id: Option<String>,
}

/// Reads a history folder as (key, bytes) per stream, keyed as the contract says.
fn read_folder(
    dir: &std::path::Path,
) -> anyhow::Result<Vec<(Stream, pantau_core::history::KeyedRecords)>> {
    let mut source = FolderSource::open(dir)?;
    let mut out = Vec::new();
    for stream in source.streams() {
        let mut records = Vec::new();
        while let Some(chunk) = source.read(stream, 65_536)? {
            for (payload, _) in chunk.records {
                let keys: Option<Keys> = serde_json::from_slice(&payload).ok();
                let key = keys
                    .and_then(|k| {
                        if stream == Stream::Disbursements {
                            k.card_id
                        } else {
                            k.outlet_id
                        }
                    })
                    .unwrap_or_default();
                records.push((key, payload));
            }
        }
        out.push((stream, records));
    }
    Ok(out)
}

async fn bare_consumer(kafka: &KafkaConfig, expected: u64) -> anyhow::Result<Duration> {
    let consumer: StreamConsumer = pantau_kafka::create(
        kafka
            .client()?
            .set(
                "group.id",
                format!("pantau-bench-bare-{}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest"),
    )?;
    let topics: Vec<&str> = Stream::ALL.iter().map(|s| s.topic()).collect();
    consumer.subscribe(&topics)?;
    let started = Instant::now();
    let mut n = 0u64;
    let mut bytes = 0usize;
    while n < expected {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .context("the bare consumer saw nothing for 30 s")??;
        bytes += rdkafka::Message::payload(&msg).map_or(0, <[u8]>::len);
        n += 1;
    }
    tracing::debug!(bytes, "bare consumer done");
    Ok(started.elapsed())
}

/// What `pantau notify` spends per alert before sending: the Bahasa message and, where
/// the evidence has the series, the chart, for every alert of the replay.
fn render_messages(alerts_file: &std::path::Path) -> anyhow::Result<()> {
    let alerts: Vec<pantau_core::model::Alert> = pantau_core::jsonl::read_jsonl(alerts_file)?;
    let templates = pantau_notify::message::Templates::built_in()?;
    pantau_notify::chart::load_font(&pantau_notify::chart::default_font())?;
    let started = Instant::now();
    let (mut charts, mut png_bytes) = (0usize, 0usize);
    for alert in &alerts {
        let message = templates.render(alert, None, "http://grafana");
        if let Some(chart) = &message.chart {
            charts += 1;
            png_bytes += chart.png.len();
        }
    }
    let elapsed = started.elapsed();
    println!(
        "notify render: {:>9} messages in {:>7.3} s = {:>6.2} ms each; {charts} with a chart, {:.0} KiB per PNG",
        alerts.len(),
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / alerts.len().max(1) as f64,
        png_bytes as f64 / 1024.0 / charts.max(1) as f64
    );
    Ok(())
}

pub async fn run(config: &BenchConfig) -> anyhow::Result<()> {
    let out_dir = std::env::temp_dir().join(format!("pantau-bench-{}", std::process::id()));
    let replay = ReplayConfig {
        dir: config.history.clone(),
        out: out_dir.join("alerts.jsonl"),
        batch_size: 4096,
        now: None,
    };
    let engine = EngineConfig::from(config.engine.clone());
    let summary = pipeline::replay(&replay, &engine, RunMetrics::new(), &(), |_| {}).await?;
    let replay_rate = summary.records as f64 / summary.elapsed.as_secs_f64();
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "replay:        {:>9} records in {:>7.1} s = {:>9.0} records/s, {} alerts, {} dead letters; peak memory {:.0} MiB",
        summary.records,
        summary.elapsed.as_secs_f64(),
        replay_rate,
        summary.alerts,
        summary.dead_letters,
        peak_memory_mib().unwrap_or(f64::NAN)
    );
    render_messages(&replay.out)?;
    let Some(brokers) = &config.brokers else {
        return Ok(());
    };
    let kafka = KafkaConfig {
        brokers: brokers.clone(),
        partitions: config.partitions,
        settings: config.kafka_settings.clone().into(),
    };
    let topics: Vec<&str> = Stream::ALL.iter().map(|s| s.topic()).collect();
    kafka.ensure_topics(&topics).await?;
    let records = pantau_core::history::interleave(read_folder(&config.history)?);
    let total = records.len() as u64;
    let sink = KafkaSink::new(&kafka, None)?;
    let started = Instant::now();
    feed::produce(&sink, &records, 50_000, |_| async {}).await?;
    println!(
        "produce:       {total:>9} records in {:>7.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(records);
    let bare = bare_consumer(&kafka, total).await?;
    println!(
        "bare consumer: {total:>9} records in {:>7.1} s = {:>9.0} records/s",
        bare.as_secs_f64(),
        total as f64 / bare.as_secs_f64()
    );
    // `pantau run` in its own process, so its peak memory is its own and not that of
    // the history this bench holds to produce.
    let idle = engine.idle_timeout;
    let state_dir = std::env::temp_dir().join(format!("pantau-bench-{}", std::process::id()));
    let started = Instant::now();
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .arg("run")
        .args([
            "--brokers",
            brokers,
            "--exit-when-idle",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--group",
            &format!("pantau-bench-run-{}", std::process::id()),
        ])
        .args(["--idle-timeout", &format!("{}ms", idle.as_millis())])
        .args(["--lateness", &format!("{}ms", engine.lateness.as_millis())])
        .args(config.kafka_settings.to_args())
        .args(
            config
                .engine
                .rules
                .iter()
                .flat_map(|dir| [std::ffi::OsStr::new("--rules"), dir.as_os_str()]),
        )
        .arg("--state-dir")
        .arg(&state_dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("cannot start pantau run")?;
    let elapsed = started.elapsed();
    let _ = std::fs::remove_dir_all(&state_dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        anyhow::bail!("pantau run failed ({}): {stdout}", output.status);
    }
    let summary = stdout
        .lines()
        .find(|l| l.contains(" records in "))
        .context("pantau run printed no summary")?;
    // The run ends by waiting one idle timeout for more input; that wait is not work.
    let busy = elapsed.saturating_sub(idle).as_secs_f64();
    println!(
        "pantau run:    {total:>9} records in {busy:>7.1} s = {:>9.0} records/s ({:.2}x the bare consumer's time); its own summary: {summary}",
        total as f64 / busy,
        busy / bare.as_secs_f64(),
    );
    Ok(())
}
