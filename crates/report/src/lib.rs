//! `pantau report reconcile`: the monthly reconciliation and realization report each
//! Dinas Sosial owes the ministry in the first week of the next month, from a history
//! folder.
//!
//! A period is what disbursements call it: `YYYY-MM`, the first month a credit covers.
//! Its window in a district runs from the first of that month to the end of the last
//! month its credits cover (one to three), in the district's own time zone. Within it:
//! - credited: the period's disbursements, per district and bank;
//! - spent: KKS purchases in the window minus KKS reversals in the window, per district
//!   and the bank of the transaction; per card, the same net sum;
//! - a KPM spent something when its net sum is above zero, and spent it all when it
//!   reaches what the period credited it; the balance outstanding is what credited
//!   cards have left of the period's credit.
//!
//! The alerts counted per outlet are given: a replay's, or pantau.alerts
//! ([`alerts_on_topic`]); the command line replays the history when it has neither.
//!
//! Card ids never leave this module: lists name cards by their keyed reference
//! ([`pantau_core::pseudonym`]).
//! [`html`] draws the printable page in Bahasa Indonesia; [`error::Error`] says what
//! stopped it, and whether to retry or stop.

pub mod error;
pub mod html;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use pantau_core::model::{
    Alert, Bank, Disbursement, Outlet, Payment, Transaction, TxnType, MAX_RUPIAH, TOPIC_ALERTS,
    TOPIC_DISBURSEMENTS, TOPIC_OUTLETS, TOPIC_TRANSACTIONS,
};
use pantau_core::progress::ReadProgress;
use pantau_core::pseudonym::Pseudonyms;
use pantau_core::regions::Regions;
use pantau_kafka::KafkaConfig;

/// What `pantau report reconcile` reads and writes.
#[derive(Debug, Clone)]
pub struct ReconcileConfig {
    /// The benefit period, `YYYY-MM` ([`parse_period`]).
    pub period: String,
    /// Where the records come from.
    pub input: Input,
    /// The folder the CSV files, reconcile.json and reconcile.html go to.
    pub out: PathBuf,
    /// The realization target: by this local date, `target_share` of the credited KPM
    /// have spent.
    pub target_date: Option<NaiveDate>,
    pub target_share: f64,
    /// The bank's totals to compare with (CSV).
    pub bank_totals: Option<PathBuf>,
    /// The environment variable holding the key card references are made with.
    pub pseudonym_key_env: String,
    /// Allow card references without a key (test data only).
    pub allow_unkeyed_references: bool,
    /// The TrueType font of the charts.
    pub chart_font: PathBuf,
}

/// A benefit period as the CLI takes it, `YYYY-MM`.
pub fn parse_period(s: &str) -> Result<String, String> {
    NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
        .map(|_| s.to_owned())
        .map_err(|_| format!("{s:?} is not a period: expected YYYY-MM, e.g. 2023-01"))
}

/// Credits, spending and their balance for one district and bank.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DistrictBank {
    pub regency_code: String,
    pub regency_name: String,
    pub bank: String,
    pub kpm_credited: u64,
    pub rupiah_credited: i64,
    pub kpm_spent_any: u64,
    pub kpm_spent_all: u64,
    pub kpm_spent_nothing: u64,
    pub purchases: u64,
    pub rupiah_purchased: i64,
    pub reversals: u64,
    pub rupiah_reversed: i64,
    /// Purchases minus reversals.
    pub rupiah_spent: i64,
    pub balance_outstanding: i64,
}

/// A KPM credited in the period who spent nothing in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonTransacting {
    pub regency_code: String,
    pub bank: String,
    pub card_ref: String,
    pub rupiah_credited: i64,
    /// Where the card paid most often in the whole history; empty if it never paid.
    pub usual_outlet_id: String,
    pub usual_outlet_name: String,
}

/// A card credited in several periods that never paid for anything: the closest the
/// bank's data comes to a KKS that never reached its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeverUsed {
    pub regency_code: String,
    pub bank: String,
    pub card_ref: String,
    /// Space-separated.
    pub periods: String,
    pub rupiah_credited: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutletAlerts {
    pub regency_code: String,
    pub outlet_id: String,
    pub outlet_name: String,
    pub category: String,
    pub alerts: u64,
}

