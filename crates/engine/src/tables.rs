//! The Arrow tables rules are written against: their names, columns and types.
//!
//! `decode` fills the raw-event tables, `window` adds the window bounds and the daily
//! rollups, `rules` registers them in DataFusion under these names; `reference` reads
//! the reference tables (official prices) from the rules folder's `tables/*.csv`. `pantau rules schema`
//! prints them; changing a column here is changing the contract with every rule file.
//!
//! All times are UTC instants (`Timestamp(µs, UTC)`); `local_date` and `local_hour` are
//! the same instant on the regency's own calendar (WIB, WITA or WIT), because the
//! program's days — and an agent's "night" — are local.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

pub const TRANSACTIONS: &str = "transactions";
pub(crate) const TRANSACTION_ITEMS: &str = "transaction_items";
pub const DISBURSEMENTS: &str = "disbursements";
pub(crate) const TRANSFERS: &str = "transfers";
pub const OUTLETS: &str = "outlets";
pub(crate) const OUTLET_DAILY: &str = "outlet_daily";
pub(crate) const DISBURSEMENT_DAILY: &str = "disbursement_daily";
pub(crate) const CARD_DAILY: &str = "card_daily";
pub(crate) const OUTLET_BUNDLE_DAILY: &str = "outlet_bundle_daily";
pub(crate) const OUTLET_TRANSFER_DAILY: &str = "outlet_transfer_daily";
pub const REFERENCE_PRICES: &str = "reference_prices";
pub const PRICE_ZONES: &str = "price_zones";
pub const PROGRAM_NORMS: &str = "program_norms";

/// The raw-event tables a window over events is cut from.
pub(crate) const RAW_TABLES: [&str; 4] =
    [TRANSACTIONS, TRANSACTION_ITEMS, DISBURSEMENTS, TRANSFERS];

/// The rollups kept per closed local day, in the order they are built.
pub(crate) const ROLLUP_TABLES: [&str; 5] = [
    OUTLET_DAILY,
    DISBURSEMENT_DAILY,
    CARD_DAILY,
    OUTLET_BUNDLE_DAILY,
    OUTLET_TRANSFER_DAILY,
];

/// Columns every windowed table carries on top of its own.
pub(crate) const WINDOW_START: &str = "window_start";
pub(crate) const WINDOW_END: &str = "window_end";
/// Provenance kept so the source knows which offsets a window still needs.
pub(crate) const SRC_PARTITION: &str = "src_partition";
pub(crate) const SRC_OFFSET: &str = "src_offset";

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn provenance() -> [Field; 2] {
    [
        Field::new(SRC_PARTITION, DataType::Int32, false),
        Field::new(SRC_OFFSET, DataType::Int64, false),
    ]
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// One row per payment (purchase or reversal), KKS or ordinary.
pub(crate) static TRANSACTIONS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = vec![
        utf8("txn_id"),
        utf8("bank"),
        Field::new("occurred_at", timestamp_type(), false),
        Field::new("local_date", DataType::Date32, false),
        Field::new("local_hour", DataType::Int32, false),
        Field::new("utc_offset_minutes", DataType::Int32, false),
        utf8("outlet_id"),
        utf8("terminal_id"),
        utf8("regency_code"),
        utf8("card_id"),
        utf8("payment"),
        utf8("type"),
        Field::new("reverses_txn_id", DataType::Utf8, true),
        Field::new("amount", DataType::Int64, false),
        Field::new("balance_after", DataType::Int64, true),
        Field::new("item_count", DataType::Int32, false),
        // Σ qty × unit_price, rounded to the rupiah; null when the record has no items.
        Field::new("items_total", DataType::Int64, true),
    ];
    f.extend(provenance());
    schema(f)
});

/// One row per item line of a purchase that lists items (all KKS purchases).
pub(crate) static TRANSACTION_ITEMS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = vec![
        utf8("txn_id"),
        utf8("bank"),
        Field::new("occurred_at", timestamp_type(), false),
        Field::new("local_date", DataType::Date32, false),
        Field::new("utc_offset_minutes", DataType::Int32, false),
        utf8("outlet_id"),
        utf8("terminal_id"),
        utf8("regency_code"),
        utf8("card_id"),
        utf8("payment"),
        utf8("commodity"),
        Field::new("qty", DataType::Float64, false),
        utf8("unit"),
        Field::new("unit_price", DataType::Int64, false),
    ];
    f.extend(provenance());
    schema(f)
});

pub static DISBURSEMENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = vec![
        utf8("disbursement_id"),
        utf8("bank"),
        utf8("card_id"),
        utf8("regency_code"),
        utf8("period"),
        Field::new("months", DataType::Int32, false),
        Field::new("amount", DataType::Int64, false),
        Field::new("credited_at", timestamp_type(), false),
        Field::new("local_date", DataType::Date32, false),
        Field::new("utc_offset_minutes", DataType::Int32, false),
    ];
    f.extend(provenance());
    schema(f)
});

