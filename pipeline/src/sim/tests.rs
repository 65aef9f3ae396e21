//! Tests of the simulator's promises: determinism, consistent receipts and balances,
//! calibration, every injected pattern visible in the records, regency offsets,
//! malformed records, bounded disorder, ids and the file writer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset};

use super::*;
use crate::model::{category, Payment, TxnType};
use crate::regions::Regions;

fn default_history() -> &'static History {
    static H: OnceLock<History> = OnceLock::new();
    H.get_or_init(|| simulate(&SimConfig::default_for_tests()).expect("default simulation"))
}

fn small_config() -> SimConfig {
    SimConfig {
        scale: 0.3,
        months: 2,
        malformed: 8,
        ..SimConfig::default()
    }
}

fn truth_of<'a>(h: &'a History, cat: &str) -> Vec<&'a Truth> {
    h.truth.iter().filter(|t| t.category == cat).collect()
}

fn month_label(t: &DateTime<FixedOffset>) -> String {
    t.format("%Y-%m").to_string()
}

/// Records without their redeliveries.
fn unique_txns(h: &History) -> Vec<&Transaction> {
    let dup: BTreeSet<usize> = h.redeliveries.iter().copied().collect();
    h.transactions
        .iter()
        .enumerate()
        .filter(|(i, _)| !dup.contains(i))
        .map(|(_, t)| t)
        .collect()
}

fn items_sum(t: &Transaction) -> f64 {
    t.items
        .as_ref()
        .map(|v| v.iter().map(|i| i.qty * i.unit_price as f64).sum())
        .unwrap_or(0.0)
}

#[test]
fn same_seed_gives_identical_output_and_another_seed_does_not() {
    let cfg = small_config();
    let a = simulate(&cfg).expect("first run");
    let b = simulate(&cfg).expect("second run");
    for s in Stream::ALL {
        assert_eq!(
            a.records(s),
            b.records(s),
            "stream {s:?} differs between runs"
        );
    }
    assert_eq!(a.truth, b.truth);
    let other = simulate(&SimConfig { seed: 7, ..cfg }).expect("other seed");
    assert_ne!(
        a.records(Stream::Transactions),
        other.records(Stream::Transactions)
    );
}

#[test]
fn kks_receipts_add_up_and_balances_follow_credits() {
    let h = default_history();
    let paperwork: BTreeSet<(String, String)> = truth_of(h, category::PAPERWORK_MISMATCH)
        .iter()
        .map(|t| (t.entity_id.clone(), month_label(&t.start)))
        .collect();
    let eligible: BTreeSet<&str> = [
        "BERAS",
        "TELUR",
        "DAGING_AYAM",
        "IKAN",
        "TAHU",
        "TEMPE",
        "KACANG_HIJAU",
        "SAYUR",
        "BUAH",
    ]
    .into_iter()
    .collect();
    let txns = unique_txns(h);
    let (mut mismatched, mut ineligible, mut kks) = (0, 0, 0);
    for t in &txns {
        if t.payment != Payment::Kks {
            assert!(t.balance_after.is_none(), "{} has a balance", t.txn_id);
            continue;
        }
        assert!(
            t.balance_after.is_some(),
            "{} lacks balance_after",
            t.txn_id
        );
        if t.kind == TxnType::Reversal {
            continue;
        }
        kks += 1;
        let items = t.items.as_ref().expect("KKS purchase has items");
        assert!(!items.is_empty());
        assert!(t.amount > 0);
        let sum = items_sum(t);
        assert_eq!(sum.fract(), 0.0, "{}: fractional item total", t.txn_id);
        let cell = (t.outlet_id.clone(), month_label(&t.occurred_at));
        if sum as i64 != t.amount {
            assert!(
                paperwork.contains(&cell),
                "{} items sum {sum} != amount {} outside a paperwork anomaly",
                t.txn_id,
                t.amount
            );
            assert!(
                t.amount as f64 >= sum * 1.04,
                "{} overcharge too small",
                t.txn_id
            );
            mismatched += 1;
        }
        if items
            .iter()
            .any(|i| !eligible.contains(i.commodity.as_str()))
        {
            assert!(paperwork.contains(&cell), "{}: ineligible item", t.txn_id);
            ineligible += 1;
        }
    }
    assert!(kks > 10_000, "only {kks} KKS purchases");
    assert!(
        mismatched > 0 && ineligible > 0,
        "{mismatched} {ineligible}"
    );

    // Balance chain per card: credits and KKS payments in event time.
    // (time, credits before payments, change, reported balance, record id) per card.
    type Event<'a> = (i64, u8, i64, Option<i64>, &'a str);
    let mut events: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for d in &h.disbursements {
        events.entry(&d.card_id).or_default().push((
            d.credited_at.timestamp(),
            0,
            d.amount,
            None,
            &d.disbursement_id,
        ));
    }
    for t in txns.iter().filter(|t| t.payment == Payment::Kks) {
        let delta = match t.kind {
            TxnType::Purchase => -t.amount,
            TxnType::Reversal => t.amount,
        };
        events.entry(&t.card_id).or_default().push((
            t.occurred_at.timestamp(),
            1,
            delta,
            t.balance_after,
            &t.txn_id,
        ));
    }
    for (card, mut ev) in events {
        ev.sort();
        let mut bal = 0i64;
        for (_, _, delta, after, id) in ev {
            bal += delta;
            assert!(bal >= 0, "card {card} negative at {id}");
            if let Some(after) = after {
                assert_eq!(after, bal, "card {card}: balance_after of {id}");
            }
        }
    }
}

