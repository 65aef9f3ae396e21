//! What a KKS purchase contains: the eligible commodities and their price levels, and
//! the basket builder that turns a budget into receipt lines whose
//! `qty x unit_price` add up exactly to the amount charged.
//!
//! Quantities are kept in half units (0.5 kg steps) as integers so that every line
//! total is an exact integer number of rupiah; `f64` appears only on the wire.

use rand::rngs::StdRng;
use rand::Rng;

use pantau_core::model::Item;

pub(crate) const N_COMMODITIES: usize = 9;
pub(crate) const BERAS: usize = 0;
pub(crate) const TELUR: usize = 1;
pub(crate) const DAGING_AYAM: usize = 2;
pub(crate) const IKAN: usize = 3;
pub(crate) const TAHU: usize = 4;
pub(crate) const TEMPE: usize = 5;
pub(crate) const KACANG_HIJAU: usize = 6;
pub(crate) const SAYUR: usize = 7;
pub(crate) const BUAH: usize = 8;

pub(crate) const NAMES: [&str; N_COMMODITIES] = [
    "BERAS",
    "TELUR",
    "DAGING_AYAM",
    "IKAN",
    "TAHU",
    "TEMPE",
    "KACANG_HIJAU",
    "SAYUR",
    "BUAH",
];
const UNITS: [&str; N_COMMODITIES] = ["kg", "kg", "kg", "kg", "kg", "kg", "kg", "ikat", "kg"];

/// Whether a commodity goes on the scale (sold per kg), so a rigged scale shorts it.
pub(crate) fn is_weighed(commodity: usize) -> bool {
    UNITS[commodity] == "kg"
}

/// Typical 2022-23 retail prices in rupiah per unit (rice is priced by zone and year).
const BASE: [f64; N_COMMODITIES] = [
    0.0, 28_000.0, 35_000.0, 30_000.0, 12_000.0, 14_000.0, 20_000.0, 5_000.0, 15_000.0,
];

/// Goods the program does not allow: (name, unit, price, quantity in half units).
pub(crate) const INELIGIBLE: [(&str, &str, i64, i64); 4] = [
    ("MINYAK_GORENG", "l", 17_000, 2),
    ("MIE_INSTAN", "pcs", 3_500, 20),
    ("ROKOK", "bungkus", 30_000, 2),
    ("SAMPO", "botol", 20_000, 2),
];

