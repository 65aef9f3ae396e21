//! `pantau notify` against stand-ins for the Tikor's servers on loopback: a webhook
//! receiver that checks signatures, one that is down for a while and recovers, one that
//! stays down, and the Telegram bot API; with a restart in the middle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pantau_core::model::{Alert, TOPIC_ALERTS, TOPIC_OUTLETS};
use pantau_notify::channel::signature;
use pantau_notify::deliver::{FailedNotification, TOPIC_NOTIFY_DLQ};
use pantau_notify::routes::Routes;

use crate::support::{
    free_port, http_get, pantau, produce, read_topic, small_month_of_alerts, KillOnDrop, Pki,
    Prometheus, SmtpSink, Stunnel, Tansu,
};

#[derive(Clone, Debug)]
struct Received {
    path: String,
    key: Option<String>,
    signature: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    at: Instant,
    /// Answered 200.
    ok: bool,
}

/// HTTP stand-ins on one loopback port: `/hook/<name>` answers 503 to the first
/// `failures[name]` requests (all of them for `down`, and the daily digests that count
/// alerts for `switch` while `switch_down` is set), then 200; `/bot<token>/sendMessage` and
/// `/bot<token>/sendPhoto` answer like Telegram.
struct Receivers {
    addr: String,
    received: Arc<Mutex<Vec<Received>>>,
    switch_down: Arc<std::sync::atomic::AtomicBool>,
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
            Arc<std::sync::atomic::AtomicBool>,
        );
        let received = Arc::new(Mutex::new(Vec::new()));
        let switch_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state: Shared = (received.clone(), Arc::new(failures), switch_down.clone());
        // Records a request; `ok` decides the answer from how many came to the path
        // (this one included), the idempotency key and the body.
        let record = |received: &Mutex<Vec<Received>>,
                      path: String,
                      headers: &HeaderMap,
                      body: Bytes,
                      ok: &dyn Fn(usize, &str, &[u8]) -> bool| {
            let header = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let mut all = received.lock().unwrap();
            let seen = all.iter().filter(|r| r.path == path).count() + 1;
            let key = header("idempotency-key");
            let ok = ok(seen, key.as_deref().unwrap_or_default(), &body);
            all.push(Received {
                key,
                signature: header("x-pantau-signature"),
                content_type: header("content-type"),
                body: body.to_vec(),
                at: Instant::now(),
                path,
                ok,
            });
            ok
        };
        let app = axum::Router::new()
            .route(
                "/hook/{name}",
                post(
                    move |State((received, failures, switch_down)): State<Shared>,
                          Path(name): Path<String>,
                          headers: HeaderMap,
                          body: Bytes| async move {
                        let fail = failures.get(name.as_str()).copied().unwrap_or(0);
                        let ok = |seen: usize, key: &str, body: &[u8]| {
                            let switched_off = name == "switch"
                                && key.starts_with("digest-")
                                && !String::from_utf8_lossy(body).contains(": 0 peringatan")
                                && switch_down.load(std::sync::atomic::Ordering::SeqCst);
                            name != "down" && seen > fail && !switched_off
                        };
                        if record(&received, format!("/hook/{name}"), &headers, body, &ok) {
                            StatusCode::OK
                        } else {
                            StatusCode::SERVICE_UNAVAILABLE
                        }
                    },
                ),
            )
            .route(
                "/{bot}/{method}",
                post(
                    move |State((received, _, _)): State<Shared>,
                          Path((bot, method)): Path<(String, String)>,
                          headers: HeaderMap,
                          body: Bytes| async move {
                        let known = method == "sendMessage" || method == "sendPhoto";
                        record(
                            &received,
                            format!("/{bot}/{method}"),
                            &headers,
                            body,
                            &|_, _, _| known,
                        );
                        if known {
                            (StatusCode::OK, r#"{"ok":true,"result":{}}"#)
                        } else {
                            (StatusCode::NOT_FOUND, r#"{"ok":false}"#)
                        }
                    },
                ),
            )
            .with_state(state);
        let (addr, runtime) = serve_on_loopback(app);
        Receivers {
            addr,
            received,
            switch_down,
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

/// The fields of a `multipart/form-data` request, by name.
fn form_fields(r: &Received) -> BTreeMap<String, Vec<u8>> {
    let content_type = r.content_type.as_deref().expect("a content type");
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .unwrap_or_else(|| panic!("no boundary in {content_type}"));
    let delimiter = format!("--{boundary}");
    let mut fields = BTreeMap::new();
    let body = &r.body[..];
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut at = find(body, delimiter.as_bytes(), 0).expect("a first part");
    while let Some(next) = find(body, format!("\r\n{delimiter}").as_bytes(), at + 1) {
        let part = &body[at + delimiter.len() + 2..next];
        let split = find(part, b"\r\n\r\n", 0).expect("part headers");
        let headers = String::from_utf8_lossy(&part[..split]);
        let name = headers
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a field name")
            .to_owned();
        fields.insert(name, part[split + 4..].to_vec());
        at = next + 2;
    }
    fields
}

/// Decodes a PNG and says its size.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    let reader = png::Decoder::new(bytes).read_info().expect("a PNG");
    let info = reader.info();
    (info.width, info.height)
}

/// Whether an alert carries the series of an evidence chart.
fn has_chart(alert: &Alert) -> bool {
    ["daily_payments", "peer_prices", "swipe_minutes"]
        .iter()
        .any(|k| alert.evidence.contains_key(*k))
}

/// A broker holding a simulated month's outlet registry and the alerts of its replay.
fn broker_with_a_small_month(dir: &std::path::Path) -> (Tansu, Vec<Alert>) {
    let broker = Tansu::start();
    let (history, alerts) = small_month_of_alerts(dir);
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
    (broker, alerts)
}

/// Serves an axum app on a free loopback port for as long as the runtime lives.
fn serve_on_loopback(app: axum::Router) -> (String, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let port = free_port();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });
    (format!("127.0.0.1:{port}"), runtime)
}

