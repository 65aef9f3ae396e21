//! Tests of the simulator's promises: determinism, consistent receipts and balances,
//! calibration, every injected pattern visible in the records, regency offsets,
//! malformed records, bounded disorder, ids and the file writer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset};

use super::*;
use pantau_core::model::{category, Payment, TxnType};
use pantau_core::regions::Regions;

fn default_history() -> &'static History {
    static H: OnceLock<History> = OnceLock::new();
    H.get_or_init(|| simulate(&SimConfig::default_for_tests()).expect("default simulation"))
}

/// Three regencies of one province: realization lag is judged against a regency's
/// provincial peers, so it is only injected where there are some.
fn one_province_history() -> &'static History {
    static H: OnceLock<History> = OnceLock::new();
    H.get_or_init(|| {
        simulate(&SimConfig {
            regencies: vec!["3601".into(), "3602".into(), "3604".into()],
            ..small_config()
        })
        .expect("one-province simulation")
    })
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

const WEIGHED: [&str; 8] = [
    "BERAS",
    "TELUR",
    "DAGING_AYAM",
    "IKAN",
    "TAHU",
    "TEMPE",
    "KACANG_HIJAU",
    "BUAH",
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Unit prices of one commodity on the receipts (that add up) of some outlets in a month.
fn unit_prices(
    txns: &[&Transaction],
    outlets: impl Fn(&str) -> bool,
    month: &str,
    c: &str,
) -> Vec<f64> {
    txns.iter()
        .filter(|x| outlets(&x.outlet_id) && month_label(&x.occurred_at) == month)
        .filter(|x| x.kind == TxnType::Purchase && items_sum(x) as i64 == x.amount)
        .flat_map(|x| x.items.iter().flatten())
        .filter(|i| i.commodity == c)
        .map(|i| i.unit_price as f64)
        .collect()
}

/// Median unit price of a commodity at the truth line's outlet over the median at the
/// other outlets at its price level that month: those of its kecamatan if that is an
/// interior one (dearer for all of them), else the regency's outside the interior, ring
/// outlets aside (they sell a supplier's bundle at its own prices, many times over);
/// `None` with fewer than `min_own` sales of it.
fn price_ratio(
    h: &History,
    txns: &[&Transaction],
    t: &Truth,
    month: &str,
    c: &str,
    min_own: usize,
) -> Option<f64> {
    let district_of: BTreeMap<&str, &str> = h
        .outlets
        .iter()
        .map(|o| (o.outlet_id.as_str(), o.district_code.as_str()))
        .collect();
    let interior: BTreeSet<&str> = truth_of(h, category::AREA_PRICE_LEVEL)
        .iter()
        .map(|k| k.entity_id.as_str())
        .collect();
    let level = |o: &str| {
        let d = district_of.get(o).copied().unwrap_or("");
        interior.contains(d).then_some(d)
    };
    let rings: BTreeSet<&str> = truth_of(h, category::SUPPLIER_DEPENDENT)
        .iter()
        .flat_map(|r| r.outlets.iter().map(String::as_str))
        .collect();
    let home = level(&t.entity_id);
    let own = unit_prices(txns, |o| o == t.entity_id, month, c);
    let peers = unit_prices(
        txns,
        |o| {
            o != t.entity_id
                && o.starts_with(&t.entity_id[..7])
                && level(o) == home
                && !rings.contains(o)
        },
        month,
        c,
    );
    (own.len() >= min_own && !peers.is_empty()).then(|| median(own) / median(peers))
}

fn items_sum(t: &Transaction) -> f64 {
    t.items
        .as_ref()
        .map(|v| v.iter().map(|i| i.qty * i.unit_price as f64).sum())
        .unwrap_or(0.0)
}

#[test]
fn same_seed_gives_identical_output_and_another_seed_does_not() {
    let cfg = SimConfig {
        seasonal_leak: 0.3,
        ..small_config()
    };
    let a = simulate(&cfg).expect("first run");
    let b = simulate(&cfg).expect("second run");
    assert!(
        !truth_of(&a, category::CARD_MANY_PLACES).is_empty(),
        "no card_many_places in the small run"
    );
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
    // The program's food the simulator sells: every weighed good, and vegetables by the bunch.
    let eligible: BTreeSet<&str> = WEIGHED.into_iter().chain(["SAYUR"]).collect();
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
    // Within the norm, but for the few outlets over it, each of which has a truth line.
    let over: BTreeSet<&str> = truth_of(h, category::KPM_OVER_NORM)
        .iter()
        .map(|t| t.entity_id.as_str())
        .collect();
    for o in &h.outlets {
        let range = if over.contains(o.outlet_id.as_str()) {
            330..=500
        } else {
            60..=250
        };
        assert!(
            range.contains(&o.kpm_assigned),
            "{} {}",
            o.outlet_id,
            o.kpm_assigned
        );
    }
    assert!(
        over.len() < h.outlets.len() / 10,
        "{} over the norm",
        over.len()
    );
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
        category::CARD_MANY_PLACES,
        category::MALFORMED,
    ] {
        assert!(!truth_of(h, cat).is_empty(), "no truth for {cat}");
    }
    // The default regencies are one per province: no peers to lag behind.
    assert!(truth_of(h, category::REALIZATION_LAG).is_empty());
    assert!(!truth_of(one_province_history(), category::REALIZATION_LAG).is_empty());
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

    // A markup shows in one commodity's unit price against the regency's other outlets,
    // and in no other weighed commodity's (that is what tells it from a rigged scale).
    for t in truth_of(h, category::PRICE_MARKUP) {
        let c = t.params["commodity"].as_str().expect("commodity");
        let factor = t.params["factor"].as_f64().expect("factor");
        let month = month_label(&t.start);
        let ratio = price_ratio(h, &txns, t, &month, c, 1).expect("markup commodity sold");
        assert!(
            (ratio / factor - 1.0).abs() < 0.12,
            "markup {}: {c} price ratio {ratio:.3} vs {factor:.3}",
            t.entity_id
        );
        for other in WEIGHED.iter().filter(|&&o| o != c) {
            if let Some(ratio) = price_ratio(h, &txns, t, &month, other, 8) {
                assert!(
                    (ratio - 1.0).abs() < 0.1,
                    "markup {} on {c} moved {other} by {ratio:.3}",
                    t.entity_id
                );
            }
        }
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
fn rigged_scale_shorts_every_weighed_commodity_by_the_same_ratio() {
    let h = default_history();
    let txns = unique_txns(h);
    let short = truth_of(h, category::SHORT_QUANTITY);
    assert!(!short.is_empty());
    for t in short {
        assert_eq!(t.entity_type, "outlet");
        assert_eq!(t.params["commodity"], "all weighed commodities");
        let listed: Vec<&str> = t.params["commodities"]
            .as_array()
            .expect("commodities")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(listed, WEIGHED);
        let factor = t.params["factor"].as_f64().expect("factor");
        let month = month_label(&t.start);
        let mut checked = Vec::new();
        for c in WEIGHED {
            // Rarely bought commodities give too few receipts for a stable median.
            let Some(ratio) = price_ratio(h, &txns, t, &month, c, 8) else {
                continue;
            };
            assert!(
                (ratio * factor - 1.0).abs() < 0.1,
                "rigged scale {}: {c} price ratio {ratio:.3} vs {:.3}",
                t.entity_id,
                1.0 / factor
            );
            checked.push(c);
        }
        assert!(
            checked.contains(&"BERAS") && checked.contains(&"TELUR") && checked.len() >= 4,
            "{}: only {checked:?} checked",
            t.entity_id
        );
        // Bunches of vegetables are counted, not weighed.
        let sayur = price_ratio(h, &txns, t, &month, "SAYUR", 8).expect("SAYUR sold");
        assert!(
            (sayur - 1.0).abs() < 0.1,
            "rigged scale {} moved SAYUR by {sayur:.3}",
            t.entity_id
        );
    }
}

/// Cards with KKS purchases at `min_outlets` or more distinct outlets within `within`
/// seconds, with the first and last instant of the first such run.
fn cards_in_many_places(
    h: &History,
    min_outlets: usize,
    within: i64,
) -> BTreeMap<String, (i64, i64)> {
    let mut by_card: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    for x in unique_txns(h) {
        if x.payment == Payment::Kks && x.kind == TxnType::Purchase {
            by_card
                .entry(&x.card_id)
                .or_default()
                .push((x.occurred_at.timestamp(), &x.outlet_id));
        }
    }
    let mut found = BTreeMap::new();
    for (card, mut v) in by_card {
        v.sort_unstable();
        for i in 0..v.len() {
            let run: Vec<&(i64, &str)> = v[i..]
                .iter()
                .take_while(|(t, _)| *t - v[i].0 <= within)
                .collect();
            let outlets: BTreeSet<&str> = run.iter().map(|(_, o)| *o).collect();
            if outlets.len() >= min_outlets {
                let last = run.last().map_or(v[i].0, |(t, _)| *t);
                found.insert(card.to_string(), (v[i].0, last));
                break;
            }
        }
    }
    found
}

#[test]
fn many_places_cards_are_swiped_at_several_outlets_within_hours() {
    let h = default_history();
    let cfg = SimConfig::default_for_tests();
    let txns = unique_txns(h);
    let truth = truth_of(h, category::CARD_MANY_PLACES);
    assert!(!truth.is_empty());
    let bank_of: BTreeMap<&str, pantau_core::model::Bank> = h
        .outlets
        .iter()
        .map(|o| (o.outlet_id.as_str(), o.bank))
        .collect();
    let district_of: BTreeMap<&str, &str> = h
        .outlets
        .iter()
        .map(|o| (o.outlet_id.as_str(), o.district_code.as_str()))
        .collect();
    let mut spread_over_districts = 0;
    for t in &truth {
        assert_eq!(t.entity_type, "card");
        assert!(
            t.entity_id.starts_with('K'),
            "{} is no KPM card",
            t.entity_id
        );
        let outlets: Vec<&str> = t.params["outlets"]
            .as_array()
            .expect("outlets")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let swipes = t.params["swipes"].as_u64().expect("swipes") as usize;
        let hours = t.params["hours"].as_i64().expect("hours");
        assert_eq!(hours, cfg.many_places_hours as i64);
        assert_eq!(outlets.len(), swipes);
        let min = cfg.many_places_outlets_min as usize;
        let max = cfg.many_places_outlets_max as usize;
        assert!((min..=max).contains(&swipes), "{} swipes", swipes);
        assert!(t.end - t.start <= chrono::TimeDelta::hours(hours));
        let mut run: Vec<&&Transaction> = txns
            .iter()
            .filter(|x| x.card_id == t.entity_id && x.kind == TxnType::Purchase)
            .filter(|x| x.occurred_at >= t.start && x.occurred_at <= t.end)
            .collect();
        run.sort_by_key(|x| x.occurred_at);
        assert_eq!(run.len(), swipes, "card {}", t.entity_id);
        assert_eq!(run[0].occurred_at, t.start);
        assert_eq!(run[swipes - 1].occurred_at, t.end);
        let visited: Vec<&str> = run.iter().map(|x| x.outlet_id.as_str()).collect();
        assert_eq!(visited, outlets, "card {}", t.entity_id);
        let distinct: BTreeSet<&str> = visited.iter().copied().collect();
        assert_eq!(distinct.len(), swipes, "outlets repeat for {}", t.entity_id);
        let bank = bank_of[outlets[0]];
        assert!(outlets.iter().all(|o| bank_of[o] == bank));
        assert!(run.iter().all(|x| x.regency_code == t.regency_code));
        // The balance is gone: the last swipe drains it and the card does not shop
        // otherwise until its next credit.
        assert_eq!(run[swipes - 1].balance_after, Some(0));
        let credit = h
            .disbursements
            .iter()
            .filter(|d| d.card_id == t.entity_id && d.credited_at <= t.start)
            .map(|d| d.credited_at)
            .max()
            .expect("credited before the swipes");
        let next_credit = h
            .disbursements
            .iter()
            .filter(|d| d.card_id == t.entity_id && d.credited_at > t.start)
            .map(|d| d.credited_at)
            .min();
        let others = txns
            .iter()
            .filter(|x| x.card_id == t.entity_id && x.occurred_at > credit)
            .filter(|x| next_credit.is_none_or(|n| x.occurred_at < n))
            .count();
        assert_eq!(others, swipes, "card {} also shopped normally", t.entity_id);
        let districts: BTreeSet<&str> = outlets.iter().map(|o| district_of[o]).collect();
        if districts.len() > 1 {
            spread_over_districts += 1;
        }
    }
    assert!(
        spread_over_districts > 0,
        "no card travelled between kecamatan"
    );
}

#[test]
fn normal_behaviour_never_looks_like_one_card_in_many_places() {
    let h = default_history();
    let injected: BTreeSet<&str> = truth_of(h, category::CARD_MANY_PLACES)
        .iter()
        .map(|t| t.entity_id.as_str())
        .collect();
    let found = cards_in_many_places(h, 3, 6 * 3_600);
    let false_ones: Vec<&String> = found
        .keys()
        .filter(|c| !injected.contains(c.as_str()))
        .collect();
    assert!(
        false_ones.is_empty(),
        "{} cards at >= 3 outlets within 6 hours without truth: {false_ones:?}",
        false_ones.len()
    );
    // The same scan sees every injected card, so its silence above means something.
    for card in &injected {
        assert!(found.contains_key(*card), "injected card {card} not seen");
    }
}

/// The instant a benefit period ends: local midnight after its last month.
fn period_end(d: &Disbursement) -> i64 {
    use chrono::{Months, NaiveDate, TimeZone};
    let first =
        NaiveDate::parse_from_str(&format!("{}-01", d.period), "%Y-%m-%d").expect("period label");
    let end = first + Months::new(u32::from(d.months));
    d.credited_at
        .offset()
        .from_local_datetime(&end.and_hms_opt(0, 0, 0).expect("midnight"))
        .single()
        .expect("fixed offset")
        .timestamp()
}

#[test]
fn a_lagging_regency_spends_later_than_its_peers() {
    let h = one_province_history();
    let lag = truth_of(h, category::REALIZATION_LAG);
    assert!(!lag.is_empty());
    let mut purchases: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for x in unique_txns(h) {
        if x.payment == Payment::Kks && x.kind == TxnType::Purchase {
            purchases
                .entry(&x.card_id)
                .or_default()
                .push(x.occurred_at.timestamp());
        }
    }
    // Share of each regency-period's credited cards that spent early: within 21 days of
    // the credit, or before the last fifth of the time to the period's end when that
    // comes sooner (after a late credit in a one-month period, 21 days reach into the
    // time when the delayed KPM do spend).
    let mut early: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    for d in &h.disbursements {
        let c = d.credited_at.timestamp();
        let horizon = (21 * 86_400).min((0.8 * (period_end(d) - c) as f64) as i64);
        let spent = purchases
            .get(d.card_id.as_str())
            .is_some_and(|v| v.iter().any(|&t| t >= c && t < c + horizon));
        let e = early.entry((&d.regency_code, &d.period)).or_default();
        e.0 += usize::from(spent);
        e.1 += 1;
    }
    let lagging: BTreeSet<(&str, &str)> = lag
        .iter()
        .map(|t| {
            (
                t.entity_id.as_str(),
                t.params["period"].as_str().expect("period"),
            )
        })
        .collect();
    for t in &lag {
        assert_eq!(t.entity_type, "regency");
        assert_eq!(t.entity_id, t.regency_code);
        let period = t.params["period"].as_str().expect("period");
        let share = t.params["share"].as_f64().expect("share");
        let delayed = t.params["delayed_kpm"].as_f64().expect("delayed_kpm");
        let would = t.params["would_be_spenders"].as_f64().expect("spenders");
        assert!((delayed / would - share).abs() < 0.05, "{delayed}/{would}");
        // The span starts at the period's first credit in the regency.
        let first_credit = h
            .disbursements
            .iter()
            .filter(|d| d.regency_code == t.regency_code && d.period == period)
            .map(|d| d.credited_at)
            .min()
            .expect("credits");
        assert_eq!(t.start, first_credit);
        let (e, n) = early[&(t.entity_id.as_str(), period)];
        let own = e as f64 / n as f64;
        let peers = early
            .iter()
            .filter(|((r, _), _)| *r != t.entity_id)
            .filter(|(k, _)| !lagging.contains(*k))
            .map(|(_, &(e, n))| e as f64 / n as f64)
            .fold(f64::INFINITY, f64::min);
        assert!(
            own < peers - 0.15,
            "lagging {} {period}: {own:.2} spent early vs peers' lowest {peers:.2}",
            t.entity_id
        );
        // No other period-level pattern shares the regency-period.
        let crowded = h
            .truth
            .iter()
            .filter(|x| {
                x.regency_code == t.regency_code && x.params.get("period") == t.params.get("period")
            })
            .filter(|x| {
                x.category == category::CARD_COLLECTION
                    || (x.category == category::NON_TRANSACTING && x.entity_type == "outlet")
            })
            .count();
        assert_eq!(
            crowded, 0,
            "lagging {} {period} hosts other anomalies",
            t.entity_id
        );
    }
}

#[test]
fn no_realization_lag_without_three_regencies() {
    let cfg = SimConfig {
        regencies: vec!["3604".into(), "7371".into()],
        scale: 0.3,
        months: 1,
        realization_lag_rate: 1.0,
        ..SimConfig::default()
    };
    let h = simulate(&cfg).expect("two regencies");
    assert!(truth_of(&h, category::REALIZATION_LAG).is_empty());
}

#[test]
fn seasonal_leak_moves_its_share_of_sales_outside_the_windows() {
    let leak = 0.4;
    let cfg = SimConfig {
        seasonal_rate: 0.2,
        seasonal_leak: leak,
        ..small_config()
    };
    let h = simulate(&cfg).expect("leaky run");
    let seasonal = truth_of(&h, category::SEASONAL_OUTLET);
    assert!(!seasonal.is_empty());
    let mut credits: BTreeMap<&str, Vec<DateTime<FixedOffset>>> = BTreeMap::new();
    for d in &h.disbursements {
        credits.entry(&d.card_id).or_default().push(d.credited_at);
    }
    let (mut outside, mut total) = (0usize, 0usize);
    for t in &seasonal {
        assert_eq!(t.params["leak"].as_f64(), Some(leak));
        let window = t.params["window_days"].as_i64().expect("window_days");
        for x in unique_txns(&h)
            .into_iter()
            .filter(|x| x.outlet_id == t.entity_id && x.kind == TxnType::Purchase)
        {
            assert_eq!(
                x.payment,
                Payment::Kks,
                "ordinary customer at seasonal outlet"
            );
            let credit = credits[x.card_id.as_str()]
                .iter()
                .filter(|&&c| c <= x.occurred_at)
                .max()
                .copied()
                .expect("credited before buying");
            let days = (x.occurred_at.date_naive() - credit.date_naive()).num_days();
            total += 1;
            outside += usize::from(days >= window);
        }
    }
    let measured = outside as f64 / total as f64;
    assert!(
        (measured - leak).abs() < 0.12,
        "{outside} of {total} sales outside the windows ({measured:.2}), leak {leak}"
    );
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
    // KKS shopping happens in local shop hours (the earliest outlets open at 06.00, where
    // a credit-day queue starts), card collection aside.
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
            !(6..22).contains(&h)
        })
        .count();
    assert_eq!(off_hours, 0);
}

