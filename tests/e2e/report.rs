//! `pantau report reconcile` on a simulated history: its totals are the sums of the
//! input records, its list of KPM who spent nothing is the simulator's, a bank file
//! with one altered line yields exactly that line, and headless Chromium renders the
//! page with its tables and charts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{Months, NaiveDate};
use pantau_core::jsonl::read_jsonl;
use pantau_core::model::{Disbursement, Payment, Transaction, Truth, TxnType};
use pantau_core::pseudonym::Pseudonyms;
use pantau_report::{BankDifference, DistrictBank, NonTransacting, Report};

use crate::support::{pantau, produce, replay, run_ok, simulate, truth, Tansu};

const KEY: &str = "kunci-uji";
const PERIOD: &str = "2023-01";

fn reconcile(history: &Path, alerts: &Path, out: &Path, extra: &[&str]) -> Report {
    let mut source = vec!["--history".as_ref(), history.as_os_str()];
    source.extend(["--alerts".as_ref(), alerts.as_os_str()]);
    reconcile_from(&source, out, extra)
}

fn reconcile_from(source: &[&std::ffi::OsStr], out: &Path, extra: &[&str]) -> Report {
    run_ok(
        pantau()
            .args([
                "report",
                "reconcile",
                "--period",
                PERIOD,
                "--target-date",
                "2023-01-15",
            ])
            .args(source)
            .arg("--out")
            .arg(out)
            .args(extra)
            .env("PANTAU_PSEUDONYM_KEY", KEY),
    );
    serde_json::from_slice(&std::fs::read(out.join("reconcile.json")).unwrap()).unwrap()
}