#[test]
fn notify_delivers_every_route_once_through_an_outage_a_dead_channel_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, alerts) = broker_with_a_small_month(tmp.path());

    let receivers = Receivers::start(BTreeMap::from([("flaky", 3)]));
    let base = format!("http://{}", receivers.addr);
    let routes_text = format!(
        r#"
dashboard_url = "http://grafana.example"
[digest]
enabled = false
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
        crate::support::wait_until(what, Duration::from_secs(180), done)
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
    // Telegram gets a photo for an alert with a chart, its text as the caption, or, when
    // the text is too long for a caption, the subject, and then the text as a message.
    let by_id: BTreeMap<&str, &Alert> = alerts.iter().map(|a| (a.alert_id.as_str(), a)).collect();
    let tg_photos = expected["tg"]
        .iter()
        .filter(|id| has_chart(by_id[id.as_str()]))
        .count();
    assert!(tg_photos > 0, "no alert with a chart goes to Telegram");
    let long_texts = || -> usize {
        receivers
            .on("/hook/ok")
            .iter()
            .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap())
            .filter(|b| {
                expected["tg"].contains(b["alert"]["alert_id"].as_str().unwrap())
                    && b["message"]["chart_png_base64"].is_string()
                    && b["message"]["text"].as_str().unwrap().chars().count() > 1024
            })
            .count()
    };
    wait_for("every delivery", &|| {
        successes("/hook/ok", 0).len() == expected["ok"].len()
            && successes("/hook/flaky", 3).len() == expected["flaky"].len()
            && receivers.on("/bot123:abc/sendPhoto").len() == tg_photos
            && receivers.on("/bot123:abc/sendMessage").len()
                == expected["tg"].len() - tg_photos + long_texts()
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
    // The webhook carries the chart's bytes exactly when the alert has its series.
    for r in receivers.on("/hook/ok") {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let alert = by_id[body["alert"]["alert_id"].as_str().unwrap()];
        let chart = body["message"]["chart_png_base64"].as_str();
        assert_eq!(chart.is_some(), has_chart(alert), "{}", alert.alert_id);
        if let Some(chart) = chart {
            use base64::Engine as _;
            let png = base64::engine::general_purpose::STANDARD
                .decode(chart)
                .unwrap();
            assert_eq!(png_size(&png), (640, 360));
            assert!(body["message"]["chart_caption"]
                .as_str()
                .unwrap()
                .starts_with("Grafik:"));
        }
    }
    for r in receivers.on("/bot123:abc/sendMessage") {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["chat_id"], "-10042");
        assert!(body["text"]
            .as_str()
            .unwrap()
            .contains("Dasbor: http://grafana.example/d/pantau-district?var-regency=3604"));
    }
    for r in receivers.on("/bot123:abc/sendPhoto") {
        let fields = form_fields(&r);
        assert_eq!(fields["chat_id"], b"-10042");
        assert_eq!(png_size(&fields["photo"]), (640, 360));
        let caption = String::from_utf8(fields["caption"].clone()).unwrap();
        assert!(
            caption.starts_with('[') && caption.chars().count() <= 1024,
            "{caption}"
        );
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
    // A card is named to the Tikor by its keyed reference only, in every body sent.
    let cards: Vec<&Alert> = alerts.iter().filter(|a| a.entity_type == "card").collect();
    assert!(!cards.is_empty(), "this history has no card alert to check");
    let all = receivers.received.lock().unwrap().clone();
    for r in &all {
        let body = String::from_utf8_lossy(&r.body);
        for card in &cards {
            assert!(
                !body.contains(&card.entity_id),
                "{} received the card id of {}",
                r.path,
                card.alert_id
            );
        }
    }
    let pseudonyms =
        pantau_core::pseudonym::Pseudonyms::new(crate::support::TEST_PSEUDONYM_KEY.as_bytes());
    assert!(
        cards.iter().any(|c| all.iter().any(
            |r| String::from_utf8_lossy(&r.body).contains(&pseudonyms.reference(&c.entity_id))
        )),
        "no card alert reached a webhook with its reference"
    );
}

/// A district's webhook and mail server behind TLS certificates of its own CA: pantau
/// trusts what the machine trusts (here `SSL_CERT_FILE`), and a certificate from any
/// other CA is refused and dead-lettered with the reason, never sent to.
#[test]
fn notify_reaches_https_webhooks_and_smtps_signed_by_the_districts_own_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, alerts) = broker_with_a_small_month(tmp.path());
    let district = Pki::ca(tmp.path(), "dinsos-ca");
    let (cert, key) = district.issue("tikor");
    let stranger = Pki::ca(tmp.path(), "stranger-ca");
    let (stranger_cert, stranger_key) = stranger.issue("elsewhere");

    let receivers = Receivers::start(BTreeMap::new());
    let http_port: u16 = receivers.addr.rsplit(':').next().unwrap().parse().unwrap();
    let webhook = Stunnel::start(tmp.path(), &cert, &key, http_port);
    let impostor = Stunnel::start(tmp.path(), &stranger_cert, &stranger_key, http_port);
    let smtp = SmtpSink::start();
    let smtps = Stunnel::start(tmp.path(), &cert, &key, smtp.port);

    let routes_text = format!(
        r#"
dashboard_url = "http://grafana.example"
[smtp]
host = "localhost"
port = {smtps}
from = "pantau@dinsos.example"
security = "tls"
[digest]
enabled = false
[channels.hook]
kind = "webhook"
url = "https://localhost:{webhook}/hook/ok"
[channels.impostor]
kind = "webhook"
url = "https://localhost:{impostor}/hook/impostor"
[channels.mail]
kind = "email"
to = ["tikor@serangkab.example"]
[[routes]]
regency = "3604"
channels = ["hook", "impostor", "mail"]
"#,
        smtps = smtps.port,
        webhook = webhook.port,
        impostor = impostor.port,
    );
    let routes_path = tmp.path().join("routes.toml");
    std::fs::write(&routes_path, &routes_text).unwrap();
    let routes = Routes::parse(&routes_text).unwrap();
    let routed: BTreeSet<String> = alerts
        .iter()
        .filter(|a| routes.channels_for(a).contains(&"hook"))
        .map(|a| a.alert_id.clone())
        .collect();
    assert!(!routed.is_empty(), "this history routes nothing to Serang");

    let notify = KillOnDrop(
        pantau()
            .args(["notify", "--brokers", &broker.brokers, "--routes"])
            .arg(&routes_path)
            .args(["--max-tries", "2", "--retry-after", "50ms"])
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .env("SSL_CERT_FILE", district.cert())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pantau notify starts"),
    );
    let dead = || -> Vec<FailedNotification> {
        read_topic(&broker.brokers, TOPIC_NOTIFY_DLQ)
            .iter()
            .map(|p| serde_json::from_slice(p).unwrap())
            .collect()
    };
    crate::support::wait_until("every delivery", Duration::from_secs(180), &|| {
        receivers.on("/hook/ok").len() >= routed.len()
            && smtp.mails().len() >= routed.len()
            && dead().len() >= routed.len()
    });
    drop(notify);

    let keys: BTreeSet<String> = receivers
        .on("/hook/ok")
        .iter()
        .map(|r| r.key.clone().unwrap())
        .collect();
    assert_eq!(keys, routed, "the webhook behind the district's CA");
    assert_eq!(smtp.mails().len(), routed.len(), "mails over SMTPS");
    assert!(
        receivers.on("/hook/impostor").is_empty(),
        "a server with another CA's certificate was sent an alert"
    );
    let dead = dead();
    assert_eq!(
        dead.iter()
            .map(|d| d.alert_id.clone())
            .collect::<BTreeSet<_>>(),
        routed
    );
    assert!(
        dead.iter()
            .all(|d| d.channel == "impostor" && d.error.to_lowercase().contains("certificate")),
        "{:?}",
        dead.first().map(|d| &d.error)
    );
}