#[test]
fn malformed_records_cycle_through_all_reasons() {
    let h = default_history();
    assert_eq!(h.malformed.len(), 16);
    let reasons: BTreeSet<&str> = h.malformed.iter().map(|m| m.reason).collect();
    assert_eq!(reasons.len(), MALFORMED_REASONS.len());
    for (k, m) in h.malformed.iter().enumerate() {
        assert_eq!(m.reason, MALFORMED_REASONS[k % MALFORMED_REASONS.len()]);
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
            // Well-formed, with a clock that is wrong.
            "future" | "before_program" => {
                assert!(typed_ok.is_some(), "{}", m.raw);
                let year = if m.reason == "future" {
                    "\"2099-"
                } else {
                    "\"1970-"
                };
                assert!(m.raw.contains(year), "{}", m.raw);
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
        (
            SimConfig {
                many_places_rate: -1.0,
                ..ok.clone()
            },
            "--many-places-rate",
        ),
        (
            SimConfig {
                many_places_outlets_min: 6,
                many_places_outlets_max: 4,
                ..ok.clone()
            },
            "--many-places-outlets-min",
        ),
        (
            SimConfig {
                many_places_outlets_min: 1,
                ..ok.clone()
            },
            "--many-places-outlets-min",
        ),
        (
            SimConfig {
                many_places_hours: 0,
                ..ok.clone()
            },
            "--many-places-hours",
        ),
        (
            SimConfig {
                many_places_hours: 13,
                ..ok.clone()
            },
            "--many-places-hours",
        ),
        (
            SimConfig {
                realization_lag_rate: 1.2,
                ..ok.clone()
            },
            "--realization-lag-rate",
        ),
        (
            SimConfig {
                realization_lag_share_min: 0.6,
                realization_lag_share_max: 0.5,
                ..ok.clone()
            },
            "--realization-lag-share-min",
        ),
        (
            SimConfig {
                realization_lag_share_min: 0.0,
                ..ok.clone()
            },
            "--realization-lag-share-min",
        ),
        (
            SimConfig {
                seasonal_leak: -0.1,
                ..ok.clone()
            },
            "--seasonal-leak",
        ),
    ];
    for (cfg, needle) in cases {
        let err = format!("{:#}", cfg.validate().expect_err(needle));
        assert!(err.contains(needle), "{err:?} should mention {needle}");
        assert!(simulate(&cfg).is_err());
    }
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
        .any(|o| o.regency_code == "1101" && o.bank == pantau_core::model::Bank::Bsi));
    assert!(h
        .outlets
        .iter()
        .all(|o| o.regency_code == "1101" || o.bank != pantau_core::model::Bank::Bsi));
    // 2019 benefit level.
    assert!(h
        .disbursements
        .iter()
        .all(|d| d.amount == 110_000 * d.months as i64));
    assert!(!default_history()
        .outlets
        .iter()
        .any(|o| o.bank == pantau_core::model::Bank::Bsi));
}

