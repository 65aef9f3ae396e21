//! The monitoring stack: docker-compose.yml checked against every file, service and port
//! it names (Docker cannot run here); the Prometheus configuration through promtool; and
//! every query of every dashboard, PromQL against a real Prometheus scraping a live
//! pantau, SQL against a real PostgreSQL filled by `pantau store`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pantau_core::model::Alert;
use serde_json::Value;
use sha2::Digest;

use crate::support::{
    free_port, http_get, pantau, read_topic, run_ok, small_month_of_alerts, workspace_root,
    Postgres, Prometheus, Tansu,
};

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of `--flag=value` or `--flag value` in a command.
fn flag(command: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    command.iter().enumerate().find_map(|(i, arg)| {
        arg.strip_prefix(&prefix)
            .map(str::to_owned)
            .or_else(|| (arg == name).then(|| command.get(i + 1).cloned()).flatten())
    })
}

/// The ports a service listens on inside the compose network.
fn ports(service: &Value) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for p in strings(&service["expose"]) {
        out.insert(p.parse().expect("a port in expose"));
    }
    for p in strings(&service["ports"]) {
        let container = p.rsplit(':').next().expect("host:container");
        out.insert(container.parse().expect("a container port"));
    }
    out
}

fn host_port(target: &str) -> (String, u16) {
    let target = target
        .trim_start_matches("http://")
        .trim_start_matches("postgres://");
    let target = target.rsplit('@').next().unwrap_or(target);
    let target = target.split('/').next().unwrap_or(target);
    let (host, port) = target.rsplit_once(':').expect("host:port");
    (host.to_owned(), port.parse().expect("a port"))
}

