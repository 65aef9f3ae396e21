//! Shared by the end-to-end tests: the pantau binary, simulated histories, a tansu
//! broker on a free loopback port, and reading topics back.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pantau_core::jsonl::read_jsonl;
use pantau_core::model::{Alert, DeadLetter, Truth};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub fn pantau() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pantau"));
    c.current_dir(workspace_root())
        .env("RUST_LOG", "warn")
        .env(pantau_core::pseudonym::KEY_ENV, TEST_PSEUDONYM_KEY);
    c
}

/// The pseudonym key every command of the tests runs with (the commands that make card
/// references refuse to start without one).
pub const TEST_PSEUDONYM_KEY: &str = "pantau-e2e-key";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

/// A small simulated month (`DIR/history`) and the alerts its replay raises
/// (`DIR/alerts.jsonl`), for the consumers of `pantau.alerts`.
pub fn small_month_of_alerts(dir: &Path) -> (PathBuf, Vec<Alert>) {
    let history = dir.join("history");
    simulate(
        &history,
        &["--months", "1", "--scale", "0.3", "--seed", "4"],
    );
    let (alerts, _) = replay(&history, dir, &[]);
    assert!(!alerts.is_empty());
    (history, alerts)
}

/// A simulated month made in-process (for tests that produce it themselves), written to
/// `DIR/history`, and what its replay raises.
pub fn simulated_month(dir: &Path, seed: u64) -> (pantau_sim::History, Vec<Alert>) {
    simulated_months(dir, 1, seed)
}

pub fn simulated_months(dir: &Path, months: u32, seed: u64) -> (pantau_sim::History, Vec<Alert>) {
    let history = pantau_sim::simulate(&pantau_sim::SimConfig {
        months,
        scale: 0.3,
        seed,
        malformed: 0,
        ..pantau_sim::SimConfig::default()
    })
    .unwrap();
    let folder = dir.join("history");
    pantau_sim::write_folder(&history, &folder).unwrap();
    let (expected, _) = replay(&folder, &dir.join("replay"), &[]);
    assert!(!expected.is_empty());
    (history, expected)
}

/// Waits for `pantau run --exit-when-idle` to finish and insists that it succeeded;
/// returns its log (stderr, written to `log`).
pub fn wait_for_success(child: &mut Child, log: &Path, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "pantau did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let log_text = std::fs::read_to_string(log).unwrap();
    assert!(status.success(), "pantau failed:\n{log_text}");
    log_text
}

pub fn truth(dir: &Path) -> Vec<Truth> {
    read_jsonl(&dir.join("truth.jsonl")).expect("truth.jsonl")
}

/// Alerts without the one field that legitimately differs between runs.
pub fn comparable(alerts: &[Alert]) -> BTreeMap<String, serde_json::Value> {
    pantau_engine::alert::comparable(alerts).expect("alerts serialize")
}