#[test]
fn mean_kpm_per_outlet_is_realistic() {
    let h = default_history();
    assert_eq!(h.outlets.len(), 90);
    let total: i64 = h.outlets.iter().map(|o| o.kpm_assigned).sum();
    let mean = total as f64 / h.outlets.len() as f64;
    assert!((100.0..=170.0).contains(&mean), "mean kpm {mean}");
    assert!(h
        .outlets
        .iter()
        .all(|o| (60..=250).contains(&o.kpm_assigned)));
    let cards: BTreeSet<&str> = h.disbursements.iter().map(|d| d.card_id.as_str()).collect();
    assert_eq!(cards.len() as i64, total, "every KPM is credited");
    // Each outlet's district belongs to its regency.
    let regions = Regions::get();
    for o in &h.outlets {
        assert!(regions
            .districts(&o.regency_code)
            .iter()
            .any(|d| d.code == o.district_code));
        assert!(o.registered_at < h.transactions[0].occurred_at);
    }
}

#[test]
fn every_pattern_is_injected_by_default() {
    let h = default_history();
    for cat in [
        category::SEASONAL_OUTLET,
        category::SUPPLIER_DEPENDENT,
        category::CARD_COLLECTION,
        category::PRICE_MARKUP,
        category::SHORT_QUANTITY,
        category::PAPERWORK_MISMATCH,
        category::NON_TRANSACTING,
        category::MALFORMED,
    ] {
        assert!(!truth_of(h, cat).is_empty(), "no truth for {cat}");
    }
    let nontx = truth_of(h, category::NON_TRANSACTING);
    assert!(nontx.iter().any(|t| t.entity_type == "outlet"));
    assert!(nontx.iter().any(|t| t.entity_type == "card"));
    let txns = unique_txns(h);

    // Seasonal: no ordinary customers, KKS only within the window after the card's credit.
    let mut credit_times: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for d in &h.disbursements {
        credit_times
            .entry(&d.card_id)
            .or_default()
            .push(d.credited_at.timestamp());
    }
    for t in truth_of(h, category::SEASONAL_OUTLET) {
        let window = t.params["window_days"].as_i64().expect("window_days") * 86_400;
        let at: Vec<&&Transaction> = txns.iter().filter(|x| x.outlet_id == t.entity_id).collect();
        assert!(
            !at.is_empty(),
            "seasonal outlet {} never trades",
            t.entity_id
        );
        for x in at {
            assert_eq!(
                x.payment,
                Payment::Kks,
                "ordinary customer at seasonal outlet"
            );
            let ts = x.occurred_at.timestamp();
            let credit = credit_times[x.card_id.as_str()]
                .iter()
                .filter(|&&c| c <= ts)
                .max()
                .copied()
                .expect("credited before buying");
            assert!(ts - credit < window + 86_400, "{} too late", x.txn_id);
        }
    }

    // Supplier ring: one identical bundle, most KKS takings paid to the supplier.
    for ring in truth_of(h, category::SUPPLIER_DEPENDENT) {
        assert!((3..=6).contains(&ring.outlets.len()));
        let members: BTreeSet<&str> = ring.outlets.iter().map(String::as_str).collect();
        let bundles: BTreeSet<String> = txns
            .iter()
            .filter(|x| {
                members.contains(x.outlet_id.as_str())
                    && x.payment == Payment::Kks
                    && x.kind == TxnType::Purchase
            })
            .map(|x| serde_json::to_string(&x.items).expect("items"))
            .collect();
        assert_eq!(
            bundles.len(),
            1,
            "ring sells {} different baskets",
            bundles.len()
        );
        for o in &members {
            let kks: i64 = txns
                .iter()
                .filter(|x| x.outlet_id == *o && x.payment == Payment::Kks)
                .map(|x| match x.kind {
                    TxnType::Purchase => x.amount,
                    TxnType::Reversal => -x.amount,
                })
                .sum();
            let paid: i64 = h
                .transfers
                .iter()
                .filter(|x| x.outlet_id == *o && x.counterparty_id == ring.entity_id)
                .map(|x| x.amount)
                .sum();
            assert!(kks > 0);
            assert!(
                paid as f64 > 0.75 * kks as f64 && paid <= kks,
                "{o}: paid {paid} of {kks}"
            );
        }
        // Nobody outside the ring pays the supplier.
        assert!(h
            .transfers
            .iter()
            .filter(|x| x.counterparty_id == ring.entity_id)
            .all(|x| members.contains(x.outlet_id.as_str())));
    }

    // Card collection: distinct cards at one terminal at the declared cadence, drained.
    for b in truth_of(h, category::CARD_COLLECTION) {
        let victims: BTreeSet<&str> = b.params["card_ids"]
            .as_array()
            .expect("card_ids")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let cards = b.params["cards"].as_u64().expect("cards") as usize;
        assert!(cards >= 15, "burst of {cards}");
        assert_eq!(victims.len(), cards);
        let mut swipes: Vec<&&Transaction> = txns
            .iter()
            .filter(|x| x.terminal_id == b.entity_id && victims.contains(x.card_id.as_str()))
            .filter(|x| x.occurred_at >= b.start && x.occurred_at <= b.end)
            .collect();
        swipes.sort_by_key(|x| x.occurred_at);
        assert_eq!(swipes.len(), cards, "burst at {}", b.entity_id);
        assert_eq!(swipes[0].occurred_at, b.start);
        assert_eq!(swipes[cards - 1].occurred_at, b.end);
        assert!(swipes
            .iter()
            .all(|x| x.balance_after == Some(0) && x.amount >= 200_000));
        let spacing = b.params["spacing_secs"].as_f64().expect("spacing");
        for w in swipes.windows(2) {
            let gap = (w[1].occurred_at - w[0].occurred_at).num_seconds() as f64;
            assert!(
                (gap - spacing).abs() <= 4.1,
                "gap {gap} vs spacing {spacing}"
            );
        }
        // Collected cards make no other purchase that period.
        let others = txns
            .iter()
            .filter(|y| victims.contains(y.card_id.as_str()))
            .filter(|y| month_label(&y.occurred_at) == month_label(&b.start))
            .count();
        assert_eq!(others, cards, "collected cards also shopped that month");
    }

    // Markup and short quantity show in unit prices against the regency's other outlets.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let unit_prices = |outlet: Option<&str>, not: &str, regency: &str, month: &str, c: &str| {
        txns.iter()
            .filter(|x| x.regency_code == regency && month_label(&x.occurred_at) == month)
            .filter(|x| outlet.is_none_or(|o| x.outlet_id == o) && x.outlet_id != not)
            .filter(|x| x.kind == TxnType::Purchase && items_sum(x) as i64 == x.amount)
            .flat_map(|x| x.items.iter().flatten())
            .filter(|i| i.commodity == c)
            .map(|i| i.unit_price as f64)
            .collect::<Vec<f64>>()
    };
    for t in truth_of(h, category::PRICE_MARKUP)
        .into_iter()
        .chain(truth_of(h, category::SHORT_QUANTITY))
    {
        let c = t.params["commodity"].as_str().expect("commodity");
        let factor = t.params["factor"].as_f64().expect("factor");
        let month = month_label(&t.start);
        let own = unit_prices(Some(&t.entity_id), "", &t.regency_code, &month, c);
        let peers = unit_prices(None, &t.entity_id, &t.regency_code, &month, c);
        assert!(!own.is_empty() && !peers.is_empty(), "{} {c}", t.entity_id);
        let ratio = median(own) / median(peers);
        let expected = if t.category == category::PRICE_MARKUP {
            factor
        } else {
            1.0 / factor
        };
        assert!(
            (ratio / expected - 1.0).abs() < 0.12,
            "{} {}: price ratio {ratio:.3} vs {expected:.3}",
            t.category,
            t.entity_id
        );
    }

    // Non-transacting cards really did not spend in their period.
    let mut spent: BTreeSet<(&str, i64)> = BTreeSet::new();
    for x in txns.iter().filter(|x| x.payment == Payment::Kks) {
        spent.insert((x.card_id.as_str(), x.occurred_at.timestamp()));
    }
    for t in nontx.iter().filter(|t| t.entity_type == "card") {
        let (a, b) = (t.start.timestamp(), t.end.timestamp());
        assert!(
            spent
                .range((t.entity_id.as_str(), a)..=(t.entity_id.as_str(), b))
                .next()
                .is_none(),
            "card {} spent in its idle period",
            t.entity_id
        );
    }
    for t in nontx.iter().filter(|t| t.entity_type == "outlet") {
        let share = t.params["share"].as_f64().expect("share");
        let idle = t.params["non_spenders"].as_f64().expect("non_spenders");
        let kpm = t.params["kpm"].as_f64().expect("kpm");
        assert!(
            (idle / kpm - share).abs() < 0.2,
            "{} idle {idle}/{kpm}",
            t.entity_id
        );
    }
}

