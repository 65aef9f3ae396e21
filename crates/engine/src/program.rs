//! The program's figures on the monitoring team's dashboards: realization, spending and
//! prices per regency, computed by SQL over the windows the rules read and returned in
//! the engine's tally, which `pantau-run` publishes as Prometheus metrics.
//!
//! Two moments compute them. When a local day closes ([`Figures::day_closed`]), that
//! day's purchases are added to the per-regency counters and the day's median KKS unit
//! prices replace the price gauges. Once a day the [`WINDOW`] series closes over the
//! card rollups of the last hundred days ([`Figures::period_closed`]), which is long
//! enough for a three-month benefit period: each regency's current period (its latest
//! credited one) gets its credited KPM, the KPM who have spent since their credit, and
//! the rupiah of both. Like every metric, labels stop at the regency.
//!
//! Figures are computed by the engine that holds the regency's province, so a regency is
//! published by one engine at a time whatever the number of instances. A failing figure
//! query is logged and counted as a rule failure `figures:…`; it never stops the rules.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{Map, Value};

use crate::error::{chain, RuleError};
use crate::rules::SqlRunner;
use crate::tables::rows_of;
use crate::tally::{ProgramFigure, RuleFailure, Tally};
use crate::window::WindowSpec;

/// The series that publishes realization: daily, over enough days of card rollups to
/// see a three-month period from its credit to its end.
pub(crate) const WINDOW: WindowSpec = WindowSpec::LocalDays {
    days: 100,
    every: 1,
};

const PURCHASES_SQL: &str = "
SELECT regency_code, payment, count(*) AS purchases, sum(amount) AS rupiah
FROM transactions
WHERE type = 'purchase'
GROUP BY regency_code, payment";

/// `commodity` and `unit` are free text from the bank's records: only the program's
/// foods (the list `paperwork_mismatch` checks against) and the units they are sold in
/// become label values, anything else is one `other` series per regency, so a typo or a
/// hostile value cannot make a new series (or a card id a label).
const PRICES_SQL: &str = "
WITH labelled AS (
    SELECT regency_code, unit_price,
           CASE WHEN commodity IN ('BERAS', 'JAGUNG', 'SAGU', 'TELUR', 'DAGING_AYAM',
                                   'DAGING_SAPI', 'IKAN', 'TAHU', 'TEMPE', 'KACANG_HIJAU',
                                   'KACANG_TANAH', 'KACANG_MERAH', 'SAYUR', 'BUAH')
                THEN commodity ELSE 'other' END AS commodity,
           CASE WHEN unit IN ('kg', 'g', 'l', 'liter', 'pcs', 'butir', 'ikat', 'ekor',
                              'papan', 'bungkus', 'botol')
                THEN unit ELSE 'other' END AS unit
    FROM transaction_items
    WHERE payment = 'KKS'
)
SELECT regency_code, commodity, unit, median(CAST(unit_price AS DOUBLE)) AS median_price
FROM labelled
GROUP BY regency_code, commodity, unit";

/// A card counts as spending once it has a net purchase on or after the day its current
/// credit arrived; spent rupiah are capped at what was credited so that spending from
/// an older balance does not push realization past 100%.
const REALIZATION_SQL: &str = "
WITH credits AS (
    SELECT card_id, regency_code, period,
           min(local_date) AS credit_date, sum(credited) AS credited
    FROM card_daily
    WHERE credited > 0 AND period IS NOT NULL
    GROUP BY card_id, regency_code, period
),
current_period AS (
    SELECT regency_code, max(period) AS period FROM credits GROUP BY regency_code
),
cards AS (
    SELECT k.card_id, k.regency_code, k.period, k.credit_date, k.credited
    FROM credits k
    JOIN current_period c ON c.regency_code = k.regency_code AND c.period = k.period
),
spend AS (
    SELECT k.card_id, sum(d.spent) AS spent
    FROM cards k
    JOIN card_daily d ON d.card_id = k.card_id AND d.local_date >= k.credit_date
    GROUP BY k.card_id
)
SELECT k.regency_code, k.period,
       count(*) AS credited_kpm,
       sum(CASE WHEN s.spent > 0 THEN 1 ELSE 0 END) AS spending_kpm,
       sum(k.credited) AS credited_rupiah,
       sum(CASE WHEN s.spent > 0 THEN least(s.spent, k.credited) ELSE 0 END) AS spent_rupiah
FROM cards k
LEFT JOIN spend s ON s.card_id = k.card_id
GROUP BY k.regency_code, k.period";

/// What one engine has published, so that a regency moving to a new period loses its
/// old period's series instead of showing two "current" periods.
#[derive(Default)]
pub struct Figures {
    periods: HashMap<String, String>,
}

fn text<'a>(row: &'a Map<String, Value>, column: &str) -> &'a str {
    row.get(column).and_then(Value::as_str).unwrap_or_default()
}

fn number(row: &Map<String, Value>, column: &str) -> f64 {
    row.get(column).and_then(Value::as_f64).unwrap_or(0.0)
}

async fn run(
    runner: &SqlRunner,
    tally: &mut Tally,
    name: &str,
    sql: &str,
) -> Option<Vec<Map<String, Value>>> {
    let label = format!("figures:{name}");
    let started = Instant::now();
    let rows = match runner.query(sql).await {
        Ok(batches) => rows_of(&batches),
        Err(e) => Err(RuleError::from(e)),
    };
    tally
        .rule_evaluations
        .push((label.clone(), started.elapsed()));
    match rows {
        Ok(rows) => Some(rows),
        Err(e) => {
            Tally::count(&mut tally.rule_failures, (label, RuleFailure::Error), 1);
            tracing::error!(figures = name, error = %chain(&e), "program figures skipped for this window");
            None
        }
    }
}

impl Figures {
    /// A local day closed; the runner holds that day's raw tables.
    pub async fn day_closed(&self, runner: &SqlRunner, tally: &mut Tally) {
        if let Some(rows) = run(runner, tally, "purchases", PURCHASES_SQL).await {
            for row in &rows {
                tally.program.push(ProgramFigure::DayPurchases {
                    regency: text(row, "regency_code").to_owned(),
                    payment: text(row, "payment").to_owned(),
                    purchases: number(row, "purchases") as u64,
                    rupiah: number(row, "rupiah") as u64,
                });
            }
        }
        if let Some(rows) = run(runner, tally, "prices", PRICES_SQL).await {
            for row in &rows {
                tally.program.push(ProgramFigure::UnitPriceMedian {
                    regency: text(row, "regency_code").to_owned(),
                    commodity: text(row, "commodity").to_owned(),
                    unit: text(row, "unit").to_owned(),
                    rupiah: number(row, "median_price"),
                });
            }
        }
    }

    /// A [`WINDOW`] closed; the runner holds its card rollups.
    pub async fn period_closed(&mut self, runner: &SqlRunner, tally: &mut Tally) {
        let Some(rows) = run(runner, tally, "realization", REALIZATION_SQL).await else {
            return;
        };
        for row in &rows {
            let regency = text(row, "regency_code");
            let period = text(row, "period");
            let replaces = self
                .periods
                .insert(regency.to_owned(), period.to_owned())
                .filter(|previous| previous != period);
            tally.program.push(ProgramFigure::Period {
                regency: regency.to_owned(),
                period: period.to_owned(),
                replaces,
                credited_kpm: number(row, "credited_kpm"),
                spending_kpm: number(row, "spending_kpm"),
                credited_rupiah: number(row, "credited_rupiah"),
                spent_rupiah: number(row, "spent_rupiah"),
            });
        }
    }
}
