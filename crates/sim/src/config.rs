//! The simulator's options (every one a `pantau simulate` flag), their defaults, and the
//! checks that turn a bad option into a clear error before any record is generated.

use chrono::NaiveDate;

use pantau_core::regions::Regions;

use crate::error::{Error, Result};

/// Fails with [`Error::InvalidConfig`]; the message names the flag.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err(Error::InvalidConfig(format!($($arg)*)))
    };
}

/// Options of the simulated history: where, when, how big, and how often each kind of
/// misbehaviour is injected. Every field is a `pantau simulate` flag with a default.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of the random generator: the same seed and options give byte-identical
    /// files.
    pub seed: u64,

    /// Comma-separated BPS regency codes (4 digits) to simulate.
    pub regencies: Vec<String>,

    /// Number of calendar months simulated (1-120).
    pub months: u32,

    /// First month simulated, YYYY-MM (2017-01 or later: BPNT began in 2017).
    pub start: String,

    /// Multiplies the number of outlets per regency (30 outlets per regency at 1.0,
    /// at least 2).
    pub scale: f64,

    // ---- ordinary behaviour -------------------------------------------------------
    /// Share of KPM (0-1) who, in any benefit period, never spend their benefit,
    /// whatever their outlet (the baseline of non-transacting KPM).
    pub non_transacting_baseline: f64,

    /// Share of spending KPM (0-1) who shop late, 10-25 days after the credit.
    pub late_spender_rate: f64,

    /// Share of KKS shopping trips (0-1) made at another outlet of the same bank in
    /// the regency instead of the KPM's home outlet.
    pub other_outlet_rate: f64,

    /// Share of KKS purchases (0-1) reversed a few minutes later (the KPM then buys
    /// again).
    pub reversal_rate: f64,

    /// Share of transaction records (0-1) delivered a second time, identical, a few
    /// records later (redeliveries).
    pub duplicate_rate: f64,

    /// Records of each stream are shuffled locally so that none arrives more than
    /// this many seconds (event time) after a later record; 0 keeps every stream
    /// sorted.
    pub max_disorder_secs: u64,

    /// Number of deliberately broken records (truncated JSON, missing field, wrong
    /// type, unknown bank or payment, non-positive amount, time without offset,
    /// empty message) spread over the transaction and disbursement streams.
    pub malformed: usize,

    // ---- seasonal outlets -----------------------------------------------------------
    /// Share of outlets (0-1) that are seasonal: no ordinary customers, KKS sales
    /// only in the days after the credit (at least one outlet when above 0).
    pub seasonal_rate: f64,

    /// A seasonal outlet sells only within this many days after its bank's credit
    /// (1-28).
    pub seasonal_window_days: u32,

    /// Share (0-1) of a seasonal outlet's KKS sales made outside its disbursement
    /// windows, on random later days of the period; 0 keeps every sale inside the
    /// windows.
    pub seasonal_leak: f64,

    // ---- supplier-dependent rings ---------------------------------------------------
    /// Number of supplier rings: outlets of one regency selling one identical pre-
    /// packed bundle and paying most of their KKS takings to a single supplier.
    pub supplier_rings: u32,

    /// Smallest number of outlets in a supplier ring (at least 2).
    pub ring_size_min: u32,

    /// Largest number of outlets in a supplier ring.
    pub ring_size_max: u32,

    /// Lowest share (0-1) of a ring outlet's daily KKS takings transferred to the
    /// supplier.
    pub supplier_share_min: f64,

    /// Highest share (0-1) of a ring outlet's daily KKS takings transferred to the
    /// supplier.
    pub supplier_share_max: f64,

    // ---- card collection ------------------------------------------------------------
    /// Expected card-collection bursts per regency per month (not a share: 2.0 =
    /// about two).
    pub card_collection_rate: f64,

    /// Fewest distinct cards swiped in one burst.
    pub collection_cards_min: u32,

    /// Most distinct cards swiped in one burst (fewer if the outlet has fewer KPM).
    pub collection_cards_max: u32,

    /// Shortest mean spacing between two swipes of a burst, in seconds.
    pub collection_spacing_min_secs: u32,

    /// Longest mean spacing between two swipes of a burst, in seconds.
    pub collection_spacing_max_secs: u32,

    /// Each gap of a burst deviates from its mean spacing by at most this many
    /// seconds (must be below the shortest spacing).
    pub collection_jitter_secs: u32,

    /// Share of bursts (0-1) swiped at night, 20:00-23:30 local time.
    pub collection_night_share: f64,

    // ---- credit-day queues (ordinary behaviour, not an anomaly) ------------------------
    /// Share (0-1) of ordinary outlets where, the morning after each credit, KPM queue
    /// from opening time and are served back to back, each with their own card at their
    /// own outlet. Busy districts see queues at about a fifth of their outlets.
    pub queue_rate: f64,

    /// Fewest KPM in a queue (fewer if fewer of the outlet's KPM spend that period).
    pub queue_size_min: u32,

    /// Most KPM in a queue.
    pub queue_size_max: u32,

    /// Shortest time serving one KPM of a queue, in seconds.
    pub queue_service_min_secs: u32,

    /// Longest time serving one KPM of a queue, in seconds.
    pub queue_service_max_secs: u32,

    // ---- price geography (ordinary, not an anomaly) -------------------------------------
    /// Outlets per simulated kecamatan: a regency's outlets are spread evenly over as
    /// many of its kecamatan as this needs, so each has peers to be compared with.
    pub outlets_per_kecamatan: u32,

    /// Share (0-1) of the simulated kecamatan that are interior: dearer for every outlet
    /// there (transport from the district capital).
    pub kecamatan_premium_rate: f64,

    /// Smallest price factor of an interior kecamatan over the rest of its regency.
    pub kecamatan_premium_min: f64,

    /// Largest price factor of an interior kecamatan over the rest of its regency.
    pub kecamatan_premium_max: f64,

    /// Expected district-wide price shocks per regency per year: a failed rice harvest
    /// (rice only) or a holiday (every food), moving every outlet of the regency together.
    pub price_shock_rate: f64,

    /// Smallest price factor of a shock.
    pub price_shock_min: f64,

    /// Largest price factor of a shock.
    pub price_shock_max: f64,

    /// Shortest shock, in days.
    pub price_shock_days_min: u32,

    /// Longest shock, in days.
    pub price_shock_days_max: u32,

    // ---- price markup -----------------------------------------------------------------
    /// Expected outlets per regency per month selling one commodity (rice, eggs or
    /// chicken) at a marked-up price.
    pub price_markup_rate: f64,

    /// Smallest markup factor (at least 1).
    pub markup_factor_min: f64,

    /// Largest markup factor.
    pub markup_factor_max: f64,

    // ---- short quantity ---------------------------------------------------------------
    /// Expected outlets per regency per month with a rigged scale: every commodity
    /// sold by weight is handed out short by the same ratio (a markup, by contrast,
    /// raises one commodity's price).
    pub short_quantity_rate: f64,

    /// Smallest share (0-1] of the kilograms actually handed out.
    pub short_factor_min: f64,

    /// Largest share (0-1] of the kilograms actually handed out.
    pub short_factor_max: f64,

    // ---- terminals uploading late -------------------------------------------------------
    /// Expected terminal-days per regency per month whose sales reach the bank in one
    /// batch hours after the day ended (the terminal was offline).
    pub late_batch_rate: f64,

    /// Fewest hours after the end of the day a late batch arrives.
    pub late_batch_delay_min_hours: u32,

    /// Most hours after the end of the day a late batch arrives.
    pub late_batch_delay_max_hours: u32,

    // ---- fixed amounts and KPM over the norm ---------------------------------------------
    /// Expected outlets per regency per month charging every KPM the month's whole
    /// benefit as one fixed package.
    pub fixed_amount_rate: f64,

    /// Share (0-1) of outlets assigned more KPM than the program's norm (300), 330-500.
    pub over_norm_rate: f64,

    // ---- paperwork mismatch -----------------------------------------------------------
    /// Expected outlets per regency per month whose receipts do not add up or list
    /// ineligible goods.
    pub paperwork_rate: f64,

    /// Smallest share (0-1) of the outlet's KKS purchases affected in that month.
    pub paperwork_share_min: f64,

    /// Largest share (0-1) of the outlet's KKS purchases affected in that month.
    pub paperwork_share_max: f64,

    /// Smallest overcharge (0-1) of the amount above the sum of its items.
    pub overcharge_min: f64,

    /// Largest overcharge (0-1) of the amount above the sum of its items.
    pub overcharge_max: f64,

    // ---- non-transacting outlets ------------------------------------------------------
    /// Expected outlets per regency (over the whole run) where many KPM leave one
    /// benefit period unspent, on top of the baseline.
    pub non_transacting_outlets: f64,

    /// Smallest share (0-1) of such an outlet's KPM who do not spend in that
    /// period.
    pub non_transacting_share_min: f64,

    /// Largest share (0-1) of such an outlet's KPM who do not spend in that period.
    pub non_transacting_share_max: f64,

    // ---- one card, many places --------------------------------------------------------
    /// Expected cards per regency per month (cloned, or held by an agent) whose
    /// balance is spent at several outlets within hours (at least one in the run
    /// when above 0).
    pub many_places_rate: f64,

    /// Fewest distinct outlets such a card is swiped at (at least 2).
    pub many_places_outlets_min: u32,

    /// Most distinct outlets such a card is swiped at (fewer if its bank has
    /// fewer).
    pub many_places_outlets_max: u32,

    /// Hours (1-12) from the first swipe of such a card to its last, all in shop
    /// hours.
    pub many_places_hours: u32,

    // ---- realization lag --------------------------------------------------------------
    /// Probability (0-1) that a regency falls behind its peers in a benefit period
    /// (cards handed out late, a road closed).
    pub realization_lag_rate: f64,

    /// Smallest share (0-1) of a lagging regency's would-be spenders who are
    /// delayed.
    pub realization_lag_share_min: f64,

    /// Largest share (0-1) of a lagging regency's would-be spenders who are
    /// delayed.
    pub realization_lag_share_max: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            // One per time zone: Kab. Serang (WIB), Kota Makassar (WITA), Kota Jayapura (WIT).
            regencies: vec!["3604".into(), "7371".into(), "9471".into()],
            months: 3,
            start: "2023-01".into(),
            scale: 1.0,
            non_transacting_baseline: 0.04,
            late_spender_rate: 0.10,
            other_outlet_rate: 0.03,
            reversal_rate: 0.005,
            duplicate_rate: 0.002,
            max_disorder_secs: 60,
            malformed: 0,
            seasonal_rate: 0.05,
            seasonal_window_days: 7,
            seasonal_leak: 0.0,
            supplier_rings: 1,
            ring_size_min: 3,
            ring_size_max: 6,
            supplier_share_min: 0.85,
            supplier_share_max: 0.95,
            card_collection_rate: 2.0,
            collection_cards_min: 15,
            collection_cards_max: 40,
            collection_spacing_min_secs: 30,
            collection_spacing_max_secs: 60,
            collection_jitter_secs: 3,
            collection_night_share: 0.7,
            queue_rate: 0.2,
            queue_size_min: 20,
            queue_size_max: 30,
            queue_service_min_secs: 45,
            queue_service_max_secs: 120,
            outlets_per_kecamatan: 8,
            kecamatan_premium_rate: 0.25,
            kecamatan_premium_min: 1.08,
            kecamatan_premium_max: 1.2,
            price_shock_rate: 2.0,
            price_shock_min: 1.1,
            price_shock_max: 1.3,
            price_shock_days_min: 14,
            price_shock_days_max: 42,
            price_markup_rate: 1.0,
            markup_factor_min: 1.3,
            markup_factor_max: 1.6,
            short_quantity_rate: 0.5,
            short_factor_min: 0.7,
            short_factor_max: 0.85,
            paperwork_rate: 0.5,
            fixed_amount_rate: 0.3,
            late_batch_rate: 0.0,
            late_batch_delay_min_hours: 2,
            late_batch_delay_max_hours: 30,
            over_norm_rate: 0.03,
            paperwork_share_min: 0.3,
            paperwork_share_max: 0.6,
            overcharge_min: 0.05,
            overcharge_max: 0.20,
            non_transacting_outlets: 1.0,
            non_transacting_share_min: 0.4,
            non_transacting_share_max: 0.7,
            many_places_rate: 1.0,
            many_places_outlets_min: 3,
            many_places_outlets_max: 5,
            many_places_hours: 3,
            realization_lag_rate: 0.1,
            realization_lag_share_min: 0.3,
            realization_lag_share_max: 0.5,
        }
    }
}

