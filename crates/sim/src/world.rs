//! The simulated population before anything happens: regencies with their calendar and
//! benefit schedule, outlets with terminals and price levels, KPM cards, ordinary
//! customers and wholesalers; plus the time and id helpers everything else shares.
//!
//! Times are `i64` UTC seconds internally (cheap to sort and compare); each regency
//! knows its own offset, and records get `DateTime<FixedOffset>` only at the end.

use std::ops::Range;

use chrono::{Datelike, FixedOffset, NaiveDate};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::basket::N_COMMODITIES;
use super::ceilings::premium_rice;
use super::config::SimConfig;
use super::error::{Error, Result};
use pantau_core::model::Bank;
use pantau_core::regions::Regions;

pub(crate) const DAY: i64 = 86_400;
pub(crate) const HOUR: i64 = 3_600;

/// splitmix64's finaliser: a bijection on u64, so distinct counters give distinct ids.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// An independent generator per component, so one part's draws never shift another's.
pub(crate) fn sub_rng(seed: u64, tag: u64, idx: u64) -> StdRng {
    StdRng::seed_from_u64(mix64(seed ^ mix64(tag ^ mix64(idx))))
}

/// Rounds an expected count up or down at random so its mean is the rate.
pub(crate) fn stochastic_round(rng: &mut StdRng, x: f64) -> usize {
    let base = x.floor();
    base as usize + usize::from(rng.random_bool((x - base).clamp(0.0, 1.0)))
}

/// A uniform draw in `lo..=hi`, or `lo` when the range is empty (a fixed option).
pub(crate) fn range(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    }
}

/// Pseudonymised identifier: prefix + 16 hex digits, unique per (salt, counter).
pub(crate) fn pseudo_id(prefix: &str, salt: u64, counter: u64) -> String {
    format!("{prefix}{:016x}", mix64(counter.wrapping_add(salt)))
}

/// Rupiah rounded to the nearest Rp 50, the granularity of shelf prices.
pub(crate) fn round50(x: f64) -> i64 {
    ((x / 50.0).round() as i64 * 50).max(50)
}

/// Local calendar day number of a UTC instant in a regency.
pub(crate) fn local_day(t: i64, off: i64) -> i64 {
    (t + off).div_euclid(DAY)
}

/// UTC instant of a local day number plus seconds after local midnight.
pub(crate) fn at_local(day: i64, secs: i64, off: i64) -> i64 {
    day * DAY + secs - off
}

/// 0 = Monday ... 6 = Sunday (1970-01-01 was a Thursday).
pub(crate) fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// A time of day inside shop hours, busier in the morning and late afternoon.
pub(crate) fn shop_secs(rng: &mut StdRng, open_h: i64, close_h: i64) -> i64 {
    // Hour weights 06..21: market mornings and after-work shopping.
    const W: [u32; 15] = [2, 5, 9, 10, 9, 7, 6, 5, 5, 6, 8, 9, 7, 4, 2];
    let hours: Vec<i64> = (open_h..close_h).collect();
    let total: u32 = hours
        .iter()
        .map(|h| W[(*h - 6).clamp(0, 14) as usize])
        .sum();
    let mut pick = rng.random_range(0..total.max(1));
    let mut hour = open_h;
    for h in hours {
        let w = W[(h - 6).clamp(0, 14) as usize];
        if pick < w {
            hour = h;
            break;
        }
        pick -= w;
    }
    hour * HOUR + rng.random_range(0..HOUR)
}

/// One benefit period of a regency: the credit that covers `months` months from
/// `first_month`, and the window in which it is meant to be spent.
#[derive(Debug, Clone)]
pub(crate) struct Period {
    pub first_month: usize,
    pub months: usize,
    /// Window [start, end) in UTC seconds: local midnight of the first covered month to
    /// local midnight after the last.
    pub start: i64,
    pub end: i64,
    /// Rupiah credited to each card.
    pub amount: i64,
    /// `YYYY-MM` of the first covered month.
    pub label: String,
    /// Per bank: first credit instant and the spread (seconds) over which cards are credited.
    pub credits: Vec<(Bank, i64, i64)>,
}