fn csv_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    csv::Reader::from_path(path)
        .unwrap()
        .deserialize()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn reconcile_adds_up_names_the_simulators_non_spenders_and_finds_the_altered_bank_line() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    simulate(
        &history,
        &["--months", "2", "--scale", "0.3", "--seed", "5"],
    );
    replay(&history, tmp.path(), &[]);
    let alerts = tmp.path().join("alerts.jsonl");
    let out = tmp.path().join("report");
    let report = reconcile(&history, &alerts, &out, &[]);

    // Credited is the sum of the period's disbursements, per district and bank.
    let disbursements: Vec<Disbursement> =
        read_jsonl(&history.join("disbursements.jsonl")).unwrap();
    let mut credited: BTreeMap<(String, String), (BTreeSet<String>, i64)> = BTreeMap::new();
    let mut months: BTreeMap<String, u32> = BTreeMap::new();
    for d in disbursements.iter().filter(|d| d.period == PERIOD) {
        let row = credited
            .entry((d.regency_code.clone(), d.bank.as_str().to_owned()))
            .or_default();
        row.0.insert(d.card_id.clone());
        row.1 += d.amount;
        let m = months.entry(d.regency_code.clone()).or_default();
        *m = (*m).max(u32::from(d.months));
    }
    // Spent is the KKS purchases minus the KKS reversals within the period's months, each
    // payment once: the simulator redelivers some, as banks do.
    let start = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
    let transactions: Vec<Transaction> = read_jsonl(&history.join("transactions.jsonl")).unwrap();
    let mut spent: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for t in transactions.iter().filter(|t| t.payment == Payment::Kks) {
        if !seen.insert((t.bank.as_str(), t.txn_id.clone())) {
            continue;
        }
        let Some(m) = months.get(&t.regency_code) else {
            continue;
        };
        let day = t.occurred_at.date_naive();
        if day < start || day >= start + Months::new(*m) {
            continue;
        }
        let sign = if t.kind == TxnType::Purchase { 1 } else { -1 };
        *spent
            .entry((t.regency_code.clone(), t.bank.as_str().to_owned()))
            .or_default() += sign * t.amount;
    }
    let summary: Vec<DistrictBank> = csv_rows(&out.join("summary.csv"));
    assert_eq!(
        summary, report.summary,
        "summary.csv and reconcile.json agree"
    );
    assert!(!summary.is_empty());
    for row in &summary {
        let key = (row.regency_code.clone(), row.bank.clone());
        let (cards, rupiah) = credited.get(&key).cloned().unwrap_or_default();
        assert_eq!(
            (row.kpm_credited, row.rupiah_credited),
            (cards.len() as u64, rupiah),
            "{key:?}"
        );
        assert_eq!(
            row.rupiah_spent,
            spent.get(&key).copied().unwrap_or(0),
            "{key:?}"
        );
        assert_eq!(row.rupiah_spent, row.rupiah_purchased - row.rupiah_reversed);
        assert_eq!(row.kpm_spent_any + row.kpm_spent_nothing, row.kpm_credited);
        assert!(row.kpm_spent_all <= row.kpm_spent_any);
        assert!(row.balance_outstanding >= 0 && row.balance_outstanding <= row.rupiah_credited);
    }
    let total: i64 = summary.iter().map(|r| r.rupiah_credited).sum();
    let expected: i64 = credited.values().map(|v| v.1).sum();
    assert_eq!(total, expected);

    // The KPM who spent nothing are exactly those the simulator left idle this period.
    let idle: BTreeMap<String, String> = truth(&history)
        .into_iter()
        .filter(|t: &Truth| {
            t.category == "non_transacting"
                && t.entity_type == "card"
                && t.params["period"] == PERIOD
        })
        .map(|t| {
            let outlet = t.params["outlet_id"].as_str().unwrap_or("").to_owned();
            (
                Pseudonyms::new(KEY.as_bytes()).reference(&t.entity_id),
                outlet,
            )
        })
        .collect();
    assert!(!idle.is_empty(), "the simulation made no idle KPM");
    let listed: Vec<NonTransacting> = csv_rows(&out.join("non_transacting.csv"));
    let listed_refs: BTreeSet<&str> = listed.iter().map(|n| n.card_ref.as_str()).collect();
    let idle_refs: BTreeSet<&str> = idle.keys().map(String::as_str).collect();
    assert_eq!(listed_refs, idle_refs);
    // Named by the outlet they paid at most often where they ever paid: for nearly all
    // the outlet the simulator assigned them (a few paid elsewhere in other months).
    let with_outlet: Vec<&NonTransacting> = listed
        .iter()
        .filter(|n| !n.usual_outlet_id.is_empty())
        .collect();
    let assigned = with_outlet
        .iter()
        .filter(|n| n.usual_outlet_id == idle[&n.card_ref])
        .count();
    assert!(!with_outlet.is_empty());
    assert!(
        assigned * 100 >= with_outlet.len() * 95,
        "{assigned} of {} at their own outlet",
        with_outlet.len()
    );
    assert!(listed.iter().all(|n| n.card_ref.starts_with('P')));
    let text = std::fs::read_to_string(out.join("reconcile.json")).unwrap()
        + &std::fs::read_to_string(out.join("reconcile.html")).unwrap();
    assert!(
        !transactions
            .iter()
            .take(500)
            .any(|t| text.contains(&t.card_id)),
        "a card id leaked into the report"
    );

    // Realization: a share per day that never falls; behind target first, furthest first.
    let mut by_regency: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for day in &report.realization {
        by_regency
            .entry(&day.regency_code)
            .or_default()
            .push(day.share);
    }
    for (regency, shares) in &by_regency {
        assert!(
            shares.windows(2).all(|w| w[0] <= w[1]),
            "{regency}: {shares:?}"
        );
        assert!(*shares.last().unwrap() <= 1.0);
    }
    assert!(report
        .behind_target
        .windows(2)
        .all(|w| w[0].gap >= w[1].gap));

    // The bank's file: pantau's own figures, with one line altered.
    let bank = tmp.path().join("bank.csv");
    let mut lines =
        vec!["period,regency_code,bank,kpm_credited,rupiah_credited,rupiah_spent".to_owned()];
    for row in &summary {
        lines.push(format!(
            "{PERIOD},{},{},{},{},{}",
            row.regency_code, row.bank, row.kpm_credited, row.rupiah_credited, row.rupiah_spent
        ));
    }
    let altered = lines.len() - 1;
    lines[altered] = lines[altered]
        .rsplit_once(',')
        .map(|(head, spent)| format!("{head},{}", spent.parse::<i64>().unwrap() + 1_000))
        .unwrap();
    std::fs::write(&bank, lines.join("\n") + "\n").unwrap();
    let with_bank = tmp.path().join("with-bank");
    let report = reconcile(
        &history,
        &alerts,
        &with_bank,
        &["--bank-totals", bank.to_str().unwrap()],
    );
    let differences: Vec<BankDifference> = csv_rows(&with_bank.join("bank_differences.csv"));
    assert_eq!(differences.len(), 1, "{differences:?}");
    let d = &differences[0];
    let row = summary.last().unwrap();
    assert_eq!(d.line, altered + 1);
    assert_eq!(
        (d.regency_code.as_str(), d.bank.as_str()),
        (row.regency_code.as_str(), row.bank.as_str())
    );
    assert_eq!(
        (d.rupiah_spent_bank, d.rupiah_spent_pantau),
        (row.rupiah_spent + 1_000, row.rupiah_spent)
    );
    assert_eq!(report.bank_differences.as_deref(), Some(&differences[..]));

    // Headless Chromium draws the page: the tables, and a chart per district.
    let html = with_bank.join("reconcile.html");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let shot = tmp.path().join("page.png");
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
    ];
    let dom = std::process::Command::new(&chromium)
        .args(common)
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot start {chromium}: {e} (apt-get install chromium; .ci/run does)")
        });
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.matches("<table").count() >= 5, "{dom}");
    assert_eq!(
        dom.matches("data:image/png;base64,").count(),
        report.windows.len()
    );
    assert!(dom.contains("Perbedaan dengan data bank"));
    let status = std::process::Command::new(&chromium)
        .args(common)
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1240,2400")
        .arg(format!("file://{}", html.display()))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = || buf[..info.buffer_size()].chunks(channels);
    let near = |p: &[u8], (r, g, b): (u8, u8, u8)| {
        p[0].abs_diff(r) < 24 && p[1].abs_diff(g) < 24 && p[2].abs_diff(b) < 24
    };
    // The realization line's blue, and the tables' header grey.
    let blue = pixels().filter(|p| near(p, (30, 90, 200))).count();
    let header = pixels().filter(|p| near(p, (238, 238, 238))).count();
    assert!(blue > 200, "{blue} pixels of the chart's line");
    assert!(header > 2000, "{header} pixels of table headers");
}

