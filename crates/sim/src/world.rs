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
    pub periods: Vec<Period>,
    pub outlets: Range<usize>,
    pub price_factor: [f64; N_COMMODITIES],
    /// Card indices of ordinary customers shopping in this regency.
    pub customers: Range<u32>,
}

impl RegencyW {
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
        let off = reg.utc_offset.local_minus_utc() as i64;
        let zone = ((off / HOUR) - 7).clamp(0, 2) as usize;
        let mut rng = sub_rng(cfg.seed, TAG_REGENCY, ri as u64);

        let mut month_starts = Vec::with_capacity(months + 1);
        let mut month_labels = Vec::with_capacity(months);
        let mut month_years = Vec::with_capacity(months);
        for k in 0..=months {
            let (y, m) = add_months(y0, m0, k);
            let d = NaiveDate::from_ymd_opt(y, m, 1)
                .ok_or_else(|| Error::Invariant(format!("month {y}-{m:02} out of range")))?;
            let local_midnight = d.num_days_from_ce() as i64 - 719_163;
            month_starts.push(local_midnight * DAY - off);
            if k < months {
                month_labels.push(format!("{y:04}-{m:02}"));
                month_years.push(y);
            }
        }

        let price_factor: [f64; N_COMMODITIES] =
            std::array::from_fn(|_| rng.random_range(0.95..1.05));

        // Outlets of this regency, each with its KPM.
        let first_outlet = outlets.len();
        let aceh = reg.province_code == "11";
        for k in 0..per_regency {
            let oi = outlets.len();
            let mut orng = sub_rng(cfg.seed, TAG_OUTLET, oi as u64);
            let kpm_n = (kpm_dist.sample(&mut orng).round() as i64).clamp(60, 250) as u32;
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
            let district = districts.choose(&mut orng).cloned().unwrap_or_default();
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
                price_factor: std::array::from_fn(|_| orng.random_range(0.96..1.04)),
                customers_per_day: orng.random_range(5.0..25.0),
                closes_some_sundays: orng.random_bool(0.3),
                open_h,
                close_h,
                wholesalers: Vec::new(),
                transfers_per_week: orng.random_range(1..=3),
            });
        }
        let outlet_range = first_outlet..outlets.len();

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

        regencies.push(RegencyW {
            code: code.clone(),
            offset: reg.utc_offset,
            off,
            zone,
            month_starts,
            month_labels,
            month_years,
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
    })
}