pub static TRANSFERS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut f = vec![
        utf8("transfer_id"),
        utf8("bank"),
        utf8("outlet_id"),
        utf8("regency_code"),
        Field::new("occurred_at", timestamp_type(), false),
        Field::new("local_date", DataType::Date32, false),
        Field::new("utc_offset_minutes", DataType::Int32, false),
        utf8("counterparty_id"),
        Field::new("amount", DataType::Int64, false),
    ];
    f.extend(provenance());
    schema(f)
});

/// The registry: the latest record of every outlet seen so far (not windowed).
pub(crate) static OUTLETS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("outlet_id"),
        utf8("name"),
        utf8("regency_code"),
        utf8("district_code"),
        utf8("bank"),
        Field::new("registered_at", timestamp_type(), false),
        utf8("status"),
        Field::new("kpm_assigned", DataType::Int64, false),
    ])
});

/// Rollup kept per outlet and local day once that day's window has closed; long-horizon
/// rules read this instead of months of raw events. Columns are nullable because they
/// are aggregates computed by SQL.
pub(crate) static OUTLET_DAILY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("outlet_id"),
        utf8("regency_code"),
        Field::new("local_date", DataType::Date32, true),
        Field::new("kks_payments", DataType::Int64, true),
        Field::new("kks_cards", DataType::Int64, true),
        Field::new("kks_amount", DataType::Int64, true),
        Field::new("ordinary_payments", DataType::Int64, true),
        Field::new("ordinary_amount", DataType::Int64, true),
        Field::new("first_at", timestamp_type(), true),
        Field::new("last_at", timestamp_type(), true),
    ])
});

/// Rollup of credits per regency, bank and local day: the disbursement calendar.
pub(crate) static DISBURSEMENT_DAILY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("regency_code"),
        utf8("bank"),
        Field::new("local_date", DataType::Date32, true),
        Field::new("cards_credited", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
    ])
});

/// Rollup per KKS card and local day: what it was credited and what it spent, so
/// period-long questions (who never spent, how fast a district spends) need no raw events.
pub(crate) static CARD_DAILY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("card_id"),
        utf8("regency_code"),
        utf8("bank"),
        Field::new("local_date", DataType::Date32, true),
        // The outlet the card spent most at that day; null on a day with credits only.
        Field::new("outlet_id", DataType::Utf8, true),
        Field::new("outlets", DataType::Int64, true),
        Field::new("purchases", DataType::Int64, true),
        // Purchases minus reversals, in rupiah.
        Field::new("spent", DataType::Int64, true),
        Field::new("credited", DataType::Int64, true),
        // `YYYY-MM` and month count of the credit received that day, if any.
        Field::new("period", DataType::Utf8, true),
        Field::new("months", DataType::Int64, true),
    ])
});

/// Rollup per outlet, local day and basket: how many KKS purchases bought exactly the
/// same items (commodity and quantity), the signature of pre-packed bundles.
pub(crate) static OUTLET_BUNDLE_DAILY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("outlet_id"),
        utf8("regency_code"),
        Field::new("local_date", DataType::Date32, true),
        // Items sorted by commodity, `COMMODITY qty` joined by `, `.
        Field::new("basket", DataType::Utf8, true),
        Field::new("purchases", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
    ])
});

/// Rollup per outlet, counterparty and local day of money leaving the outlet's account.
pub(crate) static OUTLET_TRANSFER_DAILY_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("outlet_id"),
        utf8("regency_code"),
        utf8("counterparty_id"),
        Field::new("local_date", DataType::Date32, true),
        Field::new("transfers", DataType::Int64, true),
        Field::new("amount", DataType::Int64, true),
    ])
});

/// Official prices by commodity, grade, HET zone and the dates they were in force: the
/// rice ceilings (HET) and the egg and chicken consumer references (HAP). A reference
/// table: read from the rules folder's `tables/reference_prices.csv`, not windowed.
pub(crate) static REFERENCE_PRICES_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("commodity"),
        // Rice has grades (`medium`, `premium`); eggs and chicken none.
        Field::new("grade", DataType::Utf8, true),
        utf8("unit"),
        // `1`, `2` or `3` (see `price_zones`), or `all` for a national figure.
        utf8("zone"),
        Field::new("valid_from", DataType::Date32, false),
        // Null: still in force.
        Field::new("valid_to", DataType::Date32, true),
        // Rupiah per unit.
        Field::new("price", DataType::Int64, false),
        // `HET` (a legal ceiling) or `HAP consumer reference` (a reference, not a ceiling).
        utf8("kind"),
        // `verified` in the regulation itself, `secondary` from press reports of it,
        // `unverified` from a single secondary source.
        utf8("confidence"),
        utf8("source"),
    ])
});