/// Share of a district's credited KPM who had spent by the end of a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealizationDay {
    pub regency_code: String,
    pub date: NaiveDate,
    pub kpm_credited: u64,
    pub kpm_spent: u64,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BehindTarget {
    pub regency_code: String,
    pub regency_name: String,
    /// The target date, or the last day the history covers when it ends sooner.
    pub as_of: NaiveDate,
    pub share: f64,
    pub target_share: f64,
    pub gap: f64,
}

/// A line of the bank's file whose figures differ from pantau's, with both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankDifference {
    /// Line of the bank's file (the header is line 1).
    pub line: usize,
    pub regency_code: String,
    pub bank: String,
    pub kpm_credited_bank: u64,
    pub kpm_credited_pantau: u64,
    pub rupiah_credited_bank: i64,
    pub rupiah_credited_pantau: i64,
    pub rupiah_spent_bank: i64,
    pub rupiah_spent_pantau: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct BankLine {
    period: String,
    regency_code: String,
    bank: String,
    kpm_credited: u64,
    rupiah_credited: i64,
    rupiah_spent: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub date: NaiveDate,
    pub share: f64,
}

/// The whole report, as `reconcile.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub period: String,
    pub generated_at: chrono::DateTime<chrono::Utc>,
    /// The window per district: first day and the day after the last.
    pub windows: BTreeMap<String, (NaiveDate, NaiveDate)>,
    pub summary: Vec<DistrictBank>,
    pub realization: Vec<RealizationDay>,
    pub target: Option<Target>,
    /// Behind the target first, the furthest behind at the top.
    pub behind_target: Vec<BehindTarget>,
    pub non_transacting: Vec<NonTransacting>,
    pub never_used: Vec<NeverUsed>,
    pub outlet_alerts: Vec<OutletAlerts>,
    /// None without a bank file.
    pub bank_differences: Option<Vec<BankDifference>>,
    /// Lines of the history or the bank's file that could not be read, by file and line.
    pub problems: Vec<String>,
}

/// What the ledger keeps of one card credited in the period.
#[derive(Debug, Default)]
struct CreditedCard {
    regency_code: String,
    bank: String,
    credited: i64,
    months: u32,
    spent: i64,
    first_purchase: Option<NaiveDate>,
}

/// What it keeps of every card, for the never-used list.
#[derive(Debug, Default)]
struct AnyCard {
    regency_code: String,
    bank: String,
    periods: BTreeSet<String>,
    credited: i64,
    ever_paid: bool,
    /// KKS purchases per outlet, for the usual outlet.
    outlets: HashMap<String, u32>,
}

/// Where the records come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A history folder.
    History(PathBuf),
    /// The input topics, from their beginning to their end now.
    Kafka(KafkaConfig),
}

/// The streams the report reads, as a history file and as a topic.
const OUTLETS: (&str, &str) = ("outlets.jsonl", TOPIC_OUTLETS);
const DISBURSEMENTS: (&str, &str) = ("disbursements.jsonl", TOPIC_DISBURSEMENTS);
const TRANSACTIONS: (&str, &str) = ("transactions.jsonl", TOPIC_TRANSACTIONS);
/// Read from the topic only: a history's alerts come from `--alerts` or a replay.
const ALERTS: (&str, &str) = ("alerts.jsonl", TOPIC_ALERTS);

impl Input {
    /// The size of the files to read; none for topics, read to their end.
    fn total_bytes(&self) -> Option<u64> {
        match self {
            Input::History(dir) => Some(
                [OUTLETS, DISBURSEMENTS, TRANSACTIONS]
                    .iter()
                    .map(|(file, _)| std::fs::metadata(dir.join(file)).map_or(0, |m| m.len()))
                    .sum(),
            ),
            Input::Kafka(_) => None,
        }
    }

