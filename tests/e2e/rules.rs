//! One fixture per shipped rule: a small simulated world in which only that rule's
//! pattern is injected, the alerts it must raise there, and a near-miss — the same
//! world with the pattern just under the rule's documented threshold — where it must
//! stay silent.

use std::time::Duration;

use pantau_core::model::{category, Alert, Truth};
use pantau_engine::engine::EngineConfig;
use pantau_run::metrics::RunMetrics;
use pantau_run::pipeline::{self, ReplayConfig};
use pantau_sim::eval::{evaluate, matches};
use pantau_sim::{self as sim, SimConfig};

use crate::support::workspace_root;

/// A world where nothing misbehaves; each fixture switches one pattern back on. One
/// regency at half scale (15 outlets) keeps a replay to a second or two while leaving
/// the peers the rules compare against. The rules over single days get one month, at
/// rates that inject two cases or more in it.
fn quiet(months: u32) -> SimConfig {
    SimConfig {
        seed: 2024,
        regencies: vec!["3604".to_string()],
        months,
        scale: 0.5,
        malformed: 0,
        seasonal_rate: 0.0,
        supplier_rings: 0,
        card_collection_rate: 0.0,
        price_markup_rate: 0.0,
        short_quantity_rate: 0.0,
        paperwork_rate: 0.0,
        non_transacting_outlets: 0.0,
        many_places_rate: 0.0,
        realization_lag_rate: 0.0,
        fixed_amount_rate: 0.0,
        over_norm_rate: 0.0,
        // Ordinary geography, but noted by a rule of its own (see area_price_level below).
        kecamatan_premium_rate: 0.0,
        ..SimConfig::default()
    }
}

struct Fixture {
    truth: Vec<Truth>,
    alerts: Vec<Alert>,
}

/// Simulates `cfg` into a temporary folder and replays it with the shipped rules.
fn replay(cfg: &SimConfig) -> Fixture {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let history = sim::simulate(cfg).expect("the fixture's config is valid");
    sim::write_folder(&history, tmp.path()).expect("history written");
    let replay = ReplayConfig {
        dir: tmp.path().to_path_buf(),
        // Beside the history, not in it: the folder is the replay's input.
        out: tmp.path().join("out").join("alerts.jsonl"),
        batch_size: 4096,
        now: None,
    };
    let engine = EngineConfig {
        // The CLI defaults; replay lifts the idle timeout itself.
        lateness: Duration::from_secs(600),
        max_future: Duration::from_secs(300),
        idle_timeout: Duration::from_secs(10),
        rules: Some(workspace_root().join("rules")),
        rule_budget: Duration::from_secs(30),
        snooze: None,
    };
    let mut alerts = Vec::new();
    let summary = tokio::runtime::Runtime::new()
        .expect("a tokio runtime")
        .block_on(pipeline::replay(
            &replay,
            &engine,
            RunMetrics::new(),
            &(),
            |a| alerts.push(a.clone()),
        ))
        .expect("replay succeeds");
    // Malformed records are off: a dead letter here is a decoding bug, not a fixture.
    assert_eq!(summary.dead_letters, 0, "valid records reached the DLQ");
    Fixture {
        truth: history.truth,
        alerts,
    }
}

