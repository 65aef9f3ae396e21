//! The flags of `pantau simulate` and `pantau eval`.

use std::path::PathBuf;

use pantau_sim::eval::EvalConfig;
use pantau_sim::SimConfig;

/// Options of the simulated history: where, when, how big, and how often each kind of
/// misbehaviour is injected. The defaults are [`SimConfig`]'s.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Seed of the random generator: the same seed and options give byte-identical files.
    #[arg(long, default_value_t = SimConfig::default().seed)]
    pub seed: u64,

    /// Comma-separated BPS regency codes (4 digits) to simulate. The default has one per
    /// time zone: 3604 Kab. Serang (WIB), 7371 Kota Makassar (WITA), 9471 Kota Jayapura
    /// (WIT).
    #[arg(long, value_delimiter = ',', default_values_t = SimConfig::default().regencies)]
    pub regencies: Vec<String>,

    /// Number of calendar months simulated (1-120).
    #[arg(long, default_value_t = SimConfig::default().months)]
    pub months: u32,

    /// First month simulated, YYYY-MM (2017-01 or later: BPNT began in 2017).
    #[arg(long, default_value_t = SimConfig::default().start)]
    pub start: String,

    /// Multiplies the number of outlets per regency (30 outlets per regency at 1.0, at
    /// least 2). Transactions grow linearly with scale x months.
    #[arg(long, default_value_t = SimConfig::default().scale)]
    pub scale: f64,

    // ---- ordinary behaviour -------------------------------------------------------
    /// Share of KPM (0-1) who, in any benefit period, never spend their benefit, whatever
    /// their outlet (the baseline of non-transacting KPM).
    #[arg(long, default_value_t = SimConfig::default().non_transacting_baseline)]
    pub non_transacting_baseline: f64,

    /// Share of spending KPM (0-1) who shop late, 10-25 days after the credit.
    #[arg(long, default_value_t = SimConfig::default().late_spender_rate)]
    pub late_spender_rate: f64,

    /// Share of KKS shopping trips (0-1) made at another outlet of the same bank in the
    /// regency instead of the KPM's home outlet.
    #[arg(long, default_value_t = SimConfig::default().other_outlet_rate)]
    pub other_outlet_rate: f64,

    /// Share of KKS purchases (0-1) reversed a few minutes later (the KPM then buys again).
    #[arg(long, default_value_t = SimConfig::default().reversal_rate)]
    pub reversal_rate: f64,

    /// Share of transaction records (0-1) delivered a second time, identical, a few records
    /// later (redeliveries).
    #[arg(long, default_value_t = SimConfig::default().duplicate_rate)]
    pub duplicate_rate: f64,

    /// Records of each stream are shuffled locally so that none arrives more than this many
    /// seconds (event time) after a later record; 0 keeps every stream sorted.
    #[arg(long, default_value_t = SimConfig::default().max_disorder_secs)]
    pub max_disorder_secs: u64,

    /// Number of deliberately broken records (truncated JSON, missing field, wrong type,
    /// unknown bank or payment, non-positive amount, time without offset, empty message)
    /// spread over the transaction and disbursement streams.
    #[arg(long, default_value_t = SimConfig::default().malformed)]
    pub malformed: usize,

    // ---- seasonal outlets -----------------------------------------------------------
    /// Share of outlets (0-1) that are seasonal: no ordinary customers, KKS sales only in
    /// the days after the credit (at least one outlet when above 0).
    #[arg(long, default_value_t = SimConfig::default().seasonal_rate)]
    pub seasonal_rate: f64,

    /// A seasonal outlet sells only within this many days after its bank's credit (1-28).
    #[arg(long, default_value_t = SimConfig::default().seasonal_window_days)]
    pub seasonal_window_days: u32,

    /// Share (0-1) of a seasonal outlet's KKS sales made outside its disbursement windows,
    /// on random later days of the period; 0 keeps every sale inside the windows.
    #[arg(long, default_value_t = SimConfig::default().seasonal_leak)]
    pub seasonal_leak: f64,

    // ---- supplier-dependent rings ---------------------------------------------------
    /// Number of supplier rings: outlets of one regency selling one identical pre-packed
    /// bundle and paying most of their KKS takings to a single supplier.
    #[arg(long, default_value_t = SimConfig::default().supplier_rings)]
    pub supplier_rings: u32,

    /// Smallest number of outlets in a supplier ring (at least 2).
    #[arg(long, default_value_t = SimConfig::default().ring_size_min)]
    pub ring_size_min: u32,

    /// Largest number of outlets in a supplier ring.
    #[arg(long, default_value_t = SimConfig::default().ring_size_max)]
    pub ring_size_max: u32,

    /// Lowest share (0-1) of a ring outlet's daily KKS takings transferred to the supplier.
    #[arg(long, default_value_t = SimConfig::default().supplier_share_min)]
    pub supplier_share_min: f64,

    /// Highest share (0-1) of a ring outlet's daily KKS takings transferred to the
    /// supplier.
    #[arg(long, default_value_t = SimConfig::default().supplier_share_max)]
    pub supplier_share_max: f64,

    // ---- card collection ------------------------------------------------------------
    /// Expected card-collection bursts per regency per month (not a share: 2.0 = about
    /// two).
    #[arg(long, default_value_t = SimConfig::default().card_collection_rate)]
    pub card_collection_rate: f64,

    /// Fewest distinct cards swiped in one burst.
    #[arg(long, default_value_t = SimConfig::default().collection_cards_min)]
    pub collection_cards_min: u32,

    /// Most distinct cards swiped in one burst (fewer if the outlet has fewer KPM).
    #[arg(long, default_value_t = SimConfig::default().collection_cards_max)]
    pub collection_cards_max: u32,

    /// Shortest mean spacing between two swipes of a burst, in seconds.
    #[arg(long, default_value_t = SimConfig::default().collection_spacing_min_secs)]
    pub collection_spacing_min_secs: u32,

    /// Longest mean spacing between two swipes of a burst, in seconds.
    #[arg(long, default_value_t = SimConfig::default().collection_spacing_max_secs)]
    pub collection_spacing_max_secs: u32,

    /// Each gap of a burst deviates from its mean spacing by at most this many seconds
    /// (must be below the shortest spacing).
    #[arg(long, default_value_t = SimConfig::default().collection_jitter_secs)]
    pub collection_jitter_secs: u32,

    /// Share of bursts (0-1) swiped at night, 20:00-23:30 local time.
    #[arg(long, default_value_t = SimConfig::default().collection_night_share)]
    pub collection_night_share: f64,

    // ---- credit-day queues --------------------------------------------------------------
    /// Share (0-1) of ordinary outlets where KPM queue the morning after each credit,
    /// served back to back from opening time, each with their own card at their own
    /// outlet (ordinary behaviour, not an anomaly).
    #[arg(long, default_value_t = SimConfig::default().queue_rate)]
    pub queue_rate: f64,

    /// Fewest KPM in a queue.
    #[arg(long, default_value_t = SimConfig::default().queue_size_min)]
    pub queue_size_min: u32,

    /// Most KPM in a queue.
    #[arg(long, default_value_t = SimConfig::default().queue_size_max)]
    pub queue_size_max: u32,

    /// Shortest time serving one KPM of a queue, in seconds.
    #[arg(long, default_value_t = SimConfig::default().queue_service_min_secs)]
    pub queue_service_min_secs: u32,

    /// Longest time serving one KPM of a queue, in seconds.
    #[arg(long, default_value_t = SimConfig::default().queue_service_max_secs)]
    pub queue_service_max_secs: u32,

    // ---- price geography ----------------------------------------------------------------
    /// Outlets per simulated kecamatan: each regency's outlets are spread evenly over as
    /// many of its kecamatan as this needs.
    #[arg(long, default_value_t = SimConfig::default().outlets_per_kecamatan)]
    pub outlets_per_kecamatan: u32,

    /// Share (0-1) of the simulated kecamatan that are interior: dearer for every outlet
    /// there (ordinary geography, reported as a low-severity area note, not an anomaly).
    #[arg(long, default_value_t = SimConfig::default().kecamatan_premium_rate)]
    pub kecamatan_premium_rate: f64,

    /// Smallest price factor of an interior kecamatan over its regency.
    #[arg(long, default_value_t = SimConfig::default().kecamatan_premium_min)]
    pub kecamatan_premium_min: f64,

    /// Largest price factor of an interior kecamatan over its regency.
    #[arg(long, default_value_t = SimConfig::default().kecamatan_premium_max)]
    pub kecamatan_premium_max: f64,

    /// Expected district-wide price shocks per regency per year (a failed rice harvest
    /// moves rice, a holiday every food), every outlet of the regency together.
    #[arg(long, default_value_t = SimConfig::default().price_shock_rate)]
    pub price_shock_rate: f64,

    /// Smallest price factor of a shock.
    #[arg(long, default_value_t = SimConfig::default().price_shock_min)]
    pub price_shock_min: f64,

    /// Largest price factor of a shock.
    #[arg(long, default_value_t = SimConfig::default().price_shock_max)]
    pub price_shock_max: f64,

    /// Shortest shock, in days.
    #[arg(long, default_value_t = SimConfig::default().price_shock_days_min)]
    pub price_shock_days_min: u32,

    /// Longest shock, in days.
    #[arg(long, default_value_t = SimConfig::default().price_shock_days_max)]
    pub price_shock_days_max: u32,

    // ---- price markup -----------------------------------------------------------------
    /// Expected outlets per regency per month selling one commodity (rice, eggs or chicken)
    /// at a marked-up price.
    #[arg(long, default_value_t = SimConfig::default().price_markup_rate)]
    pub price_markup_rate: f64,

    /// Smallest markup factor (at least 1).
    #[arg(long, default_value_t = SimConfig::default().markup_factor_min)]
    pub markup_factor_min: f64,

    /// Largest markup factor.
    #[arg(long, default_value_t = SimConfig::default().markup_factor_max)]
    pub markup_factor_max: f64,

    // ---- short quantity ---------------------------------------------------------------
    /// Expected outlets per regency per month with a rigged scale: every commodity sold by
    /// weight is handed out short by the same ratio (a markup, by contrast, raises one
    /// commodity's price).
    #[arg(long, default_value_t = SimConfig::default().short_quantity_rate)]
    pub short_quantity_rate: f64,

    /// Smallest share (0-1] of the kilograms actually handed out.
    #[arg(long, default_value_t = SimConfig::default().short_factor_min)]
    pub short_factor_min: f64,

    /// Largest share (0-1] of the kilograms actually handed out.
    #[arg(long, default_value_t = SimConfig::default().short_factor_max)]
    pub short_factor_max: f64,

    // ---- terminals uploading late -------------------------------------------------------
    /// Expected terminal-days per regency per month whose sales reach the bank in one
    /// batch hours after the day ended (the terminal was offline).
    #[arg(long, default_value_t = SimConfig::default().late_batch_rate)]
    pub late_batch_rate: f64,

    /// Fewest hours after the end of the day a late batch arrives.
    #[arg(long, default_value_t = SimConfig::default().late_batch_delay_min_hours)]
    pub late_batch_delay_min_hours: u32,

    /// Most hours after the end of the day a late batch arrives.
    #[arg(long, default_value_t = SimConfig::default().late_batch_delay_max_hours)]
    pub late_batch_delay_max_hours: u32,

    // ---- fixed amounts and KPM over the norm ---------------------------------------------
    /// Expected outlets per regency per month charging every KPM the month's whole
    /// benefit as one fixed package.
    #[arg(long, default_value_t = SimConfig::default().fixed_amount_rate)]
    pub fixed_amount_rate: f64,

    /// Share (0-1) of outlets assigned more KPM than the program's norm (300): 330-500.
    #[arg(long, default_value_t = SimConfig::default().over_norm_rate)]
    pub over_norm_rate: f64,

    // ---- paperwork mismatch -----------------------------------------------------------
    /// Expected outlets per regency per month whose receipts do not add up or list
    /// ineligible goods.
    #[arg(long, default_value_t = SimConfig::default().paperwork_rate)]
    pub paperwork_rate: f64,

    /// Smallest share (0-1) of the outlet's KKS purchases affected in that month.
    #[arg(long, default_value_t = SimConfig::default().paperwork_share_min)]
    pub paperwork_share_min: f64,

    /// Largest share (0-1) of the outlet's KKS purchases affected in that month.
    #[arg(long, default_value_t = SimConfig::default().paperwork_share_max)]
    pub paperwork_share_max: f64,

    /// Smallest overcharge (0-1) of the amount above the sum of its items.
    #[arg(long, default_value_t = SimConfig::default().overcharge_min)]
    pub overcharge_min: f64,

    /// Largest overcharge (0-1) of the amount above the sum of its items.
    #[arg(long, default_value_t = SimConfig::default().overcharge_max)]
    pub overcharge_max: f64,

    // ---- non-transacting outlets ------------------------------------------------------
    /// Expected outlets per regency (over the whole run) where many KPM leave one benefit
    /// period unspent, on top of the baseline.
    #[arg(long, default_value_t = SimConfig::default().non_transacting_outlets)]
    pub non_transacting_outlets: f64,

    /// Smallest share (0-1) of such an outlet's KPM who do not spend in that period.
    #[arg(long, default_value_t = SimConfig::default().non_transacting_share_min)]
    pub non_transacting_share_min: f64,

    /// Largest share (0-1) of such an outlet's KPM who do not spend in that period.
    #[arg(long, default_value_t = SimConfig::default().non_transacting_share_max)]
    pub non_transacting_share_max: f64,

    // ---- one card, many places --------------------------------------------------------
    /// Expected cards per regency per month (cloned, or held by an agent) whose balance is
    /// spent at several outlets within hours (at least one in the run when above 0).
    #[arg(long, default_value_t = SimConfig::default().many_places_rate)]
    pub many_places_rate: f64,

    /// Fewest distinct outlets such a card is swiped at (at least 2). Regencies where no
    /// bank has this many ordinary outlets get no such card.
    #[arg(long, default_value_t = SimConfig::default().many_places_outlets_min)]
    pub many_places_outlets_min: u32,

    /// Most distinct outlets such a card is swiped at (fewer if its bank has fewer).
    #[arg(long, default_value_t = SimConfig::default().many_places_outlets_max)]
    pub many_places_outlets_max: u32,

    /// Hours (1-12) from the first swipe of such a card to its last, all in shop hours.
    #[arg(long, default_value_t = SimConfig::default().many_places_hours)]
    pub many_places_hours: u32,

    // ---- realization lag --------------------------------------------------------------
    /// Probability (0-1) that a regency falls behind its peers in a benefit period (cards
    /// handed out late, a road closed). At least one in the run when above 0 and at least
    /// three regencies are simulated; none with fewer, as there would be no peers.
    #[arg(long, default_value_t = SimConfig::default().realization_lag_rate)]
    pub realization_lag_rate: f64,

    /// Smallest share (0-1) of a lagging regency's would-be spenders who are delayed.
    #[arg(long, default_value_t = SimConfig::default().realization_lag_share_min)]
    pub realization_lag_share_min: f64,

    /// Largest share (0-1) of a lagging regency's would-be spenders who are delayed.
    #[arg(long, default_value_t = SimConfig::default().realization_lag_share_max)]
    pub realization_lag_share_max: f64,
}