    /// Reads one stream a record at a time; one that cannot be read, or that `each`
    /// refuses, is named in `problems` (by file and line, or topic, partition and
    /// offset) and the rest read on.
    fn each<T: serde::de::DeserializeOwned>(
        &self,
        (file, topic): (&str, &str),
        progress: &dyn ReadProgress,
        problems: &mut Vec<String>,
        mut each: impl FnMut(T) -> Result<(), String>,
    ) -> Result<()> {
        match self {
            Input::History(dir) => {
                let path = dir.join(file);
                let opened = std::fs::File::open(&path).map_err(Error::file("opening", &path))?;
                for (i, line) in std::io::BufReader::new(opened).lines().enumerate() {
                    let line = line.map_err(Error::file("reading", &path))?;
                    progress.read(line.len() as u64 + 1);
                    if line.trim().is_empty() {
                        continue;
                    }
                    let refused = serde_json::from_str::<T>(&line)
                        .map_err(|e| without_values(&e))
                        .and_then(&mut each);
                    if let Err(e) = refused {
                        problems.push(format!("{}:{}: {e}", path.display(), i + 1));
                    }
                }
            }
            Input::Kafka(kafka) => {
                progress.reading(topic);
                kafka.read_to_end(topic, |read| {
                    progress.read(read.payload.len() as u64 + 1);
                    let refused = serde_json::from_slice::<T>(read.payload)
                        .map_err(|e| without_values(&e))
                        .and_then(&mut each);
                    if let Err(e) = refused {
                        problems.push(format!("{topic}/{}@{}: {e}", read.partition, read.offset));
                    }
                })?;
            }
        }
        Ok(())
    }
}