/// Insists that two runs raised the same alerts, naming the ids missing, the ids extra
/// and the first fields that differ (the whole maps are too long to read).
pub fn assert_same_alerts(got: &[Alert], expected: &[Alert], what: &str) {
    let (got, expected) = (comparable(got), comparable(expected));
    let missing: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    let describe = |ids: &[&String], from: &BTreeMap<String, serde_json::Value>| -> Vec<String> {
        ids.iter()
            .take(5)
            .map(|id| format!("{id} {} {}", from[*id]["rule_id"], from[*id]["window_end"]))
            .collect()
    };
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} alerts missing {:?}, {} extra {:?}",
        missing.len(),
        describe(&missing, &expected),
        extra.len(),
        describe(&extra, &got)
    );
    for (id, want) in &expected {
        let have = &got[id];
        if have != want {
            let fields: Vec<String> = want
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| have.get(k.as_str()) != Some(*v))
                .map(|(k, v)| {
                    format!(
                        "{k}: expected {v}, got {}",
                        have.get(k.as_str()).unwrap_or(&serde_json::Value::Null)
                    )
                })
                .collect();
            panic!("{what}: alert {id} differs: {}", fields.join("; "));
        }
    }
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
        let url = format!("tcp://127.0.0.1:{port}");
        Tansu::spawn(port, &url, storage, dir, &[])
    }

    /// A broker that requires SASL/SCRAM-SHA-512 from `user` (tansu's `--authentication`),
    /// telling its clients to connect at `advertised` (a TLS terminator in front of it).
    /// Its sqlite database lives in `dir`.
    pub fn start_secured(
        port: u16,
        advertised: &str,
        dir: &Path,
        user: &str,
        password: &str,
    ) -> Tansu {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut open = Tansu::spawn(port, &url, "sqlite://./broker.db", dir, &[]);
        let bin = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
        let status = Command::new(&bin)
            .args([
                "user",
                "create",
                "--broker",
                &url,
                "--mechanism",
                "scram512",
                user,
                password,
            ])
            .stdout(Stdio::null())
            .status()
            .expect("tansu user create");
        assert!(status.success(), "tansu user create failed");
        open.kill();
        Tansu::spawn(
            port,
            advertised,
            "sqlite://./broker.db",
            dir,
            &["--authentication"],
        )
    }

    fn spawn(port: u16, advertised: &str, storage: &str, dir: &Path, extra: &[&str]) -> Tansu {
        let bin = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                advertised,
            ])
            .args(extra)
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
    consumer_with(brokers, group, &[])
}

fn consumer_with(brokers: &str, group: &str, properties: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("log_level", "3");
    for (key, value) in properties {
        config.set(*key, *value);
    }
    config.create().expect("a Kafka consumer")
}

/// Every record of a topic, from the beginning of each partition until nothing new has
/// come for three seconds, and per partition the offset after the last record.
///
/// tansu 0.6 reports high watermarks below the real end of a partition (ListOffsets
/// answers with the last batch, not the last record), so the end is what was read.
pub fn read_topic_with_ends(brokers: &str, topic: &str) -> (Vec<Vec<u8>>, BTreeMap<i32, i64>) {
    read_topic_secured(brokers, topic, &[])
}

/// As [`read_topic_with_ends`], with librdkafka properties (TLS, SASL) for the reader.
pub fn read_topic_secured(
    brokers: &str,
    topic: &str,
    properties: &[(&str, &str)],
) -> (Vec<Vec<u8>>, BTreeMap<i32, i64>) {
    let c = consumer_with(brokers, "pantau-test-reader", properties);
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

/// A PostgreSQL server of its own (initdb into a temporary folder) on a loopback port,
/// with trust authentication, killed when dropped. As root it runs as the `postgres`
/// user, since PostgreSQL refuses to run as root.
pub struct Postgres {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// The folder of PostgreSQL's server programs: `PG_BIN`, or Debian's newest.
fn pg_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect(
        "PostgreSQL server programs in /usr/lib/postgresql/*/bin (apt-get install postgresql; .ci/run does), or PG_BIN",
    )
}

/// The uid and gid to run PostgreSQL as: `postgres` when we are root.
fn pg_identity() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a postgres user (Debian's postgresql package makes it)")
    };
    Some((id("-u"), id("-g")))
}

impl Postgres {
    pub fn start() -> Postgres {
        Postgres::start_with(|_| Vec::new())
    }