#[test]
fn reconcile_from_the_input_topics_and_pantau_alerts_equals_reconcile_from_the_history() {
    use pantau_core::model::{
        TOPIC_ALERTS, TOPIC_DISBURSEMENTS, TOPIC_OUTLETS, TOPIC_TRANSACTIONS,
    };
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history");
    simulate(
        &history,
        &["--months", "2", "--scale", "0.2", "--seed", "6"],
    );
    replay(&history, tmp.path(), &[]);
    let alerts = tmp.path().join("alerts.jsonl");
    let from_files = reconcile(&history, &alerts, &tmp.path().join("files"), &[]);

    let broker = Tansu::start();
    for (file, topic) in [
        ("outlets.jsonl", TOPIC_OUTLETS),
        ("disbursements.jsonl", TOPIC_DISBURSEMENTS),
        ("transactions.jsonl", TOPIC_TRANSACTIONS),
    ] {
        let text = std::fs::read_to_string(history.join(file)).unwrap();
        produce(
            &broker.brokers,
            topic,
            text.lines()
                .map(|l| (String::new(), l.as_bytes().to_vec()))
                .collect(),
        );
    }
    let text = std::fs::read_to_string(&alerts).unwrap();
    produce(
        &broker.brokers,
        TOPIC_ALERTS,
        text.lines()
            .map(|l| (String::new(), l.as_bytes().to_vec()))
            .collect(),
    );
    let from_topics = reconcile_from(
        &["--brokers".as_ref(), broker.brokers.as_ref()],
        &tmp.path().join("topics"),
        &[],
    );
    assert!(!from_topics.summary.is_empty() && !from_topics.outlet_alerts.is_empty());
    assert_eq!(from_topics.summary, from_files.summary);
    assert_eq!(from_topics.non_transacting, from_files.non_transacting);
    assert_eq!(from_topics.never_used, from_files.never_used);
    assert_eq!(from_topics.outlet_alerts, from_files.outlet_alerts);
    assert_eq!(from_topics.realization, from_files.realization);
    assert!(
        from_topics.problems.is_empty(),
        "{:?}",
        from_topics.problems
    );
}