/// A line that cannot be read, as the printed report may say it: serde quotes the
/// offending value, and a card id is personal data, so only what kind of problem and
/// where (a missing field names only the field).
fn without_values(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = error.to_string();
    if text.starts_with("missing field") {
        return text;
    }
    let what = match error.classify() {
        Category::Syntax => "not valid JSON",
        Category::Eof => "the line ends early",
        Category::Data => "a field has the wrong type or value",
        Category::Io => "unreadable",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}

/// An amount as the report accepts it: positive and no larger than any record pantau
/// accepts ([`MAX_RUPIAH`]), so the sums below stay in range.
fn checked_amount(amount: i64) -> Result<i64, String> {
    if (1..=MAX_RUPIAH).contains(&amount) {
        Ok(amount)
    } else {
        Err(format!(
            "amount {amount} is not between 1 and {MAX_RUPIAH} rupiah; the record is left out"
        ))
    }
}

/// Adds to a running sum, refusing (rather than wrapping) a sum past `i64`.
fn add(total: &mut i64, amount: i64) -> Result<(), String> {
    *total = total.checked_add(amount).ok_or_else(|| {
        format!("adding {amount} rupiah overflows the sum; the record is left out")
    })?;
    Ok(())
}

fn month_start(period: &str) -> NaiveDate {
    NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").unwrap_or_default()
}

/// Builds the report from the input's records and the period's alerts. Blocking.
pub fn reconcile(
    input: &Input,
    period: &str,
    alerts: &[Alert],
    target: Option<Target>,
    bank_totals: Option<&Path>,
    key: &Pseudonyms,
    progress: &dyn ReadProgress,
) -> Result<Report> {
    progress.started(input.total_bytes());
    let mut problems = Vec::new();

    let mut outlet_names: HashMap<String, String> = HashMap::new();
    input.each::<Outlet>(OUTLETS, progress, &mut problems, |o| {
        outlet_names.insert(o.outlet_id, o.name);
        Ok(())
    })?;

    let mut credited: HashMap<String, CreditedCard> = HashMap::new();
    let mut cards: HashMap<String, AnyCard> = HashMap::new();
    // A repeated id is a redelivery, as in the pipeline: counted once.
    let mut seen_credits: std::collections::HashSet<(Bank, String)> = Default::default();
    input.each::<Disbursement>(DISBURSEMENTS, progress, &mut problems, |d| {
        let amount = checked_amount(d.amount)?;
        if !seen_credits.insert((d.bank, d.disbursement_id.clone())) {
            return Ok(());
        }
        let card = cards.entry(d.card_id.clone()).or_default();
        add(&mut card.credited, amount)?;
        card.regency_code.clone_from(&d.regency_code);
        card.bank = d.bank.as_str().to_owned();
        card.periods.insert(d.period.clone());
        if d.period == period {
            let c = credited.entry(d.card_id).or_default();
            add(&mut c.credited, amount)?;
            c.regency_code = d.regency_code;
            c.bank = d.bank.as_str().to_owned();
            c.months = c.months.max(u32::from(d.months));
        }
        Ok(())
    })?;
    if credited.is_empty() {
        return Err(Error::NoPeriod {
            period: period.to_owned(),
        });
    }
    // Each district's window: from the first of the month to the end of the last month
    // its period's credits cover.
    let start = month_start(period);
    let mut windows: BTreeMap<String, (NaiveDate, NaiveDate)> = BTreeMap::new();
    for c in credited.values() {
        let end = start + Months::new(c.months.max(1));
        let w = windows
            .entry(c.regency_code.clone())
            .or_insert((start, end));
        w.1 = w.1.max(end);
    }

    let mut spending: BTreeMap<(String, String), DistrictBank> = BTreeMap::new();
    let mut last_day: Option<NaiveDate> = None;
    let mut seen_payments: std::collections::HashSet<(Bank, String)> = Default::default();
    input.each::<Transaction>(TRANSACTIONS, progress, &mut problems, |t| {
        if t.payment != Payment::Kks {
            return Ok(());
        }
        let amount = checked_amount(t.amount)?;
        if !seen_payments.insert((t.bank, t.txn_id.clone())) {
            return Ok(());
        }
        let day = t.occurred_at.date_naive();
        if let Some(card) = cards.get_mut(&t.card_id) {
            if t.kind == TxnType::Purchase {
                card.ever_paid = true;
                *card.outlets.entry(t.outlet_id.clone()).or_default() += 1;
            }
        }
        let Some(&(from, to)) = windows.get(&t.regency_code) else {
            return Ok(());
        };
        if day < from || day >= to {
            return Ok(());
        }
        last_day = last_day.max(Some(day));
        let row = spending
            .entry((t.regency_code.clone(), t.bank.as_str().to_owned()))
            .or_default();
        let signed = match t.kind {
            TxnType::Purchase => {
                add(&mut row.rupiah_purchased, amount)?;
                row.purchases += 1;
                amount
            }
            TxnType::Reversal => {
                add(&mut row.rupiah_reversed, amount)?;
                row.reversals += 1;
                -amount
            }
        };
        if let Some(c) = credited.get_mut(&t.card_id) {
            add(&mut c.spent, signed)?;
            if t.kind == TxnType::Purchase && c.first_purchase.is_none_or(|f| day < f) {
                c.first_purchase = Some(day);
            }
        }
        Ok(())
    })?;
    progress.finished();

    let regions = Regions::get();
    let name_of = |code: &str| {
        regions
            .regency(code)
            .map_or_else(|| code.to_owned(), |r| r.name.clone())
    };
    let mut summary = spending;
    let mut non_transacting = Vec::new();
    for (card_id, c) in &credited {
        let row = summary
            .entry((c.regency_code.clone(), c.bank.clone()))
            .or_default();
        row.kpm_credited += 1;
        add(&mut row.rupiah_credited, c.credited).map_err(Error::Sum)?;
        let outstanding = c.credited.saturating_sub(c.spent).max(0);
        add(&mut row.balance_outstanding, outstanding).map_err(Error::Sum)?;
        if c.spent > 0 {
            row.kpm_spent_any += 1;
            if c.spent >= c.credited {
                row.kpm_spent_all += 1;
            }
        } else {
            row.kpm_spent_nothing += 1;
            let usual = cards.get(card_id).and_then(|card| {
                card.outlets
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                    .map(|(id, _)| id.clone())
            });
            non_transacting.push(NonTransacting {
                regency_code: c.regency_code.clone(),
                bank: c.bank.clone(),
                card_ref: key.reference(card_id),
                rupiah_credited: c.credited,
                usual_outlet_name: usual
                    .as_ref()
                    .and_then(|id| outlet_names.get(id))
                    .cloned()
                    .unwrap_or_default(),
                usual_outlet_id: usual.unwrap_or_default(),
            });
        }
    }
    let summary: Vec<DistrictBank> = summary
        .into_iter()
        .map(|((regency_code, bank), mut row)| {
            row.rupiah_spent = row.rupiah_purchased - row.rupiah_reversed;
            row.regency_name = name_of(&regency_code);
            row.regency_code = regency_code;
            row.bank = bank;
            row
        })
        .collect();
    non_transacting.sort_by(|a, b| {
        (&a.regency_code, &a.usual_outlet_id, &a.card_ref).cmp(&(
            &b.regency_code,
            &b.usual_outlet_id,
            &b.card_ref,
        ))
    });

    let mut never_used: Vec<NeverUsed> = cards
        .iter()
        .filter(|(_, c)| c.periods.len() >= 2 && !c.ever_paid)
        .map(|(id, c)| NeverUsed {
            regency_code: c.regency_code.clone(),
            bank: c.bank.clone(),
            card_ref: key.reference(id),
            periods: c.periods.iter().cloned().collect::<Vec<_>>().join(" "),
            rupiah_credited: c.credited,
        })
        .collect();
    never_used.sort_by(|a, b| (&a.regency_code, &a.card_ref).cmp(&(&b.regency_code, &b.card_ref)));

    let realization = realization_days(&credited, &windows, last_day);
    let behind_target = target
        .as_ref()
        .map(|t| behind(&realization, t, &name_of))
        .unwrap_or_default();
    let outlet_alerts = outlet_alerts(alerts, &windows, &outlet_names);
    let bank_differences = bank_totals
        .map(|path| compare_with_bank(path, period, &summary, &mut problems))
        .transpose()?;
    Ok(Report {
        period: period.to_owned(),
        generated_at: chrono::Utc::now(),
        windows,
        summary,
        realization,
        target,
        behind_target,
        non_transacting,
        never_used,
        outlet_alerts,
        bank_differences,
        problems,
    })
}

/// Day by day through each district's window (up to the last day the history covers),
/// the share of its credited KPM who had made a purchase by the end of the day.
fn realization_days(
    credited: &HashMap<String, CreditedCard>,
    windows: &BTreeMap<String, (NaiveDate, NaiveDate)>,
    last_day: Option<NaiveDate>,
) -> Vec<RealizationDay> {
    // One pass over the cards: each district's count and first purchase days.
    let mut by_regency: HashMap<&str, (usize, Vec<NaiveDate>)> = HashMap::new();
    for c in credited.values() {
        let (cards, firsts) = by_regency.entry(&c.regency_code).or_default();
        *cards += 1;
        firsts.extend(c.first_purchase);
    }
    let mut out = Vec::new();
    for (regency, (from, to)) in windows {
        let Some((cards, firsts)) = by_regency.get_mut(regency.as_str()) else {
            continue;
        };
        let cards = *cards;
        firsts.sort();
        let end = last_day.map_or(*to, |l| (l + chrono::Duration::days(1)).min(*to));
        let mut day = *from;
        while day < end {
            let spent = firsts.partition_point(|f| *f <= day) as u64;
            out.push(RealizationDay {
                regency_code: regency.clone(),
                date: day,
                kpm_credited: cards as u64,
                kpm_spent: spent,
                share: spent as f64 / cards.max(1) as f64,
            });
            day += chrono::Duration::days(1);
        }
    }
    out
}

fn behind(
    realization: &[RealizationDay],
    target: &Target,
    name_of: &dyn Fn(&str) -> String,
) -> Vec<BehindTarget> {
    let mut last: BTreeMap<&str, &RealizationDay> = BTreeMap::new();
    for day in realization.iter().filter(|d| d.date <= target.date) {
        last.insert(&day.regency_code, day);
    }
    let mut out: Vec<BehindTarget> = last
        .into_values()
        .filter(|d| d.share < target.share)
        .map(|d| BehindTarget {
            regency_code: d.regency_code.clone(),
            regency_name: name_of(&d.regency_code),
            as_of: d.date,
            share: d.share,
            target_share: target.share,
            gap: target.share - d.share,
        })
        .collect();
    out.sort_by(|a, b| {
        b.gap
            .total_cmp(&a.gap)
            .then(a.regency_code.cmp(&b.regency_code))
    });
    out
}

/// Alerts whose window overlaps the district's period window, per outlet and category.
fn outlet_alerts(
    alerts: &[Alert],
    windows: &BTreeMap<String, (NaiveDate, NaiveDate)>,
    outlet_names: &HashMap<String, String>,
) -> Vec<OutletAlerts> {
    let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for alert in alerts.iter().filter(|a| !a.shadow) {
        let (Some(outlet), Some((from, to))) =
            (alert.outlet_id(), windows.get(&alert.regency_code))
        else {
            continue;
        };
        let starts = alert.window_start.date_naive();
        let ends = alert.window_end.date_naive();
        if starts < *to && ends > *from {
            *counts
                .entry((
                    alert.regency_code.clone(),
                    outlet.to_owned(),
                    alert.category.clone(),
                ))
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(
            |((regency_code, outlet_id, category), alerts)| OutletAlerts {
                outlet_name: outlet_names.get(&outlet_id).cloned().unwrap_or_default(),
                regency_code,
                outlet_id,
                category,
                alerts,
            },
        )
        .collect()
}

/// Every line of the bank's file for the period whose figures differ from pantau's.
fn compare_with_bank(
    path: &Path,
    period: &str,
    summary: &[DistrictBank],
    problems: &mut Vec<String>,
) -> Result<Vec<BankDifference>> {
    let mut reader = csv::Reader::from_path(path).map_err(Error::csv("opening", path))?;
    let ours: HashMap<(&str, &str), &DistrictBank> = summary
        .iter()
        .map(|r| ((r.regency_code.as_str(), r.bank.as_str()), r))
        .collect();
    let empty = DistrictBank::default();
    let mut out = Vec::new();
    for (i, line) in reader.deserialize::<BankLine>().enumerate() {
        let line_no = i + 2;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("{}:{line_no}: {e}", path.display()));
                continue;
            }
        };
        if line.period != period {
            continue;
        }
        let bank = line.bank.to_uppercase();
        let ours = ours
            .get(&(line.regency_code.as_str(), bank.as_str()))
            .copied()
            .unwrap_or(&empty);
        if (line.kpm_credited, line.rupiah_credited, line.rupiah_spent)
            != (ours.kpm_credited, ours.rupiah_credited, ours.rupiah_spent)
        {
            out.push(BankDifference {
                line: line_no,
                regency_code: line.regency_code,
                bank,
                kpm_credited_bank: line.kpm_credited,
                kpm_credited_pantau: ours.kpm_credited,
                rupiah_credited_bank: line.rupiah_credited,
                rupiah_credited_pantau: ours.rupiah_credited,
                rupiah_spent_bank: line.rupiah_spent,
                rupiah_spent_pantau: ours.rupiah_spent,
            });
        }
    }
    Ok(out)
}

