//! Shared by the end-to-end tests: the pantau binary, simulated histories, a tansu
//! broker on a free loopback port, and reading topics back.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pantau::model::{Alert, DeadLetter, Truth};
use pantau::sink::files::read_jsonl;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub fn pantau() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pantau"));
    c.current_dir(workspace_root()).env("RUST_LOG", "warn");
    c
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs pantau and insists that it succeeded, showing its output when it did not.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("pantau starts");
    assert!(
        out.status.success(),
        "{:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a simulated history into `dir`.
pub fn simulate(dir: &Path, args: &[&str]) {
    run_ok(pantau().arg("simulate").arg("--out").arg(dir).args(args));
}

/// Replays `dir` and returns the alerts and dead letters.
pub fn replay(dir: &Path, out: &Path, args: &[&str]) -> (Vec<Alert>, Vec<DeadLetter>) {
    let alerts = out.join("alerts.jsonl");
    run_ok(
        pantau()
            .arg("replay")
            .arg(dir)
            .arg("--out")
            .arg(&alerts)
            .args(args),
    );
    (
        read_jsonl(&alerts).expect("alerts.jsonl"),
        read_jsonl(&out.join("dlq.jsonl")).expect("dlq.jsonl"),
    )
}

pub fn truth(dir: &Path) -> Vec<Truth> {
    read_jsonl(&dir.join("truth.jsonl")).expect("truth.jsonl")
}

/// Alerts without the one field that legitimately differs between runs.
pub fn comparable(alerts: &[Alert]) -> BTreeMap<String, serde_json::Value> {
    alerts
        .iter()
        .map(|a| {
            let mut v = serde_json::to_value(a).expect("alert serializes");
            v.as_object_mut().expect("object").remove("detected_at");
            (a.alert_id.clone(), v)
        })
        .collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A tansu broker on a loopback port, killed when dropped.
pub struct Tansu {
    child: Child,
    pub brokers: String,
    _dir: Option<tempfile::TempDir>,
}

impl Tansu {
    /// A broker whose topics live in a sqlite database of its own, gone when it stops.
    /// Not tansu 0.6's memory storage: a fetch that starts inside a record batch there
    /// skips to the next batch, so a consumer resuming from a committed offset loses the
    /// rest of that batch (seen: fetch from 50 of a 100-record batch returns 100).
    pub fn start() -> Tansu {
        let dir = tempfile::tempdir().expect("a directory for tansu");
        let mut broker = Tansu::start_on(free_port(), "sqlite://./broker.db", dir.path());
        broker._dir = Some(dir);
        broker
    }

    /// A broker on `port` with the given storage engine, run in `dir`
    /// (`sqlite://./broker.db` keeps its topics across a restart; tansu 0.6 reads a
    /// sqlite path relative to its working directory even when it starts with `/`).
    pub fn start_on(port: u16, storage: &str, dir: &Path) -> Tansu {
        let bin = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", storage])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start tansu ({bin}): {e}. Install it with \
                     `cargo install tansu --locked --features dynostore,libsql` (.ci/run does)"
                )
            });
        // A broker restarted on a sqlite database it filled may take a while to open it.
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port} within 120 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Tansu {
            child,
            brokers: format!("127.0.0.1:{port}"),
            _dir: None,
        }
    }

    /// Kills the broker (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn consumer(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("log_level", "3")
        .create()
        .expect("a Kafka consumer")
}

/// Every record of a topic, from the beginning of each partition until nothing new has
/// come for three seconds, and per partition the offset after the last record.
///
/// tansu 0.6 reports high watermarks below the real end of a partition (ListOffsets
/// answers with the last batch, not the last record), so the end is what was read.
pub fn read_topic_with_ends(brokers: &str, topic: &str) -> (Vec<Vec<u8>>, BTreeMap<i32, i64>) {
    let c = consumer(brokers, "pantau-test-reader");
    let meta = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut list = TopicPartitionList::new();
    for p in meta.topics()[0].partitions() {
        list.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("partition");
    }
    c.assign(&list).expect("assign");
    let mut out = Vec::new();
    let mut ends = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_record = Instant::now();
    while last_record.elapsed() < Duration::from_secs(3) {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        let Some(msg) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.expect("a record");
        last_record = Instant::now();
        if let Some(p) = msg.payload() {
            out.push(p.to_vec());
        }
        ends.insert(msg.partition(), msg.offset() + 1);
    }
    (out, ends)
}

pub fn read_topic(brokers: &str, topic: &str) -> Vec<Vec<u8>> {
    read_topic_with_ends(brokers, topic).0
}

/// Per partition of `topic` that holds records: (offset committed by `group`, end).
pub fn committed_and_end(brokers: &str, group: &str, topic: &str) -> Vec<(i32, i64, i64)> {
    let (_, ends) = read_topic_with_ends(brokers, topic);
    let c = consumer(brokers, group);
    let mut list = TopicPartitionList::new();
    for p in ends.keys() {
        list.add_partition(topic, *p);
    }
    let committed = c
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            let committed = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), committed, ends[&e.partition()])
        })
        .collect()
}

/// GETs a path from a loopback HTTP server; returns the body.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}