#[test]
fn docker_compose_names_only_files_services_and_ports_that_exist() {
    let root = workspace_root();
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_object().expect("services");
    for needed in [
        "kafka",
        "simulator",
        "pantau",
        "pantau-store",
        "postgres",
        "prometheus",
        "grafana",
    ] {
        assert!(services.contains_key(needed), "no {needed} service");
    }
    let volumes = compose["volumes"].as_object().cloned().unwrap_or_default();
    let built_images: BTreeSet<&str> = services
        .values()
        .filter(|s| !s["build"].is_null())
        .filter_map(|s| s["image"].as_str())
        .collect();
    let mut mounts: BTreeMap<(String, String), String> = BTreeMap::new();
    for (name, service) in services {
        if let Some(context) = service["build"].as_str() {
            assert!(
                root.join(context).join("Dockerfile").is_file(),
                "{name}: no Dockerfile in {context}"
            );
        }
        let image = service["image"].as_str().unwrap_or_default();
        if image.starts_with("pantau") {
            assert!(
                built_images.contains(image),
                "{name}: nothing builds {image}"
            );
        }
        for dependency in service["depends_on"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_else(|| strings(&service["depends_on"]))
        {
            assert!(
                services.contains_key(&dependency),
                "{name} depends on unknown {dependency}"
            );
        }
        for volume in strings(&service["volumes"]) {
            let mut parts = volume.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().expect("a target"));
            if source.starts_with("./") {
                assert!(
                    root.join(source).exists(),
                    "{name} mounts {source}, which does not exist"
                );
            } else {
                assert!(
                    volumes.contains_key(source),
                    "{name} mounts volume {source}, not declared"
                );
            }
            mounts.insert((name.clone(), target.to_owned()), source.to_owned());
        }
        // Every flag of a pantau command must be one the binary takes.
        if image.starts_with("pantau") {
            let command = strings(&service["command"]);
            let subcommand: Vec<&str> = command
                .iter()
                .take_while(|a| !a.starts_with("--"))
                .map(String::as_str)
                .collect();
            let help = run_ok(pantau().args(&subcommand).arg("--help"));
            let help = String::from_utf8_lossy(&help.stdout);
            for arg in command.iter().filter(|a| a.starts_with("--")) {
                let name = arg.split('=').next().unwrap();
                assert!(
                    help.contains(name),
                    "{name}: `pantau {}` has no {name}",
                    subcommand.join(" ")
                );
            }
        }
    }
    for copied in std::fs::read_to_string(root.join("Dockerfile"))
        .expect("Dockerfile")
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = copied.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                root.join(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
        }
    }

    // Prometheus scrapes the services on the ports they listen on.
    let prometheus_config = &mounts[&("prometheus".to_owned(), "/etc/prometheus".to_owned())];
    let scrape = yaml(&format!("{prometheus_config}/prometheus.yml"));
    let command_of = |s: &str| strings(&services[s]["command"]);
    assert_eq!(
        flag(&command_of("prometheus"), "--config.file").as_deref(),
        Some("/etc/prometheus/prometheus.yml")
    );
    let mut scraped = BTreeSet::new();
    for job in scrape["scrape_configs"].as_array().expect("scrape_configs") {
        for target in strings(&job["static_configs"][0]["targets"]) {
            let (host, port) = host_port(&target);
            let service = services
                .get(&host)
                .unwrap_or_else(|| panic!("Prometheus scrapes {host}, not a service"));
            assert!(
                ports(service).contains(&port),
                "{host} does not listen on {port}"
            );
            let listen = flag(&command_of(&host), "--metrics-addr").expect("--metrics-addr");
            assert_eq!(
                listen,
                format!("0.0.0.0:{port}"),
                "{host} serves /metrics elsewhere"
            );
            scraped.insert(host);
        }
    }
    assert_eq!(
        scraped,
        BTreeSet::from(["pantau".to_owned(), "pantau-store".to_owned()])
    );

    // Grafana's data sources are the services, with the store's read-only role.
    let provisioning = &mounts[&("grafana".to_owned(), "/etc/grafana/provisioning".to_owned())];
    let datasources = yaml(&format!("{provisioning}/datasources/pantau.yml"));
    let mut uids = BTreeSet::new();
    for source in datasources["datasources"].as_array().expect("datasources") {
        let (host, port) = host_port(source["url"].as_str().expect("url"));
        let service = services
            .get(&host)
            .unwrap_or_else(|| panic!("data source on {host}, not a service"));
        assert!(
            ports(service).contains(&port),
            "{host} does not listen on {port}"
        );
        if source["type"] == "grafana-postgresql-datasource" {
            let env = &service["environment"];
            assert_eq!(source["jsonData"]["database"], env["POSTGRES_DB"]);
            let grants = std::fs::read_to_string(root.join("deploy/postgres/grafana.sql")).unwrap();
            let user = source["user"].as_str().unwrap();
            let password = source["secureJsonData"]["password"].as_str().unwrap();
            assert!(
                grants.contains(&format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'")),
                "grafana.sql does not create the data source's role"
            );
            assert!(
                grants.contains(&format!(
                    "FOR ROLE {}",
                    env["POSTGRES_USER"].as_str().unwrap()
                )),
                "grafana.sql does not grant on the tables the store's role creates"
            );
            let writer = flag(&command_of("pantau-store"), "--postgres").expect("--postgres");
            assert_eq!(host_port(&writer), (host.clone(), port));
        }
        uids.insert(source["uid"].as_str().expect("uid").to_owned());
    }
    let providers = yaml(&format!("{provisioning}/dashboards/pantau.yml"));
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    assert_eq!(
        mounts
            .get(&("grafana".to_owned(), path.to_owned()))
            .map(String::as_str),
        Some("./dashboards"),
        "Grafana reads dashboards from {path}, where ./dashboards is not mounted"
    );
    for (file, board) in dashboards() {
        for uid in used_datasources(&board) {
            assert!(
                uids.contains(&uid),
                "{file} uses data source {uid}, not provisioned"
            );
        }
    }
}