/// Writes one table as `out/name` and notes the file.
fn write_csv<T: Serialize>(
    out: &Path,
    name: &str,
    rows: &[T],
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    let path = out.join(name);
    let mut writer = csv::Writer::from_path(&path).map_err(Error::csv("writing", &path))?;
    for row in rows {
        writer
            .serialize(row)
            .map_err(Error::csv("writing", &path))?;
    }
    writer.flush().map_err(Error::file("writing", &path))?;
    written.push(path);
    Ok(())
}

/// Writes the report's CSV tables, `reconcile.json` and `reconcile.html` into `out`.
pub fn write(report: &Report, out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(Error::file("creating", out))?;
    let mut written = Vec::new();
    write_csv(out, "summary.csv", &report.summary, &mut written)?;
    write_csv(out, "realization.csv", &report.realization, &mut written)?;
    write_csv(
        out,
        "behind_target.csv",
        &report.behind_target,
        &mut written,
    )?;
    write_csv(
        out,
        "non_transacting.csv",
        &report.non_transacting,
        &mut written,
    )?;
    write_csv(out, "never_used.csv", &report.never_used, &mut written)?;
    write_csv(
        out,
        "outlet_alerts.csv",
        &report.outlet_alerts,
        &mut written,
    )?;
    if let Some(differences) = &report.bank_differences {
        write_csv(out, "bank_differences.csv", differences, &mut written)?;
    }
    for (name, bytes) in [
        (
            "reconcile.json",
            serde_json::to_vec_pretty(report).map_err(|source| Error::Encode { source })?,
        ),
        ("reconcile.html", html::page(report)?.into_bytes()),
    ] {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(Error::file("writing", &path))?;
        written.push(path);
    }
    Ok(written)
}