impl From<SimArgs> for SimConfig {
    fn from(a: SimArgs) -> Self {
        SimConfig {
            seed: a.seed,
            regencies: a.regencies,
            months: a.months,
            start: a.start,
            scale: a.scale,
            non_transacting_baseline: a.non_transacting_baseline,
            late_spender_rate: a.late_spender_rate,
            other_outlet_rate: a.other_outlet_rate,
            reversal_rate: a.reversal_rate,
            duplicate_rate: a.duplicate_rate,
            max_disorder_secs: a.max_disorder_secs,
            malformed: a.malformed,
            seasonal_rate: a.seasonal_rate,
            seasonal_window_days: a.seasonal_window_days,
            seasonal_leak: a.seasonal_leak,
            supplier_rings: a.supplier_rings,
            ring_size_min: a.ring_size_min,
            ring_size_max: a.ring_size_max,
            supplier_share_min: a.supplier_share_min,
            supplier_share_max: a.supplier_share_max,
            card_collection_rate: a.card_collection_rate,
            collection_cards_min: a.collection_cards_min,
            collection_cards_max: a.collection_cards_max,
            collection_spacing_min_secs: a.collection_spacing_min_secs,
            collection_spacing_max_secs: a.collection_spacing_max_secs,
            collection_jitter_secs: a.collection_jitter_secs,
            collection_night_share: a.collection_night_share,
            queue_rate: a.queue_rate,
            queue_size_min: a.queue_size_min,
            queue_size_max: a.queue_size_max,
            queue_service_min_secs: a.queue_service_min_secs,
            queue_service_max_secs: a.queue_service_max_secs,
            outlets_per_kecamatan: a.outlets_per_kecamatan,
            kecamatan_premium_rate: a.kecamatan_premium_rate,
            kecamatan_premium_min: a.kecamatan_premium_min,
            kecamatan_premium_max: a.kecamatan_premium_max,
            price_shock_rate: a.price_shock_rate,
            price_shock_min: a.price_shock_min,
            price_shock_max: a.price_shock_max,
            price_shock_days_min: a.price_shock_days_min,
            price_shock_days_max: a.price_shock_days_max,
            price_markup_rate: a.price_markup_rate,
            markup_factor_min: a.markup_factor_min,
            markup_factor_max: a.markup_factor_max,
            short_quantity_rate: a.short_quantity_rate,
            short_factor_min: a.short_factor_min,
            short_factor_max: a.short_factor_max,
            paperwork_rate: a.paperwork_rate,
            fixed_amount_rate: a.fixed_amount_rate,
            late_batch_rate: a.late_batch_rate,
            late_batch_delay_min_hours: a.late_batch_delay_min_hours,
            late_batch_delay_max_hours: a.late_batch_delay_max_hours,
            over_norm_rate: a.over_norm_rate,
            paperwork_share_min: a.paperwork_share_min,
            paperwork_share_max: a.paperwork_share_max,
            overcharge_min: a.overcharge_min,
            overcharge_max: a.overcharge_max,
            non_transacting_outlets: a.non_transacting_outlets,
            non_transacting_share_min: a.non_transacting_share_min,
            non_transacting_share_max: a.non_transacting_share_max,
            many_places_rate: a.many_places_rate,
            many_places_outlets_min: a.many_places_outlets_min,
            many_places_outlets_max: a.many_places_outlets_max,
            many_places_hours: a.many_places_hours,
            realization_lag_rate: a.realization_lag_rate,
            realization_lag_share_min: a.realization_lag_share_min,
            realization_lag_share_max: a.realization_lag_share_max,
        }
    }
}