#[test]
fn times_carry_the_regency_offset() {
    let h = default_history();
    let regions = Regions::get();
    let check = |code: &str, t: &DateTime<FixedOffset>| {
        assert_eq!(*t.offset(), regions.offset_of(code), "{code} at {t}");
    };
    for t in &h.transactions {
        check(&t.regency_code, &t.occurred_at);
    }
    for d in &h.disbursements {
        check(&d.regency_code, &d.credited_at);
    }
    for t in &h.transfers {
        check(&t.regency_code, &t.occurred_at);
    }
    for o in &h.outlets {
        check(&o.regency_code, &o.registered_at);
    }
    for t in &h.truth {
        check(&t.regency_code, &t.start);
        check(&t.regency_code, &t.end);
        assert!(t.start <= t.end);
    }
    let zones: BTreeSet<i32> = h
        .transactions
        .iter()
        .map(|t| t.occurred_at.offset().local_minus_utc())
        .collect();
    assert_eq!(zones.len(), 3, "one regency per time zone by default");
    // KKS shopping happens in local shop hours, card collection aside.
    let collect_terminals: BTreeSet<&str> = truth_of(h, category::CARD_COLLECTION)
        .iter()
        .map(|t| t.entity_id.as_str())
        .collect();
    let off_hours = h
        .transactions
        .iter()
        .filter(|t| {
            t.payment == Payment::Kks && !collect_terminals.contains(t.terminal_id.as_str())
        })
        .filter(|t| {
            let h = chrono::Timelike::hour(&t.occurred_at);
            !(7..22).contains(&h)
        })
        .count();
    assert_eq!(off_hours, 0);
}