/// The alerts of pantau.alerts, read from its beginning to its current end.
pub async fn alerts_on_topic(kafka: &KafkaConfig) -> Result<Vec<Alert>> {
    let input = Input::Kafka(kafka.clone());
    tokio::task::spawn_blocking(move || -> Result<Vec<Alert>> {
        let (mut alerts, mut problems) = (Vec::new(), Vec::new());
        input.each::<Alert>(ALERTS, &(), &mut problems, |a| {
            alerts.push(a);
            Ok(())
        })?;
        if !problems.is_empty() {
            return Err(Error::UnreadableAlerts { problems });
        }
        Ok(alerts)
    })
    .await
    .map_err(Error::task("the alerts reader"))?
}

/// `pantau report reconcile` over the period's `alerts` (a replay's, or
/// [`alerts_on_topic`]): the report, and the files written; `progress` is told how far
/// the input has been read.
pub async fn run(
    config: &ReconcileConfig,
    alerts: Vec<Alert>,
    progress: Arc<dyn ReadProgress + Send + Sync>,
) -> Result<(Report, Vec<PathBuf>)> {
    pantau_notify::chart::load_font(&config.chart_font)?;
    let key = Pseudonyms::from_env(&config.pseudonym_key_env, config.allow_unkeyed_references)?;
    let input = config.input.clone();
    let target = config.target_date.map(|date| Target {
        date,
        share: config.target_share,
    });
    let (period, bank_totals) = (config.period.clone(), config.bank_totals.clone());
    let report = tokio::task::spawn_blocking(move || {
        reconcile(
            &input,
            &period,
            &alerts,
            target,
            bank_totals.as_deref(),
            &key,
            progress.as_ref(),
        )
    })
    .await
    .map_err(Error::task("the reconciliation"))??;
    let written = write(&report, &config.out)?;
    Ok((report, written))
}