/// The HET zone of each province (the first two digits of a regency code). A reference
/// table: `tables/price_zones.csv`.
pub(crate) static PRICE_ZONES_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| schema(vec![utf8("province_code"), utf8("zone")]));

/// Figures the program's guidelines set (e.g. `kpm_per_outlet_max`, the most KPM one
/// e-Warong should serve), one per row. A reference table: `tables/program_norms.csv`.
pub(crate) static PROGRAM_NORMS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    schema(vec![
        utf8("name"),
        // A double, so a norm may be a share as well as a count.
        Field::new("value", DataType::Float64, false),
        utf8("unit"),
        utf8("source"),
    ])
});

/// The reference tables: small static tables a rules folder ships as `tables/NAME.csv`,
/// read with these declared schemas (never inferred) and reloaded with the rules.
pub(crate) fn reference_catalogue() -> Vec<(&'static str, SchemaRef, &'static str)> {
    vec![
        (
            REFERENCE_PRICES,
            REFERENCE_PRICES_SCHEMA.clone(),
            "official prices by commodity, grade, HET zone and dates in force (rice HET ceilings, egg and chicken HAP references)",
        ),
        (
            PRICE_ZONES,
            PRICE_ZONES_SCHEMA.clone(),
            "the HET zone (1, 2, 3) of each province code",
        ),
        (
            PROGRAM_NORMS,
            PROGRAM_NORMS_SCHEMA.clone(),
            "figures the program's guidelines set, by name (kpm_per_outlet_max: KPM per e-Warong)",
        ),
    ]
}

/// The declared schema of a reference table.
pub(crate) fn reference_schema_of(table: &str) -> Option<SchemaRef> {
    reference_catalogue()
        .into_iter()
        .find(|(name, _, _)| *name == table)
        .map(|(_, schema, _)| schema)
}

/// Every table a rule may read that the engine fills, with its schema as the rule sees it
/// (windowed tables gain `window_start` and `window_end`); the reference tables a rules
/// folder brings are in [`reference_catalogue`].
pub(crate) fn catalogue() -> Vec<(&'static str, SchemaRef, &'static str)> {
    vec![
        (
            TRANSACTIONS,
            TRANSACTIONS_SCHEMA.clone(),
            "raw payments in the window (KKS and ordinary customers)",
        ),
        (
            TRANSACTION_ITEMS,
            TRANSACTION_ITEMS_SCHEMA.clone(),
            "item lines of the window's purchases",
        ),
        (
            DISBURSEMENTS,
            DISBURSEMENTS_SCHEMA.clone(),
            "benefit credits in the window",
        ),
        (
            TRANSFERS,
            TRANSFERS_SCHEMA.clone(),
            "money leaving outlets in the window",
        ),
        (
            OUTLETS,
            OUTLETS_SCHEMA.clone(),
            "outlet registry, latest record per outlet (not windowed)",
        ),
        (
            OUTLET_DAILY,
            OUTLET_DAILY_SCHEMA.clone(),
            "per outlet and local day, for the days inside a long window",
        ),
        (
            DISBURSEMENT_DAILY,
            DISBURSEMENT_DAILY_SCHEMA.clone(),
            "credits per regency, bank and local day, for the days inside a long window",
        ),
        (
            CARD_DAILY,
            CARD_DAILY_SCHEMA.clone(),
            "per KKS card and local day: credited, spent, main outlet",
        ),
        (
            OUTLET_BUNDLE_DAILY,
            OUTLET_BUNDLE_DAILY_SCHEMA.clone(),
            "per outlet, local day and identical basket: KKS purchases",
        ),
        (
            OUTLET_TRANSFER_DAILY,
            OUTLET_TRANSFER_DAILY_SCHEMA.clone(),
            "per outlet, counterparty and local day: transfers out",
        ),
    ]
}

/// The schema of one table of the catalogue, as stored (without the window columns).
pub(crate) fn schema_of(table: &str) -> Option<SchemaRef> {
    catalogue()
        .into_iter()
        .find(|(name, _, _)| *name == table)
        .map(|(_, schema, _)| schema)
}

/// Result batches → JSON rows, the shape both evidence and templates use.
pub(crate) fn rows_of(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, crate::error::RuleError> {
    let mut buf = Vec::new();
    {
        let mut writer = arrow_json::ArrayWriter::new(&mut buf);
        for b in batches {
            writer.write(b)?;
        }
        writer.finish()?;
    }
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&buf)?)
}