#[test]
fn malformed_records_cycle_through_all_reasons() {
    let h = default_history();
    assert_eq!(h.malformed.len(), 16);
    let reasons: BTreeSet<&str> = h.malformed.iter().map(|m| m.reason).collect();
    assert_eq!(reasons.len(), 8);
    for (k, m) in h.malformed.iter().enumerate() {
        assert_eq!(m.reason, MALFORMED_REASONS[k % 8]);
    }
    let streams: BTreeSet<Stream> = h.malformed.iter().map(|m| m.stream).collect();
    assert!(streams.contains(&Stream::Transactions) && streams.contains(&Stream::Disbursements));
    for m in &h.malformed {
        let as_txn = serde_json::from_str::<Transaction>(&m.raw);
        let as_disb = serde_json::from_str::<Disbursement>(&m.raw);
        let typed_ok = match m.stream {
            Stream::Transactions => as_txn.as_ref().map(|t| t.amount).ok(),
            _ => as_disb.as_ref().map(|d| d.amount).ok(),
        };
        match m.reason {
            "non_positive_amount" => assert!(typed_ok.is_some_and(|a| a <= 0), "{}", m.raw),
            "invalid_json" | "empty_message" => {
                assert!(serde_json::from_str::<serde_json::Value>(&m.raw).is_err())
            }
            _ => {
                assert!(serde_json::from_str::<serde_json::Value>(&m.raw).is_ok());
                assert!(typed_ok.is_none(), "{} decodes: {}", m.reason, m.raw);
            }
        }
        assert_eq!(m.raw.is_empty(), m.reason == "empty_message");
        assert!(!m.key.is_empty());
        let truth = h
            .truth
            .iter()
            .find(|t| t.category == category::MALFORMED && t.entity_id == m.id)
            .expect("truth line for malformed record");
        assert_eq!(truth.params["reason"], m.reason);
        assert_eq!(truth.params["stream"], m.stream.topic());
        assert_eq!(truth.params["raw"], m.raw.as_str());
    }
    // The Kafka view interleaves them at their positions.
    for s in [Stream::Transactions, Stream::Disbursements] {
        let recs = h.records(s);
        let mine: Vec<&Malformed> = h.malformed.iter().filter(|m| m.stream == s).collect();
        let base = match s {
            Stream::Transactions => h.transactions.len(),
            _ => h.disbursements.len(),
        };
        assert_eq!(recs.len(), base + mine.len());
        let mut sorted = mine.clone();
        sorted.sort_by_key(|m| m.position);
        for (before, m) in sorted.iter().enumerate() {
            let (key, bytes) = &recs[m.position + before];
            assert_eq!(bytes, m.raw.as_bytes());
            assert_eq!(key, &m.key);
        }
    }
}