impl Report {
    /// The report in one line, for the command line.
    pub fn headline(&self) -> String {
        let credited: u64 = self.summary.iter().map(|r| r.kpm_credited).sum();
        let spent: i64 = self.summary.iter().map(|r| r.rupiah_spent).sum();
        format!(
            "period {}: {} districts, {credited} KPM credited, Rp {spent} spent, {} KPM spent nothing, {} cards never used, {} districts behind target{}",
            self.period,
            self.windows.len(),
            self.non_transacting.len(),
            self.never_used.len(),
            self.behind_target.len(),
            self.bank_differences
                .as_ref()
                .map(|d| format!(", {} lines differ from the bank's", d.len()))
                .unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_of_the_banks_file_is_named_and_the_lines_around_it_compared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.csv");
        std::fs::write(
            &path,
            "period,regency_code,bank,kpm_credited,rupiah_credited,rupiah_spent\n\
             2023-01,3604,BNI,10,2000000,1500000\n\
             2023-01,3604,BRI,ten,2000000,1500000\n\
             2023-01,3604,btn,5,1000000,900000\n\
             2023-02,3604,BNI,1,1,1\n",
        )
        .unwrap();
        let row = |bank: &str, kpm, credited, spent| DistrictBank {
            regency_code: "3604".into(),
            bank: bank.into(),
            kpm_credited: kpm,
            rupiah_credited: credited,
            rupiah_spent: spent,
            ..Default::default()
        };
        let ours = [
            row("BNI", 10, 2_000_000, 1_500_000),
            row("BTN", 5, 1_000_000, 800_000),
        ];
        let mut problems = Vec::new();
        let differences = compare_with_bank(&path, "2023-01", &ours, &mut problems).unwrap();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("bank.csv:3:"), "{problems:?}");
        // Only the BTN line differs (the bank's lower case is BTN); February is not compared.
        assert_eq!(differences.len(), 1);
        assert_eq!(
            (differences[0].line, differences[0].bank.as_str()),
            (4, "BTN")
        );
        assert_eq!(
            (
                differences[0].rupiah_spent_bank,
                differences[0].rupiah_spent_pantau
            ),
            (900_000, 800_000)
        );
    }