#[test]
fn promtool_accepts_the_prometheus_config_and_its_alerting_rules_behave() {
    let dir = workspace_root().join("deploy/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool (apt-get install prometheus; .ci/run does)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = workspace_root().join("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("dashboards/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let board =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            (name, board)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 3, "three dashboards");
    out
}

fn panels(board: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in board["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

fn used_datasources(board: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let targets = panels(board)
        .into_iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default());
    let variables = board["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for item in targets.chain(variables) {
        if let Some(uid) = item["datasource"]["uid"].as_str() {
            out.insert(uid.to_owned());
        }
    }
    out
}

/// Replaces Grafana's variables, longest name first so `$province_code` is not read as
/// `$province`.
fn substitute(text: &str, variables: &BTreeMap<&str, String>) -> String {
    let mut names: Vec<&&str> = variables.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = text.to_owned();
    for name in names {
        out = out.replace(&format!("${name}"), &variables[*name]);
    }
    out
}

/// Expands the macros of Grafana's PostgreSQL data source that the dashboards use, as
/// Grafana documents them, over the range `from`..`to` (RFC 3339).
fn expand_sql_macros(sql: &str, from: &str, to: &str) -> String {
    let mut out = sql.to_owned();
    while let Some(at) = out.find("$__") {
        let open = out[at..].find('(').expect("a macro's arguments") + at;
        let close = out[open..].find(')').expect("a closing parenthesis") + open;
        let name = &out[at + 3..open];
        let args: Vec<String> = out[open + 1..close]
            .split(',')
            .map(|a| a.trim().trim_matches('\'').to_owned())
            .collect();
        let expansion = match name {
            "timeFilter" => format!("{} BETWEEN '{from}' AND '{to}'", args[0]),
            "timeGroupAlias" => {
                let seconds = match args[1].as_str() {
                    "1h" => 3600,
                    "1d" => 86_400,
                    other => panic!("interval {other} not expanded by this test"),
                };
                format!(
                    "floor(extract(epoch from {})/{seconds})*{seconds} AS \"time\"",
                    args[0]
                )
            }
            other => panic!("macro $__{other} not expanded by this test"),
        };
        out.replace_range(at..=close, &expansion);
    }
    out
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Runs dashboard queries, collecting every failure so one run shows them all.
struct Checks<'a> {
    pg: &'a Postgres,
    prometheus: &'a Prometheus,
    from: String,
    to: String,
    failures: Vec<String>,
    checked: usize,
}

impl Checks<'_> {
    fn sql(
        &mut self,
        what: String,
        sql: &str,
        variables: &BTreeMap<&str, String>,
    ) -> Vec<Vec<Option<String>>> {
        let sql = expand_sql_macros(&substitute(sql, variables), &self.from, &self.to);
        self.checked += 1;
        match self.pg.try_query("grafana", "pantau", &sql) {
            Ok(rows) if !rows.is_empty() => return rows,
            Ok(_) => self.failures.push(format!("{what}: no rows\n{sql}")),
            Err(e) => self.failures.push(format!("{what}: {e:?}\n{sql}")),
        }
        Vec::new()
    }

    fn promql(&mut self, what: String, expr: &str, range: Option<(f64, f64)>) {
        self.checked += 1;
        if self.prometheus.query(expr, range).is_empty() {
            self.failures.push(format!("{what}: no data\n{expr}"));
        }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_rules(to: &Path) {
    let from = workspace_root().join("rules");
    std::fs::create_dir_all(to.join("views")).unwrap();
    for sub in ["", "views"] {
        for entry in std::fs::read_dir(from.join(sub)).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "sql") {
                std::fs::copy(&path, to.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// A shadow copy of a shipped rule under another id: shadow alerts from the start.
fn shadow_copy(rules: &Path, id: &str, as_id: &str) {
    let text = std::fs::read_to_string(rules.join(format!("{id}.sql"))).unwrap();
    let text = text.replacen(
        &format!("-- id: {id}"),
        &format!("-- id: {as_id}\n-- mode: shadow"),
        1,
    );
    std::fs::write(rules.join(format!("{as_id}.sql")), text).unwrap();
}

/// A rule that always runs past its 50 ms budget, added while pantau runs: a reload
/// applied and a rule failure counted.
const SLOW_RULE: &str = "-- id: slow_probe
-- title: Uji anggaran waktu
-- category: price_markup
-- severity: low
-- window: local_day
-- entity: outlet
-- mode: shadow
-- budget: 50ms
-- summary: {entity_id}
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100000000)
SELECT t.outlet_id AS entity_id, t.regency_code, CAST(count(*) AS DOUBLE) AS score
FROM transactions t CROSS JOIN r
GROUP BY t.outlet_id, t.regency_code
";

#[test]
fn every_dashboard_query_answers_from_a_live_pipeline_and_the_alert_store() {
    let started = epoch_now();
    let broker = Tansu::start();
    let pg = Postgres::with_pantau_roles();
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    run_ok(
        pantau()
            .args(
                "simulate --months 2 --scale 0.3 --malformed 8 --seed 11 --partitions 2".split(' '),
            )
            .args(["--brokers", &broker.brokers])
            .arg("--out")
            .arg(&history),
    );
    let rules = tmp.path().join("rules");
    copy_rules(&rules);
    shadow_copy(&rules, "price_markup", "price_markup_candidate");

    let pantau_addr = format!("127.0.0.1:{}", free_port());
    let store_addr = format!("127.0.0.1:{}", free_port());
    // Logged at info, as a district runs it, so the logs can be searched for card ids.
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let spawn = |cmd: &mut Command, name: &str| {
        Killed(
            cmd.env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(logs.join(name)).unwrap())
                .spawn()
                .expect("pantau starts"),
        )
    };
    let _run = spawn(
        pantau()
            .args([
                "run",
                "--brokers",
                &broker.brokers,
                "--group",
                "pantau-stack",
            ])
            .args([
                "--idle-timeout",
                "3s",
                "--lateness",
                "30s",
                "--reload-interval",
                "1s",
            ])
            .args([
                "--metrics-addr",
                &pantau_addr,
                "--checkpoint-interval",
                "2s",
            ])
            .arg("--rules")
            .arg(&rules)
            .arg("--state-dir")
            .arg(tmp.path().join("state")),
        "run.log",
    );
    let _store = spawn(
        pantau()
            .args(["store", "run", "--brokers", &broker.brokers])
            .args(["--postgres", &pg.url("pantau", "pantau")])
            .args(["--metrics-addr", &store_addr, "--linger", "200ms"]),
        "store.log",
    );
    let prometheus = Prometheus::start(&[("pantau", &pantau_addr), ("pantau-store", &store_addr)]);
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(rules.join("slow_probe.sql"), SLOW_RULE).unwrap();

    // Until the pipeline has been through every kind of event the panels show, and the
    // store holds every alert on the topic.
    let ready = [
        "pantau_realization_ratio",
        "pantau_unit_price_median_rupiah",
        r#"pantau_rule_reloads_total{outcome="applied"}"#,
        r#"pantau_rule_failures_total{reason="timeout"}"#,
        "pantau_shadow_alerts_total",
        "pantau_late_records_total",
        "pantau_dlq_records_total",
        r#"pantau_store_rows_total{table="alerts"}"#,
    ];
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut before = None;
    loop {
        let missing: Vec<&str> = ready
            .iter()
            .copied()
            .filter(|q| prometheus.query(q, None).is_empty())
            .collect();
        let stored = pg.query("pantau", "pantau", "SELECT count(*) FROM alerts")[0][0].clone();
        let raised = prometheus
            .query("sum(pantau_alerts_total)", None)
            .first()
            .map(|s| s["value"][1].as_str().unwrap_or_default().to_owned());
        let now = (stored.clone(), raised.clone());
        if missing.is_empty()
            && stored.is_some()
            && stored == raised
            && before.as_ref() == Some(&now)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 10 minutes still missing {missing:?}; alerts raised {raised:?}, stored {stored:?}"
        );
        eprintln!(
            "{:>4.0} s: alerts raised {raised:?}, stored {stored:?}, waiting for {missing:?}",
            epoch_now() - started
        );
        before = Some(now);
        std::thread::sleep(Duration::from_secs(3));
    }

    // Nothing lost on the way to the store, and no shadow alert in it. The pipeline may
    // still be closing windows (a pause of a few seconds between alerts on a loaded
    // machine ends the wait above), so the store is given time to catch up with the topic.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let on_topic: BTreeSet<String> = read_topic(&broker.brokers, "pantau.alerts")
            .iter()
            .map(|p| {
                serde_json::from_slice::<Value>(p).unwrap()["alert_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let stored: BTreeSet<String> = pg
            .query("pantau", "pantau", "SELECT alert_id FROM alerts")
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect();
        if stored == on_topic || Instant::now() > deadline {
            assert_eq!(
                stored, on_topic,
                "the store holds exactly the alerts on pantau.alerts"
            );
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    let shadow = pg.query(
        "pantau",
        "pantau",
        "SELECT count(*) FROM alerts WHERE rule_id IN ('price_markup_candidate', 'slow_probe')",
    );
    assert_eq!(shadow[0][0].as_deref(), Some("0"));

    // No card id of the input in what people read: the logs at info, either /metrics,
    // and every row Grafana's role can read. Cards are named by their keyed reference.
    let mut cards = BTreeSet::new();
    for file in ["transactions.jsonl", "disbursements.jsonl"] {
        for line in std::fs::read_to_string(history.join(file)).unwrap().lines() {
            if let Some(card) = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["card_id"].as_str().map(str::to_owned))
            {
                cards.insert(card);
            }
        }
    }
    assert!(cards.len() > 100, "{} cards", cards.len());
    let mut readable = Vec::new();
    for name in ["run.log", "store.log"] {
        readable.push((
            name.to_owned(),
            std::fs::read_to_string(logs.join(name)).unwrap(),
        ));
    }
    for addr in [&pantau_addr, &store_addr] {
        readable.push((
            format!("{addr}/metrics"),
            http_get(addr, "/metrics").unwrap(),
        ));
    }
    for table in ["alerts", "outlets"] {
        let rows = pg.query(
            "grafana",
            "pantau",
            &format!("SELECT t::text FROM {table} t"),
        );
        let text: Vec<String> = rows.into_iter().flatten().flatten().collect();
        readable.push((format!("table {table}"), text.join("\n")));
    }
    let card_alerts = pg.query(
        "grafana",
        "pantau",
        "SELECT entity_id FROM alerts WHERE entity_type = 'card'",
    );
    assert!(!card_alerts.is_empty(), "no card alert to check");
    for row in &card_alerts {
        let reference = row[0].as_deref().unwrap();
        assert!(
            reference.starts_with('P') && reference.len() == 17,
            "{reference}"
        );
    }
    for (what, text) in &readable {
        assert!(
            !text.is_empty() || what.starts_with("table"),
            "{what} is empty"
        );
        let leaked: Vec<&String> = cards
            .iter()
            .filter(|c| text.contains(c.as_str()))
            .take(3)
            .collect();
        assert!(leaked.is_empty(), "{what} shows card ids {leaked:?}");
    }

    // The district the dashboards are opened on: the one with the most outlet alerts.
    let busiest = pg.query(
        "grafana",
        "pantau",
        "SELECT regency_code FROM alerts WHERE outlet_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    );
    let regency = busiest[0][0].clone().expect("a regency with outlet alerts");
    let now = epoch_now();
    let from = chrono::DateTime::from_timestamp(started as i64 - 3600, 0)
        .unwrap()
        .to_rfc3339();
    let to = chrono::DateTime::from_timestamp(now as i64 + 60, 0)
        .unwrap()
        .to_rfc3339();
    let mut variables: BTreeMap<&str, String> = BTreeMap::from([
        ("regency", regency.clone()),
        ("province", ".*".to_owned()),
        ("__rate_interval", "1m".to_owned()),
        ("__range", "1h".to_owned()),
        ("__interval", "5s".to_owned()),
    ]);

    let mut checks = Checks {
        pg: &pg,
        prometheus: &prometheus,
        from,
        to,
        failures: Vec::new(),
        checked: 0,
    };
    for (file, board) in dashboards() {
        for variable in board["templating"]["list"].as_array().into_iter().flatten() {
            let name = variable["name"].as_str().unwrap();
            let what = format!("{file} variable {name}");
            if variable["datasource"]["uid"] == "pantau-store" {
                let rows = checks.sql(what, variable["query"].as_str().unwrap(), &variables);
                if name == "regency" {
                    assert!(
                        rows.iter()
                            .any(|r| r[0].as_deref() == Some(regency.as_str())),
                        "the regency list offers {regency}"
                    );
                }
                if name == "province_code" {
                    variables.insert("province_code", rows[0][0].clone().unwrap());
                }
            } else {
                let query = variable["query"]["query"].as_str().unwrap();
                let metric = query
                    .strip_prefix("label_values(")
                    .and_then(|q| q.split(',').next())
                    .expect("label_values(metric, label)");
                checks.promql(what, metric, None);
            }
        }
        for panel in panels(&board) {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let what = format!("{file} panel {title:?} {}", target["refId"]);
                if let Some(sql) = target["rawSql"].as_str() {
                    let rows = checks.sql(what, sql, &variables);
                    if title == "e-Warong yang perlu dikunjungi" {
                        // Outlets named from the registry, kecamatan from BPS.
                        assert!(rows
                            .iter()
                            .all(|r| r[1] != r[0] && r[2].as_deref() != Some("-")));
                    }
                    continue;
                }
                let expr = substitute(target["expr"].as_str().expect("expr"), &variables);
                let range = (target["instant"] != true).then_some((started, now));
                checks.promql(what, &expr, range);
            }
        }
    }
    let Checks {
        failures, checked, ..
    } = checks;
    assert!(
        checked > 40,
        "only {checked} queries found in the dashboards"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} queries failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn store_load_writes_a_replay_once_and_names_the_lines_it_could_not_read() {
    let pg = Postgres::with_pantau_roles();
    let tmp = tempfile::tempdir().unwrap();
    let (history, alerts) = small_month_of_alerts(tmp.path());
    let alerts_file = tmp.path().join("alerts.jsonl");
    let url = pg.url("pantau", "pantau");
    let load = |files: &[&Path]| {
        pantau()
            .args(["store", "load", "--postgres", &url, "--outlets"])
            .arg(history.join("outlets.jsonl"))
            .arg("--alerts")
            .args(files)
            .output()
            .expect("pantau store load")
    };
    let count = |sql: &str| -> usize {
        pg.query("grafana", "pantau", sql)[0][0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    };
    for _ in 0..2 {
        let out = load(&[&alerts_file]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(count("SELECT count(*) FROM alerts"), alerts.len());
    }
    let outlets = std::fs::read_to_string(history.join("outlets.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(count("SELECT count(*) FROM outlets"), outlets);
    assert_eq!(count("SELECT count(*) FROM regencies"), 514);

    // One bad line among good ones: named with its line, the good ones written.
    let mixed = tmp.path().join("mixed.jsonl");
    let extra = serde_json::to_string(&{
        let mut a = alerts[0].clone();
        a.alert_id = "0123456789abcdef0123456789abcdef".into();
        a
    })
    .unwrap();
    std::fs::write(&mixed, format!("{extra}\n{{\"alert_id\": 7}}\n")).unwrap();
    let out = load(&[&mixed]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mixed.jsonl:2:"), "{stdout}");
    assert_eq!(count("SELECT count(*) FROM alerts"), alerts.len() + 1);
}

/// Before, an outlet named with a NUL character (which PostgreSQL's text cannot hold)
/// failed the batch, and `store run` retried that batch forever while every later alert
/// waited. Now the NUL is removed and the row says so, and a record the database refuses
/// outright (an id too long for its index) is left out and named.
#[test]
fn an_outlet_named_with_a_nul_and_its_alerts_all_reach_the_store() {
    let pg = Postgres::with_pantau_roles();
    let tmp = tempfile::tempdir().unwrap();
    let (history, alerts) = small_month_of_alerts(tmp.path());
    let outlet_alerts: Vec<Alert> = alerts
        .iter()
        .filter(|a| a.outlet_id().is_some())
        .cloned()
        .collect();
    let target = outlet_alerts[0].outlet_id().unwrap().to_owned();
    let outlets_file = tmp.path().join("outlets.jsonl");
    let outlets: String = std::fs::read_to_string(history.join("outlets.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let mut o: serde_json::Value = serde_json::from_str(line).unwrap();
            if o["outlet_id"] == target.as_str() {
                o["name"] = "Toko\u{0} Baru".into();
            }
            format!("{o}\n")
        })
        .collect();
    std::fs::write(&outlets_file, outlets).unwrap();
    let mut written: Vec<Alert> = alerts.clone();
    for a in written
        .iter_mut()
        .filter(|a| a.outlet_id() == Some(target.as_str()))
    {
        a.title = format!("{} di Toko\u{0} Baru", a.title);
        a.evidence
            .insert("outlet_name".into(), "Toko\u{0} Baru".into());
    }
    let mut too_long = alerts[0].clone();
    too_long.alert_id = "f".repeat(32);
    // Hex of hashes: PostgreSQL cannot compress it under its index row limit (2704 B).
    too_long.regency_code = (0..320u32)
        .map(|i| pantau_core::text::hex_prefix(&sha2::Sha256::digest(i.to_le_bytes()), 64))
        .collect();
    written.push(too_long);
    let alerts_file = tmp.path().join("alerts.jsonl");
    let lines: String = written
        .iter()
        .map(|a| serde_json::to_string(a).unwrap() + "\n")
        .collect();
    std::fs::write(&alerts_file, lines).unwrap();

    let url = pg.url("pantau", "pantau");
    let out = pantau()
        .args(["store", "load", "--postgres", &url, "--outlets"])
        .arg(&outlets_file)
        .arg("--alerts")
        .arg(&alerts_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the refused alert is reported");
    assert!(
        stdout.contains(&format!("alerts {}: not stored", "f".repeat(32))),
        "{stdout}"
    );
    let rows = |sql: &str| pg.query("grafana", "pantau", sql);
    assert_eq!(
        rows("SELECT count(*) FROM alerts")[0][0].as_deref(),
        Some(alerts.len().to_string().as_str())
    );
    let outlet = rows(&format!(
        "SELECT name, cleaned FROM outlets WHERE outlet_id = '{target}'"
    ));
    assert_eq!(outlet[0][0].as_deref(), Some("Toko Baru"));
    assert!(outlet[0][1].as_deref().unwrap().contains("name"));
    let cleaned = rows(&format!(
        "SELECT count(*) FROM alerts WHERE outlet_id = '{target}' AND cleaned LIKE '%title%evidence%' AND evidence->>'outlet_name' = 'Toko Baru'"
    ));
    let expected = outlet_alerts
        .iter()
        .filter(|a| a.outlet_id() == Some(target.as_str()))
        .count();
    assert_eq!(
        cleaned[0][0].as_deref(),
        Some(expected.to_string().as_str())
    );
}

/// Before, a store written by a pantau that kept card ids kept them after the upgrade,
/// and Grafana's role read them.
#[test]
fn card_ids_an_older_store_holds_are_replaced_by_references_when_the_store_starts() {
    let pg = Postgres::with_pantau_roles();
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("none.jsonl");
    std::fs::write(&empty, "").unwrap();
    let url = pg.url("pantau", "pantau");
    let load = || {
        let out = pantau()
            .args(["store", "load", "--postgres", &url, "--alerts"])
            .arg(&empty)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    load();
    let card = "6013011234567890";
    pg.query(
        "pantau",
        "pantau",
        &format!(
            "INSERT INTO alerts (alert_id, rule_id, rule_version, category, severity, severity_rank,
                entity_type, entity_id, regency_code, window_start, window_end, detected_at,
                score, title, summary, evidence)
             VALUES ('a1', 'card_many_places', '1', 'card_many_places', 'high', 3, 'card', '{card}',
                '3604', now(), now(), now(), 1, 't', 's', '{{}}')"
        ),
    );
    load();
    let stored = pg.query("grafana", "pantau", "SELECT entity_id FROM alerts");
    let reference =
        pantau_core::pseudonym::Pseudonyms::new(crate::support::TEST_PSEUDONYM_KEY.as_bytes())
            .reference(card);
    assert_eq!(stored, vec![vec![Some(reference)]]);
}
