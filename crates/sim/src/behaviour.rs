//! What people do, period by period: benefit credits, KPM shopping trips (with
//! reversals, late spenders, visits to another outlet), the anomalies of the plan acted
//! out (seasonal trading and its leaks, ring bundles, card-collection bursts, marked-up
//! or short-weighed or mis-documented receipts, unspent benefits, cards swiped in many
//! places, regencies whose KPM spend late), ordinary customers, and the transfers that
//! take money out of each outlet's account.
//!
//! Output is drafts: UTC seconds and indices, no ids and no strings, so the output
//! stage can sort cheaply and number records in event-time order.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal, Poisson};
use serde_json::json;

use super::anomalies::{dt, params, ManyPlaces, MonthAnomaly, Plan};
use super::basket::{self, Basket, BasketOpts, N_COMMODITIES};
use super::config::SimConfig;
use super::world::{
    at_local, local_day, round50, shop_secs, sub_rng, weekday, Role, World, DAY, HOUR,
};
use pantau_core::model::{category, Bank, Item, Payment, Truth, TxnType};

const TAG_KKS: u64 = 20;
const TAG_ORDINARY: u64 = 21;
const TAG_TRANSFER: u64 = 22;
const TAG_LAG: u64 = 23;
const TAG_MANY_PLACES: u64 = 24;
const TAG_QUEUE: u64 = 25;

/// A delayed KPM of a lagging regency first spends in this last share of the time from
/// the credit to the period's end ...
const LAG_LAST_SHARE: f64 = 0.2;
/// ... or, with this probability, not at all that period.
const LAG_NEVER: f64 = 0.3;

/// No reversed purchase.
pub(crate) const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(crate) struct TxnDraft {
    pub t: i64,
    pub outlet: u32,
    pub terminal: u8,
    pub card: u32,
    pub payment: Payment,
    pub kind: TxnType,
    /// Index of the reversed purchase in the draft list, or `NONE`.
    pub reverses: u32,
    pub amount: i64,
    pub items: Option<Vec<Item>>,
    pub balance_after: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct DisbDraft {
    pub t: i64,
    pub card: u32,
    pub regency: u32,
    pub period: u32,
    pub bank: Bank,
}

#[derive(Debug, Clone)]
pub(crate) struct TrfDraft {
    pub t: i64,
    pub outlet: u32,
    pub counterparty: u32,
    pub amount: i64,
}

#[derive(Debug, Default)]
pub(crate) struct Drafts {
    pub txns: Vec<TxnDraft>,
    pub disbs: Vec<DisbDraft>,
    pub transfers: Vec<TrfDraft>,
}

/// Daily takings of one outlet, indexed by local day since the history began.
#[derive(Debug, Clone)]
struct Takings {
    kks: Vec<i64>,
    other: Vec<i64>,
}

struct Ctx<'a> {
    cfg: &'a SimConfig,
    world: &'a World,
    plan: &'a mut Plan,
    drafts: &'a mut Drafts,
    takings: Vec<Takings>,
    /// Balance of each card (ordinary customers' entries stay 0).
    balance: Vec<i64>,
    /// Rice sold above the premium ceiling, per outlet and month: only a markup or a
    /// rigged scale does it, and the ceiling rule must find each.
    above_ceiling: BTreeMap<(usize, usize), AboveCeiling>,
}

struct AboveCeiling {
    ceiling: i64,
    highest: i64,
    sales: u32,
    first: i64,
    last: i64,
}