/// The alert with the figures that fired it, for failure messages.
fn describe<'a>(alerts: impl Iterator<Item = &'a Alert>) -> String {
    alerts
        .map(|a| {
            format!(
                "{}\n    {}",
                pantau_engine::alert::one_line(a),
                serde_json::Value::Object(a.evidence.clone())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Injected lines of `cat` that alerts are meant to find (card-level non-transacting
/// lines are counts, see `eval`).
fn injected(f: &Fixture, cat: &str) -> usize {
    evaluate(&f.truth, &[]).row(cat).map_or(0, |r| r.truths)
}

/// Recall and precision 1 for `cat`.
fn assert_all_found_and_true(f: &Fixture, cat: &str) {
    let report = evaluate(&f.truth, &f.alerts);
    let row = report.row(cat).expect("a row for the injected category");
    assert!(
        row.recall() == 1.0 && row.precision() == 1.0,
        "{cat}: recall {}/{}, precision {}/{}\n{report}{}",
        row.detected,
        row.truths,
        row.true_alerts,
        row.alerts,
        report.misses_text()
    );
}

/// Every injected line of `cat` is found, every alert of `cat` finds one, and no other
/// rule raises a false alert on a world holding nothing else.
fn must_find(cat: &str, cfg: SimConfig) {
    let f = replay(&cfg);
    assert!(injected(&f, cat) > 0, "the fixture injected no {cat}");
    assert_all_found_and_true(&f, cat);
    // Another rule may see the same act (rice marked up above the ceiling is also over
    // the ceiling), but only where the truth says so.
    let others: Vec<&Alert> = f
        .alerts
        .iter()
        .filter(|a| a.category != cat && !f.truth.iter().any(|t| matches(t, a)))
        .collect();
    assert!(
        others.is_empty(),
        "only {cat} is injected, yet other rules fired:\n{}",
        describe(others.into_iter())
    );
}

/// The pattern is present, just under the threshold, and `cat` stays silent.
fn must_not_fire(cat: &str, cfg: SimConfig) {
    let f = replay(&cfg);
    assert!(injected(&f, cat) > 0, "the near-miss injected no {cat}");
    let fired: Vec<&Alert> = f.alerts.iter().filter(|a| a.category == cat).collect();
    assert!(
        fired.is_empty(),
        "{cat} fired on a near-miss:\n{}",
        describe(fired.into_iter())
    );
}

fn card_collection() -> SimConfig {
    SimConfig {
        card_collection_rate: 3.0,
        ..quiet(1)
    }
}

#[test]
fn card_collection_burst_finds_collected_cards() {
    must_find(category::CARD_COLLECTION, card_collection());
}

/// Nine cards, one under the rule's ten. At night, because the rule counts every card
/// in the half hour: by day, KPM queueing on credit day top up a smaller burst (eight
/// collected cards and five shoppers of their own fired it).
#[test]
fn card_collection_burst_ignores_night_burst_of_nine_cards() {
    must_not_fire(
        category::CARD_COLLECTION,
        SimConfig {
            collection_cards_min: 9,
            collection_cards_max: 9,
            collection_night_share: 1.0,
            ..card_collection()
        },
    );
}

/// Credit-day queues at every outlet: each KPM with their own card, served by hand from
/// opening time, 20-30 in half an hour. Nothing may fire, least of all card collection.
#[test]
fn card_collection_burst_ignores_credit_day_queues() {
    let f = replay(&SimConfig {
        queue_rate: 1.0,
        ..quiet(1)
    });
    assert!(
        f.alerts.is_empty(),
        "a world of credit-day queues raised alerts:\n{}",
        describe(f.alerts.iter())
    );
}

/// Interior kecamatan sell dearer at every outlet: one low-severity note per such
/// kecamatan, and no outlet accused of a markup or a short scale for being in line.
#[test]
fn area_price_level_notes_a_dear_kecamatan_and_accuses_no_outlet_in_it() {
    must_find(
        category::AREA_PRICE_LEVEL,
        SimConfig {
            kecamatan_premium_rate: 0.5,
            // One of its two kecamatan is interior at this seed.
            seed: 1,
            ..quiet(1)
        },
    );
}

fn price_markup() -> SimConfig {
    SimConfig {
        price_markup_rate: 2.0,
        ..quiet(1)
    }
}

#[test]
fn price_markup_finds_marked_up_commodity() {
    must_find(category::PRICE_MARKUP, price_markup());
}

#[test]
fn price_markup_ignores_markup_under_twenty_percent() {
    must_not_fire(
        category::PRICE_MARKUP,
        SimConfig {
            markup_factor_min: 1.1,
            markup_factor_max: 1.1,
            ..price_markup()
        },
    );
}

/// Marked-up rice above the premium ceiling of the outlet's zone: every month of such
/// sales is found, and the ceiling rule accuses no outlet that stayed under it.
#[test]
fn rice_above_het_finds_every_month_of_rice_sold_above_the_ceiling() {
    let f = replay(&SimConfig {
        price_markup_rate: 3.0,
        markup_factor_min: 1.3,
        markup_factor_max: 1.5,
        ..quiet(2)
    });
    let cat = category::PRICE_ABOVE_CEILING;
    assert!(injected(&f, cat) > 0, "no rice was sold above the ceiling");
    assert_all_found_and_true(&f, cat);
}

/// Interior kecamatan 30% dearer, where ordinary outlets hold rice at the ceiling: no
/// sale above it, no alert.
#[test]
fn rice_above_het_ignores_a_dear_kecamatan_held_at_the_ceiling() {
    let f = replay(&SimConfig {
        kecamatan_premium_rate: 1.0,
        kecamatan_premium_min: 1.3,
        kecamatan_premium_max: 1.3,
        ..quiet(1)
    });
    let fired: Vec<&Alert> = f
        .alerts
        .iter()
        .filter(|a| a.category == category::PRICE_ABOVE_CEILING)
        .collect();
    assert!(fired.is_empty(), "{}", describe(fired.into_iter()));
}

#[test]
fn fixed_amount_finds_outlet_charging_every_kpm_the_whole_benefit() {
    must_find(
        category::FIXED_AMOUNT,
        SimConfig {
            fixed_amount_rate: 2.0,
            ..quiet(1)
        },
    );
}

#[test]
fn kpm_over_norm_finds_outlet_serving_more_kpm_than_the_norm() {
    must_find(
        category::KPM_OVER_NORM,
        SimConfig {
            over_norm_rate: 0.2,
            ..quiet(2)
        },
    );
}

fn short_quantity() -> SimConfig {
    SimConfig {
        short_quantity_rate: 2.0,
        ..quiet(1)
    }
}

#[test]
fn short_quantity_finds_rigged_scale() {
    must_find(category::SHORT_QUANTITY, short_quantity());
}

/// A scale 5% light can reach robust z 3.5 against a regency whose prices vary by 2%,
/// but stays under the rule's size floor: at least 10% less food per rupiah.
#[test]
fn short_quantity_ignores_scale_five_percent_light() {
    must_not_fire(
        category::SHORT_QUANTITY,
        SimConfig {
            short_factor_min: 0.95,
            short_factor_max: 0.95,
            ..short_quantity()
        },
    );
}

fn paperwork() -> SimConfig {
    SimConfig {
        paperwork_rate: 2.0,
        ..quiet(1)
    }
}

#[test]
fn paperwork_mismatch_finds_irregular_receipts() {
    must_find(category::PAPERWORK_MISMATCH, paperwork());
}

#[test]
fn paperwork_mismatch_ignores_one_receipt_in_a_hundred() {
    must_not_fire(
        category::PAPERWORK_MISMATCH,
        SimConfig {
            paperwork_share_min: 0.01,
            paperwork_share_max: 0.01,
            ..paperwork()
        },
    );
}

fn many_places() -> SimConfig {
    SimConfig {
        many_places_rate: 2.0,
        ..quiet(1)
    }
}

#[test]
fn card_many_places_finds_card_at_several_outlets() {
    must_find(category::CARD_MANY_PLACES, many_places());
}

#[test]
fn card_many_places_ignores_card_at_two_outlets() {
    must_not_fire(
        category::CARD_MANY_PLACES,
        SimConfig {
            many_places_outlets_min: 2,
            many_places_outlets_max: 2,
            ..many_places()
        },
    );
}

/// Three months: the rule reads 56-day windows.
fn seasonal() -> SimConfig {
    SimConfig {
        seasonal_rate: 0.1,
        ..quiet(3)
    }
}

#[test]
fn seasonal_outlet_finds_outlet_open_only_after_credit() {
    must_find(category::SEASONAL_OUTLET, seasonal());
}

#[test]
fn seasonal_outlet_ignores_outlet_selling_mostly_outside_windows() {
    must_not_fire(
        category::SEASONAL_OUTLET,
        SimConfig {
            seasonal_leak: 0.7,
            ..seasonal()
        },
    );
}

/// Two months: the rule reads 28-day windows.
fn supplier() -> SimConfig {
    SimConfig {
        supplier_rings: 1,
        ..quiet(2)
    }
}

#[test]
fn supplier_dependent_finds_ring() {
    must_find(category::SUPPLIER_DEPENDENT, supplier());
}

#[test]
fn supplier_dependent_ignores_ring_keeping_most_takings() {
    must_not_fire(
        category::SUPPLIER_DEPENDENT,
        SimConfig {
            supplier_share_min: 0.3,
            supplier_share_max: 0.3,
            ..supplier()
        },
    );
}

/// Three months: the rule judges periods that ended, over 100-day windows.
fn non_transacting() -> SimConfig {
    SimConfig {
        non_transacting_outlets: 2.0,
        ..quiet(3)
    }
}

#[test]
fn non_transacting_finds_outlet_whose_kpm_did_not_spend() {
    must_find(category::NON_TRANSACTING, non_transacting());
}

#[test]
fn non_transacting_ignores_outlet_with_one_kpm_in_ten_idle() {
    must_not_fire(
        category::NON_TRANSACTING,
        SimConfig {
            non_transacting_share_min: 0.1,
            non_transacting_share_max: 0.1,
            ..non_transacting()
        },
    );
}

/// Three regencies, the fewest the simulator lags one behind (two peers), all in Banten:
/// one time zone closes everyone's days together, so the engine runs half the windows.
/// Three months so that periods end inside the run.
fn realization_lag() -> SimConfig {
    SimConfig {
        regencies: vec!["3601".to_string(), "3602".to_string(), "3604".to_string()],
        scale: 0.3,
        realization_lag_rate: 0.1,
        ..quiet(3)
    }
}

#[test]
fn realization_lag_finds_lagging_regency() {
    must_find(category::REALIZATION_LAG, realization_lag());
}

#[test]
fn realization_lag_ignores_regency_five_points_behind() {
    must_not_fire(
        category::REALIZATION_LAG,
        SimConfig {
            realization_lag_share_min: 0.05,
            realization_lag_share_max: 0.05,
            ..realization_lag()
        },
    );
}