fn check_share(name: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        invalid!("--{name} must be between 0 and 1 (a share), got {v}");
    }
    Ok(())
}

fn check_rate(name: &str, v: f64) -> Result<()> {
    if !v.is_finite() || v < 0.0 {
        invalid!("--{name} must be a finite number >= 0 (an expected count), got {v}");
    }
    Ok(())
}

fn check_range<T: PartialOrd + std::fmt::Display>(name: &str, min: T, max: T) -> Result<()> {
    if min > max {
        invalid!("--{name}-min ({min}) must not exceed --{name}-max ({max})");
    }
    Ok(())
}

impl SimConfig {
    /// The CLI defaults plus 16 malformed records, so tests exercise every pattern and
    /// every rejection reason (3 regencies x 3 months, about 175,000 transactions).
    #[cfg(test)]
    pub(crate) fn default_for_tests() -> SimConfig {
        SimConfig {
            malformed: 16,
            ..SimConfig::default()
        }
    }

    /// Outlets simulated per regency.
    pub(crate) fn outlets_per_regency(&self) -> usize {
        ((30.0 * self.scale).round() as usize).max(2)
    }

    /// `start` as (year, month); errors name the flag and the expected format.
    pub(crate) fn start_month(&self) -> Result<(i32, u32)> {
        let s = self.start.trim();
        let parsed = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
            .ok()
            .filter(|_| s.len() == 7);
        let Some(d) = parsed else {
            invalid!("--start must be a month written YYYY-MM (e.g. 2023-01), got {s:?}");
        };
        use chrono::Datelike;
        if d.year() < 2017 || d.year() > 2099 {
            invalid!("--start must lie between 2017-01 (BPNT began in 2017) and 2099-12, got {s}");
        }
        Ok((d.year(), d.month()))
    }