impl Ctx<'_> {
    fn book(&mut self, outlet: usize, t: i64, amount: i64, kks: bool) {
        let o = &self.world.outlets[outlet];
        let reg = &self.world.regencies[o.regency];
        let day = local_day(t, reg.off) - local_day(reg.history_start(), reg.off);
        let tk = &mut self.takings[outlet];
        let v = if kks { &mut tk.kks } else { &mut tk.other };
        if let Some(x) = usize::try_from(day).ok().and_then(|d| v.get_mut(d)) {
            *x += amount;
        }
    }

    /// Unit prices of one sale at an outlet: regency and outlet levels, a little noise.
    fn sale_prices(&self, rng: &mut StdRng, outlet: usize, t: i64) -> [i64; N_COMMODITIES] {
        let o = &self.world.outlets[outlet];
        let reg = &self.world.regencies[o.regency];
        let month = reg.month_of(t);
        let year = reg.month_years[month];
        let mut prices = std::array::from_fn(|c| {
            round50(
                basket::base_price(c, reg.zone, year)
                    * reg.price_factor[c]
                    * reg.shock(t, c)
                    * o.price_factor[c]
                    * rng.random_range(0.99..1.01),
            )
        });
        // Even in a dear kecamatan or a failed harvest.
        if let Some(cap) = reg.rice_cap(month) {
            prices[basket::BERAS] = prices[basket::BERAS].min(cap);
        }
        prices
    }

    /// One KKS sale worth at most `budget` at `outlet`, shaped by the outlet's anomaly of
    /// the month. Returns the items and the amount charged.
    fn kks_sale(
        &mut self,
        rng: &mut StdRng,
        outlet: usize,
        t: i64,
        budget: i64,
        drain: bool,
    ) -> Option<(Vec<Item>, i64)> {
        let o = &self.world.outlets[outlet];
        let reg = &self.world.regencies[o.regency];
        let month = reg.month_of(t);
        if let Role::Ring(k) = o.role {
            let year = reg.month_years[month];
            let monthly = period_monthly(self.world, o.regency, month);
            let b = self.plan.rings[k].bundle(year, monthly)?;
            return (b.sum <= budget).then(|| (b.items(), b.sum));
        }
        let mut prices = self.sale_prices(rng, outlet, t);
        let mut opts = BasketOpts {
            drain,
            ..BasketOpts::default()
        };
        match self.plan.month.get(&(outlet, month)).copied() {
            Some(MonthAnomaly::Markup { commodity, factor }) => {
                prices[commodity] = round50(prices[commodity] as f64 * factor);
                opts.force = Some(commodity);
            }
            Some(MonthAnomaly::Short { factor }) => {
                // A rigged scale: every weighed commodity comes out `factor` light and
                // the receipt shows the real weight, so each of their unit prices is
                // 1/factor above the peers' by the same ratio. Bunches (SAYUR) are
                // counted, not weighed, and stay at the shelf price.
                for (c, price) in prices.iter_mut().enumerate() {
                    if basket::is_weighed(c) {
                        *price = round50(*price as f64 / factor);
                    }
                }
            }
            Some(MonthAnomaly::Paperwork { share, truth }) => {
                let cfg = self.cfg;
                let p = &mut self.plan.truth[truth].params;
                bump(p, "purchases");
                if rng.random_bool(share) {
                    if rng.random_bool(0.5) {
                        let f = if cfg.overcharge_max > cfg.overcharge_min {
                            rng.random_range(cfg.overcharge_min..=cfg.overcharge_max)
                        } else {
                            cfg.overcharge_min
                        };
                        let inner = (budget as f64 / (1.0 + f)).floor() as i64;
                        let b = basket::build(rng, &prices, inner, BasketOpts::default())?;
                        let amount = ((b.sum as f64 * (1.0 + f)).round() as i64).min(budget);
                        bump(&mut self.plan.truth[truth].params, "overcharged");
                        return Some((b.items(), amount));
                    }
                    opts.ineligible = Some(rng.random_range(0..basket::INELIGIBLE.len()));
                    bump(&mut self.plan.truth[truth].params, "ineligible_items");
                }
            }
            Some(MonthAnomaly::FixedAmount) => {
                let monthly = period_monthly(self.world, o.regency, month);
                if budget < monthly {
                    return None;
                }
                let b = basket::build(
                    rng,
                    &prices,
                    monthly,
                    BasketOpts {
                        drain: true,
                        ..BasketOpts::default()
                    },
                )?;
                return Some((b.items(), b.sum));
            }
            None => {}
        }
        let b: Basket = basket::build(rng, &prices, budget, opts)?;
        let items = b.items();
        if let Some(ceiling) = reg.rice_ceiling[month].filter(|&c| prices[basket::BERAS] > c) {
            if items
                .iter()
                .any(|i| i.commodity == basket::NAMES[basket::BERAS])
            {
                let seen = self
                    .above_ceiling
                    .entry((outlet, month))
                    .or_insert(AboveCeiling {
                        ceiling,
                        highest: 0,
                        sales: 0,
                        first: t,
                        last: t,
                    });
                seen.highest = seen.highest.max(prices[basket::BERAS]);
                seen.sales += 1;
                seen.first = seen.first.min(t);
                seen.last = seen.last.max(t);
            }
        }
        Some((items, b.sum))
    }

    #[allow(clippy::too_many_arguments)]
    fn push_kks(
        &mut self,
        t: i64,
        outlet: usize,
        terminal: usize,
        card: u32,
        kind: TxnType,
        reverses: u32,
        amount: i64,
        items: Option<Vec<Item>>,
    ) -> u32 {
        let idx = self.drafts.txns.len() as u32;
        let bal = &mut self.balance[card as usize];
        match kind {
            TxnType::Purchase => *bal -= amount,
            TxnType::Reversal => *bal += amount,
        }
        let balance_after = *bal;
        self.drafts.txns.push(TxnDraft {
            t,
            outlet: outlet as u32,
            terminal: terminal as u8,
            card,
            payment: Payment::Kks,
            kind,
            reverses,
            amount,
            items,
            balance_after: Some(balance_after),
        });
        let signed = if kind == TxnType::Purchase {
            amount
        } else {
            -amount
        };
        self.book(outlet, t, signed, true);
        idx
    }
}

