//! `pantau notify` against stand-ins for the Tikor's servers on loopback: a webhook
//! receiver that checks signatures, one that is down for a while and recovers, one that
//! stays down, and the Telegram bot API; with a restart in the middle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pantau::kafka::KafkaConfig;
use pantau::model::{Alert, TOPIC_ALERTS, TOPIC_OUTLETS};
use pantau::notify::channel::signature;
use pantau::notify::deliver::{FailedNotification, TOPIC_NOTIFY_DLQ};
use pantau::notify::routes::Routes;
use pantau::sink::kafka::{KafkaSink, Outgoing};

use crate::support::{free_port, http_get, pantau, read_topic, small_month_of_alerts, Tansu};

#[derive(Clone, Debug)]
struct Received {
    path: String,
    key: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
    at: Instant,
}

/// HTTP stand-ins on one loopback port: `/hook/<name>` answers 503 to the first
/// `failures[name]` requests (all of them for `down`), then 200; `/bot<token>/sendMessage`
/// answers like Telegram.
struct Receivers {
    addr: String,
    received: Arc<Mutex<Vec<Received>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Receivers {
    fn start(failures: BTreeMap<&'static str, usize>) -> Receivers {
        use axum::body::Bytes;
        use axum::extract::{Path, State};
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::post;

        type Shared = (
            Arc<Mutex<Vec<Received>>>,
            Arc<BTreeMap<&'static str, usize>>,
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let state: Shared = (received.clone(), Arc::new(failures));
        let record =
            |received: &Mutex<Vec<Received>>, path: String, headers: &HeaderMap, body: Bytes| {
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let mut all = received.lock().unwrap();
                all.push(Received {
                    key: header("idempotency-key"),
                    signature: header("x-pantau-signature"),
                    body: body.to_vec(),
                    at: Instant::now(),
                    path: path.clone(),
                });
                all.iter().filter(|r| r.path == path).count()
            };
        let app = axum::Router::new()
            .route(
                "/hook/{name}",
                post(
                    move |State((received, failures)): State<Shared>,
                          Path(name): Path<String>,
                          headers: HeaderMap,
                          body: Bytes| async move {
                        let seen = record(&received, format!("/hook/{name}"), &headers, body);
                        let fail = failures.get(name.as_str()).copied().unwrap_or(0);
                        if name == "down" || seen <= fail {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::OK
                        }
                    },
                ),
            )
            .route(
                "/{bot}/sendMessage",
                post(
                    move |State((received, _)): State<Shared>,
                          Path(bot): Path<String>,
                          headers: HeaderMap,
                          body: Bytes| async move {
                        record(&received, format!("/{bot}/sendMessage"), &headers, body);
                        r#"{"ok":true,"result":{}}"#
                    },
                ),
            )
            .with_state(state);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let port = free_port();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receivers {
            addr: format!("127.0.0.1:{port}"),
            received,
            _runtime: runtime,
        }
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

fn produce(brokers: &str, topic: &str, records: Vec<(String, Vec<u8>)>) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let kafka = KafkaConfig {
            brokers: brokers.to_owned(),
            partitions: 2,
        };
        kafka
            .ensure_topics(&[TOPIC_ALERTS, TOPIC_OUTLETS, TOPIC_NOTIFY_DLQ])
            .await
            .unwrap();
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

#[test]
fn notify_delivers_every_route_once_through_an_outage_a_dead_channel_and_a_restart() {
    let broker = Tansu::start();
    let tmp = tempfile::tempdir().unwrap();
    let (history, alerts) = small_month_of_alerts(tmp.path());
    let outlets = std::fs::read_to_string(history.join("outlets.jsonl")).unwrap();
    produce(
        &broker.brokers,
        TOPIC_OUTLETS,
        outlets
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["outlet_id"].as_str().unwrap().to_owned(),
                    l.as_bytes().to_vec(),
                )
            })
            .collect(),
    );
    produce(
        &broker.brokers,
        TOPIC_ALERTS,
        alerts
            .iter()
            .map(|a| (a.entity_id.clone(), serde_json::to_vec(a).unwrap()))
            .collect(),
    );

    let receivers = Receivers::start(BTreeMap::from([("flaky", 3)]));
    let base = format!("http://{}", receivers.addr);
    let routes_text = format!(
        r#"
dashboard_url = "http://grafana.example"
[channels.ok]
kind = "webhook"
url = "{base}/hook/ok"
secret_env = "TEST_WEBHOOK_SECRET"
[channels.flaky]
kind = "webhook"
url = "{base}/hook/flaky"
[channels.down]
kind = "webhook"
url = "{base}/hook/down"
[channels.tg]
kind = "telegram"
chat_id = "-10042"
token_env = "TEST_TELEGRAM_TOKEN"
base_url = "{base}"
[[routes]]
regency = "3604"
channels = ["ok", "flaky", "tg"]
[[routes]]
province = "73"
channels = ["ok"]
min_severity = "medium"
[[routes]]
regency = "9471"
channels = ["down"]
min_severity = "high"
"#
    );
    let routes_path = tmp.path().join("routes.toml");
    std::fs::write(&routes_path, &routes_text).unwrap();
    let routes = Routes::parse(&routes_text).unwrap();
    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for alert in &alerts {
        for channel in routes.channels_for(alert) {
            expected
                .entry(channel)
                .or_default()
                .insert(alert.alert_id.clone());
        }
    }
    for channel in ["ok", "flaky", "tg", "down"] {
        assert!(
            expected.contains_key(channel),
            "this history routes nothing to {channel}"
        );
    }

    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let start = || {
        pantau()
            .args(["notify", "--brokers", &broker.brokers, "--routes"])
            .arg(&routes_path)
            .args([
                "--max-tries",
                "4",
                "--retry-after",
                "50ms",
                "--metrics-addr",
                &metrics_addr,
            ])
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .env("TEST_WEBHOOK_SECRET", "rahasia")
            .env("TEST_TELEGRAM_TOKEN", "123:abc")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pantau notify starts")
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // First run: stopped (SIGTERM) once the flaky channel has recovered, mid-stream.
    let mut first = start();
    wait_for("the flaky channel to recover", &|| {
        receivers.on("/hook/flaky").len() >= 4 && receivers.on("/hook/ok").len() >= 5
    });
    let metrics = http_get(&metrics_addr, "/metrics").expect("/metrics");
    let value = |outcome: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("pantau_notifications_total{")
                    && l.contains("channel=\"flaky\"")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!((value("failed"), value("retried")), (3.0, 3.0), "{metrics}");
    assert!(value("sent") >= 1.0);
    // While the flaky channel failed, the others went on.
    let flaky_recovered = receivers.on("/hook/flaky")[3].at;
    assert!(receivers.on("/hook/ok")[0].at < flaky_recovered);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    assert!(
        first.wait().unwrap().success(),
        "notify exits cleanly on SIGTERM"
    );

    // Second run finishes the work.
    let mut second = start();
    let delivered = |path: &str| -> BTreeMap<String, usize> {
        let mut count = BTreeMap::new();
        for r in receivers.on(path) {
            *count.entry(r.key.clone().unwrap_or_default()).or_insert(0) += 1;
        }
        count
    };
    let successes = |path: &str, failing_first: usize| -> BTreeSet<String> {
        receivers.on(path)[failing_first.min(receivers.on(path).len())..]
            .iter()
            .map(|r| r.key.clone().unwrap())
            .collect()
    };
    wait_for("every delivery", &|| {
        successes("/hook/ok", 0).len() == expected["ok"].len()
            && successes("/hook/flaky", 3).len() == expected["flaky"].len()
            && receivers.on("/bot123:abc/sendMessage").len() == expected["tg"].len()
            && read_topic(&broker.brokers, TOPIC_NOTIFY_DLQ).len() == expected["down"].len()
    });
    let _ = second.kill();
    let _ = second.wait();

    // Each alert once per channel: the restart resent nothing.
    for (path, channel) in [("/hook/ok", "ok"), ("/hook/flaky", "flaky")] {
        let counts = delivered(path);
        let keys: BTreeSet<String> = counts.keys().cloned().collect();
        assert_eq!(&keys, &expected[channel], "{channel}");
        let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        if channel == "ok" {
            assert!(repeated.is_empty(), "sent twice on ok: {repeated:?}");
        }
    }
    assert_eq!(
        delivered("/hook/flaky").values().sum::<usize>(),
        expected["flaky"].len() + 3
    );
    // Signed with the shared secret; the body carries the alert and the Bahasa message.
    for r in receivers.on("/hook/ok") {
        assert_eq!(
            r.signature.as_deref(),
            Some(signature(b"rahasia", &r.body).as_str())
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let alert: Alert = serde_json::from_value(body["alert"].clone()).unwrap();
        assert_eq!(Some(alert.alert_id.clone()), r.key);
        assert!(body["message"]["text"]
            .as_str()
            .unwrap()
            .contains("Tindak lanjut:"));
    }
    for r in receivers.on("/bot123:abc/sendMessage") {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["chat_id"], "-10042");
        assert!(body["text"]
            .as_str()
            .unwrap()
            .contains("Dasbor: http://grafana.example/d/pantau-district?var-regency=3604"));
    }
    // The channel that never came back: dead-lettered after four tries, with the reason.
    let dead: Vec<FailedNotification> = read_topic(&broker.brokers, TOPIC_NOTIFY_DLQ)
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect();
    let dead_ids: BTreeSet<String> = dead.iter().map(|d| d.alert_id.clone()).collect();
    assert_eq!(&dead_ids, &expected["down"]);
    assert!(dead
        .iter()
        .all(|d| d.channel == "down" && d.tries == 4 && d.error.contains("503")));
}