/// The most distinct KKS cards one outlet served within an hour, with those cards.
fn busiest_hour(h: &History) -> (usize, Vec<String>, String) {
    let mut by_outlet: BTreeMap<&str, Vec<(i64, &str)>> = BTreeMap::new();
    for t in &h.transactions {
        if t.payment == Payment::Kks && t.kind == TxnType::Purchase {
            by_outlet
                .entry(&t.outlet_id)
                .or_default()
                .push((t.occurred_at.timestamp(), &t.card_id));
        }
    }
    let mut best = (0, Vec::new(), String::new());
    for (outlet, mut swipes) in by_outlet {
        swipes.sort_unstable();
        let mut from = 0;
        for to in 0..swipes.len() {
            while swipes[to].0 - swipes[from].0 >= 3_600 {
                from += 1;
            }
            let cards: BTreeSet<&str> = swipes[from..=to].iter().map(|(_, c)| *c).collect();
            if cards.len() > best.0 {
                best = (
                    cards.len(),
                    cards.into_iter().map(str::to_owned).collect(),
                    outlet.to_owned(),
                );
            }
        }
    }
    best
}

/// The morning after a credit, a queue outlet serves 20-30 of its own KPM back to back;
/// without queues no outlet comes near that in an hour.
#[test]
fn credit_day_queues_serve_an_outlets_own_kpm_back_to_back() {
    let one_regency = SimConfig {
        regencies: vec!["3604".into()],
        months: 1,
        // An outlet of 500 KPM is busy on credit day without any queue.
        over_norm_rate: 0.0,
        ..small_config()
    };
    let plain = simulate(&SimConfig {
        queue_rate: 0.0,
        ..one_regency.clone()
    })
    .unwrap();
    let queued = simulate(&SimConfig {
        queue_rate: 1.0,
        ..one_regency
    })
    .unwrap();
    let (calm, _, _) = busiest_hour(&plain);
    let (peak, cards, outlet) = busiest_hour(&queued);
    assert!(calm < 15, "{calm} cards in an hour without queues");
    assert!(
        (20..=30).contains(&peak),
        "{peak} cards in the busiest hour"
    );
    for card in &cards {
        let (here, elsewhere) = queued
            .transactions
            .iter()
            .filter(|t| &t.card_id == card && t.payment == Payment::Kks)
            .fold((0, 0), |(h, e), t| {
                if t.outlet_id == outlet {
                    (h + 1, e)
                } else {
                    (h, e + 1)
                }
            });
        assert!(
            here > elsewhere,
            "{card}: {here} purchases at {outlet}, {elsewhere} elsewhere"
        );
    }
}

