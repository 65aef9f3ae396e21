//! `pantau demo`: the whole path in one process, for a newcomer's first look. An
//! embedded Kafka-protocol broker (librdkafka's mock cluster), a simulated district fed
//! into it while the pipeline consumes, each alert printed as it fires, `/metrics`
//! served throughout, and a summary of what was found against what was injected.
//!
//! Why the feed is flow-controlled: librdkafka's mock cluster keeps at most 5 MiB per
//! partition (`max_size` in rdkafka_mock.c, not configurable) and forgets older records
//! without an error, whether they were read or not. pantau reads every input record
//! twice, from its input topic and again from the internal `pantau.by-province`, whose
//! records of one province all land on one partition. So the feeder sends the next
//! chunk only while the bytes it has sent and the engines have not yet taken in stay
//! under `--max-ahead-bytes` (2 MiB): even if every one of them sat on one partition of
//! one topic, that partition would hold less than the broker keeps, whatever the speed
//! of the machine, the size of the history or the number of partitions.
//!
//! The demo then checks itself: every record fed must have been taken in, with no
//! offset gap on any topic, and its alerts must equal those of a replay of the same
//! history; otherwise it says what differs and exits non-zero.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::mocking::MockCluster;

use pantau_core::model::{Alert, Stream, ALL_TOPICS};
use pantau_engine::alert::{self, comparable};
use pantau_engine::engine::EngineConfig;
use pantau_kafka::sink::KafkaSink;
use pantau_kafka::source::SourceConfig;
use pantau_kafka::KafkaConfig;
use pantau_run::feed;
use pantau_run::metrics::RunMetrics;
use pantau_run::pipeline::{self, ReplayConfig, RunConfig, SlowDown};
use pantau_sim::{self as sim, SimConfig};

use crate::args::{EngineArgs, SimArgs};
use crate::serve::serve;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoConfig {
    #[command(flatten)]
    pub sim: SimArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Address of /metrics while the demo runs (a free port is taken if it is busy).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,
    /// Partitions of every topic on the embedded broker.
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// Most bytes of records fed that the engines have not yet taken in (the embedded
    /// broker keeps 5 MiB per partition and forgets the rest).
    #[arg(long, default_value_t = 2 << 20)]
    pub max_ahead_bytes: u64,
    /// Test only: a pause after every batch the pipeline reads, standing in for a slow
    /// machine.
    #[arg(long, hide = true, value_parser = pantau_core::text::parse_duration)]
    pub batch_delay: Option<Duration>,
}

/// Records the pipeline has read so far, over every input topic.
pub fn consumed(metrics: &RunMetrics) -> u64 {
    Stream::ALL
        .iter()
        .map(|s| {
            metrics
                .engine
                .records_consumed
                .with_label_values(&[s.topic()])
                .get()
        })
        .sum()
}

