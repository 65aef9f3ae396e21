//! pantau against a secured deployment, as a bank runs one: Kafka over TLS with
//! SASL/SCRAM-SHA-512 (tansu with `--authentication`, behind stunnel with a CA made
//! here), PostgreSQL over TLS checked with `sslmode=verify-full`, secrets only in
//! environment variables, everything set from one `--config` file.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use pantau_core::model::Alert;

use crate::support::{
    comparable, free_port, pantau, read_topic_secured, replay, run_ok, wait_until, Pki, Postgres,
    Stunnel, Tansu,
};

const USER: &str = "pantau-district";
const PASSWORD: &str = "Sc4m-pr00f-kafka-pw";
/// The variable the config file names for the Kafka password (`env:`).
const PASSWORD_VAR: &str = "PANTAU_TEST_BANK_KAFKA_PASSWORD";

/// A SCRAM broker behind TLS: the CA, the broker (kept alive by the caller) and its
/// bootstrap address, which names `localhost` as the certificate does.
struct SecuredCluster {
    ca: Pki,
    _tls: Stunnel,
    _broker: Tansu,
    brokers: String,
}

impl SecuredCluster {
    fn start(dir: &Path) -> SecuredCluster {
        let ca = Pki::ca(dir, "bank-ca");
        let (cert, key) = ca.issue("broker");
        let plain = free_port();
        let tls = Stunnel::start(dir, &cert, &key, plain);
        let broker_dir = dir.join("broker");
        std::fs::create_dir(&broker_dir).unwrap();
        let advertised = format!("tcp://localhost:{}", tls.port);
        let broker = Tansu::start_secured(plain, &advertised, &broker_dir, USER, PASSWORD);
        SecuredCluster {
            ca,
            brokers: format!("localhost:{}", tls.port),
            _tls: tls,
            _broker: broker,
        }
    }

    /// A librdkafka properties file for this cluster trusting `ca`, without credentials.
    fn properties_file(&self, dir: &Path, ca: &Path) -> std::path::PathBuf {
        let path = dir.join(format!(
            "{}.properties",
            ca.file_stem().unwrap().to_string_lossy()
        ));
        std::fs::write(
            &path,
            format!(
                "# the bank's cluster\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nssl.ca.location={}\n# stunnel listens on IPv4 loopback only\nbroker.address.family=v4\n",
                ca.display()
            ),
        )
        .unwrap();
        path
    }

    fn reader_properties(&self) -> Vec<(&'static str, String)> {
        vec![
            ("security.protocol", "SASL_SSL".into()),
            ("sasl.mechanism", "SCRAM-SHA-512".into()),
            ("sasl.username", USER.into()),
            ("sasl.password", PASSWORD.into()),
            ("ssl.ca.location", self.ca.cert().display().to_string()),
            ("broker.address.family", "v4".into()),
        ]
    }

    fn read(&self, topic: &str) -> Vec<Vec<u8>> {
        let properties = self.reader_properties();
        let borrowed: Vec<(&str, &str)> =
            properties.iter().map(|(k, v)| (*k, v.as_str())).collect();
        read_topic_secured(&self.brokers, topic, &borrowed).0
    }
}

fn assert_no_secret(output: &Output, secrets: &[&str], what: &str) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for secret in secrets {
        assert!(!text.contains(secret), "{what} printed a secret:\n{text}");
    }
}

/// A PostgreSQL server with TLS on (a certificate for localhost signed by `ca`), on
/// which the `pantau` role may only connect over TLS.
fn postgres_over_tls(ca: &Pki) -> Postgres {
    let (cert, key) = ca.issue("db");
    let pg = Postgres::start_with(|conf| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::copy(&cert, conf.join("db.pem")).unwrap();
        std::fs::copy(&key, conf.join("db.key")).unwrap();
        std::fs::set_permissions(conf.join("db.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(
            conf.join("pg_hba.conf"),
            "local all all trust\nhostnossl all pantau 127.0.0.1/32 reject\nhost all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", conf.join("db.pem").display()),
            format!("ssl_key_file={}", conf.join("db.key").display()),
            format!("hba_file={}", conf.join("pg_hba.conf").display()),
        ]
    });
    pg.query("postgres", "postgres", "CREATE ROLE pantau LOGIN");
    pg.query(
        "postgres",
        "postgres",
        "CREATE DATABASE pantau OWNER pantau",
    );
    pg
}

