//! The Kafka path against a real Kafka-protocol broker (tansu), the embedded demo and the
//! bench.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use pantau_core::model::{category, Alert, DeadLetter, Stream};

use crate::support::{
    committed_and_end, comparable, free_port, http_get, pantau, read_topic, replay, run_ok, truth,
    Tansu,
};

/// The history carries 16 malformed records, among them a transaction dated 2099 and
/// one dated 1970 in the middle of its stream: the alerts are still exactly those of the
/// history without any of them.
#[test]
fn run_on_tansu_raises_the_clean_replay_alerts_despite_wrong_clocks_and_commits_every_offset() {
    let broker = Tansu::start();
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    run_ok(
        pantau()
            .args([
                "simulate",
                "--months",
                "1",
                "--scale",
                "0.5",
                "--malformed",
                "16",
                "--seed",
                "5",
            ])
            .arg("--out")
            .arg(&history)
            .args(["--brokers", &broker.brokers, "--partitions", "3"]),
    );
    let (expected, expected_dead) = replay(&history, &tmp.path().join("replay"), &[]);
    assert!(!expected.is_empty());
    let clean = tmp.path().join("clean");
    crate::support::simulate(&clean, &["--months", "1", "--scale", "0.5", "--seed", "5"]);
    let (clean_alerts, _) = replay(&clean, &tmp.path().join("clean-replay"), &[]);
    assert_eq!(
        comparable(&expected),
        comparable(&clean_alerts),
        "malformed records changed the replay's alerts"
    );

    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut child = pantau()
        .args([
            "run",
            "--brokers",
            &broker.brokers,
            "--group",
            "pantau-e2e",
            "--exit-when-idle",
        ])
        .args(["--idle-timeout", "5s", "--metrics-addr", &metrics_addr])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pantau run starts");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut scraped = None;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if scraped.is_none() {
            scraped = http_get(&metrics_addr, "/metrics")
                .filter(|m| m.contains("pantau_records_consumed_total"));
        }
        assert!(
            Instant::now() < deadline,
            "pantau run did not finish within 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = child.wait_with_output().expect("output");
    assert!(
        status.success(),
        "pantau run failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metrics = scraped.expect("/metrics answered with the records consumed while pantau ran");
    assert!(
        metrics.contains("# TYPE pantau_watermark_seconds gauge"),
        "{metrics}"
    );

    let produced: Vec<Alert> = read_topic(&broker.brokers, "pantau.alerts")
        .iter()
        .map(|b| serde_json::from_slice(b).expect("an alert"))
        .collect();
    let ids: BTreeSet<&str> = produced.iter().map(|a| a.alert_id.as_str()).collect();
    assert_eq!(ids.len(), produced.len(), "an alert was produced twice");
    assert_eq!(
        comparable(&produced),
        comparable(&expected),
        "Kafka and replay disagree"
    );

    let dead: Vec<DeadLetter> = read_topic(&broker.brokers, "pantau.dlq")
        .iter()
        .map(|b| serde_json::from_slice(b).expect("a dead letter"))
        .collect();
    let as_set = |d: &[DeadLetter]| {
        d.iter()
            .map(|d| (d.original.clone(), d.reason.clone()))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        dead.len(),
        16,
        "exactly the malformed records reach the DLQ"
    );
    assert_eq!(as_set(&dead), as_set(&expected_dead));
    for reason in ["future", "before_program"] {
        assert!(
            dead.iter()
                .any(|d| d.reason == reason && d.topic == "bpnt.transactions"),
            "no {reason} transaction in the DLQ"
        );
    }

    let truth = truth(&history);
    for cat in [category::CARD_COLLECTION, category::PRICE_MARKUP] {
        for t in truth.iter().filter(|t| t.category == cat) {
            assert!(
                produced.iter().any(|a| a.category == cat
                    && a.entity_id == t.entity_id
                    && a.window_start <= t.end
                    && t.start <= a.window_end),
                "{cat} at {} not alerted through Kafka",
                t.entity_id
            );
        }
    }
    for stream in Stream::ALL {
        for (partition, committed, end) in
            committed_and_end(&broker.brokers, "pantau-e2e", stream.topic())
        {
            if end > 0 {
                assert_eq!(
                    committed,
                    end,
                    "{} partition {partition}: committed {committed} of {end}",
                    stream.topic()
                );
            }
        }
    }
}

#[test]
fn demo_prints_alerts_as_they_fire_and_a_summary() {
    let out = run_ok(pantau().args([
        "demo",
        "--months",
        "2",
        "--scale",
        "0.3",
        "--malformed",
        "8",
        "--partitions",
        "6",
        "--metrics-addr",
        "127.0.0.1:0",
        "--idle-timeout",
        "3s",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("metrics at http://127.0.0.1:"), "{stdout}");
    let alert_lines = stdout
        .lines()
        .filter(|l| l.starts_with("[HIGH]") || l.starts_with("[MEDIUM]"))
        .count();
    assert!(alert_lines > 0, "no alert printed:\n{stdout}");
    assert!(stdout.contains(" records/s), 8 dead letters,"), "{stdout}");
    assert!(stdout.contains("card_collection"), "{stdout}");
    assert!(
        stdout.contains("overall"),
        "no eval table printed:\n{stdout}"
    );
    assert_demo_lost_nothing_and_matched_the_replay(&out);
}

/// The embedded broker forgets all but the last 5 MiB of a partition: at the default
/// size, with a consumer slowed down as on a busy machine, the feeder must wait for it.
#[test]
fn the_default_demo_with_a_slow_consumer_loses_nothing_and_raises_the_replays_alerts() {
    let out = run_ok(pantau().args([
        "demo",
        "--metrics-addr",
        "127.0.0.1:0",
        "--batch-delay",
        "25ms",
    ]));
    assert_demo_lost_nothing_and_matched_the_replay(&out);
}

fn assert_demo_lost_nothing_and_matched_the_replay(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("nothing lost: all "), "{stdout}");
    assert!(
        stdout.contains("alerts as the Kafka path"),
        "no comparison with the replay:\n{stdout}"
    );
    assert!(
        stdout.contains("records/s through the embedded Kafka broker"),
        "{stdout}"
    );
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        warnings.is_empty(),
        "a clean demo warned:\n{}",
        warnings.join("\n")
    );
}

#[test]
fn bench_prints_replay_bare_consumer_and_run_figures() {
    let broker = Tansu::start();
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    crate::support::simulate(&history, &["--months", "1", "--scale", "0.2"]);
    let out = run_ok(
        pantau()
            .args(["bench", "--brokers", &broker.brokers, "--history"])
            .arg(&history),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in ["replay:", "bare consumer:", "pantau run:"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(line) && l.contains("records/s")),
            "no {line} figure:\n{stdout}"
        );
    }
    assert!(stdout.contains("peak memory"), "{stdout}");
}

/// Ctrl-C ends the pipeline while the feeder waits for it to catch up: the demo must
/// stop and say the history was not all fed, not wait for a consumer that has gone.
#[test]
fn a_demo_interrupted_mid_feed_stops_saying_so() {
    let tmp = tempfile::tempdir().unwrap();
    let stdout_path = tmp.path().join("stdout");
    let mut child = pantau()
        .args([
            "demo",
            "--metrics-addr",
            "127.0.0.1:0",
            "--batch-delay",
            "300ms",
        ])
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::fs::read_to_string(&stdout_path)
        .unwrap()
        .contains("feeding")
    {
        assert!(std::time::Instant::now() < deadline, "the demo never fed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Long enough for the feeder to be waiting on the slowed pipeline.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    // Not a bound on speed: a hang is what this guards against.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo hung after Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("stopped before the whole history was fed"),
        "{stderr}"
    );
}
