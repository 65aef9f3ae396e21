//! Which outlets misbehave, when and how: the plan of injected anomalies (one per
//! pattern of DESIGN.md §1) drawn before any record is generated, and the `Truth`
//! lines that describe them. Behaviour reads the plan; it fills in the figures only
//! known once records exist (burst times, affected receipts, non-spending cards).
//!
//! An outlet carries at most one anomaly in any month, so each truth line explains
//! its records unambiguously, and anomalies only go to otherwise normal outlets. A
//! lagging regency-period hosts no other period-level anomaly (non-transacting outlet,
//! card-collection burst), and a card used in many places belongs to an outlet free of
//! anomalies in that period.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde_json::{json, Map, Value};

use super::basket::{self, Basket, BERAS, DAGING_AYAM, N_COMMODITIES, TELUR};
use super::config::SimConfig;
use super::world::{
    mix64, pseudo_id, range, round50, stochastic_round, sub_rng, RegencyW, Role, World, DAY,
};
use pantau_core::model::{category, Bank, Truth};

const TAG_PLAN: u64 = 10;
/// The most KPM one e-Warong should serve (the program's guidelines; the rules read it
/// from `rules/tables/program_norms.csv`).
const KPM_NORM: usize = 300;
const TAG_BUNDLE: u64 = 11;
// Generators of their own, so that these patterns' draws do not shift the plan of the
// patterns drawn before them.
const TAG_LAG: u64 = 12;
const TAG_MANY_PLACES: u64 = 13;

#[derive(Debug, Clone, Copy)]
pub(crate) enum MonthAnomaly {
    Markup {
        commodity: usize,
        factor: f64,
    },
    Short {
        factor: f64,
    },
    Paperwork {
        share: f64,
        truth: usize,
    },
    /// Every KKS sale charged the same round figure: the month's benefit, whatever the
    /// KPM asked for (a fixed package).
    FixedAmount,
}

#[derive(Debug, Clone)]
pub(crate) struct Burst {
    pub terminal: usize,
    pub cards: u32,
    pub spacing: f64,
    pub night: bool,
    pub truth: usize,
}

/// A card whose whole balance is spent at `outlets`, in that order, within hours.
#[derive(Debug, Clone)]
pub(crate) struct ManyPlaces {
    pub card: u32,
    pub outlets: Vec<usize>,
    pub truth: usize,
}

/// A regency-period whose KPM are partly delayed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lag {
    /// Chance that a would-be spender is delayed.
    pub share: f64,
    pub truth: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Ring {
    pub supplier: u32,
    /// One bundle per (year, monthly benefit): prices follow the year, the bundle the benefit.
    pub bundles: Vec<(i32, i64, Basket)>,
}