/// The whole district path on a bank-like deployment: `simulate` produces through
/// `--kafka-config` with the password from `PANTAU_KAFKA_SASL_PASSWORD`; `run` and
/// `store run` take everything from one config file whose [kafka] table reads the
/// password from `env:`. The alerts are those of a replay, the store holds them all
/// (over `sslmode=verify-full`, on a server that refuses `pantau` without TLS), and no
/// password appears in any output.
#[test]
fn a_bank_deployment_over_sasl_ssl_and_verify_full_raises_and_stores_the_replay_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = SecuredCluster::start(tmp.path());
    let properties = cluster.properties_file(tmp.path(), &cluster.ca.cert());
    let history = tmp.path().join("history");
    let produced = run_ok(
        pantau()
            .args([
                "simulate", "--months", "1", "--scale", "0.3", "--seed", "11",
            ])
            .arg("--out")
            .arg(&history)
            .args(["--brokers", &cluster.brokers, "--partitions", "2"])
            .arg("--kafka-config")
            .arg(&properties)
            .env("PANTAU_KAFKA_SASL_USERNAME", USER)
            .env("PANTAU_KAFKA_SASL_PASSWORD", PASSWORD),
    );
    assert_no_secret(&produced, &[PASSWORD], "simulate");
    let (expected, _) = replay(&history, &tmp.path().join("replay"), &[]);
    assert!(!expected.is_empty());

    let pg = postgres_over_tls(&cluster.ca);
    let config = tmp.path().join("pantau.toml");
    let postgres_url = |ca: &Path| {
        format!(
            "postgres://pantau@localhost:{}/pantau?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
            pg.port,
            ca.display()
        )
    };
    std::fs::write(
        &config,
        format!(
            r#"# One district's deployment.
brokers = "{brokers}"
kafka-config = "{properties}"

[kafka]
sasl.username = "{USER}"
sasl.password = "env:{PASSWORD_VAR}"

[run]
group = "pantau-secured"
exit-when-idle = true
idle-timeout = "5s"
state-dir = "{state}"
metrics-addr = "127.0.0.1:{run_port}"

[store]
postgres = "{postgres}"
linger = "200ms"
metrics-addr = "127.0.0.1:{store_port}"
allow-unkeyed-references = false
"#,
            brokers = cluster.brokers,
            properties = properties.display(),
            state = tmp.path().join("state").display(),
            run_port = free_port(),
            postgres = postgres_url(&cluster.ca.cert()),
            store_port = free_port(),
        ),
    )
    .unwrap();
    let checked = run_ok(
        pantau()
            .args(["config", "check"])
            .arg(&config)
            .env(PASSWORD_VAR, PASSWORD),
    );
    let checked = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.contains("no problems"), "{checked}");
    assert!(checked.contains("sasl_scram"), "{checked}");

    let ran = run_ok(
        pantau()
            .args(["run", "--config"])
            .arg(&config)
            .env(PASSWORD_VAR, PASSWORD)
            .env("RUST_LOG", "info"),
    );
    assert_no_secret(&ran, &[PASSWORD], "run");
    let alerts: Vec<Alert> = cluster
        .read("pantau.alerts")
        .iter()
        .map(|b| serde_json::from_slice(b).expect("an alert"))
        .collect();
    assert_eq!(
        comparable(&alerts),
        comparable(&expected),
        "a run over SASL_SSL disagrees with the replay"
    );

    let log = tmp.path().join("store.log");
    let mut store = pantau()
        .args(["store", "run", "--config"])
        .arg(&config)
        .env(PASSWORD_VAR, PASSWORD)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("store run starts");
    let ids: BTreeSet<&str> = alerts.iter().map(|a| a.alert_id.as_str()).collect();
    let stored = || -> usize {
        pg.try_query("postgres", "pantau", "SELECT count(*) FROM alerts")
            .ok()
            .and_then(|rows| rows[0][0].as_deref()?.parse().ok())
            .unwrap_or(0)
    };
    wait_until(
        "the store holds every alert",
        Duration::from_secs(120),
        &|| stored() >= ids.len(),
    );
    assert_eq!(stored(), ids.len());
    let _ = store.kill();
    let _ = store.wait();
    let store_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !store_log.contains(PASSWORD),
        "store run logged the password (at debug):\n{store_log}"
    );

    // The same store with a CA that did not sign the server's certificate.
    let other = Pki::ca(tmp.path(), "other-ca");
    let refused = pantau()
        .args(["store", "load", "--postgres", &postgres_url(&other.cert())])
        .arg("--alerts")
        .arg(tmp.path().join("replay/alerts.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a wrong CA was accepted");
    assert!(
        stderr.contains("certificate verify failed"),
        "the refusal does not say why: {stderr}"
    );
}

/// A certificate that does not verify, or a password the broker refuses, ends the
/// command at start with librdkafka's reason and exit status 1, instead of waiting for a
/// broker that is merely away (which ends with 75, EX_TEMPFAIL, after 30 s); `--help`
/// shows no secret held in the environment.
#[test]
fn a_wrong_ca_or_a_refused_password_stops_pantau_at_start_naming_why_and_an_absent_broker_asks_for_a_restart(
) {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = SecuredCluster::start(tmp.path());
    let other = Pki::ca(tmp.path(), "other-ca");
    let wrong_ca = cluster.properties_file(tmp.path(), &other.cert());
    let right_ca = cluster.properties_file(tmp.path(), &cluster.ca.cert());
    let wrong_password = "not-the-Sc4m-pw";
    let cases = [
        (&wrong_ca, PASSWORD, "certificate verify failed"),
        (
            &right_ca,
            wrong_password,
            "SASL SCRAM authentication failed",
        ),
    ];
    for (properties, password, reason) in cases {
        let started = Instant::now();
        let mut child = pantau()
            .args(["run", "--brokers", &cluster.brokers, "--metrics-addr"])
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--state-dir")
            .arg(tmp.path().join("state"))
            .arg("--kafka-config")
            .arg(properties)
            .args(["-X", &format!("sasl.username={USER}")])
            .env("PANTAU_KAFKA_SASL_PASSWORD", password)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Not a bound on speed: a hang is what this guards against.
        let deadline = started + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "pantau run hung on {reason}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        // 1, not 75: restarting will not mend a refusal.
        assert_eq!(output.status.code(), Some(1), "{reason}: {stderr}");
        assert!(stderr.contains("refused pantau"), "{stderr}");
        assert!(stderr.contains(reason), "{reason} not named: {stderr}");
        assert_no_secret(&output, &[PASSWORD, wrong_password], "run");
    }

    // A broker that is merely away may come back: the status asks for a restart.
    let output = pantau()
        .args(["run", "--brokers", &format!("127.0.0.1:{}", free_port())])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("cannot reach the brokers"), "{stderr}");

    let help = pantau()
        .args(["store", "run", "--help"])
        .env(
            "PANTAU_POSTGRES",
            format!("postgres://pantau:{PASSWORD}@db/pantau"),
        )
        .env("PANTAU_KAFKA_SASL_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(help.status.success());
    assert_no_secret(&help, &[PASSWORD], "--help");
}