fn assert_disorder_within(times: &[i64], max: i64, what: &str) -> bool {
    let mut newest = times.first().copied().unwrap_or(0);
    let mut any = false;
    for &t in times {
        assert!(newest - t <= max, "{what}: {}s out of order", newest - t);
        any |= t < newest;
        newest = newest.max(t);
    }
    any
}

#[test]
fn disorder_is_bounded_by_max_disorder_secs() {
    let h = default_history();
    let ts = |v: Vec<DateTime<FixedOffset>>| v.iter().map(|t| t.timestamp()).collect::<Vec<_>>();
    let txn = ts(h.transactions.iter().map(|t| t.occurred_at).collect());
    assert!(assert_disorder_within(&txn, 60, "transactions"));
    assert!(assert_disorder_within(
        &ts(h.disbursements.iter().map(|t| t.credited_at).collect()),
        60,
        "disbursements"
    ));
    assert_disorder_within(
        &ts(h.transfers.iter().map(|t| t.occurred_at).collect()),
        60,
        "transfers",
    );
    let cfg = SimConfig {
        max_disorder_secs: 0,
        ..small_config()
    };
    let sorted = simulate(&cfg).expect("sorted run");
    let txn = ts(sorted.transactions.iter().map(|t| t.occurred_at).collect());
    assert!(!assert_disorder_within(&txn, 0, "sorted transactions"));
    let cfg = SimConfig {
        max_disorder_secs: 3_600,
        ..small_config()
    };
    let loose = simulate(&cfg).expect("loose run");
    let txn = ts(loose.transactions.iter().map(|t| t.occurred_at).collect());
    assert!(assert_disorder_within(&txn, 3_600, "loose transactions"));
}