    pub fn validate(&self) -> Result<()> {
        let regions = Regions::get();
        if self.regencies.is_empty() {
            invalid!("--regencies must name at least one BPS regency code (e.g. 3604)");
        }
        let mut seen = std::collections::BTreeSet::new();
        for code in &self.regencies {
            if regions.regency(code).is_none() {
                invalid!(
                    "--regencies: unknown BPS regency code {code:?} (expected a 4-digit \
                     kabupaten/kota code such as 3604 Kab. Serang)"
                );
            }
            if regions.districts(code).is_empty() {
                invalid!("--regencies: regency {code} has no kecamatan in the reference data");
            }
            if !seen.insert(code.as_str()) {
                invalid!("--regencies: regency {code} is listed twice");
            }
        }
        self.start_month()?;
        if self.months == 0 || self.months > 120 {
            invalid!("--months must be between 1 and 120, got {}", self.months);
        }
        if !self.scale.is_finite() || self.scale <= 0.0 || self.scale > 1000.0 {
            invalid!(
                "--scale must be a number above 0 and at most 1000, got {}",
                self.scale
            );
        }
        if self.max_disorder_secs > 86_400 {
            invalid!(
                "--max-disorder-secs must be at most 86400 (one day), got {}",
                self.max_disorder_secs
            );
        }
        if self.malformed > 1_000_000 {
            invalid!(
                "--malformed must be at most 1000000, got {}",
                self.malformed
            );
        }
        for (name, v) in [
            ("non-transacting-baseline", self.non_transacting_baseline),
            ("late-spender-rate", self.late_spender_rate),
            ("other-outlet-rate", self.other_outlet_rate),
            ("reversal-rate", self.reversal_rate),
            ("duplicate-rate", self.duplicate_rate),
            ("seasonal-rate", self.seasonal_rate),
            ("supplier-share-min", self.supplier_share_min),
            ("supplier-share-max", self.supplier_share_max),
            ("collection-night-share", self.collection_night_share),
            ("queue-rate", self.queue_rate),
            ("over-norm-rate", self.over_norm_rate),
            ("kecamatan-premium-rate", self.kecamatan_premium_rate),
            ("paperwork-share-min", self.paperwork_share_min),
            ("paperwork-share-max", self.paperwork_share_max),
            ("overcharge-min", self.overcharge_min),
            ("overcharge-max", self.overcharge_max),
            ("non-transacting-share-min", self.non_transacting_share_min),
            ("non-transacting-share-max", self.non_transacting_share_max),
            ("short-factor-min", self.short_factor_min),
            ("short-factor-max", self.short_factor_max),
            ("seasonal-leak", self.seasonal_leak),
            ("realization-lag-rate", self.realization_lag_rate),
            ("realization-lag-share-min", self.realization_lag_share_min),
            ("realization-lag-share-max", self.realization_lag_share_max),
        ] {
            check_share(name, v)?;
        }
        for (name, v) in [
            ("card-collection-rate", self.card_collection_rate),
            ("price-markup-rate", self.price_markup_rate),
            ("short-quantity-rate", self.short_quantity_rate),
            ("paperwork-rate", self.paperwork_rate),
            ("fixed-amount-rate", self.fixed_amount_rate),
            ("late-batch-rate", self.late_batch_rate),
            ("non-transacting-outlets", self.non_transacting_outlets),
            ("many-places-rate", self.many_places_rate),
            ("markup-factor-min", self.markup_factor_min),
            ("markup-factor-max", self.markup_factor_max),
            ("price-shock-rate", self.price_shock_rate),
        ] {
            check_rate(name, v)?;
        }
        check_range("ring-size", self.ring_size_min, self.ring_size_max)?;
        check_range(
            "supplier-share",
            self.supplier_share_min,
            self.supplier_share_max,
        )?;
        check_range(
            "collection-cards",
            self.collection_cards_min,
            self.collection_cards_max,
        )?;
        check_range(
            "collection-spacing",
            self.collection_spacing_min_secs,
            self.collection_spacing_max_secs,
        )?;
        check_range("queue-size", self.queue_size_min, self.queue_size_max)?;
        let (fastest, slowest) = (self.queue_service_min_secs, self.queue_service_max_secs);
        if fastest == 0 || slowest > 3_600 || fastest > slowest {
            invalid!(
                "--queue-service-min-secs ({fastest}) and --queue-service-max-secs ({slowest}) must be between 1 and 3600, the first no larger than the second (a KPM is served in seconds to minutes)"
            );
        }
        let (cheapest, dearest) = (self.kecamatan_premium_min, self.kecamatan_premium_max);
        if !(1.0..=2.0).contains(&cheapest) || !(1.0..=2.0).contains(&dearest) || cheapest > dearest
        {
            invalid!(
                "--kecamatan-premium-min ({cheapest}) and --kecamatan-premium-max ({dearest}) must be price factors between 1 and 2, the first no larger than the second"
            );
        }
        let (mildest, harshest) = (self.price_shock_min, self.price_shock_max);
        if !(1.0..=3.0).contains(&mildest) || !(1.0..=3.0).contains(&harshest) || mildest > harshest
        {
            invalid!(
                "--price-shock-min ({mildest}) and --price-shock-max ({harshest}) must be price factors between 1 and 3, the first no larger than the second"
            );
        }
        let (shortest, longest) = (self.price_shock_days_min, self.price_shock_days_max);
        if shortest == 0 || longest > 365 || shortest > longest {
            invalid!(
                "--price-shock-days-min ({shortest}) and --price-shock-days-max ({longest}) must be between 1 and 365 days, the first no larger than the second"
            );
        }
        let (soonest, latest) = (
            self.late_batch_delay_min_hours,
            self.late_batch_delay_max_hours,
        );
        if latest > 24 * 14 || soonest > latest {
            invalid!(
                "--late-batch-delay-min-hours ({soonest}) and --late-batch-delay-max-hours ({latest}) must be at most 336 hours (two weeks), the first no larger than the second"
            );
        }
        if self.outlets_per_kecamatan == 0 {
            invalid!("--outlets-per-kecamatan must be at least 1");
        }
        check_range(
            "markup-factor",
            self.markup_factor_min,
            self.markup_factor_max,
        )?;
        check_range("short-factor", self.short_factor_min, self.short_factor_max)?;
        check_range(
            "paperwork-share",
            self.paperwork_share_min,
            self.paperwork_share_max,
        )?;
        check_range("overcharge", self.overcharge_min, self.overcharge_max)?;
        check_range(
            "non-transacting-share",
            self.non_transacting_share_min,
            self.non_transacting_share_max,
        )?;
        check_range(
            "many-places-outlets",
            self.many_places_outlets_min,
            self.many_places_outlets_max,
        )?;
        check_range(
            "realization-lag-share",
            self.realization_lag_share_min,
            self.realization_lag_share_max,
        )?;
        if self.ring_size_min < 2 {
            invalid!(
                "--ring-size-min must be at least 2 (a ring is several outlets), got {}",
                self.ring_size_min
            );
        }
        if self.collection_cards_min < 2 {
            invalid!(
                "--collection-cards-min must be at least 2, got {}",
                self.collection_cards_min
            );
        }
        if self.collection_jitter_secs >= self.collection_spacing_min_secs {
            invalid!(
                "--collection-jitter-secs ({}) must be below --collection-spacing-min-secs ({}) \
                 so that swipes stay in order",
                self.collection_jitter_secs,
                self.collection_spacing_min_secs
            );
        }
        if self.markup_factor_min < 1.0 || self.markup_factor_max > 10.0 {
            invalid!(
                "--markup-factor-min/max must lie between 1 and 10, got {}..{}",
                self.markup_factor_min,
                self.markup_factor_max
            );
        }
        if self.overcharge_min <= 0.0 {
            invalid!(
                "--overcharge-min must be above 0 (no overcharge is no mismatch), got {}",
                self.overcharge_min
            );
        }
        if self.short_factor_min <= 0.0 {
            invalid!(
                "--short-factor-min must be above 0, got {}",
                self.short_factor_min
            );
        }
        if self.many_places_outlets_min < 2 || self.many_places_outlets_max > 50 {
            invalid!(
                "--many-places-outlets-min/max must lie between 2 (one outlet is no \
                 \"many places\") and 50, got {}..{}",
                self.many_places_outlets_min,
                self.many_places_outlets_max
            );
        }
        if self.many_places_hours == 0 || self.many_places_hours > 12 {
            invalid!(
                "--many-places-hours must be between 1 and 12 (the swipes stay within one \
                 day's shop hours), got {}",
                self.many_places_hours
            );
        }
        if self.realization_lag_share_min <= 0.0 {
            invalid!(
                "--realization-lag-share-min must be above 0 (no delayed KPM is no lag), got {}",
                self.realization_lag_share_min
            );
        }
        if self.seasonal_window_days == 0 || self.seasonal_window_days > 28 {
            invalid!(
                "--seasonal-window-days must be between 1 and 28, got {}",
                self.seasonal_window_days
            );
        }
        Ok(())
    }
}