fn bump(p: &mut serde_json::Map<String, serde_json::Value>, key: &str) {
    let n = p.get(key).and_then(|v| v.as_i64()).unwrap_or(0);
    p.insert(key.to_string(), json!(n + 1));
}

/// Monthly benefit in force for a simulated month of a regency.
fn period_monthly(world: &World, r: usize, month: usize) -> i64 {
    let reg = &world.regencies[r];
    let label = &reg.month_labels[month];
    let m = label[5..7].parse::<u32>().unwrap_or(1);
    super::world::monthly_benefit(reg.month_years[month], m)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// `delayed`: held back by a lagging regency, spends only near the period's end.
    Spend {
        late: bool,
        delayed: bool,
    },
    Idle(IdleCause),
    Collected,
    /// Index into the plan's list of many-places cards of this outlet and period.
    ManyPlaces(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum IdleCause {
    Outlet,
    Baseline,
    Lag,
}

pub(crate) fn generate(cfg: &SimConfig, world: &World, plan: &mut Plan) -> Drafts {
    let mut drafts = Drafts::default();
    let takings = world
        .outlets
        .iter()
        .map(|o| {
            let reg = &world.regencies[o.regency];
            let days = ((reg.history_end() - reg.history_start()) / DAY + 1) as usize;
            Takings {
                kks: vec![0; days],
                other: vec![0; days],
            }
        })
        .collect();
    let mut ctx = Ctx {
        cfg,
        world,
        plan,
        drafts: &mut drafts,
        takings,
        balance: vec![0; world.cards.len()],
        above_ceiling: BTreeMap::new(),
    };
    for r in 0..world.regencies.len() {
        kks_regency(&mut ctx, r);
    }
    for o in 0..world.outlets.len() {
        ordinary_customers(&mut ctx, o);
    }
    for o in 0..world.outlets.len() {
        transfers(&mut ctx, o);
    }
    for ((o, _), seen) in std::mem::take(&mut ctx.above_ceiling) {
        let out = &world.outlets[o];
        let reg = &world.regencies[out.regency];
        ctx.plan.truth.push(Truth {
            category: category::PRICE_ABOVE_CEILING.to_string(),
            entity_type: "outlet".to_string(),
            entity_id: out.id.clone(),
            regency_code: reg.code.clone(),
            start: dt(seen.first, reg.offset),
            end: dt(seen.last, reg.offset),
            outlets: Vec::new(),
            params: params(json!({
                "commodity": basket::NAMES[basket::BERAS],
                "ceiling": seen.ceiling,
                "highest_price": seen.highest,
                "sales": seen.sales,
            })),
        });
    }
    drafts
}

fn kks_regency(ctx: &mut Ctx, r: usize) {
    let world = ctx.world;
    let cfg = ctx.cfg;
    let reg = &world.regencies[r];
    let mut rng = sub_rng(cfg.seed, TAG_KKS, r as u64);
    // Outlets a KPM may visit instead of home: normal outlets of the same bank.
    let mut by_bank: Vec<(Bank, Vec<usize>)> = Vec::new();
    for o in reg.outlets.clone() {
        let out = &world.outlets[o];
        if out.role != Role::Normal {
            continue;
        }
        match by_bank.iter_mut().find(|(b, _)| *b == out.bank) {
            Some((_, v)) => v.push(o),
            None => by_bank.push((out.bank, vec![o])),
        }
    }
    let exp_delay = Exp::new(1.0 / 3.0).ok();
    let exp_gap = Exp::new(1.0 / 4.0).ok();

    for (p, period) in reg.periods.iter().enumerate() {
        let lag = ctx.plan.lag.get(&(r, p)).copied();
        let mut lag_rng = sub_rng(cfg.seed, TAG_LAG, ((r as u64) << 32) | p as u64);
        let (mut would_spend, mut delayed, mut delayed_idle) = (0u64, 0u64, 0u64);
        let mut first_credit = i64::MAX;
        for o in reg.outlets.clone() {
            let out = &world.outlets[o];
            let (credit0, spread) = period.credit_of(out.bank);
            let n_kpm = out.kpm.len();
            let mut fates = vec![
                Fate::Spend {
                    late: false,
                    delayed: false
                };
                n_kpm
            ];
            let burst = ctx.plan.bursts.get(&(o, p)).cloned();
            let mut victims: Vec<u32> = Vec::new();
            if let Some(b) = &burst {
                let mut idx: Vec<usize> = (0..n_kpm).collect();
                idx.shuffle(&mut rng);
                for &i in idx.iter().take(b.cards as usize) {
                    fates[i] = Fate::Collected;
                    victims.push(out.kpm.start + i as u32);
                }
            }
            let nontx = ctx.plan.non_transacting.get(&(o, p)).copied();
            for f in fates.iter_mut() {
                if *f == Fate::Collected {
                    continue;
                }
                *f = if nontx.is_some_and(|(s, _)| rng.random_bool(s)) {
                    Fate::Idle(IdleCause::Outlet)
                } else if rng.random_bool(cfg.non_transacting_baseline) {
                    Fate::Idle(IdleCause::Baseline)
                } else {
                    Fate::Spend {
                        late: out.role != Role::Seasonal && rng.random_bool(cfg.late_spender_rate),
                        delayed: false,
                    }
                };
            }
            // Overridden after the ordinary draws, so the cards around keep their fates.
            let many: Vec<ManyPlaces> = ctx
                .plan
                .many_places
                .get(&(o, p))
                .cloned()
                .unwrap_or_default();
            for (j, mp) in many.iter().enumerate() {
                if let Some(f) = fates.get_mut((mp.card - out.kpm.start) as usize) {
                    *f = Fate::ManyPlaces(j);
                }
            }
            // A seasonal outlet sells only in its windows, late cards or not, so its KPM
            // are left out of the lag rather than turned into sales outside the windows.
            if let Some(l) = lag.filter(|_| out.role != Role::Seasonal) {
                for f in fates.iter_mut() {
                    let Fate::Spend { late, .. } = *f else {
                        continue;
                    };
                    would_spend += 1;
                    if !lag_rng.random_bool(l.share) {
                        continue;
                    }
                    delayed += 1;
                    *f = if lag_rng.random_bool(LAG_NEVER) {
                        delayed_idle += 1;
                        Fate::Idle(IdleCause::Lag)
                    } else {
                        Fate::Spend {
                            late,
                            delayed: true,
                        }
                    };
                }
            }
            // Credits, in card order within the bank's run.
            let mut credited = vec![0i64; n_kpm];
            for (i, card) in out.kpm.clone().enumerate() {
                let t = credit0 + rng.random_range(0..spread.max(1));
                credited[i] = t;
                first_credit = first_credit.min(t);
                ctx.drafts.disbs.push(DisbDraft {
                    t,
                    card,
                    regency: r as u32,
                    period: p as u32,
                    bank: out.bank,
                });
                ctx.balance[card as usize] += period.amount;
            }
            let queue = credit_day_queue(cfg, world, r, p, o, &fates, &credited);
            let mut idle_count = 0u64;
            for (i, card) in out.kpm.clone().enumerate() {
                let spent = match fates[i] {
                    Fate::Collected => true,
                    Fate::Idle(_) => false,
                    Fate::ManyPlaces(j) => spend_many_places(ctx, r, p, credited[i], &many[j]),
                    Fate::Spend { late, delayed } => {
                        let bank_outlets = by_bank
                            .iter()
                            .find(|(b, _)| *b == out.bank)
                            .map(|(_, v)| v.as_slice())
                            .unwrap_or(&[]);
                        spend(
                            ctx,
                            &mut rng,
                            SpendArgs {
                                r,
                                p,
                                home: o,
                                card,
                                credited: credited[i],
                                late,
                                // The last fifth of the time from the credit to the end.
                                delay_from: delayed.then(|| {
                                    let left = (period.end - credited[i]) as f64;
                                    credited[i] + ((1.0 - LAG_LAST_SHARE) * left) as i64
                                }),
                                bank_outlets,
                                queue_at: queue.iter().find(|(kpm, _)| *kpm == i).map(|(_, t)| *t),
                                exp_delay: exp_delay.as_ref(),
                                exp_gap: exp_gap.as_ref(),
                            },
                        )
                    }
                };
                if !spent {
                    let cause = match fates[i] {
                        Fate::Idle(IdleCause::Outlet) => {
                            idle_count += 1;
                            "outlet"
                        }
                        Fate::Idle(IdleCause::Baseline) => "baseline",
                        Fate::Idle(IdleCause::Lag) => "realization_lag",
                        _ => "no_trip",
                    };
                    ctx.plan.truth.push(Truth {
                        category: category::NON_TRANSACTING.to_string(),
                        entity_type: "card".to_string(),
                        entity_id: world.cards[card as usize].clone(),
                        regency_code: reg.code.clone(),
                        start: dt(period.start, reg.offset),
                        end: dt(period.end - 1, reg.offset),
                        outlets: Vec::new(),
                        params: params(json!({
                            "outlet_id": out.id,
                            "period": period.label,
                            "credited": period.amount,
                            "cause": cause,
                        })),
                    });
                }
            }
            if let Some((_, truth)) = nontx {
                ctx.plan.truth[truth]
                    .params
                    .insert("non_spenders".to_string(), json!(idle_count));
            }
            if let Some(b) = burst {
                collect_cards(ctx, &mut rng, r, p, o, &b, &victims, credit0 + spread);
            }
        }
        if let Some(l) = lag {
            let truth = &mut ctx.plan.truth[l.truth];
            if first_credit < i64::MAX {
                truth.start = dt(first_credit, reg.offset);
            }
            let tp = &mut truth.params;
            tp.insert("would_be_spenders".to_string(), json!(would_spend));
            tp.insert("delayed_kpm".to_string(), json!(delayed));
            tp.insert("delayed_never_spent".to_string(), json!(delayed_idle));
        }
    }
}

/// The morning after an outlet's KPM are credited, a queue at some ordinary outlets
/// (`--queue-rate`): from opening time, KPM who spend that period on time are served one
/// after another (`--queue-service-*-secs` each), each with their own card. Returns the
/// queued KPM (index in the outlet's range) with the instant each is served. Its own
/// generator, so the rest of the simulation is the same with queues or without.
fn credit_day_queue(
    cfg: &SimConfig,
    world: &World,
    r: usize,
    p: usize,
    o: usize,
    fates: &[Fate],
    credited: &[i64],
) -> Vec<(usize, i64)> {
    let out = &world.outlets[o];
    if cfg.queue_rate <= 0.0 || out.role != Role::Normal {
        return Vec::new();
    }
    let mut rng = sub_rng(cfg.seed, TAG_QUEUE, ((o as u64) << 32) | p as u64);
    if !rng.random_bool(cfg.queue_rate) {
        return Vec::new();
    }
    let reg = &world.regencies[r];
    let off = reg.off;
    let Some(last_credit) = credited.iter().max() else {
        return Vec::new();
    };
    let day = local_day(*last_credit, off) + 1;
    let opening = at_local(day, out.open_h * HOUR, off) + rng.random_range(0..600);
    if opening >= reg.periods[p].end {
        return Vec::new();
    }
    let mut waiting: Vec<usize> = (0..fates.len())
        .filter(|&i| {
            matches!(
                fates[i],
                Fate::Spend {
                    late: false,
                    delayed: false
                }
            )
        })
        .collect();
    waiting.shuffle(&mut rng);
    let size = rng.random_range(cfg.queue_size_min..=cfg.queue_size_max) as usize;
    let mut served = opening;
    let mut queue = Vec::with_capacity(size);
    for i in waiting.into_iter().take(size) {
        queue.push((i, served));
        served +=
            i64::from(rng.random_range(cfg.queue_service_min_secs..=cfg.queue_service_max_secs));
    }
    queue
}

struct SpendArgs<'a> {
    r: usize,
    p: usize,
    home: usize,
    card: u32,
    credited: i64,
    late: bool,
    /// A delayed KPM of a lagging regency: no purchase before this instant.
    delay_from: Option<i64>,
    bank_outlets: &'a [usize],
    /// The KPM's place in a credit-day queue at home: the first trip is then.
    queue_at: Option<i64>,
    exp_delay: Option<&'a Exp<f64>>,
    exp_gap: Option<&'a Exp<f64>>,
}

/// One KPM's shopping in a period. Returns whether any purchase was made.
fn spend(ctx: &mut Ctx, rng: &mut StdRng, a: SpendArgs) -> bool {
    let world = ctx.world;
    let cfg = ctx.cfg;
    let reg = &world.regencies[a.r];
    let period = &reg.periods[a.p];
    let home = &world.outlets[a.home];
    let off = reg.off;
    let seasonal = home.role == Role::Seasonal;
    let ring = matches!(home.role, Role::Ring(_));
    let credit_day = local_day(a.credited, off);
    let window = cfg.seasonal_window_days as i64;

    let n_trips = if ring {
        // A pre-packed bundle per month of benefit the card holds.
        let month = reg.month_of(a.credited);
        let monthly = period_monthly(world, a.r, month);
        (ctx.balance[a.card as usize] / monthly.max(1)).clamp(0, 6) as usize
    } else if period.months >= 2 {
        period.months + usize::from(rng.random_bool(0.3))
    } else {
        1 + usize::from(rng.random_bool(0.3))
    };
    if n_trips == 0 {
        return false;
    }

    let period_last = (local_day(period.end - 1, off) - 1).max(credit_day);
    let window_last = credit_day + window - 1;
    // Leaked sales fall after the window, while the card still holds a balance.
    let leaks = seasonal && cfg.seasonal_leak > 0.0;
    let delay_day = a
        .delay_from
        .map(|t| local_day(t, off).clamp(credit_day, period_last));
    let mut days: Vec<i64> = Vec::with_capacity(n_trips);
    for j in 0..n_trips {
        let d = if let Some(first) = delay_day {
            rng.random_range(first..=period_last) - credit_day
        } else if seasonal {
            if leaks && window_last < period_last && rng.random_bool(cfg.seasonal_leak) {
                rng.random_range(window_last + 1..=period_last) - credit_day
            } else {
                rng.random_range(0..window)
            }
        } else if period.months >= 2 && j > 0 {
            let gap = a.exp_delay.map_or(2.0, |e| e.sample(rng));
            (j as f64 * 30.0 + gap) as i64
        } else if j == 0 {
            if a.late {
                rng.random_range(10..=25)
            } else {
                a.exp_delay.map_or(2.0, |e| e.sample(rng)) as i64
            }
        } else {
            let prev = days.last().copied().unwrap_or(0) - credit_day;
            prev + 1 + a.exp_gap.map_or(3.0, |e| e.sample(rng)) as i64
        };
        days.push(credit_day + d);
    }
    // Last day a trip may fall on: a day before the period ends, or the seasonal window.
    let last_day = if seasonal && !leaks {
        window_last
    } else {
        period_last
    };
    let mut times: Vec<i64> = days
        .into_iter()
        .map(|d| {
            let day = d.clamp(credit_day, last_day);
            let mut t = at_local(day, shop_secs(rng, 7, 20), off);
            if t < a.credited + 600 || a.delay_from.is_some_and(|from| t < from) {
                t = at_local(day + 1, shop_secs(rng, 7, 20), off);
            }
            t
        })
        .collect();
    if let (Some(served), Some(first)) = (a.queue_at, times.first_mut()) {
        *first = served;
    }
    times.sort_unstable();
    // Trips at least four hours apart keep each card's balance sequence unambiguous.
    for i in 1..times.len() {
        if times[i] < times[i - 1] + 4 * HOUR {
            times[i] = at_local(local_day(times[i - 1], off) + 1, shop_secs(rng, 7, 20), off);
        }
    }
    let upper = at_local(last_day + 1, 20 * HOUR, off);
    times.retain(|&t| t <= upper);

    let mut spent = false;
    let n = times.len();
    for (j, &t) in times.iter().enumerate() {
        let balance = ctx.balance[a.card as usize];
        let remaining = (n - j) as i64;
        let budget = if ring || j + 1 == n {
            balance
        } else {
            (balance / remaining / 1000) * 1000
        };
        if budget < 15_000 {
            continue;
        }
        let queued = a.queue_at == Some(t);
        let outlet = if !queued
            && !seasonal
            && !ring
            && a.bank_outlets.len() > 1
            && rng.random_bool(cfg.other_outlet_rate)
        {
            *a.bank_outlets
                .iter()
                .filter(|&&o| o != a.home)
                .collect::<Vec<_>>()
                .choose(rng)
                .copied()
                .unwrap_or(&a.home)
        } else {
            a.home
        };
        let drain = j + 1 == n && rng.random_bool(0.5);
        let Some((items, amount)) = ctx.kks_sale(rng, outlet, t, budget, drain) else {
            continue;
        };
        let terminal = rng.random_range(0..world.outlets[outlet].terminals.len());
        let idx = ctx.push_kks(
            t,
            outlet,
            terminal,
            a.card,
            TxnType::Purchase,
            super::behaviour::NONE,
            amount,
            Some(items),
        );
        spent = true;
        if rng.random_bool(cfg.reversal_rate) {
            let t_rev = t + rng.random_range(120..1800);
            ctx.push_kks(
                t_rev,
                outlet,
                terminal,
                a.card,
                TxnType::Reversal,
                idx,
                amount,
                None,
            );
            let t_again = t_rev + rng.random_range(300..3600);
            if let Some((items, amount)) = ctx.kks_sale(rng, outlet, t_again, budget, drain) {
                ctx.push_kks(
                    t_again,
                    outlet,
                    terminal,
                    a.card,
                    TxnType::Purchase,
                    NONE,
                    amount,
                    Some(items),
                );
            }
        }
    }
    spent
}

/// A card's whole balance spent at several outlets within `--many-places-hours` on one
/// day soon after its credit, one ordinary basket per outlet, and the truth span.
/// Returns whether any purchase was made.
fn spend_many_places(ctx: &mut Ctx, r: usize, p: usize, credited: i64, mp: &ManyPlaces) -> bool {
    let world = ctx.world;
    let cfg = ctx.cfg;
    let reg = &world.regencies[r];
    let off = reg.off;
    let period = &reg.periods[p];
    let mut rng = sub_rng(
        cfg.seed,
        TAG_MANY_PLACES,
        ((mp.card as u64) << 16) | p as u64,
    );
    let span = cfg.many_places_hours as i64 * HOUR;
    let credit_day = local_day(credited, off);
    // Credits come by the 12th and spans are at most 12 hours, so a few days' wait still
    // leaves the whole run inside the period.
    let period_last = (local_day(period.end - 1, off) - 1).max(credit_day);
    let day = (credit_day + rng.random_range(0..=3)).min(period_last);
    // Between 08:00 and 21:00 local, so the swipes look like shop-hour purchases.
    let latest = (21 * HOUR - span).max(8 * HOUR);
    let mut start = at_local(day, rng.random_range(8 * HOUR..=latest), off);
    if start < credited + 1800 {
        start = at_local(day + 1, rng.random_range(8 * HOUR..=latest), off);
    }
    let k = mp.outlets.len();
    let seg = span / (k.max(2) as i64 - 1);
    let mut swiped: Vec<&str> = Vec::with_capacity(k);
    let (mut first, mut last) = (None, start);
    for (j, &outlet) in mp.outlets.iter().enumerate() {
        // Evenly spread over the span, each swipe a little early by up to a quarter of
        // its share, so the order holds and the last one stays within the span.
        let t = if j == 0 {
            start
        } else {
            start + j as i64 * seg - rng.random_range(0..=seg / 4)
        };
        let balance = ctx.balance[mp.card as usize];
        let remaining = (k - j) as i64;
        let is_last = j + 1 == k;
        let budget = if is_last {
            balance
        } else {
            (balance / remaining / 1000) * 1000
        };
        if budget < 15_000 {
            continue;
        }
        let Some((items, amount)) = ctx.kks_sale(&mut rng, outlet, t, budget, is_last) else {
            continue;
        };
        let terminal = rng.random_range(0..world.outlets[outlet].terminals.len());
        ctx.push_kks(
            t,
            outlet,
            terminal,
            mp.card,
            TxnType::Purchase,
            NONE,
            amount,
            Some(items),
        );
        first.get_or_insert(t);
        last = t;
        swiped.push(&world.outlets[outlet].id);
    }
    let truth = &mut ctx.plan.truth[mp.truth];
    truth.start = dt(first.unwrap_or(start), reg.offset);
    truth.end = dt(last, reg.offset);
    truth
        .params
        .insert("swipes".to_string(), json!(swiped.len()));
    truth.params.insert("outlets".to_string(), json!(swiped));
    first.is_some()
}

/// A burst of collected cards swiped at one terminal at machine-like cadence, each
/// drained to zero, and the burst's truth span.
#[allow(clippy::too_many_arguments)]
fn collect_cards(
    ctx: &mut Ctx,
    rng: &mut StdRng,
    r: usize,
    p: usize,
    o: usize,
    b: &super::anomalies::Burst,
    victims: &[u32],
    credited_by: i64,
) {
    let world = ctx.world;
    let cfg = ctx.cfg;
    let reg = &world.regencies[r];
    let off = reg.off;
    let period = &reg.periods[p];
    let day = local_day(credited_by, off) + rng.random_range(0..=3);
    let secs = if b.night {
        20 * HOUR + rng.random_range(0..(3 * HOUR + 30 * 60))
    } else {
        9 * HOUR + rng.random_range(0..7 * HOUR)
    };
    let mut t = at_local(day, secs, off);
    if t < credited_by + 1800 {
        t = credited_by + 1800 + rng.random_range(0..HOUR);
    }
    // Stay inside the period so the drained cards belong to it.
    t = t.min(period.end - 2 * HOUR - (victims.len() as i64) * 70);
    let first = t;
    let mut last = t;
    let jitter = cfg.collection_jitter_secs as f64;
    let mut swiped: Vec<&str> = Vec::with_capacity(victims.len());
    for (k, &card) in victims.iter().enumerate() {
        if k > 0 {
            let gap = b.spacing + rng.random_range(-jitter..=jitter);
            t += gap.round().max(1.0) as i64;
        }
        let budget = ctx.balance[card as usize];
        let Some((items, amount)) = ctx.kks_sale(rng, o, t, budget, true) else {
            continue;
        };
        ctx.push_kks(
            t,
            o,
            b.terminal,
            card,
            TxnType::Purchase,
            NONE,
            amount,
            Some(items),
        );
        last = t;
        swiped.push(&world.cards[card as usize]);
    }
    let truth = &mut ctx.plan.truth[b.truth];
    truth.start = dt(first, reg.offset);
    truth.end = dt(last, reg.offset);
    truth
        .params
        .insert("cards".to_string(), json!(swiped.len()));
    truth.params.insert("card_ids".to_string(), json!(swiped));
}

fn ordinary_customers(ctx: &mut Ctx, o: usize) {
    let world = ctx.world;
    let out = &world.outlets[o];
    if out.role == Role::Seasonal {
        return;
    }
    let reg = &world.regencies[out.regency];
    let off = reg.off;
    let mut rng = sub_rng(ctx.cfg.seed, TAG_ORDINARY, o as u64);
    let front = matches!(out.role, Role::Ring(_));
    // A front does little real trade.
    let lambda = if front {
        out.customers_per_day * 0.3
    } else {
        out.customers_per_day
    };
    let (Ok(weekday_n), Ok(weekend_n), Ok(amount_dist)) = (
        Poisson::new(lambda),
        Poisson::new(lambda * 1.15),
        LogNormal::new(30_000f64.ln(), 0.8),
    ) else {
        return;
    };
    let customers: Vec<u32> = reg.customers.clone().collect();
    let day0 = local_day(reg.history_start(), off);
    let day_end = local_day(reg.history_end() - 1, off);
    for day in day0..=day_end {
        let wd = weekday(day);
        if wd == 6 && out.closes_some_sundays && rng.random_bool(0.7) {
            continue;
        }
        let n = if wd >= 5 {
            weekend_n.sample(&mut rng)
        } else {
            weekday_n.sample(&mut rng)
        } as usize;
        for _ in 0..n {
            let t = at_local(day, shop_secs(&mut rng, out.open_h, out.close_h), off);
            let amount = ((amount_dist.sample(&mut rng).clamp(5_000.0, 200_000.0) / 500.0).round()
                as i64)
                * 500;
            let payment = if rng.random_bool(0.55) {
                Payment::Qris
            } else {
                Payment::Debit
            };
            let card = customers.choose(&mut rng).copied().unwrap_or(0);
            ctx.drafts.txns.push(TxnDraft {
                t,
                outlet: o as u32,
                terminal: rng.random_range(0..out.terminals.len()) as u8,
                card,
                payment,
                kind: TxnType::Purchase,
                reverses: NONE,
                amount,
                items: None,
                balance_after: None,
            });
            ctx.book(o, t, amount, false);
        }
    }
}

fn transfers(ctx: &mut Ctx, o: usize) {
    let world = ctx.world;
    let cfg = ctx.cfg;
    let out = &world.outlets[o];
    let reg = &world.regencies[out.regency];
    let off = reg.off;
    let mut rng = sub_rng(cfg.seed, TAG_TRANSFER, o as u64);
    let day0 = local_day(reg.history_start(), off);
    let tk = &ctx.takings[o];
    let n_days = tk
        .kks
        .len()
        .min(((reg.history_end() - reg.history_start()) / DAY) as usize);
    let ring = match out.role {
        Role::Ring(k) => Some(k),
        _ => None,
    };
    let round1000 = |x: f64| ((x / 1000.0).round() as i64) * 1000;
    let mut out_drafts = Vec::new();

    // Restocking from the regency's wholesalers out of recent takings.
    let mut pending = 0i64;
    let p_day = out.transfers_per_week as f64 / 6.0;
    for d in 0..n_days {
        if weekday(day0 + d as i64) != 6 && rng.random_bool(p_day.min(1.0)) && pending >= 100_000 {
            let amount = round1000(pending as f64 * rng.random_range(0.6..0.8));
            if amount > 0 {
                let cp = out.wholesalers.choose(&mut rng).copied().unwrap_or(0);
                out_drafts.push(TrfDraft {
                    t: at_local(
                        day0 + d as i64,
                        9 * HOUR + rng.random_range(0..7 * HOUR),
                        off,
                    ),
                    outlet: o as u32,
                    counterparty: cp,
                    amount,
                });
                pending = 0;
            }
        }
        pending += tk.other[d] + if ring.is_some() { 0 } else { tk.kks[d] };
    }

    // A ring outlet hands most of each day's KKS takings to its supplier a day or two later.
    if let Some(k) = ring {
        let supplier = ctx.plan.rings[k].supplier;
        let mut due = vec![0f64; n_days];
        for d in 0..n_days {
            if tk.kks[d] <= 0 {
                continue;
            }
            let target = d + rng.random_range(1..=2);
            let share = if cfg.supplier_share_max > cfg.supplier_share_min {
                rng.random_range(cfg.supplier_share_min..=cfg.supplier_share_max)
            } else {
                cfg.supplier_share_min
            };
            if let Some(x) = due.get_mut(target) {
                *x += tk.kks[d] as f64 * share;
            }
        }
        for (d, &x) in due.iter().enumerate() {
            let amount = round1000(x);
            if amount > 0 {
                out_drafts.push(TrfDraft {
                    t: at_local(
                        day0 + d as i64,
                        10 * HOUR + rng.random_range(0..5 * HOUR),
                        off,
                    ),
                    outlet: o as u32,
                    counterparty: supplier,
                    amount,
                });
            }
        }
    }
    ctx.drafts.transfers.extend(out_drafts);
}
