//! `pantau demo`: the whole path in one process, for a newcomer's first look. An
//! embedded Kafka-protocol broker (librdkafka's mock cluster), a simulated district fed
//! into it while the pipeline consumes, each alert printed as it fires, `/metrics`
//! served throughout, and a summary of what was found against what was injected.
//!
//! The mock cluster keeps only about 5 MB per partition and silently forgets older
//! records, so the feed is paced against the consumer and the source counts any gap.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::mocking::MockCluster;

use crate::engine::EngineConfig;
use crate::kafka::KafkaConfig;
use crate::metrics::{self, Metrics};
use crate::model::{Alert, Stream, ALL_TOPICS};
use crate::pipeline::{self, RunConfig};
use crate::sim::{self, SimConfig};
use crate::sink::kafka::KafkaSink;
use crate::source::kafka::SourceConfig;
use crate::{alert, feed};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoConfig {
    #[command(flatten)]
    pub sim: SimConfig,
    #[command(flatten)]
    pub engine: EngineConfig,
    /// Address of /metrics while the demo runs (a free port is taken if it is busy).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,
    /// Partitions of every topic on the embedded broker.
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// Most records fed ahead of the consumer (the embedded broker forgets old records).
    #[arg(long, default_value_t = 60_000)]
    pub max_ahead: u64,
}

/// Records the pipeline has read so far, over every input topic.
pub fn consumed(metrics: &Metrics) -> u64 {
    Stream::ALL
        .iter()
        .map(|s| {
            metrics
                .records_consumed
                .with_label_values(&[s.topic()])
                .get()
        })
        .sum()
}

pub async fn run(config: &DemoConfig) -> anyhow::Result<()> {
    config.sim.validate()?;
    println!(
        "simulating {} month(s) of regencies {} ...",
        config.sim.months,
        config.sim.regencies.join(", ")
    );
    let history = sim::simulate(&config.sim)?;
    let mock = MockCluster::new(1).context("cannot start the embedded broker")?;
    for topic in ALL_TOPICS {
        mock.create_topic(topic, config.partitions, 1)
            .with_context(|| format!("cannot create topic {topic} on the embedded broker"))?;
    }
    let kafka = KafkaConfig::plain(mock.bootstrap_servers(), config.partitions);
    let metrics = Metrics::new();
    let (addr, _server) =
        match metrics::serve(metrics.clone(), metrics.health(), config.metrics_addr).await {
            Ok(served) => served,
            Err(_) => {
                metrics::serve(
                    metrics.clone(),
                    metrics.health(),
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                )
                .await?
            }
        };
    println!(
        "embedded broker at {}; metrics at http://{addr}/metrics",
        kafka.brokers
    );
    let records = history.interleaved();
    println!(
        "feeding {} records while the pipeline consumes; alerts as they fire:",
        records.len()
    );
    let sink = KafkaSink::new(&kafka, None)?;
    let pace = {
        let metrics = metrics.clone();
        let max_ahead = config.max_ahead;
        move |sent: usize| {
            let metrics = metrics.clone();
            async move {
                while sent as u64 > consumed(&metrics) + max_ahead {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    let feeder = feed::produce(&sink, &records, 5_000, pace);
    let source = SourceConfig {
        group: "pantau-demo".into(),
        batch_size: 5_000,
        linger: Duration::from_millis(200),
        session_timeout: Duration::from_secs(45),
    };
    let state_dir = std::env::temp_dir().join(format!("pantau-demo-{}", std::process::id()));
    let run_config = RunConfig {
        exit_when_idle: true,
        state_dir: state_dir.clone(),
        checkpoint_interval: Duration::from_secs(5),
        // The mock cluster takes transactional offset commits without storing them, and
        // its read_committed consumers see uncommitted records: a transactional demo
        // would show nothing the idempotent path does not.
        transactional: false,
        instance_id: format!("pantau-demo-{}", std::process::id()),
        shutdown_timeout: Duration::from_secs(30),
        dlq_max_per_sec: 1000,
        reload_interval: Duration::from_secs(2),
        max_buffered_rows: None,
    };
    let mut alerts: Vec<Alert> = Vec::new();
    let pipeline = pipeline::run(
        &kafka,
        &source,
        &run_config,
        &config.engine,
        metrics.clone(),
        |a| {
            println!("{}", alert::one_line(a));
            alerts.push(a.clone());
        },
    );
    let (fed, summary) = tokio::join!(feeder, pipeline);
    // The demo's state is of no use once it has shown its alerts.
    let _ = std::fs::remove_dir_all(&state_dir);
    fed?;
    drop(sink);
    let summary = summary?;
    println!();
    summary.print();
    print_dead_letters(&metrics);
    println!("\nwhat the alerts found of the anomalies the simulation injected (pantau eval):");
    print!("{}", crate::eval::evaluate(&history.truth, &alerts));
    drop(mock);
    Ok(())
}

fn print_dead_letters(metrics: &Arc<Metrics>) {
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for family in metrics.registry.gather() {
        if family.name() != "pantau_dlq_records_total" {
            continue;
        }
        for m in family.get_metric() {
            let reason = m
                .get_label()
                .iter()
                .find(|l| l.name() == "reason")
                .map(|l| l.value().to_string())
                .unwrap_or_default();
            *by_reason.entry(reason).or_default() += m.get_counter().get_value() as u64;
        }
    }
    if !by_reason.is_empty() {
        println!("dead letters by reason:");
        for (reason, n) in by_reason {
            println!("  {reason:<20} {n}");
        }
    }
}