/// Options of `pantau eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// Simulated history folder holding `truth.jsonl` (made by `pantau simulate --out`).
    pub dir: PathBuf,
    /// Alerts raised on that history, one JSON object a line (`pantau replay` output).
    #[arg(long)]
    pub alerts: PathBuf,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Fail when a category with truth lines has a lower recall (0 to 1).
    #[arg(long, value_parser = parse_fraction)]
    pub min_recall: Option<f64>,
    /// Fail when a category with alerts has a lower precision (0 to 1).
    #[arg(long, value_parser = parse_fraction)]
    pub min_precision: Option<f64>,
    /// List the missed truth lines and the alerts that matched no truth (also in --json).
    #[arg(long)]
    pub show_misses: bool,
    /// Dead-letter file of the same replay, to set its size beside the injected
    /// malformed records.
    #[arg(long)]
    pub dlq: Option<PathBuf>,
}

impl From<EvalArgs> for EvalConfig {
    fn from(a: EvalArgs) -> Self {
        EvalConfig {
            dir: a.dir,
            alerts: a.alerts,
            json: a.json,
            min_recall: a.min_recall,
            min_precision: a.min_precision,
            show_misses: a.show_misses,
            dlq: a.dlq,
        }
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let x: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number between 0 and 1"))?;
    if (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err(format!("{x} is not between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_outside_zero_to_one_are_refused() {
        assert_eq!(parse_fraction("0.8"), Ok(0.8));
        assert!(parse_fraction("80").is_err());
        assert!(parse_fraction("x").is_err());
    }

    #[test]
    fn cli_flags_parse_with_their_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            sim: SimArgs,
        }
        // clap checks flag names and defaults only in debug builds unless asked.
        <Cli as clap::CommandFactory>::command().debug_assert();
        let d = SimConfig::from(Cli::try_parse_from(["pantau"]).expect("defaults").sim);
        assert_eq!(d, SimConfig::default());
        assert_eq!(d.regencies, vec!["3604", "7371", "9471"]);
        assert_eq!(
            (d.seed, d.months, d.start.as_str(), d.scale),
            (42, 3, "2023-01", 1.0)
        );
        assert_eq!(
            (
                d.many_places_rate,
                d.many_places_outlets_min,
                d.many_places_outlets_max,
                d.many_places_hours
            ),
            (1.0, 3, 5, 3)
        );
        assert_eq!(
            (
                d.realization_lag_rate,
                d.realization_lag_share_min,
                d.realization_lag_share_max,
                d.seasonal_leak
            ),
            (0.1, 0.3, 0.5, 0.0)
        );
        let c = Cli::try_parse_from([
            "pantau",
            "--regencies",
            "1101,3201",
            "--seasonal-rate",
            "0.1",
            "--malformed",
            "5",
            "--many-places-hours",
            "4",
            "--realization-lag-share-max",
            "0.6",
            "--seasonal-leak",
            "0.25",
        ])
        .expect("flags")
        .sim;
        let c = SimConfig::from(c);
        assert_eq!(c.regencies, vec!["1101", "3201"]);
        assert_eq!((c.seasonal_rate, c.malformed), (0.1, 5));
        assert_eq!(
            (
                c.many_places_hours,
                c.realization_lag_share_max,
                c.seasonal_leak
            ),
            (4, 0.6, 0.25)
        );
    }
}