    #[test]
    fn a_repeated_id_counts_once_and_a_bad_amount_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let credit = |id: &str, card: &str, amount: &str| {
            format!(
                r#"{{"disbursement_id":"{id}","bank":"BRI","card_id":"{card}","regency_code":"3604","period":"2023-01","months":1,"amount":{amount},"credited_at":"2023-01-02T08:00:00+07:00"}}"#
            )
        };
        let pay = |id: &str, card: &str, amount: &str| {
            format!(
                r#"{{"txn_id":"{id}","bank":"BRI","occurred_at":"2023-01-05T10:00:00+07:00","outlet_id":"O1","terminal_id":"T1","regency_code":"3604","card_id":"{card}","payment":"KKS","type":"purchase","amount":{amount},"items":[],"balance_after":0}}"#
            )
        };
        let lines = |rows: &[String]| rows.join("\n") + "\n";
        std::fs::write(dir.path().join("outlets.jsonl"), "").unwrap();
        std::fs::write(
            dir.path().join("disbursements.jsonl"),
            lines(&[
                credit("D1", "K1", "200000"),
                credit("D1", "K1", "200000"),
                credit("D2", "K2", "-200000"),
                credit("D3", "K3", "200000"),
            ]),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("transactions.jsonl"),
            lines(&[
                pay("T1", "K1", "150000"),
                pay("T1", "K1", "150000"),
                pay("T2", "K3", "9223372036854775807"),
                pay("T3", "K3", "100000"),
            ]),
        )
        .unwrap();
        let input = Input::History(dir.path().to_path_buf());
        let report = reconcile(
            &input,
            "2023-01",
            &[],
            None,
            None,
            &Pseudonyms::new(b"k"),
            &(),
        )
        .unwrap();
        let row = &report.summary[0];
        assert_eq!((row.kpm_credited, row.rupiah_credited), (2, 400_000));
        assert_eq!((row.purchases, row.rupiah_spent), (2, 250_000));
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("disbursements.jsonl:3:"),
            "{:?}",
            report.problems
        );
        assert!(
            report.problems[1].contains("transactions.jsonl:3:"),
            "{:?}",
            report.problems
        );
        assert!(report
            .problems
            .iter()
            .all(|p| p.contains("not between 1 and")));
    }

    #[test]
    fn a_period_no_disbursement_names_stops_and_a_missing_history_file_stops() {
        use pantau_core::error::{Recoverable, Recovery};
        let dir = tempfile::tempdir().unwrap();
        for file in ["outlets.jsonl", "disbursements.jsonl", "transactions.jsonl"] {
            std::fs::write(dir.path().join(file), "").unwrap();
        }
        let input = Input::History(dir.path().to_path_buf());
        let reconcile = |input: &Input| {
            reconcile(
                input,
                "2023-01",
                &[],
                None,
                None,
                &Pseudonyms::new(b"k"),
                &(),
            )
            .unwrap_err()
        };
        let error = reconcile(&input);
        assert!(matches!(error, Error::NoPeriod { .. }), "{error:?}");
        assert_eq!(error.to_string(), "no disbursement names period 2023-01");
        assert_eq!(error.recovery(), Recovery::Stop);
        std::fs::remove_file(dir.path().join("disbursements.jsonl")).unwrap();
        let error = reconcile(&input);
        assert_eq!(error.recovery(), Recovery::Stop);
        assert!(
            error.to_string().starts_with("opening ")
                && error.to_string().ends_with("disbursements.jsonl"),
            "{error}"
        );
    }

    #[test]
    fn an_unreadable_line_is_named_without_its_values() {
        let bad = r#"{"disbursement_id":"D1","card_id":6013123456789012}"#;
        let e = serde_json::from_str::<Disbursement>(bad).unwrap_err();
        let said = without_values(&e);
        assert!(!said.contains("6013123456789012"), "{said}");
        assert!(said.contains("column"), "{said}");
        let missing = serde_json::from_str::<Disbursement>("{}").unwrap_err();
        assert!(without_values(&missing).contains("missing field"));
    }

    #[test]
    fn a_period_is_a_month() {
        assert!(parse_period("2023-01").is_ok());
        let e = parse_period("Januari").unwrap_err();
        assert!(e.contains("YYYY-MM"), "{e}");
    }
}