#[test]
fn a_digest_under_way_at_sigterm_is_neither_lost_nor_repeated() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, alerts) = broker_with_a_small_month(tmp.path());
    let serang = alerts
        .iter()
        .filter(|a| a.regency_code == "3604" && !a.shadow)
        .count();
    assert!(serang > 0, "this history has no alert in Serang");

    // The Tikor's receiver takes alerts, and digests of none (one may fall due before the
    // alerts are read), but refuses digests of alerts until it is switched on.
    let receivers = Receivers::start(BTreeMap::new());
    receivers
        .switch_down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let routes_path = tmp.path().join("routes.toml");
    std::fs::write(
        &routes_path,
        format!(
            r#"
dashboard_url = "http://grafana.example"
[digest]
at = "00:00"
every = "3s"
[channels.tikor]
kind = "webhook"
url = "http://{}/hook/switch"
[[routes]]
regency = "3604"
channels = ["tikor"]
"#,
            receivers.addr
        ),
    )
    .unwrap();
    let start = || {
        pantau()
            .args(["notify", "--brokers", &broker.brokers, "--routes"])
            .arg(&routes_path)
            .args(["--max-tries", "1000", "--retry-after", "200ms"])
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pantau notify starts")
    };
    let digests = || -> Vec<Received> {
        receivers
            .on("/hook/switch")
            .into_iter()
            .filter(|r| r.key.as_deref().unwrap_or_default().starts_with("digest-"))
            .collect()
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        crate::support::wait_until(what, Duration::from_secs(120), done)
    };

    // Stopped while the first digest of alerts is being retried.
    let mut first = start();
    let refused = || -> Option<String> { digests().into_iter().find(|r| !r.ok)?.key };
    wait_for("a digest to be refused", &|| refused().is_some());
    let interrupted = refused().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status();
    assert!(first.wait().unwrap().success(), "notify exits on SIGTERM");
    // Down for longer than a digest period.
    std::thread::sleep(Duration::from_secs(4));
    receivers
        .switch_down
        .store(false, std::sync::atomic::Ordering::SeqCst);

    // "[RINGKASAN HARIAN] Kabupaten Serang: 7 peringatan baru, 24 November 2026"
    let counted = |r: &Received| -> usize {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let subject = body["message"]["subject"].as_str().unwrap().to_owned();
        let after = subject.split(": ").nth(1).unwrap();
        after.split(' ').next().unwrap().parse().unwrap()
    };
    let delivered = || -> Vec<Received> { digests().into_iter().filter(|r| r.ok).collect() };
    let mut second = start();
    wait_for("the interrupted digest and two more", &|| {
        let delivered = delivered();
        delivered
            .iter()
            .any(|r| r.key.as_ref() == Some(&interrupted))
            && delivered.len() >= 3
    });
    let _ = second.kill();
    let _ = second.wait();

    let delivered = delivered();
    let keys: BTreeSet<&str> = delivered
        .iter()
        .map(|r| r.key.as_deref().unwrap())
        .collect();
    assert_eq!(keys.len(), delivered.len(), "a digest delivered twice");
    assert_eq!(
        delivered.iter().map(counted).sum::<usize>(),
        serang,
        "every alert of Serang in exactly one digest that reached the Tikor"
    );
    let interrupted = delivered
        .iter()
        .find(|r| r.key.as_ref() == Some(&interrupted))
        .unwrap();
    assert!(
        counted(interrupted) > 0,
        "the interrupted digest lost its alerts"
    );
}