#[test]
fn ids_are_unique_and_redeliveries_are_exact_repeats() {
    let h = default_history();
    assert!(!h.redeliveries.is_empty());
    let dup: BTreeSet<usize> = h.redeliveries.iter().copied().collect();
    let mut by_id: BTreeMap<(&str, &str), &Transaction> = BTreeMap::new();
    for (i, t) in h.transactions.iter().enumerate() {
        let prev = by_id.insert((t.bank.as_str(), &t.txn_id), t);
        if dup.contains(&i) {
            assert_eq!(prev, Some(t), "redelivery {i} is not an exact repeat");
        } else {
            assert!(prev.is_none(), "txn_id {} reused", t.txn_id);
        }
    }
    let mut reversals = 0;
    for t in by_id.values().filter(|t| t.kind == TxnType::Reversal) {
        let orig = by_id[&(
            t.bank.as_str(),
            t.reverses_txn_id.as_deref().expect("reverses"),
        )];
        assert_eq!(orig.amount, t.amount);
        assert_eq!(orig.card_id, t.card_id);
        assert_eq!(orig.kind, TxnType::Purchase);
        assert!(orig.occurred_at < t.occurred_at);
        reversals += 1;
    }
    assert!(reversals > 0);
    let disb: BTreeSet<&str> = h
        .disbursements
        .iter()
        .map(|d| d.disbursement_id.as_str())
        .collect();
    assert_eq!(disb.len(), h.disbursements.len());
    let trf: BTreeSet<&str> = h.transfers.iter().map(|d| d.transfer_id.as_str()).collect();
    assert_eq!(trf.len(), h.transfers.len());
    let mut terminals: BTreeMap<&str, &str> = BTreeMap::new();
    for t in &h.transactions {
        let o = terminals.entry(&t.terminal_id).or_insert(&t.outlet_id);
        assert_eq!(*o, t.outlet_id, "terminal {} shared", t.terminal_id);
    }
    // KPM and ordinary cards never mix.
    for t in &h.transactions {
        assert_eq!(t.card_id.starts_with('K'), t.payment == Payment::Kks);
    }
    // Lumped payments exist: quarterly or two months at once.
    assert!(h
        .disbursements
        .iter()
        .any(|d| d.months >= 2 && d.amount == 200_000 * d.months as i64));
    assert!(h
        .disbursements
        .iter()
        .all(|d| d.amount == 200_000 * d.months as i64));
}

