//! Nothing one record can do silences pantau: a record too large to dead-letter whole,
//! in the middle of a stream on a real broker.

use std::process::Stdio;
use std::time::Duration;

use pantau::feed;
use pantau::kafka::KafkaConfig;
use pantau::model::{DeadLetter, Stream};
use pantau::sink::kafka::{KafkaSink, Outgoing};
use sha2::{Digest, Sha256};

use crate::support::{comparable, pantau, read_topic, simulated_month, wait_for_success, Tansu};

/// Before, the dead letter of a 900 KB record that is not UTF-8 (base64: 1.2 MB) was
/// refused by the producer and `run` stopped on it, after every restart.
#[test]
fn a_900_kb_record_that_is_not_utf8_is_dead_lettered_cut_short_and_every_alert_is_raised() {
    let broker = Tansu::start();
    let tmp = tempfile::tempdir().unwrap();
    let (history, expected) = simulated_month(tmp.path(), 6);

    let mut records = history.interleaved();
    // Not UTF-8 anywhere: 0xff never occurs in UTF-8.
    let huge: Vec<u8> = (0..900 * 1024).map(|i| [0xff, b'{', 0x80][i % 3]).collect();
    let middle = records.len() / 2;
    records.insert(
        middle,
        Outgoing {
            topic: Stream::Transactions.topic().to_string(),
            partition: None,
            key: Some("OUT-HUGE".to_string()),
            payload: huge.clone(),
        },
    );
    let kafka = KafkaConfig {
        brokers: broker.brokers.clone(),
        partitions: 3,
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let topics: Vec<&str> = Stream::ALL.iter().map(|s| s.topic()).collect();
        kafka.ensure_topics(&topics).await.unwrap();
        let sink = KafkaSink::new(&kafka, None).unwrap();
        feed::produce(&sink, &records, 20_000, |_| async {})
            .await
            .unwrap();
    });

    let log = tmp.path().join("run.log");
    let mut child = pantau()
        .args(["run", "--brokers", &broker.brokers, "--group", "hostile"])
        .args(["--exit-when-idle", "--idle-timeout", "5s"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_success(&mut child, &log, Duration::from_secs(600));

    let dead: Vec<DeadLetter> = read_topic(&broker.brokers, "pantau.dlq")
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = &dead[0];
    assert_eq!(d.reason, "invalid_json");
    assert!(d.original_truncated);
    assert_eq!(d.original_length, huge.len() as u64);
    assert_eq!(
        d.original_sha256,
        pantau::rules::hex_prefix(&Sha256::digest(&huge), 64)
    );
    assert_eq!(d.original_encoding, "base64");
    use base64::Engine as _;
    let kept = base64::engine::general_purpose::STANDARD
        .decode(&d.original)
        .unwrap();
    assert_eq!(kept, huge[..pantau::decode::MAX_DEAD_LETTER_ORIGINAL]);

    let produced: Vec<pantau::model::Alert> = read_topic(&broker.brokers, "pantau.alerts")
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(comparable(&produced), comparable(&expected));
}

/// Before, anyhow's `Debug` printed a stack backtrace under `RUST_BACKTRACE=1` for a
/// missing folder, as if it were a bug.
#[test]
fn a_user_error_prints_a_message_not_a_backtrace() {
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("alerts.jsonl");
    let out_file = out_file.to_str().unwrap();
    for args in [
        vec!["replay", "no-such-history-folder", "--out", out_file],
        vec![
            "replay",
            ".",
            "--lateness",
            "100000000000000000000d",
            "--out",
            out_file,
        ],
        vec!["rules", "lint", "no-such-rules-folder"],
    ] {
        let out = pantau()
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            !stderr.to_lowercase().contains("backtrace") && !stderr.contains("panicked"),
            "{args:?}:\n{stderr}"
        );
        assert!(stderr.contains("error"), "{args:?}:\n{stderr}");
    }
}

/// pantau deployed onto topics that already hold months of history: the inputs are
/// read far ahead of the engines, and no input may be declared idle, nor any watermark
/// follow the wall clock, before the engines have read what was forwarded. Run twice:
/// as it comes, and with every engine batch slowed so the router runs far ahead. Both
/// raise the replay's alerts with no dead letter (the history has no bad record).
#[test]
fn a_backlog_produced_before_run_starts_raises_the_replay_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    let mut produced_to = Vec::new();
    for _ in 0..2 {
        let broker = Tansu::start();
        crate::support::run_ok(
            pantau()
                .args([
                    "simulate", "--months", "2", "--scale", "0.5", "--seed", "13",
                ])
                .args(["--regencies", "3601,3602,3603,3604,3672,3673"])
                .arg("--out")
                .arg(&history)
                .args(["--brokers", &broker.brokers, "--partitions", "4"]),
        );
        produced_to.push(broker);
    }
    let (expected, _) = crate::support::replay(&history, &tmp.path().join("replay"), &[]);
    assert!(expected.len() > 20, "{} alerts", expected.len());
    for (broker, delay) in produced_to.iter().zip([None, Some("20ms")]) {
        let log = tmp.path().join(format!("run-{}.log", delay.unwrap_or("0")));
        let mut run = pantau();
        run.args(["run", "--brokers", &broker.brokers, "--group", "backlog"])
            .args(["--exit-when-idle", "--idle-timeout", "5s"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(tmp.path().join(format!("state-{}", delay.unwrap_or("0"))))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(delay) = delay {
            run.env("PANTAU_TEST_ENGINE_DELAY", delay);
        }
        let mut child = run.spawn().unwrap();
        wait_for_success(&mut child, &log, Duration::from_secs(600));
        let produced: Vec<pantau::model::Alert> = read_topic(&broker.brokers, "pantau.alerts")
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        crate::support::assert_same_alerts(
            &produced,
            &expected,
            &format!("engine delay {delay:?}"),
        );
        assert!(
            read_topic(&broker.brokers, "pantau.dlq").is_empty(),
            "engine delay {delay:?}: valid records dead-lettered"
        );
    }
}