pub async fn run(config: &DemoConfig) -> anyhow::Result<()> {
    let sim_config = SimConfig::from(config.sim.clone());
    let engine = EngineConfig::from(config.engine.clone());
    sim_config.validate()?;
    println!(
        "simulating {} month(s) of regencies {} ...",
        sim_config.months,
        sim_config.regencies.join(", ")
    );
    let history = sim::simulate(&sim_config)?;
    let mock = MockCluster::new(1).context("cannot start the embedded broker")?;
    for topic in ALL_TOPICS {
        mock.create_topic(topic, config.partitions, 1)
            .with_context(|| format!("cannot create topic {topic} on the embedded broker"))?;
    }
    let mut kafka = KafkaConfig::plain(mock.bootstrap_servers(), config.partitions);
    // The mock cluster answers a fetch only when fetch.wait.max.ms (500 ms) runs out,
    // not when records arrive: with little in flight, each hop would wait that long.
    kafka.settings.properties.push(pantau_kafka::Property {
        key: "fetch.wait.max.ms".into(),
        value: "10".into(),
    });
    let metrics = RunMetrics::new();
    let (addr, _server) = match serve(
        metrics.served.registry.clone(),
        metrics.served.health.clone(),
        config.metrics_addr,
    )
    .await
    {
        Ok(served) => served,
        Err(_) => {
            serve(
                metrics.served.registry.clone(),
                metrics.served.health.clone(),
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
    let largest_sent: Vec<u64> = records
        .iter()
        .scan(0, |largest, r| {
            *largest =
                (*largest).max((r.payload.len() + r.key.as_ref().map_or(0, String::len)) as u64);
            Some(*largest)
        })
        .collect();
    let pace = {
        let metrics = metrics.clone();
        let budget = config.max_ahead_bytes;
        let largest_sent = &largest_sent;
        move |sent: usize| {
            let metrics = metrics.clone();
            async move {
                while bytes_ahead(largest_sent, sent, consumed(&metrics)) > budget {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    };
    let feeder = feed::produce(&sink, &records, FEED_CHUNK, pace);
    let source = SourceConfig {
        group: "pantau-demo".into(),
        batch_size: 5_000,
        // Short: with at most --max-ahead-bytes in flight a batch never fills, and every
        // record waits out the linger twice (input topic, then the internal one).
        linger: Duration::from_millis(20),
        session_timeout: Duration::from_secs(45),
    };
    // The demo's state is of no use once it has shown its alerts: removed on every exit.
    let scratch = tempfile::Builder::new().prefix("pantau-demo-").tempdir()?;
    let state_dir = scratch.path().to_path_buf();
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
        slow_down: SlowDown {
            per_batch: config.batch_delay,
            per_engine_batch: None,
        },
    };
    let mut alerts: Vec<Alert> = Vec::new();
    let pipeline = pipeline::run(
        &kafka,
        &source,
        &run_config,
        &engine,
        metrics.clone(),
        |a| {
            println!("{}", alert::one_line(a));
            alerts.push(a.clone());
        },
    );
    // The pipeline may end first (Ctrl-C, an error); a feeder waiting for it would then
    // wait forever, so it is dropped with the pipeline.
    let (fed, summary) = {
        let mut feeder = std::pin::pin!(feeder);
        let mut pipeline = std::pin::pin!(pipeline);
        let mut fed = None;
        loop {
            tokio::select! {
                result = &mut feeder, if fed.is_none() => fed = Some(result),
                summary = &mut pipeline => break (fed, summary),
            }
        }
    };
    drop(sink);
    let summary = summary?;
    match fed {
        Some(fed) => fed?,
        None => anyhow::bail!(
            "the pipeline stopped before the whole history was fed; nothing was checked"
        ),
    }
    println!();
    println!("{summary}");
    print_dead_letters(&metrics);
    let lost = check_nothing_lost(records.len() as u64, &metrics);

    println!("\nreplaying the same history without a broker, to compare ...");
    let folder = state_dir.join("history");
    sim::write_folder(&history, &folder)?;
    let replay_config = ReplayConfig {
        dir: folder,
        out: state_dir.join("replay").join("alerts.jsonl"),
        batch_size: 4096,
        now: None,
    };
    std::fs::create_dir_all(state_dir.join("replay"))?;
    let mut replayed: Vec<Alert> = Vec::new();
    let replay_summary = pipeline::replay(&replay_config, &engine, RunMetrics::new(), &(), |a| {
        replayed.push(a.clone())
    })
    .await?;
    println!(
        "measured: {:.0} records/s through the embedded Kafka broker (in-process: feeder, broker, \
         pipeline and /metrics sharing this machine); {:.0} records/s replaying the same history \
         from files (pantau replay)",
        summary.rate(),
        replay_summary.rate(),
    );
    let differences = compare_with_replay(&alerts, &replayed);
    println!("\nwhat the alerts found of the anomalies the simulation injected (pantau eval):");
    print!("{}", pantau_sim::eval::evaluate(&history.truth, &alerts));
    drop(mock);
    lost?;
    differences
}

/// Records of the feed sent per produce call: small next to the byte budget, so the
/// feeder waits in steps the consumer can follow.
const FEED_CHUNK: usize = 500;

/// The most bytes of the records sent that the engines may not have taken in yet: the
/// engines count records, not which ones, so each record not yet taken is charged at
/// the size of the largest sent so far (`largest_sent[i]`: the largest of the first
/// `i + 1`), and the bound holds whatever order they are read in.
fn bytes_ahead(largest_sent: &[u64], sent: usize, taken: u64) -> u64 {
    let waiting = (sent as u64).saturating_sub(taken);
    match sent.checked_sub(1).and_then(|last| largest_sent.get(last)) {
        Some(largest) => waiting * largest,
        None => 0,
    }
}

/// Every record fed was taken in by an engine, and no topic skipped an offset.
fn check_nothing_lost(fed: u64, metrics: &RunMetrics) -> anyhow::Result<()> {
    let taken = consumed(metrics);
    let gaps: u64 = metrics
        .served
        .registry
        .gather()
        .iter()
        .filter(|f| f.name() == "pantau_offset_gaps_total")
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum();
    if taken < fed || gaps > 0 {
        println!(
            "RECORDS LOST: {fed} fed, {taken} taken in by the engines, {gaps} offset gaps; \
             the alerts above are incomplete"
        );
        anyhow::bail!(
            "the embedded broker lost records ({} of {fed} never read, {gaps} offset gaps); \
             try a smaller --max-ahead-bytes",
            fed.saturating_sub(taken)
        );
    }
    println!("nothing lost: all {fed} records fed were read, with no offset gap on any topic");
    Ok(())
}

/// The Kafka path must raise what the replay raises.
fn compare_with_replay(live: &[Alert], replayed: &[Alert]) -> anyhow::Result<()> {
    let (live, replayed) = (comparable(live)?, comparable(replayed)?);
    let missing = replayed.keys().filter(|id| !live.contains_key(*id)).count();
    let extra = live.keys().filter(|id| !replayed.contains_key(*id)).count();
    let differing = live
        .iter()
        .filter(|(id, alert)| replayed.get(*id).is_some_and(|r| r != *alert))
        .count();
    if missing + extra + differing > 0 {
        println!(
            "DIFFERS FROM THE REPLAY: {missing} alerts of the replay missing, {extra} extra, \
             {differing} with other contents"
        );
        anyhow::bail!(
            "the demo's alerts differ from a replay of the same history \
             ({missing} missing, {extra} extra, {differing} differing)"
        );
    }
    println!(
        "the replay raised the same {} alerts as the Kafka path",
        live.len()
    );
    Ok(())
}

fn print_dead_letters(metrics: &Arc<RunMetrics>) {
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for family in metrics.served.registry.gather() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_not_yet_taken_are_charged_at_the_largest_sent() {
        let largest_sent = [10, 500, 500, 500, 500];
        assert_eq!(bytes_ahead(&largest_sent, 0, 0), 0);
        assert_eq!(bytes_ahead(&largest_sent, 5, 5), 0);
        assert_eq!(bytes_ahead(&largest_sent, 5, 3), 1000);
        // The 500-byte record is not yet sent.
        assert_eq!(bytes_ahead(&largest_sent, 1, 0), 10);
    }
}