#[test]
fn write_folder_matches_records() {
    let h = simulate(&small_config()).expect("small run");
    let dir = std::env::temp_dir().join(format!("pantau-sim-test-{}", std::process::id()));
    write_folder(&h, &dir).expect("write");
    for s in Stream::ALL {
        let text = std::fs::read(dir.join(s.file_name())).expect("read back");
        let mut expected = Vec::new();
        for (_, bytes) in h.records(s) {
            expected.extend_from_slice(&bytes);
            expected.push(b'\n');
        }
        assert_eq!(text, expected, "{}", s.file_name());
    }
    let truth = std::fs::read_to_string(dir.join("truth.jsonl")).expect("truth");
    assert_eq!(truth.lines().count(), h.truth.len());
    let first: Truth = serde_json::from_str(truth.lines().next().expect("a line")).expect("parse");
    assert_eq!(first, h.truth[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_rejects_bad_options() {
    let ok = SimConfig::default();
    ok.validate().expect("defaults are valid");
    let cases: Vec<(SimConfig, &str)> = vec![
        (
            SimConfig {
                regencies: vec!["9999".into()],
                ..ok.clone()
            },
            "unknown BPS regency",
        ),
        (
            SimConfig {
                start: "2023-13".into(),
                ..ok.clone()
            },
            "YYYY-MM",
        ),
        (
            SimConfig {
                start: "2016-05".into(),
                ..ok.clone()
            },
            "2017",
        ),
        (
            SimConfig {
                months: 0,
                ..ok.clone()
            },
            "--months",
        ),
        (
            SimConfig {
                seasonal_rate: 1.5,
                ..ok.clone()
            },
            "--seasonal-rate",
        ),
        (
            SimConfig {
                scale: 0.0,
                ..ok.clone()
            },
            "--scale",
        ),
        (
            SimConfig {
                markup_factor_min: 2.0,
                markup_factor_max: 1.5,
                ..ok.clone()
            },
            "--markup-factor-min",
        ),
        (
            SimConfig {
                collection_jitter_secs: 40,
                ..ok.clone()
            },
            "--collection-jitter-secs",
        ),
    ];
    for (cfg, needle) in cases {
        let err = format!("{:#}", cfg.validate().expect_err(needle));
        assert!(err.contains(needle), "{err:?} should mention {needle}");
        assert!(simulate(&cfg).is_err());
    }
}

#[test]
fn cli_flags_parse_with_their_defaults() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }
    // clap checks flag names and defaults only in debug builds unless asked.
    <Cli as clap::CommandFactory>::command().debug_assert();
    let d = Cli::try_parse_from(["pantau"]).expect("defaults").sim;
    assert_eq!(d, SimConfig::default());
    assert_eq!(d.regencies, vec!["3604", "7371", "9471"]);
    assert_eq!(
        (d.seed, d.months, d.start.as_str(), d.scale),
        (42, 3, "2023-01", 1.0)
    );
    let c = Cli::try_parse_from([
        "pantau",
        "--regencies",
        "1101,3201",
        "--seasonal-rate",
        "0.1",
        "--malformed",
        "5",
    ])
    .expect("flags")
    .sim;
    assert_eq!(c.regencies, vec!["1101", "3201"]);
    assert_eq!((c.seasonal_rate, c.malformed), (0.1, 5));
}

#[test]
fn aceh_outlets_bank_with_bsi_and_others_never_do() {
    let cfg = SimConfig {
        regencies: vec!["1101".into(), "3201".into()],
        scale: 0.5,
        months: 1,
        start: "2019-11".into(),
        ..SimConfig::default()
    };
    let h = simulate(&cfg).expect("aceh run");
    assert!(h
        .outlets
        .iter()
        .any(|o| o.regency_code == "1101" && o.bank == crate::model::Bank::Bsi));
    assert!(h
        .outlets
        .iter()
        .all(|o| o.regency_code == "1101" || o.bank != crate::model::Bank::Bsi));
    // 2019 benefit level.
    assert!(h
        .disbursements
        .iter()
        .all(|d| d.amount == 110_000 * d.months as i64));
    assert!(!default_history()
        .outlets
        .iter()
        .any(|o| o.bank == crate::model::Bank::Bsi));
}