    /// A server with more settings (`-c` arguments), made by `settings` from a folder of
    /// its own (where files it must own, such as a TLS key, go).
    pub fn start_with(settings: impl FnOnce(&Path) -> Vec<String>) -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("a directory for PostgreSQL");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        let identity = pg_identity();
        if let Some((uid, gid)) = identity {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown data dir");
        }
        let as_postgres = |program: &str| {
            let mut c = Command::new(pg_bin().join(program));
            if let Some((uid, gid)) = identity {
                c.uid(uid).gid(gid);
            }
            c.stdout(Stdio::null()).stderr(Stdio::null());
            c
        };
        let conf = dir.path().join("conf");
        std::fs::create_dir(&conf).expect("conf dir");
        let extra = settings(&conf);
        if let Some((uid, gid)) = identity {
            for entry in std::fs::read_dir(&conf).expect("conf dir").flatten() {
                std::os::unix::fs::chown(entry.path(), Some(uid), Some(gid)).expect("chown");
            }
        }
        let status = as_postgres("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .status()
            .expect("initdb starts");
        assert!(status.success(), "initdb failed");
        let port = free_port();
        let child = as_postgres("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(extra.iter().flat_map(|s| ["-c", s.as_str()]))
            .spawn()
            .expect("postgres starts");
        let pg = Postgres {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while pg.try_query("postgres", "postgres", "SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not answer on {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        pg
    }

    pub fn url(&self, user: &str, db: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL (one or more statements) and returns the rows of the last, as text.
    pub fn try_query(
        &self,
        user: &str,
        db: &str,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, tokio_postgres::Error> {
        let url = self.url(user, db);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            let conn = tokio::spawn(connection);
            let messages = client.simple_query(sql).await?;
            drop(client);
            let _ = conn.await;
            let mut rows = Vec::new();
            for m in messages {
                match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect(),
                    ),
                    // A new statement's rows replace the previous statement's.
                    tokio_postgres::SimpleQueryMessage::CommandComplete(_) => {}
                    _ => {}
                }
            }
            Ok(rows)
        })
    }

    pub fn query(&self, user: &str, db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        self.try_query(user, db, sql)
            .unwrap_or_else(|e| panic!("as {user} on {db}: {sql}\nfailed: {e:?}"))
    }

    /// The docker-compose setup: an owner role `pantau` with its database, and the
    /// read-only `grafana` role of deploy/postgres/grafana.sql.
    pub fn with_pantau_roles() -> Postgres {
        let pg = Postgres::start();
        pg.query("postgres", "postgres", "CREATE ROLE pantau LOGIN");
        pg.query(
            "postgres",
            "postgres",
            "CREATE DATABASE pantau OWNER pantau",
        );
        let grants = std::fs::read_to_string(workspace_root().join("deploy/postgres/grafana.sql"))
            .expect("deploy/postgres/grafana.sql");
        pg.query("postgres", "pantau", &grants);
        pg
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus server (Debian's `prometheus`) on a loopback port, scraping the given
/// jobs every second, killed when dropped.
pub struct Prometheus {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(jobs: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().expect("a directory for Prometheus");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, target) in jobs {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_port());
        let bin = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin}: {e}. apt-get install prometheus (.ci/run does)")
            });
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&addr, "/-/ready").is_none_or(|body| !body.contains("Ready")) {
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready on {addr} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Runs a PromQL query through the HTTP API (`/api/v1/query`, or `query_range` over
    /// `range` at a 5 s step) and returns its `data.result`; panics when it does not parse.
    pub fn query(&self, promql: &str, range: Option<(f64, f64)>) -> Vec<serde_json::Value> {
        let url = format!(
            "http://{}/api/v1/{}",
            self.addr,
            if range.is_some() {
                "query_range"
            } else {
                "query"
            }
        );
        // Prometheus explains a bad query in a 400's JSON body: read it, do not stop at 400.
        let mut request = ureq::get(&url)
            .config()
            .http_status_as_error(false)
            .build()
            .query("query", promql);
        if let Some((start, end)) = range {
            request = request
                .query("start", format!("{start:.3}"))
                .query("end", format!("{end:.3}"))
                .query("step", "5");
        }
        let body = match request.call() {
            Ok(mut response) => response.body_mut().read_to_string().expect("a body"),
            Err(e) => panic!("querying Prometheus for {promql}: {e}"),
        };
        let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON from Prometheus");
        assert_eq!(answer["status"], "success", "{promql}: {body}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tests/e2e/smtp_sink.py`: a real SMTP server (Python's aiosmtpd) on a loopback port
/// that writes each mail it takes as JSON into a folder. Killed when dropped.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        use std::io::BufRead;
        // .ci/run installs aiosmtpd into this virtualenv.
        let python = std::env::var("PANTAU_PYTHON").unwrap_or_else(|_| {
            let venv = format!(
                "{}/.cache/pantau-venv/bin/python",
                std::env::var("HOME").unwrap_or_default()
            );
            if Path::new(&venv).exists() {
                venv
            } else {
                "python3".into()
            }
        });
        let dir = tempfile::tempdir().expect("a folder for mails");
        let port = free_port();
        let mut child = Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/smtp_sink.py"))
            .arg(port.to_string())
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {python}: {e}"));
        let mut ready = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut ready)
            .expect("the SMTP sink's first line");
        assert_eq!(
            ready.trim(),
            "ready",
            "the SMTP sink did not start (is aiosmtpd installed? .ci/run installs it)"
        );
        SmtpSink { child, port, dir }
    }

    /// The mails taken so far, in order.
    pub fn mails(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("the mail folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces keyed records to a topic (created if missing) and waits for the broker.
pub fn produce(brokers: &str, topic: &str, records: Vec<(String, Vec<u8>)>) {
    use pantau_core::model::Outgoing;
    use pantau_kafka::sink::KafkaSink;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let kafka = pantau_kafka::KafkaConfig::plain(brokers, 2);
        kafka.ensure_topics(&[topic]).await.unwrap();
        let sink = KafkaSink::new(&kafka, None).unwrap();
        let out: Vec<Outgoing> = records
            .into_iter()
            .map(|(key, payload)| Outgoing {
                topic: topic.to_owned(),
                partition: None,
                key: Some(key),
                payload,
            })
            .collect();
        sink.send_all(&out).await.unwrap();
    });
}

/// Produces records to the input topics (created with `partitions` partitions if
/// missing), in order, and waits for the broker.
pub fn produce_inputs(brokers: &str, partitions: i32, records: &[pantau_core::model::Outgoing]) {
    let kafka = pantau_kafka::KafkaConfig::plain(brokers, partitions);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let topics: Vec<&str> = pantau_core::model::Stream::ALL
            .iter()
            .map(|s| s.topic())
            .collect();
        kafka.ensure_topics(&topics).await.unwrap();
        let sink = pantau_kafka::sink::KafkaSink::new(&kafka, None).unwrap();
        pantau_run::feed::produce(&sink, records, 20_000, |_| async {})
            .await
            .unwrap();
    });
}

/// Polls `done` every 100 ms; fails the test naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, done: &dyn Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A certificate authority made with the openssl command, and certificates it signs.
/// A child process killed when dropped, so a failing test leaves no server behind that
/// holds the harness's output open.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian's openssl package; .ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A self-signed CA named `name`: `DIR/name.pem` and its key.
    pub fn ca(dir: &Path, name: &str) -> Pki {
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
            dir,
        );
        Pki {
            dir: dir.join(name),
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.with_extension("pem")
    }

    /// A certificate for `name` valid for localhost and 127.0.0.1, signed by this CA:
    /// (certificate, key), both PEM, beside the CA's.
    pub fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.parent().expect("the CA's folder");
        let ca = self.dir.file_name().unwrap().to_str().unwrap();
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
            dir,
        );
        std::fs::write(
            dir.join(format!("{name}.ext")),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
            dir,
        );
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }
}

/// Debian's stunnel4 terminating TLS on a loopback port in front of a plaintext one,
/// killed when dropped.
pub struct Stunnel {
    child: Child,
    pub port: u16,
}

impl Stunnel {
    pub fn start(dir: &Path, cert: &Path, key: &Path, to_port: u16) -> Stunnel {
        let port = free_port();
        let conf = dir.join(format!("stunnel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\n[tls]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{to_port}\ncert = {}\nkey = {}\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let bin = ["stunnel4", "stunnel"]
            .into_iter()
            .find(|b| Command::new(b).arg("-version").output().is_ok())
            .expect("stunnel (Debian's stunnel4; .ci/run installs it)");
        let child = Command::new(bin)
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "stunnel did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Stunnel { child, port }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