#[test]
fn an_interior_kecamatan_sells_dearer_at_every_outlet_by_its_premium() {
    let h = default_history();
    let cfg = SimConfig::default_for_tests();
    let txns = unique_txns(h);
    let district_of: BTreeMap<&str, &str> = h
        .outlets
        .iter()
        .map(|o| (o.outlet_id.as_str(), o.district_code.as_str()))
        .collect();
    let dear = truth_of(h, category::AREA_PRICE_LEVEL);
    assert!(
        !dear.is_empty(),
        "no interior kecamatan at the default rate"
    );
    for t in dear {
        assert_eq!(t.entity_type, "district");
        let premium = t.params["premium"].as_f64().expect("premium");
        assert!((cfg.kecamatan_premium_min..=cfg.kecamatan_premium_max).contains(&premium));
        let interior: BTreeSet<&str> = truth_of(h, category::AREA_PRICE_LEVEL)
            .iter()
            .map(|k| k.entity_id.as_str())
            .collect();
        // Inside this kecamatan, or outside every interior one.
        let prices = |inside: bool| -> Vec<f64> {
            txns.iter()
                .filter(|x| x.regency_code == t.regency_code && x.kind == TxnType::Purchase)
                .filter(|x| {
                    let d = district_of[x.outlet_id.as_str()];
                    if inside {
                        d == t.entity_id
                    } else {
                        !interior.contains(d)
                    }
                })
                .flat_map(|x| x.items.iter().flatten())
                // Eggs: rice is held under its legal ceiling even in the interior.
                .filter(|i| i.commodity == "TELUR")
                .map(|i| i.unit_price as f64)
                .collect()
        };
        let ratio = median(prices(true)) / median(prices(false));
        assert!(
            (ratio / premium - 1.0).abs() < 0.04,
            "kecamatan {} sells eggs at {ratio:.3} of its regency, premium {premium:.3}",
            t.entity_id
        );
    }
    // Outlets are spread evenly: every simulated kecamatan has peers to compare with.
    let mut per_kecamatan: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &h.outlets {
        *per_kecamatan.entry(o.district_code.as_str()).or_default() += 1;
    }
    let per_regency = cfg.outlets_per_regency();
    let fewest = per_regency / per_regency.div_ceil(cfg.outlets_per_kecamatan as usize);
    assert!(
        per_kecamatan.values().all(|&n| n >= fewest),
        "{per_kecamatan:?}"
    );
}