impl Ring {
    pub(crate) fn bundle(&self, year: i32, monthly: i64) -> Option<&Basket> {
        self.bundles
            .iter()
            .find(|(y, m, _)| *y == year && *m == monthly)
            .map(|(_, _, b)| b)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// (outlet, simulated month) -> anomaly.
    pub month: BTreeMap<(usize, usize), MonthAnomaly>,
    /// (outlet, period index in its regency) -> burst.
    pub bursts: BTreeMap<(usize, usize), Burst>,
    /// (outlet, period index) -> (share of KPM not spending, truth line).
    pub non_transacting: BTreeMap<(usize, usize), (f64, usize)>,
    /// (regency, period index) -> realization lag.
    pub lag: BTreeMap<(usize, usize), Lag>,
    /// (home outlet of the card, period index) -> cards used in many places.
    pub many_places: BTreeMap<(usize, usize), Vec<ManyPlaces>>,
    pub rings: Vec<Ring>,
    pub truth: Vec<Truth>,
}

pub(crate) fn dt(t: i64, offset: FixedOffset) -> DateTime<FixedOffset> {
    DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .with_timezone(&offset)
}

pub(crate) fn params(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Regency-level unit prices without per-sale noise: what a supplier would quote.
pub(crate) fn regency_prices(
    world: &World,
    r: usize,
    year: i32,
    uplift: f64,
) -> [i64; N_COMMODITIES] {
    let reg = &world.regencies[r];
    let mut prices = std::array::from_fn(|c| {
        round50(basket::base_price(c, reg.zone, year) * reg.price_factor[c] * uplift)
    });
    if let Some(cap) = reg.rice_cap_of_year(year) {
        prices[BERAS] = prices[BERAS].min(cap);
    }
    prices
}

/// A truth line spanning the whole simulated history of a regency.
fn history_truth(
    reg: &RegencyW,
    category: &str,
    entity_type: &str,
    entity_id: &str,
    params: Map<String, Value>,
) -> Truth {
    Truth {
        category: category.to_string(),
        entity_type: entity_type.to_string(),
        entity_id: entity_id.to_string(),
        regency_code: reg.code.clone(),
        start: dt(reg.history_start(), reg.offset),
        end: dt(reg.history_end() - 1, reg.offset),
        outlets: Vec::new(),
        params,
    }
}

pub(crate) fn plan(cfg: &SimConfig, world: &mut World) -> Plan {
    let mut rng = sub_rng(cfg.seed, TAG_PLAN, 0);
    let mut plan = Plan::default();
    let n_months = cfg.months as usize;

    // Seasonal outlets, spread over regencies but never more than a quarter of one.
    let n_outlets = world.outlets.len();
    let mut n_seasonal = (cfg.seasonal_rate * n_outlets as f64).round() as usize;
    if cfg.seasonal_rate > 0.0 {
        n_seasonal = n_seasonal.max(1);
    }
    let mut order: Vec<usize> = (0..n_outlets).collect();
    order.shuffle(&mut rng);
    let mut per_regency = vec![0usize; world.regencies.len()];
    for &o in &order {
        if n_seasonal == 0 {
            break;
        }
        let r = world.outlets[o].regency;
        let cap = (world.regencies[r].outlets.len() / 4).max(1);
        if per_regency[r] >= cap {
            continue;
        }
        per_regency[r] += 1;
        n_seasonal -= 1;
        world.outlets[o].role = Role::Seasonal;
        if rng.random_bool(0.5) {
            // The press cases: a phone-credit counter or a tyre kiosk turned e-Warong.
            let kind = ["Counter Pulsa", "Kios Ban", "Konter HP", "Bengkel"]
                .choose(&mut rng)
                .copied()
                .unwrap_or("Counter Pulsa");
            let core = world.outlets[o]
                .name
                .split_whitespace()
                .last()
                .unwrap_or("Jaya")
                .to_string();
            world.outlets[o].name = format!("{kind} {core}");
        }
    }
    let seasonal: Vec<usize> = (0..n_outlets)
        .filter(|&o| world.outlets[o].role == Role::Seasonal)
        .collect();
    for o in seasonal {
        let out = &world.outlets[o];
        plan.truth.push(history_truth(
            &world.regencies[out.regency],
            category::SEASONAL_OUTLET,
            "outlet",
            &out.id,
            params(json!({
                "window_days": cfg.seasonal_window_days,
                "leak": cfg.seasonal_leak,
                "ordinary_customers": false,
                "name": out.name,
            })),
        ));
    }

    // Supplier rings: several normal outlets of one regency, keeping some peers normal.
    let supplier_salt = mix64(cfg.seed ^ 0x5EED_5A1E);
    for k in 0..cfg.supplier_rings as usize {
        let mut candidates: Vec<usize> = (0..world.regencies.len()).collect();
        candidates.shuffle(&mut rng);
        let mut chosen = None;
        for r in candidates {
            let normal: Vec<usize> = world.regencies[r]
                .outlets
                .clone()
                .filter(|&o| world.outlets[o].role == Role::Normal)
                .collect();
            let room = normal.len().saturating_sub(2);
            if room >= 2 {
                chosen = Some((r, normal, room));
                break;
            }
        }
        let Some((r, normal, room)) = chosen else {
            break;
        };
        let size = rng
            .random_range(cfg.ring_size_min..=cfg.ring_size_max.max(cfg.ring_size_min))
            .min(room as u32) as usize;
        // The supplier's bundle has one price list, the regency's: its outlets are outside
        // the interior kecamatan, where every shelf is dearer.
        let lowland: Vec<usize> = normal
            .iter()
            .copied()
            .filter(|&o| {
                let out = &world.outlets[o];
                !world
                    .dear_kecamatan
                    .iter()
                    .any(|k| k.regency == r && k.code == out.district)
            })
            .collect();
        let pool = if lowland.len() >= size {
            &lowland
        } else {
            &normal
        };
        let mut members: Vec<usize> = pool.choose_multiple(&mut rng, size).copied().collect();
        members.sort_unstable();
        let supplier = world.counterparties.len() as u32;
        world
            .counterparties
            .push(pseudo_id("W", supplier_salt, k as u64));
        let ring_idx = plan.rings.len();
        for &o in &members {
            world.outlets[o].role = Role::Ring(ring_idx);
        }
        // Bundles priced by the supplier, a little above the regency's shelves.
        let uplift = rng.random_range(1.0..1.08);
        let mut brng = sub_rng(cfg.seed, TAG_BUNDLE, k as u64);
        let reg = &world.regencies[r];
        let mut keys: Vec<(i32, i64)> = Vec::new();
        for m in 0..n_months {
            let year = reg.month_years[m];
            let month_no = reg.month_labels[m][5..7].parse::<u32>().unwrap_or(1);
            let key = (year, super::world::monthly_benefit(year, month_no));
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        let mut bundles = Vec::new();
        for (year, monthly) in keys {
            let prices = regency_prices(world, r, year, uplift);
            if let Some(b) = basket::fixed_bundle(&mut brng, &prices, monthly) {
                bundles.push((year, monthly, b));
            }
        }
        let reg = &world.regencies[r];
        let first = bundles.first().map(|(_, m, b)| (*m, b.items()));
        plan.truth.push(Truth {
            category: category::SUPPLIER_DEPENDENT.to_string(),
            entity_type: "ring".to_string(),
            entity_id: world.counterparties[supplier as usize].clone(),
            regency_code: reg.code.clone(),
            start: dt(reg.history_start(), reg.offset),
            end: dt(reg.history_end() - 1, reg.offset),
            outlets: members
                .iter()
                .map(|&o| world.outlets[o].id.clone())
                .collect(),
            params: params(json!({
                "supplier_id": world.counterparties[supplier as usize],
                "share_min": cfg.supplier_share_min,
                "share_max": cfg.supplier_share_max,
                "transfer_delay_days": [1, 2],
                "bundle_amount": first.as_ref().map(|f| f.0),
                "bundle": first.map(|f| f.1),
            })),
        });
        // Every sale of a ring outlet is the supplier's bundle at the whole benefit: the
        // fixed-amount pattern too.
        for &o in &members {
            plan.truth.push(history_truth(
                reg,
                category::FIXED_AMOUNT,
                "outlet",
                &world.outlets[o].id,
                params(json!({
                    "cause": "supplier bundle",
                    "supplier_id": world.counterparties[supplier as usize],
                })),
            ));
        }
        plan.rings.push(Ring { supplier, bundles });
    }

    // Month-level anomalies: counts per (regency, month), at least one of each kind in
    // the run whenever its rate is above zero.
    let rates = [
        cfg.price_markup_rate,
        cfg.short_quantity_rate,
        cfg.paperwork_rate,
        cfg.fixed_amount_rate,
    ];
    let n_reg = world.regencies.len();
    let mut counts = vec![[0usize; 4]; n_reg * n_months];
    for cell in counts.iter_mut() {
        for (kind, &rate) in rates.iter().enumerate() {
            cell[kind] = stochastic_round(&mut rng, rate);
        }
    }
    for (kind, &rate) in rates.iter().enumerate() {
        if rate > 0.0 && counts.iter().all(|c| c[kind] == 0) {
            let i = rng.random_range(0..counts.len());
            counts[i][kind] = 1;
        }
    }
    let mut busy: BTreeSet<(usize, usize)> = BTreeSet::new();
    for r in 0..n_reg {
        for m in 0..n_months {
            let cell = counts[r * n_months + m];
            for (kind, &count) in cell.iter().enumerate() {
                for _ in 0..count {
                    let free: Vec<usize> = world.regencies[r]
                        .outlets
                        .clone()
                        .filter(|&o| {
                            world.outlets[o].role == Role::Normal && !busy.contains(&(o, m))
                        })
                        .collect();
                    let Some(&o) = free.choose(&mut rng) else {
                        continue;
                    };
                    busy.insert((o, m));
                    let reg = &world.regencies[r];
                    let out = &world.outlets[o];
                    let (start, end) = (reg.month_starts[m], reg.month_starts[m + 1] - 1);
                    let (cat, anomaly, p) = match kind {
                        0 => {
                            let commodity = *[BERAS, TELUR, DAGING_AYAM]
                                .choose(&mut rng)
                                .unwrap_or(&BERAS);
                            let factor =
                                range(&mut rng, cfg.markup_factor_min, cfg.markup_factor_max);
                            (
                                category::PRICE_MARKUP,
                                MonthAnomaly::Markup { commodity, factor },
                                json!({
                                    "commodity": basket::NAMES[commodity],
                                    "factor": (factor * 1000.0).round() / 1000.0,
                                    "month": reg.month_labels[m],
                                }),
                            )
                        }
                        1 => {
                            let factor =
                                range(&mut rng, cfg.short_factor_min, cfg.short_factor_max);
                            let weighed: Vec<&str> = (0..N_COMMODITIES)
                                .filter(|&c| basket::is_weighed(c))
                                .map(|c| basket::NAMES[c])
                                .collect();
                            (
                                category::SHORT_QUANTITY,
                                MonthAnomaly::Short { factor },
                                json!({
                                    "commodity": "all weighed commodities",
                                    "commodities": weighed,
                                    "factor": (factor * 1000.0).round() / 1000.0,
                                    "month": reg.month_labels[m],
                                }),
                            )
                        }
                        3 => (
                            category::FIXED_AMOUNT,
                            MonthAnomaly::FixedAmount,
                            json!({ "month": reg.month_labels[m] }),
                        ),
                        _ => {
                            let share =
                                range(&mut rng, cfg.paperwork_share_min, cfg.paperwork_share_max);
                            (
                                category::PAPERWORK_MISMATCH,
                                MonthAnomaly::Paperwork {
                                    share,
                                    truth: plan.truth.len(),
                                },
                                json!({
                                    "share": (share * 1000.0).round() / 1000.0,
                                    "overcharge_min": cfg.overcharge_min,
                                    "overcharge_max": cfg.overcharge_max,
                                    "month": reg.month_labels[m],
                                    "purchases": 0,
                                    "overcharged": 0,
                                    "ineligible_items": 0,
                                }),
                            )
                        }
                    };
                    plan.month.insert((o, m), anomaly);
                    plan.truth.push(Truth {
                        category: cat.to_string(),
                        entity_type: "outlet".to_string(),
                        entity_id: out.id.clone(),
                        regency_code: reg.code.clone(),
                        start: dt(start, reg.offset),
                        end: dt(end, reg.offset),
                        outlets: Vec::new(),
                        params: params(p),
                    });
                }
            }
        }
    }

    // Period-level anomalies need the outlet free in every month of the period.
    let mut burst_cells: Vec<(usize, usize)> = Vec::new();
    for r in 0..n_reg {
        for (p, period) in world.regencies[r].periods.iter().enumerate() {
            let n = stochastic_round(&mut rng, cfg.card_collection_rate * period.months as f64);
            for _ in 0..n {
                burst_cells.push((r, p));
            }
        }
    }
    if cfg.card_collection_rate > 0.0 && burst_cells.is_empty() {
        let r = rng.random_range(0..n_reg);
        let p = rng.random_range(0..world.regencies[r].periods.len());
        burst_cells.push((r, p));
    }
    let mut nontx_cells: Vec<(usize, usize)> = Vec::new();
    for r in 0..n_reg {
        for _ in 0..stochastic_round(&mut rng, cfg.non_transacting_outlets) {
            let p = rng.random_range(0..world.regencies[r].periods.len());
            nontx_cells.push((r, p));
        }
    }
    if cfg.non_transacting_outlets > 0.0 && nontx_cells.is_empty() {
        let r = rng.random_range(0..n_reg);
        let p = rng.random_range(0..world.regencies[r].periods.len());
        nontx_cells.push((r, p));
    }
    // Realization lag: whole regency-periods, decided before the other period-level
    // anomalies so that those can keep out of them.
    let mut lrng = sub_rng(cfg.seed, TAG_LAG, 0);
    let mut lag_cells: Vec<(usize, usize)> = Vec::new();
    // A regency is compared with the others of its province (an engine holds whole
    // provinces); with fewer than three there, a lagging one has too few peers.
    let province = |r: usize| world.regencies[r].code.get(..2).unwrap_or_default();
    let comparable: Vec<usize> = (0..n_reg)
        .filter(|r| (0..n_reg).filter(|o| province(*o) == province(*r)).count() >= 3)
        .collect();
    if !comparable.is_empty() && cfg.realization_lag_rate > 0.0 {
        for &r in &comparable {
            for p in 0..world.regencies[r].periods.len() {
                if lrng.random_bool(cfg.realization_lag_rate) {
                    lag_cells.push((r, p));
                }
            }
        }
        if lag_cells.is_empty() {
            let r = comparable[lrng.random_range(0..comparable.len())];
            let p = lrng.random_range(0..world.regencies[r].periods.len());
            lag_cells.push((r, p));
        }
    }
    let lagging: BTreeSet<(usize, usize)> = lag_cells.iter().copied().collect();
    // A burst or non-transacting outlet drawn into a lagging cell moves to another period
    // of its regency if one is free of lag, else anywhere free of lag, else is dropped.
    let open: Vec<(usize, usize)> = (0..n_reg)
        .flat_map(|r| (0..world.regencies[r].periods.len()).map(move |p| (r, p)))
        .filter(|c| !lagging.contains(c))
        .collect();
    for cells in [&mut burst_cells, &mut nontx_cells] {
        for cell in cells.iter_mut() {
            if !lagging.contains(cell) {
                continue;
            }
            let same: Vec<(usize, usize)> =
                open.iter().copied().filter(|c| c.0 == cell.0).collect();
            let pool = if same.is_empty() { &open } else { &same };
            if let Some(&c) = pool.choose(&mut lrng) {
                *cell = c;
            }
        }
        cells.retain(|c| !lagging.contains(c));
    }
    for &(r, p) in &lag_cells {
        let share = range(
            &mut lrng,
            cfg.realization_lag_share_min,
            cfg.realization_lag_share_max,
        );
        let reg = &world.regencies[r];
        let period = &reg.periods[p];
        // The banks' runs begin here; behaviour moves it to the first card credited.
        let first_credit = period
            .credits
            .iter()
            .map(|c| c.1)
            .min()
            .unwrap_or(period.start);
        let truth = plan.truth.len();
        plan.truth.push(Truth {
            category: category::REALIZATION_LAG.to_string(),
            entity_type: "regency".to_string(),
            entity_id: reg.code.clone(),
            regency_code: reg.code.clone(),
            start: dt(first_credit, reg.offset),
            end: dt(period.end - 1, reg.offset),
            outlets: Vec::new(),
            params: params(json!({
                "period": period.label,
                "months": period.months,
                "share": (share * 1000.0).round() / 1000.0,
                // Filled in once the KPM's fates are drawn.
                "would_be_spenders": 0,
                "delayed_kpm": 0,
                "delayed_never_spent": 0,
            })),
        });
        plan.lag.insert((r, p), Lag { share, truth });
    }

    let take_free = |world: &World,
                     busy: &mut BTreeSet<(usize, usize)>,
                     rng: &mut StdRng,
                     r: usize,
                     p: usize| {
        let period = &world.regencies[r].periods[p];
        let months = period.first_month..period.first_month + period.months;
        let free: Vec<usize> = world.regencies[r]
            .outlets
            .clone()
            .filter(|&o| {
                world.outlets[o].role == Role::Normal
                    && months.clone().all(|m| !busy.contains(&(o, m)))
            })
            .collect();
        let o = *free.choose(rng)?;
        for m in months {
            busy.insert((o, m));
        }
        Some(o)
    };
    for (r, p) in burst_cells {
        let Some(o) = take_free(world, &mut busy, &mut rng, r, p) else {
            continue;
        };
        let out = &world.outlets[o];
        let reg = &world.regencies[r];
        let period = &reg.periods[p];
        let kpm = out.kpm.len() as u32;
        let cards = rng
            .random_range(cfg.collection_cards_min..=cfg.collection_cards_max)
            .min(kpm.saturating_sub(1))
            .max(1);
        let spacing = range(
            &mut rng,
            cfg.collection_spacing_min_secs as f64,
            cfg.collection_spacing_max_secs as f64,
        );
        let terminal = rng.random_range(0..out.terminals.len());
        let night = rng.random_bool(cfg.collection_night_share);
        let truth = plan.truth.len();
        plan.truth.push(Truth {
            category: category::CARD_COLLECTION.to_string(),
            entity_type: "terminal".to_string(),
            entity_id: out.terminals[terminal].clone(),
            regency_code: reg.code.clone(),
            // Replaced by the first and last swipe once the burst is generated.
            start: dt(period.start, reg.offset),
            end: dt(period.start + DAY, reg.offset),
            outlets: Vec::new(),
            params: params(json!({
                "outlet_id": out.id,
                "cards": cards,
                "spacing_secs": (spacing * 10.0).round() / 10.0,
                "jitter_secs": cfg.collection_jitter_secs,
                "night": night,
                "period": period.label,
            })),
        });
        plan.bursts.insert(
            (o, p),
            Burst {
                terminal,
                cards,
                spacing,
                night,
                truth,
            },
        );
    }
    for (r, p) in nontx_cells {
        let Some(o) = take_free(world, &mut busy, &mut rng, r, p) else {
            continue;
        };
        let share = range(
            &mut rng,
            cfg.non_transacting_share_min,
            cfg.non_transacting_share_max,
        );
        let out = &world.outlets[o];
        let reg = &world.regencies[r];
        let period = &reg.periods[p];
        let truth = plan.truth.len();
        plan.truth.push(Truth {
            category: category::NON_TRANSACTING.to_string(),
            entity_type: "outlet".to_string(),
            entity_id: out.id.clone(),
            regency_code: reg.code.clone(),
            start: dt(period.start, reg.offset),
            end: dt(period.end - 1, reg.offset),
            outlets: Vec::new(),
            params: params(json!({
                "share": (share * 1000.0).round() / 1000.0,
                "period": period.label,
                "months": period.months,
                "kpm": out.kpm.len(),
                "non_spenders": 0,
            })),
        });
        plan.non_transacting.insert((o, p), (share, truth));
    }

    plan_many_places(cfg, world, &busy, &mut plan);
    for out in world.outlets.iter().filter(|o| o.kpm.len() > KPM_NORM) {
        plan.truth.push(history_truth(
            &world.regencies[out.regency],
            category::KPM_OVER_NORM,
            "outlet",
            &out.id,
            params(json!({ "kpm_assigned": out.kpm.len(), "norm": KPM_NORM })),
        ));
    }
    for k in &world.dear_kecamatan {
        plan.truth.push(history_truth(
            &world.regencies[k.regency],
            category::AREA_PRICE_LEVEL,
            "district",
            &k.code,
            params(json!({
                "premium": (k.premium * 1000.0).round() / 1000.0,
                "outlets": k.outlets,
            })),
        ));
    }
    plan
}

/// Cards spent at several outlets within hours: per regency and month a count, each
/// case a card of an outlet free of anomalies in that period whose bank has enough
/// ordinary outlets in the regency.
fn plan_many_places(
    cfg: &SimConfig,
    world: &World,
    busy: &BTreeSet<(usize, usize)>,
    plan: &mut Plan,
) {
    let mut rng = sub_rng(cfg.seed, TAG_MANY_PLACES, 0);
    let n_months = cfg.months as usize;
    let n_reg = world.regencies.len();
    let mut cases: Vec<(usize, usize)> = Vec::new();
    for r in 0..n_reg {
        for m in 0..n_months {
            for _ in 0..stochastic_round(&mut rng, cfg.many_places_rate) {
                cases.push((r, m));
            }
        }
    }
    let mut used: BTreeSet<u32> = BTreeSet::new();
    let mut placed = false;
    for (r, m) in cases {
        placed |= place_many_places(cfg, world, busy, plan, &mut rng, &mut used, r, m);
    }
    if cfg.many_places_rate > 0.0 && !placed {
        // Any regency-month that can host one will do; try them in random order.
        let mut all: Vec<(usize, usize)> = (0..n_reg)
            .flat_map(|r| (0..n_months).map(move |m| (r, m)))
            .collect();
        all.shuffle(&mut rng);
        for (r, m) in all {
            if place_many_places(cfg, world, busy, plan, &mut rng, &mut used, r, m) {
                break;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn place_many_places(
    cfg: &SimConfig,
    world: &World,
    busy: &BTreeSet<(usize, usize)>,
    plan: &mut Plan,
    rng: &mut StdRng,
    used: &mut BTreeSet<u32>,
    r: usize,
    m: usize,
) -> bool {
    let reg = &world.regencies[r];
    let Some(p) = reg
        .periods
        .iter()
        .position(|pd| (pd.first_month..pd.first_month + pd.months).contains(&m))
    else {
        return false;
    };
    let period = &reg.periods[p];
    let months = period.first_month..period.first_month + period.months;
    let free = |o: usize| months.clone().all(|mm| !busy.contains(&(o, mm)));
    // Where a card of each bank can be swiped: the bank's ordinary outlets.
    let swipe_outlets = |bank: Bank| -> Vec<usize> {
        reg.outlets
            .clone()
            .filter(|&o| world.outlets[o].role == Role::Normal && world.outlets[o].bank == bank)
            .collect()
    };
    let min = cfg.many_places_outlets_min as usize;
    let homes: Vec<usize> = reg
        .outlets
        .clone()
        .filter(|&o| world.outlets[o].role == Role::Normal && free(o))
        .filter(|&o| swipe_outlets(world.outlets[o].bank).len() >= min)
        .collect();
    let Some(&home) = homes.choose(rng) else {
        return false;
    };
    let out = &world.outlets[home];
    let cards: Vec<u32> = out.kpm.clone().filter(|c| !used.contains(c)).collect();
    let Some(&card) = cards.choose(rng) else {
        return false;
    };
    used.insert(card);
    let mut pool = swipe_outlets(out.bank);
    pool.shuffle(rng);
    let k = rng
        .random_range(min..=(cfg.many_places_outlets_max as usize).max(min))
        .min(pool.len());
    // Prefer outlets without an anomaly of their own that period, in kecamatan not yet
    // visited: a cloned card travels, and its receipts stay free of other patterns.
    let mut chosen: Vec<usize> = Vec::with_capacity(k);
    for pass in 0..4 {
        let (want_free, want_new_district) = (pass < 2, pass % 2 == 0);
        for &o in &pool {
            if chosen.len() == k {
                break;
            }
            if chosen.contains(&o) || (want_free && !free(o)) {
                continue;
            }
            let district = &world.outlets[o].district;
            if want_new_district
                && chosen
                    .iter()
                    .any(|&c| &world.outlets[c].district == district)
            {
                continue;
            }
            chosen.push(o);
        }
    }
    let truth = plan.truth.len();
    plan.truth.push(Truth {
        category: category::CARD_MANY_PLACES.to_string(),
        entity_type: "card".to_string(),
        entity_id: world.cards[card as usize].clone(),
        regency_code: reg.code.clone(),
        // Replaced by the first and last swipe once they are generated.
        start: dt(period.start, reg.offset),
        end: dt(period.start, reg.offset),
        outlets: Vec::new(),
        params: params(json!({
            "outlet_id": out.id,
            "period": period.label,
            "outlets": chosen.iter().map(|&o| world.outlets[o].id.as_str()).collect::<Vec<_>>(),
            "swipes": 0,
            "hours": cfg.many_places_hours,
        })),
    });
    plan.many_places
        .entry((home, p))
        .or_default()
        .push(ManyPlaces {
            card,
            outlets: chosen,
            truth,
        });
    true
}