/// Serves pantau's realization figures for Serang, as `pantau run` would, to be scraped.
fn realization_exporter() -> (String, tokio::runtime::Runtime) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            "pantau_realization_ratio{regency=\"3604\",period=\"2023-01\"} 0.5\n\
             pantau_kpm_credited{regency=\"3604\",period=\"2023-01\"} 4\n\
             pantau_kpm_spending{regency=\"3604\",period=\"2023-01\"} 2\n"
        }),
    );
    serve_on_loopback(app)
}

#[test]
fn notify_mails_charts_folds_what_is_past_a_limit_and_sends_district_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let (broker, alerts) = broker_with_a_small_month(tmp.path());
    let serang: BTreeMap<&str, &Alert> = alerts
        .iter()
        .filter(|a| a.regency_code == "3604" && !a.shadow)
        .map(|a| (a.alert_id.as_str(), a))
        .collect();
    let limit = 3;
    assert!(
        serang.len() > limit,
        "Serang needs more alerts than the limit"
    );
    assert!(
        serang.values().any(|a| has_chart(a)),
        "no alert with a chart"
    );

    let smtp = SmtpSink::start();
    let (exporter, _exporter_runtime) = realization_exporter();
    let prometheus = Prometheus::start(&[("pantau", &exporter)]);
    // Two mailboxes for Serang: one takes everything, one at most 3 in each 6 s.
    let routes_path = tmp.path().join("routes.toml");
    std::fs::write(
        &routes_path,
        format!(
            r#"
dashboard_url = "http://grafana.example"
[smtp]
host = "127.0.0.1"
port = {port}
from = "pantau@dinsos.example"
security = "none"
[limits]
per = "6s"
[digest]
at = "00:00"
every = "4s"
prometheus_url = "http://{prometheus}"
[channels.all]
kind = "email"
to = ["tikor@serangkab.example"]
[channels.capped]
kind = "email"
to = ["kepala@serangkab.example"]
max_messages = {limit}
[[routes]]
regency = "3604"
channels = ["all", "capped"]
"#,
            port = smtp.port,
            prometheus = prometheus.addr,
        ),
    )
    .unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut notify = pantau()
        .args(["notify", "--brokers", &broker.brokers, "--routes"])
        .arg(&routes_path)
        .args(["--metrics-addr", &metrics_addr])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pantau notify starts");

    let to = |mail: &serde_json::Value, who: &str| mail["to"][0] == who;
    let subject = |mail: &serde_json::Value| mail["subject"].as_str().unwrap().to_owned();
    let digests_of = |who: &str| -> Vec<serde_json::Value> {
        smtp.mails()
            .into_iter()
            .filter(|m| to(m, who) && subject(m).starts_with("[RINGKASAN HARIAN]"))
            .collect()
    };
    // "[RINGKASAN HARIAN] Kabupaten Serang: 7 peringatan baru, 24 November 2026"
    let digested = |who: &str| -> usize {
        digests_of(who)
            .iter()
            .map(|m| {
                let s = subject(m);
                let after = s.split(": ").nth(1).unwrap();
                after.split(' ').next().unwrap().parse::<usize>().unwrap()
            })
            .sum()
    };
    let realization = "50,0% KPM sudah berbelanja (2 dari 4 KPM penerima bantuan periode 2023-01)";
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mails = smtp.mails();
        let alert_mails = mails
            .iter()
            .filter(|m| to(m, "tikor@serangkab.example") && !subject(m).starts_with("[RINGKASAN"))
            .count();
        let folded = mails
            .iter()
            .any(|m| to(m, "kepala@serangkab.example") && subject(m).starts_with("[RINGKASAN] "));
        let figures = digests_of("tikor@serangkab.example")
            .iter()
            .any(|m| m["text"].as_str().unwrap().contains(realization));
        if alert_mails == serang.len()
            && folded
            && digested("tikor@serangkab.example") == serang.len()
            && digested("kepala@serangkab.example") == serang.len()
            && figures
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: {alert_mails} alert mails, folded {folded}, digested {}, realization {figures}; subjects {:?}",
            digested("tikor@serangkab.example"),
            mails.iter().map(subject).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A mail reaches the sink a moment before the notifier counts it: read the counts
    // once they have stopped moving.
    let notifications = || -> String {
        let metrics = http_get(&metrics_addr, "/metrics").expect("/metrics");
        metrics
            .lines()
            .filter(|l| l.starts_with("pantau_notifications_total{"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut metrics = notifications();
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(500));
        let again = notifications();
        if again == metrics {
            break;
        }
        metrics = again;
    }
    let _ = notify.kill();
    let _ = notify.wait();
    let mails = smtp.mails();

    // Every alert once in the uncapped mailbox, each with its chart embedded when its
    // evidence has the series, plain text and HTML alternatives.
    let mut seen = BTreeSet::new();
    for m in mails
        .iter()
        .filter(|m| to(m, "tikor@serangkab.example") && !subject(m).starts_with("[RINGKASAN"))
    {
        let id = m["message_id"].as_str().unwrap().trim_matches(['<', '>']);
        let id = id.strip_suffix("@pantau").unwrap();
        assert!(seen.insert(id.to_owned()), "{id} mailed twice");
        let alert = serang[id];
        assert_eq!(m["from"], "pantau@dinsos.example");
        assert!(m["text"].as_str().unwrap().contains("Tindak lanjut:"));
        assert!(m["html"].as_str().unwrap().contains("Tindak lanjut"));
        let images = m["images"].as_array().unwrap();
        if has_chart(alert) {
            use base64::Engine as _;
            assert_eq!(images.len(), 1, "{id}");
            assert_eq!(m["content_type"], "multipart/related");
            assert_eq!(m["content_ids"][0], "<bukti>");
            assert!(m["html"].as_str().unwrap().contains("src=\"cid:bukti\""));
            let png = base64::engine::general_purpose::STANDARD
                .decode(images[0].as_str().unwrap())
                .unwrap();
            assert_eq!(png_size(&png), (640, 360));
        } else {
            assert!(images.is_empty(), "{id}");
            assert_eq!(m["content_type"], "multipart/alternative");
        }
    }
    assert_eq!(seen.len(), serang.len());

    // The capped mailbox: three alerts on their own, the rest in one folded message
    // (every alert was on the topic before the notifier started, so all arrive within
    // the first period).
    let capped: Vec<&serde_json::Value> = mails
        .iter()
        .filter(|m| {
            to(m, "kepala@serangkab.example") && !subject(m).starts_with("[RINGKASAN HARIAN]")
        })
        .collect();
    let (folded, single): (Vec<_>, Vec<_>) = capped
        .iter()
        .partition(|m| subject(m).starts_with("[RINGKASAN] "));
    assert_eq!(single.len(), limit);
    assert_eq!(folded.len(), 1);
    let rest = serang.len() - limit;
    assert_eq!(
        subject(folded[0]),
        format!("[RINGKASAN] {rest} peringatan lain")
    );
    let text = folded[0]["text"].as_str().unwrap();
    assert!(
        text.contains(&format!(
            "sudah menerima {limit} pesan dalam 6 detik terakhir"
        )),
        "{text}"
    );
    assert_eq!(
        text.matches("http://grafana.example/d/pantau-district")
            .count(),
        rest
    );
    let value = |channel: &str, outcome: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("pantau_notifications_total{")
                    && l.contains(&format!("channel=\"{channel}\""))
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(value("capped", "sent"), limit as f64, "{metrics}");
    assert_eq!(value("capped", "folded"), rest as f64, "{metrics}");
    assert_eq!(value("all", "sent"), serang.len() as f64, "{metrics}");
    assert!(value("all", "digest_sent") >= 1.0, "{metrics}");

    // The daily digests counted each alert once, by category, with the outlets ranked.
    let digests = digests_of("tikor@serangkab.example");
    let full = digests
        .iter()
        .find(|m| {
            m["text"]
                .as_str()
                .unwrap()
                .contains(&format!("Peringatan baru: {}", serang.len()))
        })
        .or_else(|| {
            digests
                .iter()
                .find(|m| !m["text"].as_str().unwrap().contains("Peringatan baru: 0"))
        })
        .expect("a digest with alerts");
    let text = full["text"].as_str().unwrap();
    for expected in [
        "Kabupaten Serang",
        "Periode: ",
        // The mail's lines end in CRLF.
        "E-Warong dengan peringatan terbanyak:\r\n1. ",
        ", Kecamatan ",
        "Dasbor: http://grafana.example/d/pantau-district?var-regency=3604&from=",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}