/// Medium rice by zone (WIB, WITA, WIT): the HET ceilings of 2023 and their earlier
/// counterparts.
pub(crate) fn base_price(commodity: usize, zone: usize, year: i32) -> f64 {
    if commodity == BERAS {
        let z = zone.min(2);
        if year >= 2023 {
            [10_900.0, 11_500.0, 11_800.0][z]
        } else {
            [9_450.0, 10_000.0, 10_500.0][z]
        }
    } else {
        BASE[commodity]
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Line {
    /// Index into `NAMES`, or `100 + i` for `INELIGIBLE[i]`.
    what: usize,
    halves: i64,
    price: i64,
}

impl Line {
    fn total(&self) -> i64 {
        self.halves * self.price / 2
    }
}

/// A priced basket; `sum` is the exact total of its lines.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Basket {
    lines: Vec<Line>,
    pub sum: i64,
}

impl Basket {
    pub fn items(&self) -> Vec<Item> {
        self.lines
            .iter()
            .map(|l| {
                let (name, unit) = if l.what >= 100 {
                    let x = INELIGIBLE[l.what - 100];
                    (x.0, x.1)
                } else {
                    (NAMES[l.what], UNITS[l.what])
                };
                Item {
                    commodity: name.to_string(),
                    qty: l.halves as f64 / 2.0,
                    unit: unit.to_string(),
                    unit_price: l.price,
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BasketOpts {
    /// Spend the budget to the last rupiah.
    pub drain: bool,
    /// A commodity that must appear (the one being marked up).
    pub force: Option<usize>,
    /// Index into `INELIGIBLE` of a forbidden good to slip in.
    pub ineligible: Option<usize>,
}

fn halves(x: f64) -> i64 {
    ((x * 2.0).round() as i64).max(1)
}

/// Builds a basket costing at most `budget` (exactly `budget` when draining), shaped
/// like the typical Rp 200k basket: rice first, eggs, one or two proteins, vegetables
/// and fruit. `prices` are this sale's unit prices (even rupiah, so half units stay
/// exact). Returns `None` for budgets too small to buy anything.
pub(crate) fn build(
    rng: &mut StdRng,
    prices: &[i64; N_COMMODITIES],
    budget: i64,
    opts: BasketOpts,
) -> Option<Basket> {
    if budget < 1_000 {
        return None;
    }
    let s = budget as f64 / 200_000.0;
    // (line, protected): protected lines survive the rice reserve below.
    let mut lines: Vec<(Line, bool)> = Vec::with_capacity(8);
    let push = |what: usize, h: i64, protected: bool, lines: &mut Vec<(Line, bool)>| {
        let price = if what >= 100 {
            INELIGIBLE[what - 100].2
        } else {
            prices[what]
        };
        lines.push((
            Line {
                what,
                halves: h,
                price,
            },
            protected,
        ));
    };
    let forced = |c: usize| opts.force == Some(c);
    if opts.drain {
        // The one-unit line that absorbs the last few rupiah of a drained basket.
        push(SAYUR, 2, true, &mut lines);
    }
    if let Some(i) = opts.ineligible {
        push(100 + i, INELIGIBLE[i].3, true, &mut lines);
    }
    if forced(TELUR) || rng.random_bool(0.9) {
        push(
            TELUR,
            halves(s * rng.random_range(0.8..1.2)),
            forced(TELUR),
            &mut lines,
        );
    }
    let protein = if forced(DAGING_AYAM) {
        DAGING_AYAM
    } else {
        let u: f64 = rng.random();
        if u < 0.35 {
            DAGING_AYAM
        } else if u < 0.6 {
            IKAN
        } else if u < 0.8 {
            TAHU
        } else {
            TEMPE
        }
    };
    push(
        protein,
        halves(s * rng.random_range(0.5..1.0)),
        forced(protein),
        &mut lines,
    );
    if rng.random_bool(0.35) {
        let second = if protein == TAHU { TEMPE } else { TAHU };
        push(
            second,
            halves(s * rng.random_range(0.5..1.0)),
            false,
            &mut lines,
        );
    }
    if rng.random_bool(0.2) {
        push(KACANG_HIJAU, halves(s * 0.5), false, &mut lines);
    }
    if !opts.drain && rng.random_bool(0.7) {
        let n = (rng.random_range(1.0..3.0) * s).round().max(1.0) as i64;
        push(SAYUR, 2 * n, false, &mut lines);
    }
    if rng.random_bool(0.45) {
        push(
            BUAH,
            halves(s * rng.random_range(0.5..1.5)),
            false,
            &mut lines,
        );
    }
    // Rice is the staple: keep at least ~40% of the budget for it by dropping the least
    // important optional lines.
    let mut sum: i64 = lines.iter().map(|(l, _)| l.total()).sum();
    while sum as f64 > 0.6 * budget as f64 {
        let Some(pos) = lines.iter().rposition(|(_, p)| !p) else {
            break;
        };
        sum -= lines[pos].0.total();
        lines.remove(pos);
    }
    let mut lines: Vec<Line> = lines.into_iter().map(|(l, _)| l).collect();
    while sum > budget {
        // Only protected lines are left and they overshoot a tiny budget: shrink them.
        // The drained basket's one-unit line must stay one unit.
        let l = lines
            .iter_mut()
            .filter(|l| l.halves > 1 && !(opts.drain && l.what == SAYUR))
            .max_by_key(|l| l.total())?;
        sum -= l.total();
        l.halves -= 1;
        sum += l.total();
    }
    let rice_price = prices[BERAS];
    let rice_halves = ((budget - sum) * 2) / rice_price;
    if rice_halves >= 1 {
        let rice = Line {
            what: BERAS,
            halves: rice_halves,
            price: rice_price,
        };
        sum += rice.total();
        lines.insert(0, rice);
    }
    // Top up with small items so little is left over, the way a cashier rounds a basket.
    loop {
        let left = budget - sum;
        if left < 5_000 {
            break;
        }
        let candidates: &[(usize, i64)] = if opts.drain {
            &[(BUAH, 1), (TEMPE, 1), (TAHU, 1), (BERAS, 1)]
        } else {
            &[(BUAH, 1), (TEMPE, 1), (TAHU, 1), (SAYUR, 2), (BERAS, 1)]
        };
        let best = candidates
            .iter()
            .map(|&(c, h)| (c, h, h * prices[c] / 2))
            .filter(|&(_, _, cost)| cost <= left)
            .max_by_key(|&(_, _, cost)| cost);
        let Some((c, h, cost)) = best else { break };
        // SAYUR is never a drain candidate, so a drained basket's one-unit line stays so.
        match lines.iter_mut().find(|l| l.what == c) {
            Some(l) => l.halves += h,
            None => lines.push(Line {
                what: c,
                halves: h,
                price: prices[c],
            }),
        }
        sum += cost;
    }
    if opts.drain && sum < budget {
        drain(&mut lines, budget);
        sum = lines.iter().map(Line::total).sum();
    }
    if lines.is_empty() || sum <= 0 {
        return None;
    }
    debug_assert!(sum <= budget);
    Some(Basket { lines, sum })
}

/// Spreads the leftover over every line's unit price (a fraction of a percent each) and
/// puts the last few rupiah on the one-unit line, so the basket costs exactly `budget`.
fn drain(lines: &mut [Line], budget: i64) {
    let sum: i64 = lines.iter().map(Line::total).sum();
    let left = budget - sum;
    if left <= 0 || sum <= 0 {
        return;
    }
    let fix = lines.iter().position(|l| l.halves == 2 && l.what == SAYUR);
    for (i, l) in lines.iter_mut().enumerate() {
        if Some(i) == fix {
            continue;
        }
        let mut delta = left * l.price / sum;
        if l.halves % 2 == 1 {
            // Half units need an even price to keep the line total whole.
            delta -= delta % 2;
        }
        l.price += delta;
    }
    let sum: i64 = lines.iter().map(Line::total).sum();
    // Each line took at most its share of `left`, so the remainder is never negative.
    if let Some(i) = fix {
        lines[i].price += budget - sum;
    }
}

/// A basket built once and sold identically (a supplier's pre-packed bundle).
pub(crate) fn fixed_bundle(
    rng: &mut StdRng,
    prices: &[i64; N_COMMODITIES],
    amount: i64,
) -> Option<Basket> {
    build(
        rng,
        prices,
        amount,
        BasketOpts {
            drain: true,
            ..BasketOpts::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn prices() -> [i64; N_COMMODITIES] {
        [
            11_000, 28_000, 35_050, 30_000, 12_000, 14_100, 20_000, 5_000, 15_000,
        ]
    }

    #[test]
    fn baskets_add_up_and_drains_are_exact() {
        let mut rng = StdRng::seed_from_u64(7);
        for budget in [15_000, 47_325, 100_000, 200_000, 203_475, 400_000, 600_000] {
            for drain in [false, true] {
                for _ in 0..200 {
                    let b = build(
                        &mut rng,
                        &prices(),
                        budget,
                        BasketOpts {
                            drain,
                            ..Default::default()
                        },
                    )
                    .expect("basket");
                    let items_sum: f64 =
                        b.items().iter().map(|i| i.qty * i.unit_price as f64).sum();
                    assert_eq!(items_sum, b.sum as f64);
                    assert!(b.sum <= budget);
                    if drain {
                        assert_eq!(b.sum, budget, "drained basket of {budget}");
                    }
                    if budget >= 100_000 {
                        assert!(b.items().iter().any(|i| i.commodity == "BERAS"));
                    }
                }
            }
        }
    }
}
