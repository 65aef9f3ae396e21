//! Nothing one record can do silences pantau: a record too large to dead-letter whole,
//! in the middle of a stream on a real broker; a backlog waiting before it starts; one
//! input partition that holds the watermark back while the others stream on.

use std::process::Stdio;
use std::time::Duration;

use pantau_core::model::Outgoing;
use pantau_core::model::{DeadLetter, Stream};
use sha2::{Digest, Sha256};

use crate::support::{
    comparable, http_get, pantau, produce_inputs, read_topic, simulated_month, simulated_months,
    wait_for_success, Tansu,
};

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
    produce_inputs(&broker.brokers, 3, &records);

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
        pantau_core::text::hex_prefix(&Sha256::digest(&huge), 64)
    );
    assert_eq!(d.original_encoding, "base64");
    use base64::Engine as _;
    let kept = base64::engine::general_purpose::STANDARD
        .decode(&d.original)
        .unwrap();
    assert_eq!(
        kept,
        huge[..pantau_engine::decode::MAX_DEAD_LETTER_ORIGINAL]
    );

    let produced: Vec<pantau_core::model::Alert> = read_topic(&broker.brokers, "pantau.alerts")
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
    // CI's size; the README's 400 k-record check sets both.
    let months = std::env::var("PANTAU_BACKLOG_MONTHS").unwrap_or("2".into());
    let scale = std::env::var("PANTAU_BACKLOG_SCALE").unwrap_or("0.5".into());
    let mut produced_to = Vec::new();
    for _ in 0..2 {
        let broker = Tansu::start();
        crate::support::run_ok(
            pantau()
                .args(["simulate", "--months", &months, "--scale", &scale])
                .args(["--seed", "13"])
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
            run.args(["--engine-batch-delay", delay]);
        }
        let mut child = run.spawn().unwrap();
        wait_for_success(&mut child, &log, Duration::from_secs(600));
        let produced: Vec<pantau_core::model::Alert> = read_topic(&broker.brokers, "pantau.alerts")
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

/// Before, one input partition that stayed silent (without being idle) while the others
/// streamed on made the engines buffer everything the others delivered: no window could
/// close. Now the routers pause the partitions that run ahead once the engines hold
/// `--max-buffered-rows`, and resume them when the silent one speaks.
#[test]
fn a_silent_partition_pauses_the_others_at_the_row_cap_and_every_alert_comes_when_it_speaks() {
    let tmp = tempfile::tempdir().unwrap();
    let (history, expected) = simulated_months(tmp.path(), 3, 21);
    let partitions = 3;
    let partition_of = |key: &str| -> i32 {
        // FNV-1a: a partitioning the test can reproduce.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % partitions as u64) as i32
    };
    let mut records = history.interleaved();
    for r in &mut records {
        r.partition = Some(partition_of(r.key.as_deref().unwrap_or_default()));
    }
    // Transactions' partition 0 falls silent three days in; the rest stream three months.
    let first = records
        .iter()
        .filter_map(|r| pantau_core::history::event_time(&r.payload))
        .min()
        .unwrap();
    let silent_from = first + 3 * 86_400_000_000;
    let (held, streamed): (Vec<Outgoing>, Vec<Outgoing>) = records.into_iter().partition(|r| {
        r.topic == Stream::Transactions.topic()
            && r.partition == Some(0)
            && pantau_core::history::event_time(&r.payload).is_some_and(|t| t >= silent_from)
    });
    assert!(held.len() > 1000, "{} records held back", held.len());
    let broker = Tansu::start();
    produce_inputs(&broker.brokers, partitions, &streamed);

    // A replay of this history holds about 32,000 rows at its peak (a month of rows for
    // the monthly windows); had nothing paused, this run would hold about 83,000.
    let cap = 36_000;
    let log = tmp.path().join("run.log");
    let out = tmp.path().join("run.out");
    let metrics_addr = format!("127.0.0.1:{}", crate::support::free_port());
    let mut child = pantau()
        .args(["run", "--brokers", &broker.brokers, "--group", "stall"])
        // The silent partition must stay stalled, not idle, from its last record until the
        // held records come: reaching the cap took over 20 s once with the other tests on
        // both cores, and an idle partition's records then came late.
        .args(["--exit-when-idle", "--idle-timeout", "60s"])
        // One partition's 5,000 records (the default batch) span a month of this small
        // history; a district's span minutes.
        .args(["--batch-size", "500"])
        .args([
            "--max-buffered-rows",
            &std::env::var("STALL_CAP").unwrap_or(cap.to_string()),
        ])
        .args(["--metrics-addr", &metrics_addr])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let metric = |name: &str| -> Option<f64> {
        http_get(&metrics_addr, "/metrics")?
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while metric("pantau_input_partitions_paused{reason=\"memory\"}").unwrap_or(0.0) < 1.0 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "run exited:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no input partition paused; buffered rows {:?}",
            metric("pantau_buffered_rows")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The silent partition speaks.
    produce_inputs(&broker.brokers, partitions, &held);
    let log_text = wait_for_success(&mut child, &log, Duration::from_secs(600));
    assert!(
        log_text.contains("resuming paused input partitions"),
        "{log_text}"
    );

    let summary = std::fs::read_to_string(&out).unwrap();
    let peak: usize = summary
        .lines()
        .find_map(|l| l.strip_prefix("peak ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no peak in:\n{summary}"));
    // Beyond the cap by at most a turn's batches and what the engines' rows per record
    // were misjudged by over the records not yet read. Measured: 37,736 and 37,944 with
    // the machine to itself, 39,015 and 39,134 with the other end-to-end tests on both
    // cores (the engines then take larger turns behind the router); an eighth over the
    // cap still fails a pause that came late or not at all (83,000 without it).
    eprintln!("peak {peak} buffered rows, cap {cap}");
    let decisions: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains("input partitions"))
        .collect();
    assert!(
        peak <= cap + cap / 8,
        "peak {peak} buffered rows, cap {cap}:\n{}",
        decisions.join("\n")
    );
    let produced: Vec<pantau_core::model::Alert> = read_topic(&broker.brokers, "pantau.alerts")
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    crate::support::assert_same_alerts(&produced, &expected, "after the stall");
    assert!(
        read_topic(&broker.brokers, "pantau.dlq").is_empty(),
        "valid records dead-lettered"
    );
}
