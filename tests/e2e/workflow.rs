//! The rule author's workflow end to end: the shipped rules pass their fixtures (and a
//! changed rule fails them), a changed rule is backtested against its live version, and
//! a running `pantau run` takes up rule and snooze changes without a restart and without
//! losing window state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::DateTime;
use pantau_core::model::Alert;

use crate::support::{
    free_port, http_get, pantau, read_topic, run_ok, simulated_month, wait_for_success,
    workspace_root, Tansu,
};

/// A copy of the shipped rules and views (not their fixtures) to change.
fn copy_rules(to: &Path) -> PathBuf {
    let from = workspace_root().join("rules");
    let dir = to.join("rules");
    for sub in ["", "views", "tables"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sql" || e == "csv") {
                std::fs::copy(&path, dir.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

const PRICE_THRESHOLD: &str = "c.price_ratio >= 1.2";

#[test]
fn shipped_rules_pass_their_fixtures_and_a_changed_rule_fails_its_own() {
    let out = run_ok(
        pantau()
            .args(["rules", "test"])
            .arg(workspace_root().join("rules")),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 failed; 13 of 13 rules covered"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let rules = copy_rules(tmp.path());
    std::fs::create_dir_all(rules.join("tests")).unwrap();
    for name in ["price_markup", "short_quantity"] {
        let fixture = workspace_root().join("rules/tests").join(name);
        let copy = rules.join("tests").join(name);
        std::fs::create_dir_all(&copy).unwrap();
        for entry in std::fs::read_dir(&fixture).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
        }
    }
    edit(
        &rules.join("price_markup.sql"),
        PRICE_THRESHOLD,
        "c.price_ratio >= 100",
    );
    let out = pantau()
        .args(["rules", "test"])
        .arg(&rules)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL  price_markup"), "{text}");
    assert!(text.contains("missing:    price_markup EW-3604-"), "{text}");
    assert!(text.contains("ok    short_quantity"), "{text}");
    // The other eleven rules have no fixture in this copy.
    assert!(
        text.contains("FAIL  rule seasonal_outlet has no fixture"),
        "{text}"
    );
}

#[test]
fn a_backtest_reports_by_district_and_week_with_truth_and_the_diff_against_live() {
    let tmp = tempfile::tempdir().unwrap();
    let candidate = tmp.path().join("price_markup.sql");
    std::fs::copy(workspace_root().join("rules/price_markup.sql"), &candidate).unwrap();
    edit(&candidate, PRICE_THRESHOLD, "c.price_ratio >= 100");
    let history = workspace_root().join("rules/tests/price_markup");
    let out = run_ok(
        pantau()
            .args(["rules", "backtest"])
            .arg(&candidate)
            .arg("--history")
            .arg(&history)
            .arg("--rules")
            .arg(workspace_root().join("rules")),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "rule price_markup version",
        "live version",
        "candidate: 0 alerts; recall 0.00 (0 of 2 injected)",
        // Detections per window: the 7-day cooldown is off in a backtest.
        "cooldowns are off",
        "live:      10 alerts; recall 1.00 (2 of 2 injected), precision 1.00 (10 of 10 alerts)",
        "by district",
        "3604 Kabupaten Serang",
        "by week",
        "2023-W",
        "0 alerts added by the candidate",
        "10 alerts removed by the candidate",
        "removed 2023-01-",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

/// Metric value of the first line starting with `series` (name and labels).
fn metric(scraped: &str, series: &str) -> Option<f64> {
    scraped
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn consumed(scraped: &str) -> f64 {
    scraped
        .lines()
        .filter(|l| l.starts_with("pantau_records_consumed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_running_pipeline_takes_up_rule_and_snooze_changes_and_keeps_its_windows() {
    let broker = Tansu::start();
    let tmp = tempfile::tempdir().unwrap();
    let (history, expected) = simulated_month(tmp.path(), 5);

    // Half a month, a pause for the changes, the other half.
    let split = DateTime::parse_from_rfc3339("2023-01-16T00:00:00+07:00")
        .unwrap()
        .timestamp_micros();
    let records = history.interleaved();
    let (first, second): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|r| pantau_core::history::event_time(&r.payload).is_none_or(|t| t < split));
    crate::support::produce_inputs(&broker.brokers, 3, &first);

    let rules = copy_rules(tmp.path());
    let snooze = tmp.path().join("snooze.csv");
    std::fs::write(&snooze, "entity_id,rule_id,until,reason,who\n").unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let log = tmp.path().join("run.log");
    let mut child = pantau()
        .args(["run", "--brokers", &broker.brokers, "--group", "live-rules"])
        .args(["--exit-when-idle", "--idle-timeout", "20s"])
        .args([
            "--reload-interval",
            "300ms",
            "--metrics-addr",
            &metrics_addr,
        ])
        .arg("--rules")
        .arg(&rules)
        .arg("--snooze")
        .arg(&snooze)
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        // Taken-up changes and snoozes are logged at info.
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let wait_for = |what: &str, ok: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(scraped) = http_get(&metrics_addr, "/metrics") {
                if ok(&scraped) {
                    return scraped;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let n_first = first.len() as f64;
    wait_for("the first half to be consumed", &|m| consumed(m) >= n_first);

    // The changes: price_markup goes to shadow, a broken rule is refused, and one entity
    // the replay alerts on in the second half is snoozed for that rule.
    let price_markup = rules.join("price_markup.sql");
    edit(
        &price_markup,
        "-- id: price_markup\n",
        "-- id: price_markup\n-- mode: shadow\n",
    );
    std::fs::write(
        rules.join("broken.sql"),
        "-- id: broken\n-- title: Rusak\n-- category: price_markup\n-- severity: low\n\
         -- window: local_day\n-- entity: outlet\n-- summary: {entity_id}\n\
         SELECT outlet_id AS entity_id, regency_code, 1.0 AS score FROM no_such_table\n",
    )
    .unwrap();
    let snoozed = expected
        .iter()
        .find(|a| {
            a.rule_id != "price_markup"
                && a.entity_type == "outlet"
                && a.window_start.timestamp_micros() >= split
        })
        .expect("a second-half alert to snooze")
        .clone();
    std::fs::write(
        &snooze,
        format!(
            "entity_id,rule_id,until,reason,who\n{},{},2023-12-31,diperiksa di lapangan,Tikor\n",
            snoozed.entity_id, snoozed.rule_id
        ),
    )
    .unwrap();
    wait_for("the changes to be taken up", &|m| {
        metric(m, "pantau_rule_reloads_total{outcome=\"applied\"}") == Some(1.0)
            && metric(m, "pantau_rule_reloads_total{outcome=\"refused\"}") == Some(1.0)
            && metric(m, "pantau_snoozes ") == Some(1.0)
            && metric(m, "pantau_rules_loaded{mode=\"shadow\"}") == Some(1.0)
    });
    crate::support::produce_inputs(&broker.brokers, 3, &second);

    let log_text = wait_for_success(&mut child, &log, Duration::from_secs(300));
    assert!(log_text.contains("rule change refused"), "{log_text}");
    assert!(log_text.contains("broken.sql"), "{log_text}");
    assert!(log_text.contains("alert snoozed"), "{log_text}");

    let read = |topic: &str| -> Vec<Alert> {
        read_topic(&broker.brokers, topic)
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    };
    let live = read("pantau.alerts");
    let shadow = read("pantau.alerts.shadow");
    let ids = |alerts: &mut dyn Iterator<Item = &Alert>| -> BTreeSet<String> {
        alerts.map(|a| a.alert_id.clone()).collect()
    };
    let old_version = &expected
        .iter()
        .find(|a| a.rule_id == "price_markup")
        .expect("the replay raised price markups")
        .rule_version;
    // Every price-markup window ran once: before the change live, after it in shadow
    // under the new version, and no window was lost to the reload.
    assert!(!shadow.is_empty(), "no shadow alerts");
    assert!(shadow
        .iter()
        .all(|a| a.rule_id == "price_markup" && a.shadow && &a.rule_version != old_version));
    let live_markups: Vec<&Alert> = live
        .iter()
        .filter(|a| a.rule_id == "price_markup")
        .collect();
    assert!(live_markups
        .iter()
        .all(|a| &a.rule_version == old_version && !a.shadow));
    let mut all_markups = ids(&mut live_markups.iter().copied());
    all_markups.extend(ids(&mut shadow.iter()));
    assert_eq!(
        all_markups,
        ids(&mut expected.iter().filter(|a| a.rule_id == "price_markup"))
    );
    // The other rules raise what the replay raised, but for the snoozed entity's alerts.
    let is_snoozed = |a: &&Alert| a.rule_id == snoozed.rule_id && a.entity_id == snoozed.entity_id;
    assert!(!live.iter().any(|a| a.alert_id == snoozed.alert_id));
    assert_eq!(
        ids(&mut live
            .iter()
            .filter(|a| a.rule_id != "price_markup" && !is_snoozed(a))),
        ids(&mut expected
            .iter()
            .filter(|a| a.rule_id != "price_markup" && !is_snoozed(a)))
    );
}

/// A binary copied to a machine without the source tree: with no `--rules` and no
/// `./rules` folder it runs the rules built into it, says so, and raises the alerts the
/// shipped folder raises.
#[test]
fn a_binary_without_a_rules_folder_runs_the_rules_built_into_it() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    crate::support::simulate(
        &history,
        &["--months", "1", "--scale", "0.3", "--seed", "3"],
    );
    let (from_folder, _) = crate::support::replay(&history, &tmp.path().join("folder"), &[]);
    assert!(!from_folder.is_empty());
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let out = tmp.path().join("built-in.jsonl");
    let ran = run_ok(
        pantau()
            .current_dir(&elsewhere)
            .env("RUST_LOG", "info")
            .env_remove("PANTAU_RULES")
            .arg("replay")
            .arg(&history)
            .arg("--out")
            .arg(&out),
    );
    let stderr = String::from_utf8_lossy(&ran.stderr);
    assert!(stderr.contains("built into this binary"), "{stderr}");
    let built_in: Vec<Alert> = pantau_core::jsonl::read_jsonl(&out).unwrap();
    assert_eq!(
        crate::support::comparable(&built_in),
        crate::support::comparable(&from_folder),
        "the built-in rules differ from the shipped folder"
    );
}