impl Period {
    pub(crate) fn credit_of(&self, bank: Bank) -> (i64, i64) {
        self.credits
            .iter()
            .find(|c| c.0 == bank)
            .map(|c| (c.1, c.2))
            .unwrap_or((self.start + 8 * DAY, HOUR))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RegencyW {
    pub code: String,
    pub offset: FixedOffset,
    pub off: i64,
    /// 0 WIB, 1 WITA, 2 WIT: also the rice price zone.
    pub zone: usize,
    /// UTC instants of local midnight on the 1st of each simulated month, plus the end.
    pub month_starts: Vec<i64>,
    pub month_labels: Vec<String>,
    /// Year of each simulated month (prices change with it).
    pub month_years: Vec<i32>,
    /// The premium-rice ceiling (HET) in force all through each simulated month.
    pub rice_ceiling: Vec<Option<i64>>,
    /// Weeks when every outlet of the regency sells dearer together (a failed harvest,
    /// a holiday): ordinary, and the peers move with the outlet.
    pub price_shocks: Vec<PriceShock>,
    pub periods: Vec<Period>,
    pub outlets: Range<usize>,
    pub price_factor: [f64; N_COMMODITIES],
    /// Card indices of ordinary customers shopping in this regency.
    pub customers: Range<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct PriceShock {
    pub start: i64,
    pub end: i64,
    pub factor: f64,
    /// A failed rice harvest moves rice alone; a holiday moves every food.
    pub rice_only: bool,
}

impl RegencyW {
    /// The most an ordinary seller charges for rice in a simulated month: under the law's
    /// ceiling (HET), with room for a receipt rounded up to the card's last rupiah (a
    /// drained basket stretches its unit prices by a percent or two).
    pub(crate) fn rice_cap(&self, month: usize) -> Option<i64> {
        self.rice_ceiling[month].map(|ceiling| round50(ceiling as f64 * 0.97))
    }

    /// [`RegencyW::rice_cap`] over every simulated month of a year.
    pub(crate) fn rice_cap_of_year(&self, year: i32) -> Option<i64> {
        (0..self.month_years.len())
            .filter(|&m| self.month_years[m] == year)
            .filter_map(|m| self.rice_cap(m))
            .min()
    }

    /// Factor on a commodity's price at an instant from the regency's price shocks.
    pub(crate) fn shock(&self, t: i64, commodity: usize) -> f64 {
        self.price_shocks
            .iter()
            .filter(|s| s.start <= t && t < s.end)
            .filter(|s| !s.rice_only || commodity == super::basket::BERAS)
            .map(|s| s.factor)
            .product()
    }

    pub(crate) fn history_start(&self) -> i64 {
        self.month_starts[0]
    }
    pub(crate) fn history_end(&self) -> i64 {
        *self.month_starts.last().unwrap_or(&0)
    }
    /// Simulated month index of an instant (clamped into the history).
    pub(crate) fn month_of(&self, t: i64) -> usize {
        let n = self.month_starts.len() - 1;
        match self.month_starts.binary_search(&t) {
            Ok(i) => i.min(n - 1),
            Err(i) => i.saturating_sub(1).min(n - 1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Normal,
    Seasonal,
    Ring(usize),
}

#[derive(Debug, Clone)]
pub(crate) struct OutletW {
    pub id: String,
    pub name: String,
    pub regency: usize,
    pub district: String,
    pub bank: Bank,
    pub registered_at: i64,
    pub terminals: Vec<String>,
    /// Card indices of the KPM assigned to this outlet.
    pub kpm: Range<u32>,
    pub role: Role,
    pub price_factor: [f64; N_COMMODITIES],
    pub customers_per_day: f64,
    pub closes_some_sundays: bool,
    pub open_h: i64,
    pub close_h: i64,
    pub wholesalers: Vec<u32>,
    pub transfers_per_week: u32,
}

pub(crate) struct World {
    pub regencies: Vec<RegencyW>,
    pub outlets: Vec<OutletW>,
    /// Every card id: KPM cards (in outlet order) then ordinary customers.
    pub cards: Vec<String>,
    pub counterparties: Vec<String>,
    /// Kecamatan where food costs more at every outlet (transport to the interior).
    pub dear_kecamatan: Vec<DearKecamatan>,
}

/// A kecamatan whose outlets all sell dearer than the rest of the regency, by `premium`.
#[derive(Debug, Clone)]
pub(crate) struct DearKecamatan {
    pub regency: usize,
    pub code: String,
    pub premium: f64,
    pub outlets: usize,
}

/// Monthly benefit per KPM in force in a month.
pub(crate) fn monthly_benefit(year: i32, month: u32) -> i64 {
    if year < 2020 {
        110_000
    } else if year == 2020 && month < 3 {
        150_000
    } else {
        200_000
    }
}

const NAME_PREFIX: [&str; 7] = [
    "e-Warong",
    "e-Warong",
    "Toko",
    "Warung",
    "Kios",
    "UD",
    "e-Warong KUBE",
];
const NAME_CORE: [&str; 32] = [
    "Sumber Rejeki",
    "Berkah",
    "Barokah",
    "Maju Jaya",
    "Sinar Harapan",
    "Makmur",
    "Sejahtera",
    "Rukun Tani",
    "Mekar Sari",
    "Sri Rejeki",
    "Lancar Jaya",
    "Harapan Bunda",
    "Bu Siti",
    "Pak Darto",
    "Mandiri",
    "Bina Usaha",
    "Tunas Baru",
    "Karya Bersama",
    "Sentosa",
    "Amanah",
    "Cahaya Ilahi",
    "Srikandi",
    "Melati",
    "Dua Putri",
    "Tiga Saudara",
    "Mitra Tani",
    "Al Ikhlas",
    "Bu Yati",
    "Pak Haji Umar",
    "Murah Meriah",
    "Subur",
    "Gotong Royong",
];

fn outlet_name(rng: &mut StdRng) -> String {
    let prefix = NAME_PREFIX.choose(rng).copied().unwrap_or("e-Warong");
    let core = NAME_CORE.choose(rng).copied().unwrap_or("Berkah");
    if rng.random_bool(0.25) {
        format!("{prefix} {core} {}", rng.random_range(1..=9))
    } else {
        format!("{prefix} {core}")
    }
}

fn pick_bank(rng: &mut StdRng, aceh: bool) -> Bank {
    let u: f64 = rng.random();
    if aceh {
        // Aceh's qanun on sharia finance moved the program to BSI.
        if u < 0.85 {
            Bank::Bsi
        } else {
            Bank::Bri
        }
    } else if u < 0.40 {
        Bank::Bri
    } else if u < 0.70 {
        Bank::Bni
    } else if u < 0.90 {
        Bank::Mandiri
    } else {
        Bank::Btn
    }
}

fn add_months(year: i32, month: u32, k: usize) -> (i32, u32) {
    let idx = year as i64 * 12 + (month as i64 - 1) + k as i64;
    (idx.div_euclid(12) as i32, (idx.rem_euclid(12) + 1) as u32)
}

const TAG_REGENCY: u64 = 1;
const TAG_OUTLET: u64 = 2;
const TAG_IDS: u64 = 3;
const TAG_KECAMATAN: u64 = 4;
const TAG_SHOCK: u64 = 5;

pub(crate) fn build(cfg: &SimConfig) -> Result<World> {
    let regions = Regions::get();
    let (y0, m0) = cfg.start_month()?;
    let months = cfg.months as usize;
    let per_regency = cfg.outlets_per_regency();
    let card_salt = mix64(cfg.seed ^ mix64(TAG_IDS));
    let customer_salt = mix64(card_salt ^ 0xC0FFEE);
    let wholesaler_salt = mix64(card_salt ^ 0xBEEF);

    let mut regencies = Vec::new();
    let mut outlets: Vec<OutletW> = Vec::new();
    let mut cards: Vec<String> = Vec::new();
    let mut counterparties: Vec<String> = Vec::new();
    let mut dear_kecamatan: Vec<DearKecamatan> = Vec::new();

    let lumped_count = ((cfg.regencies.len() as f64) / 3.0).round() as usize;
    let lumped_count = if cfg.regencies.len() >= 2 {
        lumped_count.max(1)
    } else {
        lumped_count
    };
    let mut order_rng = sub_rng(cfg.seed, TAG_REGENCY, u64::MAX);
    let mut lumped_flags = vec![false; cfg.regencies.len()];
    for i in rand::seq::index::sample(&mut order_rng, cfg.regencies.len(), lumped_count) {
        lumped_flags[i] = true;
    }

    let kpm_dist = Normal::<f64>::new(134.0, 40.0)
        .map_err(|e| Error::Invariant(format!("kpm distribution: {e}")))?;

    for (ri, code) in cfg.regencies.iter().enumerate() {
        let reg = regions
            .regency(code)
            .ok_or_else(|| Error::InvalidConfig(format!("unknown BPS regency code {code:?}")))?;
        let districts: Vec<String> = regions
            .districts(code)
            .iter()
            .map(|d| d.code.clone())
            .collect();
        if districts.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "regency {code} has no kecamatan in the reference data"
            )));
        }
        // The simulated outlets cluster in a few kecamatan, as a district's do, so a
        // kecamatan has peers to be compared with; some of them are interior and dearer.
        let mut krng = sub_rng(cfg.seed, TAG_KECAMATAN, ri as u64);
        let n_kecamatan = per_regency
            .div_ceil(cfg.outlets_per_kecamatan as usize)
            .clamp(1, districts.len());
        let kecamatan: Vec<(String, f64)> = districts
            .choose_multiple(&mut krng, n_kecamatan)
            .map(|code| {
                let premium = if krng.random_bool(cfg.kecamatan_premium_rate) {
                    range(
                        &mut krng,
                        cfg.kecamatan_premium_min,
                        cfg.kecamatan_premium_max,
                    )
                } else {
                    1.0
                };
                (code.clone(), premium)
            })
            .collect();
        let off = reg.utc_offset.local_minus_utc() as i64;
        let zone = ((off / HOUR) - 7).clamp(0, 2) as usize;
        let mut rng = sub_rng(cfg.seed, TAG_REGENCY, ri as u64);

        let mut month_starts = Vec::with_capacity(months + 1);
        let mut month_labels = Vec::with_capacity(months);
        let mut month_years = Vec::with_capacity(months);
        let mut firsts = Vec::with_capacity(months + 1);
        for k in 0..=months {
            let (y, m) = add_months(y0, m0, k);
            let d = NaiveDate::from_ymd_opt(y, m, 1)
                .ok_or_else(|| Error::Invariant(format!("month {y}-{m:02} out of range")))?;
            let local_midnight = d.num_days_from_ce() as i64 - 719_163;
            month_starts.push(local_midnight * DAY - off);
            firsts.push(d);
            if k < months {
                month_labels.push(format!("{y:04}-{m:02}"));
                month_years.push(y);
            }
        }
        // A ceiling that changes mid-month: the lower one holds all month.
        let rice_ceiling = firsts
            .windows(2)
            .map(|w| {
                let last_day = w[1].pred_opt().unwrap_or(w[1]);
                let first = premium_rice(&reg.province_code, w[0]);
                let last = premium_rice(&reg.province_code, last_day);
                first.into_iter().chain(last).min()
            })
            .collect();

        let price_factor: [f64; N_COMMODITIES] =
            std::array::from_fn(|_| rng.random_range(0.95..1.05));

        // Outlets of this regency, each with its KPM.
        let first_outlet = outlets.len();
        let aceh = reg.province_code == "11";
        for k in 0..per_regency {
            let oi = outlets.len();
            let mut orng = sub_rng(cfg.seed, TAG_OUTLET, oi as u64);
            let kpm_n = if orng.random_bool(cfg.over_norm_rate) {
                orng.random_range(330..=500)
            } else {
                (kpm_dist.sample(&mut orng).round() as i64).clamp(60, 250) as u32
            };
            let first_card = cards.len() as u32;
            for _ in 0..kpm_n {
                cards.push(pseudo_id("K", card_salt, cards.len() as u64));
            }
            let n_terminals = if orng.random_bool(0.35) { 2 } else { 1 };
            let id = format!("EW-{code}-{:04}", k + 1);
            let terminals = (1..=n_terminals)
                .map(|t| format!("TRM-{code}-{:04}-{t}", k + 1))
                .collect();
            let registered_days = orng.random_range(30..1500);
            let registered_at =
                month_starts[0] - registered_days * DAY + 9 * HOUR + orng.random_range(0..8 * HOUR);
            let (district, premium) = kecamatan[k % kecamatan.len()].clone();
            let open_h = orng.random_range(6..=8);
            let close_h = orng.random_range(19..=21);
            outlets.push(OutletW {
                id,
                name: outlet_name(&mut orng),
                regency: ri,
                district,
                bank: pick_bank(&mut orng, aceh),
                registered_at,
                terminals,
                kpm: first_card..first_card + kpm_n,
                role: Role::Normal,
                price_factor: std::array::from_fn(|_| premium * orng.random_range(0.96..1.04)),
                customers_per_day: orng.random_range(5.0..25.0),
                closes_some_sundays: orng.random_bool(0.3),
                open_h,
                close_h,
                wholesalers: Vec::new(),
                transfers_per_week: orng.random_range(1..=3),
            });
        }
        let outlet_range = first_outlet..outlets.len();
        for (code, premium) in kecamatan.iter().filter(|(_, p)| *p > 1.0) {
            dear_kecamatan.push(DearKecamatan {
                regency: ri,
                code: code.clone(),
                premium: *premium,
                outlets: outlets[outlet_range.clone()]
                    .iter()
                    .filter(|o| o.district == *code)
                    .count(),
            });
        }

        // Ordinary customers and wholesalers of the regency.
        let first_customer = cards.len() as u32;
        let n_customers = (per_regency * 120).max(500);
        for _ in 0..n_customers {
            cards.push(pseudo_id("C", customer_salt, cards.len() as u64));
        }
        let customers = first_customer..cards.len() as u32;
        let n_wholesalers = (per_regency / 5).max(4);
        let mut wholesalers = Vec::with_capacity(n_wholesalers);
        for _ in 0..n_wholesalers {
            wholesalers.push(counterparties.len() as u32);
            counterparties.push(pseudo_id("W", wholesaler_salt, counterparties.len() as u64));
        }
        for oi in outlet_range.clone() {
            let mut orng = sub_rng(cfg.seed, TAG_OUTLET ^ 0x77, oi as u64);
            let n = orng.random_range(2..=3).min(wholesalers.len());
            outlets[oi].wholesalers = rand::seq::index::sample(&mut orng, wholesalers.len(), n)
                .into_iter()
                .map(|i| wholesalers[i])
                .collect();
        }

        // Benefit schedule: periods, then per bank present a credit day and hours.
        let lumped = lumped_flags[ri];
        let mut banks: Vec<Bank> = outlets[outlet_range.clone()]
            .iter()
            .map(|o| o.bank)
            .collect();
        banks.sort_by_key(|b| *b as u8);
        banks.dedup();
        let mut periods = Vec::new();
        let mut m = 0usize;
        while m < months {
            let left = months - m;
            let (_, cal_month) = add_months(y0, m0, m);
            let g = if !lumped {
                1
            } else if cal_month % 3 == 1 && left >= 3 {
                let u: f64 = rng.random();
                if u < 0.6 {
                    3
                } else if u < 0.85 {
                    2
                } else {
                    1
                }
            } else if left >= 2 && rng.random_bool(0.5) {
                2
            } else {
                1
            };
            let amount = (0..g)
                .map(|k| {
                    let (y, mm) = add_months(y0, m0, m + k);
                    monthly_benefit(y, mm)
                })
                .sum();
            let start = month_starts[m];
            let credits = banks
                .iter()
                .map(|&b| {
                    let day = rng.random_range(2..=11); // the 3rd to the 12th
                    let hour = rng.random_range(8..=12);
                    let t = start + day * DAY + hour * HOUR + rng.random_range(0..HOUR);
                    (b, t, rng.random_range(1..=4) * HOUR)
                })
                .collect();
            periods.push(Period {
                first_month: m,
                months: g,
                start,
                end: month_starts[m + g],
                amount,
                label: month_labels[m].clone(),
                credits,
            });
            m += g;
        }

        let mut srng = sub_rng(cfg.seed, TAG_SHOCK, ri as u64);
        let (first, end) = (month_starts[0], month_starts[months]);
        let n_shocks = stochastic_round(&mut srng, cfg.price_shock_rate * months as f64 / 12.0);
        let price_shocks = (0..n_shocks)
            .map(|_| {
                let days = srng.random_range(cfg.price_shock_days_min..=cfg.price_shock_days_max);
                // Prices move overnight: a shock starts at a local midnight, so every
                // outlet of the regency sells at the new level all day.
                let start = srng.random_range(first..end.max(first + 1));
                let start = (start + off).div_euclid(DAY) * DAY - off;
                PriceShock {
                    start,
                    end: (start + i64::from(days) * DAY).min(end),
                    factor: range(&mut srng, cfg.price_shock_min, cfg.price_shock_max),
                    rice_only: srng.random_bool(0.5),
                }
            })
            .collect();
        regencies.push(RegencyW {
            code: code.clone(),
            offset: reg.utc_offset,
            off,
            zone,
            month_starts,
            month_labels,
            month_years,
            rice_ceiling,
            price_shocks,
            periods,
            outlets: outlet_range,
            price_factor,
            customers,
        });
    }

    Ok(World {
        regencies,
        outlets,
        cards,
        counterparties,
        dear_kecamatan,
    })
}
