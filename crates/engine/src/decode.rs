//! Untrusted bytes → validated rows → Arrow record batches.
//!
//! This is where an input record is accepted or rejected. Every rejection carries a
//! machine-readable [`Reason`] and a sentence naming the field and what was wrong; the
//! caller turns it into a dead letter, so nothing valid around a bad record is lost.
//! Valid rows of one chunk become one batch per table (arrow-json's decoder fed with the
//! validated rows), never one batch per row. Pure: no I/O, no clock.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Timelike, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::tables;
use pantau_core::model::{
    Bank, OutletStatus, Payment, Stream, TxnType, MAX_RUPIAH, PROGRAM_START_US,
};
use pantau_core::regions::Regions;

/// Why a record was rejected; the string form is the DLQ `reason` and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Reason {
    EmptyMessage,
    InvalidJson,
    MissingField,
    WrongType,
    UnknownBank,
    UnknownPayment,
    UnknownType,
    UnknownStatus,
    UnknownRegency,
    NonPositiveAmount,
    TimeWithoutOffset,
    InvalidValue,
    /// An event time implausibly far ahead of when the record was received: a terminal
    /// whose clock is wrong. Accepting it would move the watermark past every punctual
    /// record that follows.
    Future,
    /// An event time before the program existed ([`PROGRAM_START_US`]).
    BeforeProgram,
    /// Larger than any record of the contract can be and than pantau forwards whole
    /// (`model::MAX_FORWARDED_BYTES`); dead-lettered cut short, with length and hash.
    TooLarge,
    /// Older than the watermark: its windows may already have closed.
    Late,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::EmptyMessage => "empty_message",
            Reason::InvalidJson => "invalid_json",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::UnknownBank => "unknown_bank",
            Reason::UnknownPayment => "unknown_payment",
            Reason::UnknownType => "unknown_type",
            Reason::UnknownStatus => "unknown_status",
            Reason::UnknownRegency => "unknown_regency",
            Reason::NonPositiveAmount => "non_positive_amount",
            Reason::TimeWithoutOffset => "time_without_offset",
            Reason::InvalidValue => "invalid_value",
            Reason::Future => "future",
            Reason::BeforeProgram => "before_program",
            Reason::TooLarge => "too_large",
            Reason::Late => "late",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rejection {
    pub reason: Reason,
    pub message: String,
}

impl Rejection {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        let mut message: String = message.into();
        // serde's errors quote the offending value whole; a megabyte string in the wrong
        // place must not become a megabyte error beside the megabyte original in the DLQ.
        if message.chars().count() > MAX_MESSAGE_CHARS {
            let cut = message
                .char_indices()
                .nth(MAX_MESSAGE_CHARS)
                .map_or(message.len(), |(at, _)| at);
            message.truncate(cut);
            message.push('…');
        }
        Rejection { reason, message }
    }
}

/// The most bytes of an original record a dead letter carries. Beyond it the dead
/// letter keeps this prefix with the whole record's length and SHA-256: base64 of this
/// much (342 KiB) plus provenance stays far under librdkafka's and Kafka's 1 MB message
/// limit, so producing a dead letter cannot fail on its size.
pub const MAX_DEAD_LETTER_ORIGINAL: usize = 256 * 1024;

/// Longest rejection message kept, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 400;

/// Longest piece of a bad value quoted in a message, in characters.
const MAX_SHOWN_CHARS: usize = 64;

/// No upper bound on event time: for a record whose receipt time is unknown.
pub(crate) const NO_LATEST: i64 = i64::MAX;

/// A bad value, quoted for a message and cut short if long.
fn shown(value: &str) -> String {
    match value.char_indices().nth(MAX_SHOWN_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// Where a record came from: enough to find it again in the broker or the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance {
    pub partition: i32,
    pub offset: i64,
}

/// The result of decoding one chunk of records of one stream.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    /// Valid rows, in input order.
    pub batch: Option<RecordBatch>,
    /// Item lines of the valid transactions (transactions stream only).
    pub items: Option<RecordBatch>,
    /// Event time of each valid row, µs since the epoch, aligned with `batch`.
    pub event_times: Vec<i64>,
    /// Dedup key of each valid row (transactions: bank + txn_id), aligned with `batch`.
    pub dedup_keys: Vec<Option<String>>,
    /// Index into the input slice and the reason, for every rejected record.
    pub rejected: Vec<(usize, Rejection)>,
}

fn classify_serde(err: serde_json::Error) -> Rejection {
    use serde_json::error::Category;
    let text = err.to_string();
    let reason = match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => Reason::InvalidJson,
        Category::Data if text.starts_with("missing field") => Reason::MissingField,
        Category::Data => Reason::WrongType,
    };
    let message = match reason {
        Reason::InvalidJson => format!("not valid JSON: {text}"),
        Reason::MissingField => format!("required field missing: {text}"),
        _ => format!("a field has the wrong type: {text}"),
    };
    Rejection::new(reason, message)
}

/// Parses an RFC 3339 time and insists on an explicit offset, because a local time
/// without one cannot be placed on any district's calendar.
fn parse_time(field: &str, value: &str) -> Result<DateTime<FixedOffset>, Rejection> {
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Ok(t),
        Err(_) if NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").is_ok() => {
            Err(Rejection::new(
                Reason::TimeWithoutOffset,
                format!(
                    "{field} {} has no UTC offset (expected e.g. +07:00)",
                    shown(value)
                ),
            ))
        }
        Err(e) => Err(Rejection::new(
            Reason::InvalidValue,
            format!("{field} {} is not an RFC 3339 time: {e}", shown(value)),
        )),
    }
}

fn parse_bank(value: &str) -> Result<Bank, Rejection> {
    Bank::parse(value).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownBank,
            format!(
                "bank {} is not a Himbara bank (BRI, BNI, MANDIRI, BTN, BSI)",
                shown(value)
            ),
        )
    })
}

fn positive_amount(field: &str, amount: i64) -> Result<i64, Rejection> {
    if amount <= 0 {
        return Err(Rejection::new(
            Reason::NonPositiveAmount,
            format!("{field} must be > 0 rupiah, got {amount}"),
        ));
    }
    at_most_max_rupiah(field, amount)
}

fn at_most_max_rupiah(field: &str, amount: i64) -> Result<i64, Rejection> {
    if amount > MAX_RUPIAH {
        return Err(Rejection::new(
            Reason::InvalidValue,
            format!("{field} {amount} is above the largest accepted amount, Rp {MAX_RUPIAH}"),
        ));
    }
    Ok(amount)
}

/// Rejects an event time outside `[PROGRAM_START_US, latest]`. Only event times that
/// pass here ever reach a watermark, in the engine or in the router's progress markers.
fn plausible_time(field: &str, t: DateTime<FixedOffset>, latest: i64) -> Result<(), Rejection> {
    let micros = t.with_timezone(&Utc).timestamp_micros();
    if micros < PROGRAM_START_US {
        return Err(Rejection::new(
            Reason::BeforeProgram,
            format!(
                "{field} {} is before the program began (2017-01-01)",
                t.to_rfc3339()
            ),
        ));
    }
    if micros > latest {
        let ahead = (micros - latest) / 1_000_000;
        return Err(Rejection::new(
            Reason::Future,
            format!(
                "{field} {} is {ahead} s past the latest plausible time for when it was received (--max-future); the terminal's clock is wrong",
                t.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

/// `YYYY-MM`, exactly as the contract's pattern: chrono alone would also take a sign,
/// a five-digit year or a one-digit month, which the rules' `to_date` would not.
fn is_period(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && matches!((b[5], b[6]), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
}

/// Offset of a known regency; an unknown code has no calendar, so it is rejected.
fn regency_offset(code: &str) -> Result<FixedOffset, Rejection> {
    Regions::get()
        .regency(code)
        .map(|r| r.utc_offset)
        .ok_or_else(|| {
            Rejection::new(
                Reason::UnknownRegency,
                format!("regency_code {} is not a BPS regency code", shown(code)),
            )
        })
}

fn epoch_days(date: NaiveDate) -> i32 {
    // 719_163 = days from 0001-01-01 (CE day 1) to 1970-01-01.
    date.num_days_from_ce() - 719_163
}

/// Local calendar position of an instant in a regency's zone.
struct Local {
    micros: i64,
    date: i32,
    hour: i32,
    offset_minutes: i32,
}

fn localize(t: DateTime<FixedOffset>, offset: FixedOffset) -> Local {
    let local = t.with_timezone(&offset);
    Local {
        micros: t.with_timezone(&Utc).timestamp_micros(),
        date: epoch_days(local.date_naive()),
        hour: local.hour() as i32,
        offset_minutes: offset.local_minus_utc() / 60,
    }
}

// --- wire shapes: exactly what may arrive, enums still as text -------------------

#[derive(Deserialize)]
struct WireItem {
    commodity: String,
    qty: f64,
    unit: String,
    unit_price: i64,
}

#[derive(Deserialize)]
struct WireTransaction {
    txn_id: String,
    bank: String,
    occurred_at: String,
    outlet_id: String,
    terminal_id: String,
    regency_code: String,
    card_id: String,
    payment: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reverses_txn_id: Option<String>,
    amount: i64,
    #[serde(default)]
    items: Option<Vec<WireItem>>,
    #[serde(default)]
    balance_after: Option<i64>,
}

#[derive(Deserialize)]
struct WireDisbursement {
    disbursement_id: String,
    bank: String,
    card_id: String,
    regency_code: String,
    period: String,
    months: i64,
    amount: i64,
    credited_at: String,
}

#[derive(Deserialize)]
struct WireTransfer {
    transfer_id: String,
    bank: String,
    outlet_id: String,
    regency_code: String,
    occurred_at: String,
    counterparty_id: String,
    amount: i64,
}

#[derive(Deserialize)]
struct WireOutlet {
    outlet_id: String,
    name: String,
    regency_code: String,
    district_code: String,
    bank: String,
    registered_at: String,
    status: String,
    kpm_assigned: i64,
}

// --- validated rows, serialized straight into arrow-json's decoder ---------------

#[derive(Serialize)]
struct TransactionRow {
    txn_id: String,
    bank: &'static str,
    occurred_at: i64,
    local_date: i32,
    local_hour: i32,
    utc_offset_minutes: i32,
    outlet_id: String,
    terminal_id: String,
    regency_code: String,
    card_id: String,
    payment: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    reverses_txn_id: Option<String>,
    amount: i64,
    balance_after: Option<i64>,
    item_count: i32,
    items_total: Option<i64>,
    src_partition: i32,
    src_offset: i64,
}

#[derive(Serialize)]
struct ItemRow<'a> {
    txn_id: &'a str,
    bank: &'static str,
    occurred_at: i64,
    local_date: i32,
    utc_offset_minutes: i32,
    outlet_id: &'a str,
    terminal_id: &'a str,
    regency_code: &'a str,
    card_id: &'a str,
    payment: &'static str,
    commodity: String,
    qty: f64,
    unit: String,
    unit_price: i64,
    src_partition: i32,
    src_offset: i64,
}

#[derive(Serialize)]
struct DisbursementRow {
    disbursement_id: String,
    bank: &'static str,
    card_id: String,
    regency_code: String,
    period: String,
    months: i32,
    amount: i64,
    credited_at: i64,
    local_date: i32,
    utc_offset_minutes: i32,
    src_partition: i32,
    src_offset: i64,
}

#[derive(Serialize)]
struct TransferRow {
    transfer_id: String,
    bank: &'static str,
    outlet_id: String,
    regency_code: String,
    occurred_at: i64,
    local_date: i32,
    utc_offset_minutes: i32,
    counterparty_id: String,
    amount: i64,
    src_partition: i32,
    src_offset: i64,
}

/// A registry row; kept as a row because the registry is a keyed, compacted table that
/// `window` folds into its latest-per-outlet snapshot.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct OutletRow {
    pub outlet_id: String,
    pub name: String,
    pub regency_code: String,
    pub district_code: String,
    pub bank: &'static str,
    pub registered_at: i64,
    pub status: &'static str,
    pub kpm_assigned: i64,
}

struct ValidTransaction {
    row: TransactionRow,
    items: Vec<WireItem>,
}

fn validate_transaction(
    w: WireTransaction,
    p: Provenance,
    latest: i64,
) -> Result<ValidTransaction, Rejection> {
    let bank = parse_bank(&w.bank)?;
    let payment = Payment::parse(&w.payment).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownPayment,
            format!(
                "payment {} is not one of KKS, DEBIT, QRIS",
                shown(&w.payment)
            ),
        )
    })?;
    let kind = TxnType::parse(&w.kind).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownType,
            format!("type {} is not purchase or reversal", shown(&w.kind)),
        )
    })?;
    let amount = positive_amount("amount", w.amount)?;
    let occurred_at = parse_time("occurred_at", &w.occurred_at)?;
    plausible_time("occurred_at", occurred_at, latest)?;
    let offset = regency_offset(&w.regency_code)?;
    if kind == TxnType::Reversal && w.reverses_txn_id.is_none() {
        return Err(Rejection::new(
            Reason::MissingField,
            "a reversal must name the reversed purchase in reverses_txn_id",
        ));
    }
    if payment == Payment::Kks && kind == TxnType::Purchase {
        if w.items.is_none() {
            return Err(Rejection::new(
                Reason::MissingField,
                "a KKS purchase must list its items",
            ));
        }
        if w.balance_after.is_none() {
            return Err(Rejection::new(
                Reason::MissingField,
                "a KKS purchase must carry balance_after",
            ));
        }
    }
    if let Some(balance) = w.balance_after {
        if balance < 0 {
            return Err(Rejection::new(
                Reason::InvalidValue,
                format!("balance_after must be >= 0, got {balance}"),
            ));
        }
        at_most_max_rupiah("balance_after", balance)?;
    }
    let items = w.items.unwrap_or_default();
    let item_count = i32::try_from(items.len()).map_err(|_| {
        Rejection::new(
            Reason::InvalidValue,
            format!("{} items do not fit the item_count column", items.len()),
        )
    })?;
    let mut total = 0.0_f64;
    for (i, item) in items.iter().enumerate() {
        if !(item.qty > 0.0 && item.qty.is_finite()) || item.unit_price < 0 {
            return Err(Rejection::new(
                Reason::InvalidValue,
                format!(
                    "items[{i}] ({}) needs qty > 0 and unit_price >= 0, got qty {} and unit_price {}",
                    shown(&item.commodity),
                    item.qty,
                    item.unit_price
                ),
            ));
        }
        if item.commodity.is_empty() {
            return Err(Rejection::new(
                Reason::InvalidValue,
                format!("items[{i}] has an empty commodity"),
            ));
        }
        at_most_max_rupiah(&format!("items[{i}].unit_price"), item.unit_price)?;
        // Checked in floating point because that is how the rollups compute it; the
        // bound keeps every later cast of these sums back to BIGINT in range.
        let line = item.qty * item.unit_price as f64;
        total += line;
        if line > MAX_RUPIAH as f64 || total > MAX_RUPIAH as f64 {
            return Err(Rejection::new(
                Reason::InvalidValue,
                format!(
                    "items[{i}] brings qty × unit_price to more than Rp {MAX_RUPIAH} ({} × {})",
                    item.qty, item.unit_price
                ),
            ));
        }
    }
    // In range by the bound above, so the cast cannot saturate.
    let items_total = (!items.is_empty()).then(|| total.round() as i64);
    let local = localize(occurred_at, offset);
    Ok(ValidTransaction {
        row: TransactionRow {
            txn_id: w.txn_id,
            bank: bank.as_str(),
            occurred_at: local.micros,
            local_date: local.date,
            local_hour: local.hour,
            utc_offset_minutes: local.offset_minutes,
            outlet_id: w.outlet_id,
            terminal_id: w.terminal_id,
            regency_code: w.regency_code,
            card_id: w.card_id,
            payment: payment.as_str(),
            kind: kind.as_str(),
            reverses_txn_id: w.reverses_txn_id,
            amount,
            balance_after: w.balance_after,
            item_count,
            items_total,
            src_partition: p.partition,
            src_offset: p.offset,
        },
        items,
    })
}

fn validate_disbursement(
    w: WireDisbursement,
    p: Provenance,
    latest: i64,
) -> Result<DisbursementRow, Rejection> {
    let bank = parse_bank(&w.bank)?;
    let amount = positive_amount("amount", w.amount)?;
    if !(1..=3).contains(&w.months) {
        return Err(Rejection::new(
            Reason::InvalidValue,
            format!("months must be 1 to 3, got {}", w.months),
        ));
    }
    if !is_period(&w.period) {
        return Err(Rejection::new(
            Reason::InvalidValue,
            format!("period {} is not YYYY-MM", shown(&w.period)),
        ));
    }
    let credited_at = parse_time("credited_at", &w.credited_at)?;
    plausible_time("credited_at", credited_at, latest)?;
    let offset = regency_offset(&w.regency_code)?;
    let local = localize(credited_at, offset);
    Ok(DisbursementRow {
        disbursement_id: w.disbursement_id,
        bank: bank.as_str(),
        card_id: w.card_id,
        regency_code: w.regency_code,
        period: w.period,
        months: w.months as i32,
        amount,
        credited_at: local.micros,
        local_date: local.date,
        utc_offset_minutes: local.offset_minutes,
        src_partition: p.partition,
        src_offset: p.offset,
    })
}

fn validate_transfer(
    w: WireTransfer,
    p: Provenance,
    latest: i64,
) -> Result<TransferRow, Rejection> {
    let bank = parse_bank(&w.bank)?;
    let amount = positive_amount("amount", w.amount)?;
    let occurred_at = parse_time("occurred_at", &w.occurred_at)?;
    plausible_time("occurred_at", occurred_at, latest)?;
    let offset = regency_offset(&w.regency_code)?;
    let local = localize(occurred_at, offset);
    Ok(TransferRow {
        transfer_id: w.transfer_id,
        bank: bank.as_str(),
        outlet_id: w.outlet_id,
        regency_code: w.regency_code,
        occurred_at: local.micros,
        local_date: local.date,
        utc_offset_minutes: local.offset_minutes,
        counterparty_id: w.counterparty_id,
        amount,
        src_partition: p.partition,
        src_offset: p.offset,
    })
}

fn validate_outlet(w: WireOutlet) -> Result<OutletRow, Rejection> {
    let bank = parse_bank(&w.bank)?;
    let status = OutletStatus::parse(&w.status).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownStatus,
            format!(
                "status {} is not active, suspended or revoked",
                shown(&w.status)
            ),
        )
    })?;
    let registered_at = parse_time("registered_at", &w.registered_at)?;
    regency_offset(&w.regency_code)?;
    if w.kpm_assigned < 0 {
        return Err(Rejection::new(
            Reason::InvalidValue,
            format!("kpm_assigned must be >= 0, got {}", w.kpm_assigned),
        ));
    }
    Ok(OutletRow {
        outlet_id: w.outlet_id,
        name: w.name,
        regency_code: w.regency_code,
        district_code: w.district_code,
        bank: bank.as_str(),
        registered_at: registered_at.with_timezone(&Utc).timestamp_micros(),
        status: status.as_str(),
        kpm_assigned: w.kpm_assigned,
    })
}

fn parse_wire<'a, T: Deserialize<'a>>(payload: Option<&'a [u8]>) -> Result<T, Rejection> {
    let bytes = match payload {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
        _ => {
            return Err(Rejection::new(
                Reason::EmptyMessage,
                "the record has no payload",
            ))
        }
    };
    serde_json::from_slice(bytes).map_err(classify_serde)
}

fn to_batch<S: Serialize>(
    schema: &SchemaRef,
    rows: &[S],
) -> Result<Option<RecordBatch>, ArrowError> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len())
        .build_decoder()?;
    decoder.serialize(rows)?;
    decoder.flush()
}

/// One input record as the decoder sees it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub payload: Option<&'a [u8]>,
    pub provenance: Provenance,
    /// The latest event time this record may carry (µs since the epoch): when it was
    /// received plus `--max-future`; [`NO_LATEST`] when that is unknown.
    pub latest: i64,
}

/// A validated event record on its way into the batch.
struct Valid<R> {
    input: usize,
    row: R,
    /// Item lines (transactions only).
    items: Vec<WireItem>,
}

/// What a validated row of an event stream gives besides its columns.
trait EventRow: Serialize {
    fn event_time(&self) -> i64;
    fn dedup_key(&self) -> String;
    fn item_rows<'a>(&'a self, _items: &'a [WireItem]) -> Vec<ItemRow<'a>> {
        Vec::new()
    }
}

impl EventRow for TransactionRow {
    fn event_time(&self) -> i64 {
        self.occurred_at
    }
    fn dedup_key(&self) -> String {
        format!("{}\u{1f}{}", self.bank, self.txn_id)
    }
    fn item_rows<'a>(&'a self, items: &'a [WireItem]) -> Vec<ItemRow<'a>> {
        items
            .iter()
            .map(|l| ItemRow {
                txn_id: &self.txn_id,
                bank: self.bank,
                occurred_at: self.occurred_at,
                local_date: self.local_date,
                utc_offset_minutes: self.utc_offset_minutes,
                outlet_id: &self.outlet_id,
                terminal_id: &self.terminal_id,
                regency_code: &self.regency_code,
                card_id: &self.card_id,
                payment: self.payment,
                commodity: l.commodity.clone(),
                qty: l.qty,
                unit: l.unit.clone(),
                unit_price: l.unit_price,
                src_partition: self.src_partition,
                src_offset: self.src_offset,
            })
            .collect()
    }
}

impl EventRow for DisbursementRow {
    fn event_time(&self) -> i64 {
        self.credited_at
    }
    fn dedup_key(&self) -> String {
        format!("{}\u{1f}{}", self.bank, self.disbursement_id)
    }
}

impl EventRow for TransferRow {
    fn event_time(&self) -> i64 {
        self.occurred_at
    }
    fn dedup_key(&self) -> String {
        format!("{}\u{1f}{}", self.bank, self.transfer_id)
    }
}

type Batches = (Option<RecordBatch>, Option<RecordBatch>);

/// The stream's batch and, for transactions, the item batch of some validated records.
fn build_batches<R: EventRow>(
    schema: &SchemaRef,
    valid: &[&Valid<R>],
) -> Result<Batches, ArrowError> {
    let rows: Vec<&R> = valid.iter().map(|v| &v.row).collect();
    let item_rows: Vec<ItemRow> = valid
        .iter()
        .flat_map(|v| v.row.item_rows(&v.items))
        .collect();
    let items = to_batch(&tables::TRANSACTION_ITEMS_SCHEMA, &item_rows)?;
    Ok((to_batch(schema, &rows)?, items))
}

fn unconvertible(table: &str, e: &ArrowError) -> Rejection {
    Rejection::new(
        Reason::InvalidValue,
        format!(
            "the record passed validation but could not be made a row of {table}: {}",
            crate::error::chain(e)
        ),
    )
}

fn decode_stream<R: EventRow>(
    inputs: &[Input<'_>],
    table: &str,
    schema: &SchemaRef,
    validate: impl Fn(&Input<'_>) -> Result<(R, Vec<WireItem>), Rejection>,
) -> Decoded {
    let mut valid = Vec::with_capacity(inputs.len());
    let mut rejected = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        match validate(input) {
            Ok((row, items)) => valid.push(Valid {
                input: i,
                row,
                items,
            }),
            Err(r) => rejected.push((i, r)),
        }
    }
    let all: Vec<&Valid<R>> = valid.iter().collect();
    let (kept, (batch, items)) = match build_batches(schema, &all) {
        Ok(batches) => (all, batches),
        Err(_) => {
            // Validation should leave nothing arrow refuses; if it ever does, only the
            // records arrow refuses on their own become dead letters, not their chunk.
            let mut kept = Vec::with_capacity(all.len());
            for v in all {
                match build_batches(schema, &[v]) {
                    Ok(_) => kept.push(v),
                    Err(e) => rejected.push((v.input, unconvertible(table, &e))),
                }
            }
            match build_batches(schema, &kept) {
                Ok(batches) => (kept, batches),
                Err(e) => {
                    // Each record converts alone but the chunk does not (say, a column
                    // past its size limit). Failing the call would stop the pipeline on
                    // the same chunk after every restart; as dead letters the records
                    // stay visible, counted and replayable.
                    for v in kept {
                        rejected.push((v.input, unconvertible(table, &e)));
                    }
                    (Vec::new(), (None, None))
                }
            }
        }
    };
    rejected.sort_by_key(|(i, _)| *i);
    Decoded {
        batch,
        items,
        event_times: kept.iter().map(|v| v.row.event_time()).collect(),
        dedup_keys: kept.iter().map(|v| Some(v.row.dedup_key())).collect(),
        rejected,
    }
}

/// Decodes a chunk of records of one event stream (transactions, disbursements or
/// transfers). The outlet registry goes through [`decode_outlets`]; asking this for it is
/// the only error; a bad record is a rejection of that record, never of the chunk.
pub(crate) fn decode_events(stream: Stream, inputs: &[Input<'_>]) -> crate::error::Result<Decoded> {
    Ok(match stream {
        Stream::Transactions => decode_stream(
            inputs,
            tables::TRANSACTIONS,
            &tables::TRANSACTIONS_SCHEMA,
            |input| {
                parse_wire::<WireTransaction>(input.payload)
                    .and_then(|w| validate_transaction(w, input.provenance, input.latest))
                    .map(|v| (v.row, v.items))
            },
        ),
        Stream::Disbursements => decode_stream(
            inputs,
            tables::DISBURSEMENTS,
            &tables::DISBURSEMENTS_SCHEMA,
            |input| {
                parse_wire::<WireDisbursement>(input.payload)
                    .and_then(|w| validate_disbursement(w, input.provenance, input.latest))
                    .map(|row| (row, Vec::new()))
            },
        ),
        Stream::Transfers => decode_stream(
            inputs,
            tables::TRANSFERS,
            &tables::TRANSFERS_SCHEMA,
            |input| {
                parse_wire::<WireTransfer>(input.payload)
                    .and_then(|w| validate_transfer(w, input.provenance, input.latest))
                    .map(|row| (row, Vec::new()))
            },
        ),
        Stream::Outlets => {
            return Err(crate::error::Error::Invariant(
                "the outlet registry is decoded by decode_outlets".into(),
            ))
        }
    })
}

/// The event time of one record if, and only if, [`decode_events`] would accept it: the
/// router takes its progress markers from these alone, so a record the engines reject
/// never moves a watermark. `None` for the registry, which has no event time.
pub(crate) fn accepted_event_time(
    stream: Stream,
    payload: Option<&[u8]>,
    latest: i64,
) -> Option<i64> {
    let provenance = Provenance {
        partition: 0,
        offset: 0,
    };
    match stream {
        Stream::Transactions => parse_wire::<WireTransaction>(payload)
            .and_then(|w| validate_transaction(w, provenance, latest))
            .map(|v| v.row.event_time())
            .ok(),
        Stream::Disbursements => parse_wire::<WireDisbursement>(payload)
            .and_then(|w| validate_disbursement(w, provenance, latest))
            .map(|row| row.event_time())
            .ok(),
        Stream::Transfers => parse_wire::<WireTransfer>(payload)
            .and_then(|w| validate_transfer(w, provenance, latest))
            .map(|row| row.event_time())
            .ok(),
        Stream::Outlets => None,
    }
}

/// Decodes registry records; returns the valid rows, in input order, and the rejections
/// (input index, why). Every input is in exactly one of the two.
pub(crate) fn decode_outlets(inputs: &[Input<'_>]) -> (Vec<OutletRow>, Vec<(usize, Rejection)>) {
    let mut rows = Vec::new();
    let mut rejected = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        match parse_wire::<WireOutlet>(input.payload).and_then(validate_outlet) {
            Ok(row) => rows.push(row),
            Err(r) => rejected.push((i, r)),
        }
    }
    (rows, rejected)
}

/// The registry snapshot as a batch, outlets in id order so every run sees the same table.
pub(crate) fn outlets_batch(
    latest: &HashMap<String, OutletRow>,
) -> Result<RecordBatch, ArrowError> {
    let mut rows: Vec<&OutletRow> = latest.values().collect();
    rows.sort_by(|a, b| a.outlet_id.cmp(&b.outlet_id));
    Ok(to_batch(&tables::OUTLETS_SCHEMA, &rows)?
        .unwrap_or_else(|| RecordBatch::new_empty(tables::OUTLETS_SCHEMA.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};

    const VALID: &str = r#"{"txn_id":"BRI-1","bank":"BRI","occurred_at":"2023-01-05T10:00:00+07:00","outlet_id":"O1","terminal_id":"T1","regency_code":"3604","card_id":"K1","payment":"KKS","type":"purchase","amount":138000,"items":[{"commodity":"BERAS","qty":10,"unit":"kg","unit_price":11000},{"commodity":"TELUR","qty":1,"unit":"kg","unit_price":28000}],"balance_after":62000}"#;

    fn decode_one(raw: &str) -> Decoded {
        let input = Input {
            payload: Some(raw.as_bytes()),
            provenance: Provenance {
                partition: 0,
                offset: 7,
            },
            latest: NO_LATEST,
        };
        decode_events(Stream::Transactions, &[input]).unwrap()
    }

    fn reason_of(raw: &str) -> Reason {
        let d = decode_one(raw);
        assert!(d.batch.is_none(), "{raw} should be rejected");
        d.rejected[0].1.reason
    }

    #[test]
    fn decodes_a_valid_kks_purchase_with_its_items() {
        let d = decode_one(VALID);
        let batch = d.batch.unwrap();
        assert_eq!(batch.num_rows(), 1);
        let at = batch
            .column_by_name("occurred_at")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .value(0);
        // 10:00 WIB is 03:00 UTC.
        assert_eq!(at, 1_672_887_600_000_000);
        let total = batch.column_by_name("items_total").unwrap();
        assert_eq!(total.as_primitive::<Int64Type>().value(0), 138_000);
        let hour = batch.column_by_name("local_hour").unwrap();
        assert_eq!(
            hour.as_primitive::<datafusion::arrow::datatypes::Int32Type>()
                .value(0),
            10
        );
        assert_eq!(d.items.unwrap().num_rows(), 2);
        assert_eq!(d.event_times, vec![at]);
        assert_eq!(
            batch
                .column_by_name("src_offset")
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0),
            7
        );
        assert!(batch.column_by_name("reverses_txn_id").unwrap().is_null(0));
    }

    #[test]
    fn names_each_kind_of_bad_input() {
        assert_eq!(reason_of(""), Reason::EmptyMessage);
        assert_eq!(reason_of("  "), Reason::EmptyMessage);
        assert_eq!(reason_of(&VALID[..40]), Reason::InvalidJson);
        assert_eq!(
            reason_of(&VALID.replace(r#""amount":138000,"#, "")),
            Reason::MissingField
        );
        assert_eq!(
            reason_of(&VALID.replace(r#""amount":138000"#, r#""amount":"abc""#)),
            Reason::WrongType
        );
        assert_eq!(
            reason_of(&VALID.replace(r#""bank":"BRI""#, r#""bank":"BCA""#)),
            Reason::UnknownBank
        );
        assert_eq!(
            reason_of(&VALID.replace(r#""payment":"KKS""#, r#""payment":"CASH""#)),
            Reason::UnknownPayment
        );
        assert_eq!(
            reason_of(&VALID.replace(r#""amount":138000"#, r#""amount":0"#)),
            Reason::NonPositiveAmount
        );
        assert_eq!(
            reason_of(&VALID.replace(r#""amount":138000"#, r#""amount":-5000"#)),
            Reason::NonPositiveAmount
        );
        assert_eq!(
            reason_of(&VALID.replace("10:00:00+07:00", "10:00:00")),
            Reason::TimeWithoutOffset
        );
        assert_eq!(
            reason_of(&VALID.replace(r#""regency_code":"3604""#, r#""regency_code":"0000""#)),
            Reason::UnknownRegency
        );
        assert_eq!(reason_of("[1,2]"), Reason::WrongType);
    }

    #[test]
    fn a_bad_record_loses_nothing_valid_around_it() {
        let raws = [VALID, "{not json", VALID];
        let inputs: Vec<Input> = raws
            .iter()
            .enumerate()
            .map(|(i, r)| Input {
                payload: Some(r.as_bytes()),
                provenance: Provenance {
                    partition: 1,
                    offset: i as i64,
                },
                latest: NO_LATEST,
            })
            .collect();
        let d = decode_events(Stream::Transactions, &inputs).unwrap();
        assert_eq!(d.batch.unwrap().num_rows(), 2);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].0, 1);
    }

    // --- poison input: nothing may crash the call or take a chunk down with it -------

    use proptest::prelude::*;
    use proptest::sample::Index;

    /// A record as (key, raw JSON value) pairs, so a value can be replaced by bytes that
    /// are not JSON, not UTF-8 or nested deeper than any JSON library would build.
    type Fields = Vec<(String, Vec<u8>)>;

    fn fields_of(json: &str) -> Fields {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        value
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string().into_bytes()))
            .collect()
    }

    fn render(fields: &Fields) -> Vec<u8> {
        let mut out = b"{".to_vec();
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("{k:?}:").as_bytes());
            out.extend_from_slice(v);
        }
        out.push(b'}');
        out
    }

    const QRIS: &str = r#"{"txn_id":"BNI-9","bank":"BNI","occurred_at":"2023-03-15T09:20:02.5+07:00","outlet_id":"O2","terminal_id":"T2","regency_code":"3604","card_id":"D9","payment":"QRIS","type":"purchase","amount":35000}"#;
    const REVERSAL: &str = r#"{"txn_id":"BRI-2","bank":"BRI","occurred_at":"2023-01-05T10:05:00+07:00","outlet_id":"O1","terminal_id":"T1","regency_code":"3604","card_id":"K1","payment":"KKS","type":"reversal","reverses_txn_id":"BRI-1","amount":28000,"balance_after":90000}"#;
    const DISBURSEMENT: &str = r#"{"disbursement_id":"DSB-1","bank":"BNI","card_id":"K7","regency_code":"7371","period":"2023-01","months":2,"amount":400000,"credited_at":"2023-01-02T08:00:00+08:00"}"#;
    const TRANSFER: &str = r#"{"transfer_id":"TRF-1","bank":"MANDIRI","outlet_id":"O3","regency_code":"9471","occurred_at":"2023-01-05T15:00:00+09:00","counterparty_id":"ACC-77","amount":5000000}"#;
    const OUTLET: &str = r#"{"outlet_id":"O1","name":"e-Warong Bu Sri","regency_code":"3604","district_code":"3604010","bank":"BRI","registered_at":"2019-03-01T09:00:00+07:00","status":"active","kpm_assigned":250}"#;

    fn templates(stream: Stream) -> &'static [&'static str] {
        match stream {
            Stream::Transactions => &[VALID, QRIS, REVERSAL],
            Stream::Disbursements => &[DISBURSEMENT],
            Stream::Transfers => &[TRANSFER],
            Stream::Outlets => &[OUTLET],
        }
    }

    fn item_json(commodity: &str, qty: &str, unit_price: &str) -> String {
        format!(r#"{{"commodity":{commodity},"qty":{qty},"unit":"kg","unit_price":{unit_price}}}"#)
    }

    /// Strings at every edge a text field has: times at and past the ends of the
    /// calendar, periods, codes and enum values in and out of range, NaN-like text,
    /// escapes JSON allows but Unicode does not, long, multibyte and non-UTF-8 strings.
    fn poison_string() -> impl Strategy<Value = Vec<u8>> {
        let literals: Vec<&'static str> = vec![
            r#""""#,
            r#"" ""#,
            r#""\u0000""#,
            r#""\ud800""#,
            r#""\udc00\ud800""#,
            r#""BRI\u0000""#,
            r#""bri""#,
            r#""NaN""#,
            r#""Infinity""#,
            r#""-inf""#,
            r#""1e999""#,
            r#""-1""#,
            r#""2023-01-05T10:00:00+07:00""#,
            r#""2023-01-05T10:00:00Z""#,
            r#""2023-01-05T10:00:00""#,
            r#""2023-01-05 10:00:00+07:00""#,
            r#""2023-01-05t10:00:00z""#,
            r#""99999-01-01T00:00:00+07:00""#,
            r#""+99999-01-01T00:00:00+07:00""#,
            r#""-0001-01-01T00:00:00+07:00""#,
            r#""0000-01-01T00:00:00+23:59""#,
            r#""0000-01-01T00:00:00-23:59""#,
            r#""9999-12-31T23:59:59-23:59""#,
            r#""9999-12-31T23:59:59.999999999+23:59""#,
            r#""2023-01-05T23:59:60+07:00""#,
            r#""2023-02-30T10:00:00+07:00""#,
            r#""2023-01-05T10:00:00+24:00""#,
            r#""2099-01-05T10:00:00+07:00""#,
            r#""1970-01-01T07:00:00+07:00""#,
            r#""2016-12-31T23:59:59+07:00""#,
            r#""2023-01-05T10:35:00+07:00""#,
            r#""2023-01-05T10:35:01+07:00""#,
            r#""2023-01-05T10:00:00.123456789123456789+07:00""#,
            r#""0000-00""#,
            r#""0000-01""#,
            r#""2023-13""#,
            r#""2023-1""#,
            r#""+2023-01""#,
            r#""-999-01""#,
            r#""-100-10""#,
            r#""+900-10""#,
            r#"" 900-10""#,
            r#""99999-01""#,
            r#""٢٠٢٣-٠١""#,
            r#""0000""#,
            r#""3604""#,
            r#""7371""#,
            r#""9471""#,
            r#""9999""#,
            r#""36040""#,
            r#""BRI""#,
            r#""BSI""#,
            r#""KKS""#,
            r#""DEBIT""#,
            r#""purchase""#,
            r#""reversal""#,
            r#""active""#,
            r#""revoked""#,
        ];
        prop_oneof![
            6 => prop::sample::select(literals).prop_map(|s| s.as_bytes().to_vec()),
            1 => any::<f64>().prop_map(|n| format!("\"{n}\"").into_bytes()),
            1 => "\\PC{0,24}".prop_map(|s: String| serde_json::to_vec(&s).unwrap()),
            // Long strings, ASCII and multibyte (message truncation must cut on a char).
            1 => (1usize..200_000, prop::sample::select(vec!["x", "é", "🦀", "\\\""]))
                .prop_map(|(n, c)| format!("\"{}\"", c.repeat(n)).into_bytes()),
            // A string holding bytes that are not UTF-8.
            1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| {
                let mut v = b"\"".to_vec();
                v.extend(b.into_iter().filter(|c| *c != b'"' && *c != b'\\'));
                v.push(b'"');
                v
            }),
        ]
    }

    /// Numbers at and past every limit: zero and signs, the ends of i32, i64 and u64,
    /// the money bound, floats where integers belong, and what JSON cannot hold.
    fn poison_number() -> impl Strategy<Value = Vec<u8>> {
        let literals: Vec<&'static str> = vec![
            "0",
            "-1",
            "1",
            "2",
            "3",
            "4",
            "-0",
            "0.5",
            "-0.0",
            "1.0",
            "1e308",
            "-1e308",
            "1e400",
            "5e-324",
            "2147483647",
            "2147483648",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "99999999999999999999999999999999999999",
            "1000000000000",
            "1000000000001",
            "NaN",
            "Infinity",
            "-Infinity",
        ];
        prop_oneof![
            4 => prop::sample::select(literals).prop_map(|s| s.as_bytes().to_vec()),
            1 => any::<i64>().prop_map(|n| n.to_string().into_bytes()),
            1 => any::<u64>().prop_map(|n| n.to_string().into_bytes()),
            1 => any::<f64>().prop_map(|n| format!("{n:?}").into_bytes()),
        ]
    }

    /// Anything at all where a field's value goes, mostly of the wrong JSON type.
    fn poison_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            2 => poison_string(),
            2 => poison_number(),
            1 => prop::sample::select(vec!["true", "null", "{}", "[]", "[1]", r#"{"a":1}"#])
                .prop_map(|s| s.as_bytes().to_vec()),
            // Nested far past serde_json's recursion limit, arrays and objects.
            1 => (1usize..100_000).prop_map(|d| ("[".repeat(d) + &"]".repeat(d)).into_bytes()),
            1 => (1usize..50_000)
                .prop_map(|d| (r#"{"a":"#.repeat(d) + "1" + &"}".repeat(d)).into_bytes()),
            // Unterminated nesting.
            1 => (1usize..100_000).prop_map(|d| "[".repeat(d).into_bytes()),
            1 => items_value(),
        ]
    }

    /// A replacement value for a field: mostly of the field's own JSON type, so the
    /// record gets past the parser and into the checks on values.
    #[derive(Debug, Clone)]
    struct Poison {
        same_kind: bool,
        string: Vec<u8>,
        number: Vec<u8>,
        items: Vec<u8>,
        any: Vec<u8>,
    }

    impl Poison {
        fn for_value(&self, current: &[u8]) -> Vec<u8> {
            if !self.same_kind {
                return self.any.clone();
            }
            match current.first() {
                Some(b'"') => self.string.clone(),
                Some(b'[') => self.items.clone(),
                Some(b'-' | b'0'..=b'9') => self.number.clone(),
                _ => self.any.clone(),
            }
        }
    }

    fn poison() -> impl Strategy<Value = Poison> {
        (
            prop::bool::weighted(0.8),
            poison_string(),
            poison_number(),
            items_value(),
            poison_value(),
        )
            .prop_map(|(same_kind, string, number, items, any)| Poison {
                same_kind,
                string,
                number,
                items,
                any,
            })
    }

    /// Item lists: empty, thousands long, or with one line bent out of shape.
    fn items_value() -> impl Strategy<Value = Vec<u8>> {
        let numbers = prop::sample::select(vec![
            "1",
            "0",
            "-1",
            "0.001",
            "1e308",
            "9223372036854775807",
            "1000000000000",
            "1000000000001",
            "2",
            "1.5",
            "5e-324",
            r#""1""#,
            "null",
        ]);
        let commodity = prop::sample::select(vec![r#""BERAS""#, r#""""#, "1", "null", r#""🦀""#]);
        (
            0usize..3_000,
            commodity,
            numbers.clone(),
            numbers,
            any::<Index>(),
            any::<bool>(),
        )
            .prop_map(|(n, commodity, qty, price, bent_at, bend)| {
                let good = item_json(r#""BERAS""#, "2", "11000");
                let bent = item_json(commodity, qty, price);
                let lines: Vec<String> = (0..n)
                    .map(|i| {
                        if bend && i == bent_at.index(n) {
                            bent.clone()
                        } else {
                            good.clone()
                        }
                    })
                    .collect();
                format!("[{}]", lines.join(",")).into_bytes()
            })
    }

    #[derive(Debug, Clone)]
    enum FieldOp {
        Replace(Index, Poison),
        Remove(Index),
        Duplicate(Index),
        AddUnknown(Vec<u8>),
    }

    #[derive(Debug, Clone)]
    enum ByteOp {
        Flip(Index, u8),
        Insert(Index, u8),
        Delete(Index, usize),
        Truncate(Index),
    }

    fn field_op() -> impl Strategy<Value = FieldOp> {
        prop_oneof![
            6 => (any::<Index>(), poison()).prop_map(|(i, p)| FieldOp::Replace(i, p)),
            1 => any::<Index>().prop_map(FieldOp::Remove),
            1 => any::<Index>().prop_map(FieldOp::Duplicate),
            1 => poison_value().prop_map(FieldOp::AddUnknown),
        ]
    }

    fn byte_op() -> impl Strategy<Value = ByteOp> {
        prop_oneof![
            (any::<Index>(), 0u8..8).prop_map(|(i, b)| ByteOp::Flip(i, b)),
            (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteOp::Insert(i, b)),
            (any::<Index>(), 1usize..16).prop_map(|(i, n)| ByteOp::Delete(i, n)),
            any::<Index>().prop_map(ByteOp::Truncate),
        ]
    }

    fn apply(template: &str, field_ops: &[FieldOp], byte_ops: &[ByteOp]) -> Vec<u8> {
        let mut fields = fields_of(template);
        for op in field_ops {
            if fields.is_empty() {
                break;
            }
            match op {
                FieldOp::Replace(i, p) => {
                    let at = i.index(fields.len());
                    fields[at].1 = p.for_value(&fields[at].1);
                }
                FieldOp::Remove(i) => {
                    fields.remove(i.index(fields.len()));
                }
                FieldOp::Duplicate(i) => {
                    let f = fields[i.index(fields.len())].clone();
                    fields.push(f);
                }
                FieldOp::AddUnknown(v) => fields.push(("x_extension".into(), v.clone())),
            }
        }
        let mut bytes = render(&fields);
        for op in byte_ops {
            if bytes.is_empty() {
                break;
            }
            match op {
                ByteOp::Flip(i, bit) => {
                    let at = i.index(bytes.len());
                    bytes[at] ^= 1 << bit;
                }
                ByteOp::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
                ByteOp::Delete(i, n) => {
                    let at = i.index(bytes.len());
                    bytes.drain(at..(at + n).min(bytes.len()));
                }
                ByteOp::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            }
        }
        bytes
    }

    /// One record of a chunk: `known_valid` only for an untouched template.
    #[derive(Debug, Clone)]
    struct Case {
        payload: Option<Vec<u8>>,
        known_valid: bool,
    }

    fn case_for(stream: Stream) -> impl Strategy<Value = Case> {
        let template = prop::sample::select(templates(stream).to_vec());
        prop_oneof![
            2 => template.clone().prop_map(|t| Case {
                payload: Some(t.as_bytes().to_vec()),
                known_valid: true,
            }),
            6 => (
                template,
                prop::collection::vec(field_op(), 1..4),
                prop_oneof![
                    3 => Just(Vec::new()),
                    1 => prop::collection::vec(byte_op(), 1..4),
                ],
            )
                .prop_map(|(t, f, b)| Case {
                    payload: Some(apply(t, &f, &b)),
                    known_valid: false,
                }),
            1 => Just(Case { payload: None, known_valid: false }),
            1 => prop::sample::select(vec!["", " ", "\n\t ", "null", "{}", "[]", "0"])
                .prop_map(|s| Case {
                    payload: Some(s.as_bytes().to_vec()),
                    known_valid: false,
                }),
            1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| Case {
                payload: Some(b),
                known_valid: false,
            }),
        ]
    }

    fn chunk_for(stream: Stream) -> impl Strategy<Value = Vec<Case>> {
        prop::collection::vec(case_for(stream), 1..12)
    }

    fn inputs_of(payloads: &[Option<Vec<u8>>]) -> Vec<Input<'_>> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Input {
                payload: p.as_deref(),
                provenance: Provenance {
                    partition: 3,
                    offset: 1_000 + i as i64,
                },
                latest: NO_LATEST,
            })
            .collect()
    }

    /// Checks that every input is exactly one valid row or one rejection with a reason
    /// worth reading, and that the batches agree with the bookkeeping beside them.
    /// Returns the indices that became rows.
    fn check_accounting(stream: Stream, payloads: &[Option<Vec<u8>>]) -> Vec<usize> {
        let inputs = inputs_of(payloads);
        let rejected: Vec<(usize, Rejection)> = if stream == Stream::Outlets {
            let (rows, rejected) = decode_outlets(&inputs);
            assert_eq!(rows.len() + rejected.len(), inputs.len());
            for row in &rows {
                assert!(row.kpm_assigned >= 0);
            }
            rejected
        } else {
            let d = decode_events(stream, &inputs)
                .unwrap_or_else(|e| panic!("{stream:?}: a chunk failed: {e:#}"));
            let rows = d.batch.as_ref().map_or(0, |b| b.num_rows());
            assert_eq!(d.event_times.len() + d.rejected.len(), inputs.len());
            assert_eq!(rows, d.event_times.len(), "batch rows vs event times");
            assert_eq!(d.dedup_keys.len(), d.event_times.len());
            assert_eq!(d.batch.is_some(), !d.event_times.is_empty());
            if let Some(batch) = &d.batch {
                let time_column = match stream {
                    Stream::Disbursements => "credited_at",
                    _ => "occurred_at",
                };
                let times = batch
                    .column_by_name(time_column)
                    .unwrap()
                    .as_primitive::<TimestampMicrosecondType>();
                assert_eq!(times.values().to_vec(), d.event_times);
                let amounts = batch
                    .column_by_name("amount")
                    .unwrap()
                    .as_primitive::<Int64Type>();
                assert!(amounts
                    .values()
                    .iter()
                    .all(|a| (1..=MAX_RUPIAH).contains(a)));
                if stream == Stream::Transactions {
                    let counts = batch
                        .column_by_name("item_count")
                        .unwrap()
                        .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
                    let lines: i64 = counts.values().iter().map(|c| *c as i64).sum();
                    let item_rows = d.items.as_ref().map_or(0, |b| b.num_rows()) as i64;
                    assert_eq!(item_rows, lines, "item rows vs item_count");
                    let totals = batch
                        .column_by_name("items_total")
                        .unwrap()
                        .as_primitive::<Int64Type>();
                    for total in totals.iter().flatten() {
                        assert!((0..=MAX_RUPIAH).contains(&total), "items_total {total}");
                    }
                }
            } else {
                assert!(d.items.is_none());
            }
            d.rejected
        };
        let mut seen = vec![false; inputs.len()];
        for (i, r) in &rejected {
            assert!(*i < inputs.len(), "rejection index {i} out of range");
            assert!(!seen[*i], "input {i} rejected twice");
            seen[*i] = true;
            assert!(
                !r.message.trim().is_empty(),
                "{:?} without a message",
                r.reason
            );
            assert!(
                r.message.chars().count() <= MAX_MESSAGE_CHARS + 1,
                "a {}-char message",
                r.message.chars().count()
            );
            assert_ne!(r.reason, Reason::Late, "decode never knows the watermark");
        }
        (0..inputs.len()).filter(|i| !seen[*i]).collect()
    }

    fn check_chunk(stream: Stream, cases: &[Case]) {
        let payloads: Vec<Option<Vec<u8>>> = cases.iter().map(|c| c.payload.clone()).collect();
        let accepted = check_accounting(stream, &payloads);
        for (i, c) in cases.iter().enumerate() {
            if c.known_valid {
                assert!(
                    accepted.contains(&i),
                    "valid input {i} lost beside bad ones"
                );
            }
            if c.payload.is_none() {
                assert!(!accepted.contains(&i), "a tombstone became a row");
            }
        }
    }

    fn any_stream() -> impl Strategy<Value = Stream> {
        prop::sample::select(Stream::ALL.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 384,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_bytes_are_rejected_one_by_one(
            chunk in prop::collection::vec(
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..512).prop_map(Some),
                    ".{0,200}".prop_map(|s: String| Some(s.into_bytes())),
                    Just(None),
                ],
                0..16,
            )
        ) {
            for stream in Stream::ALL {
                check_accounting(stream, &chunk);
            }
        }

        #[test]
        fn mutated_records_never_fail_their_chunk(
            (stream, chunk) in any_stream().prop_flat_map(|s| (Just(s), chunk_for(s)))
        ) {
            check_chunk(stream, &chunk);
        }

        #[test]
        fn tombstones_are_rejected_and_lose_nothing_around_them(
            (stream, known) in any_stream().prop_flat_map(|s| {
                let chunk = prop::collection::vec(
                    prop_oneof![
                        prop::sample::select(templates(s).to_vec()).prop_map(|t| Case {
                            payload: Some(t.as_bytes().to_vec()),
                            known_valid: true,
                        }),
                        Just(Case { payload: None, known_valid: false }),
                    ],
                    0..24,
                );
                (Just(s), chunk)
            })
        ) {
            check_chunk(stream, &known);
            let inputs = inputs_of(&[None]);
            if stream != Stream::Outlets {
                let d = decode_events(stream, &inputs).unwrap();
                prop_assert_eq!(d.rejected[0].1.reason, Reason::EmptyMessage);
            } else {
                prop_assert_eq!(decode_outlets(&inputs).1[0].1.reason, Reason::EmptyMessage);
            }
        }
    }

    /// Cases per run of the pipeline fuzz below: `PANTAU_FUZZ_CASES` (the README gives
    /// the million-case command), a short budget by default.
    fn fuzz_cases() -> u32 {
        std::env::var("PANTAU_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000)
    }

    fn any_event_stream() -> impl Strategy<Value = Stream> {
        prop::sample::select(vec![
            Stream::Transactions,
            Stream::Disbursements,
            Stream::Transfers,
        ])
    }

    /// A chunk through the router, across the internal topic's encoding and into an
    /// engine, as `pantau run` carries it.
    fn through_router_and_engine(stream: Stream, payloads: &[Option<Vec<u8>>]) {
        use crate::engine::{Engine, RawRecord};
        use crate::route::{self, Envelope, InputRecord};
        // 2023-04-01T00:00+07:00, after every template's time; plus five minutes.
        let received = 1_680_282_000_000_000;
        let latest = received + 300_000_000;
        let records: Vec<InputRecord> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| InputRecord {
                key: Some(b"OUT-1"),
                payload: p.as_deref(),
                offset: i as i64,
            })
            .collect();
        let forwarded = route::forward((stream, 0), &records, 4, received);
        assert_eq!(forwarded.len(), records.len());
        let progress = route::max_event_time(stream, &records, latest);
        let config = crate::engine::EngineConfig::for_rule_author(None, None);
        let mut engine = Engine::new(&config, crate::rules::RuleSet::default()).without_figures();
        let envelopes: Vec<Envelope> = forwarded
            .iter()
            .map(|o| Envelope::decode(&o.payload).expect("the router's own encoding"))
            .collect();
        let mut raw = Vec::new();
        let mut dead = Vec::new();
        for e in &envelopes {
            let Envelope::Record {
                source,
                offset,
                payload,
                received,
                whole,
            } = e
            else {
                panic!("forward sends records only");
            };
            assert_eq!(*source, (stream, 0));
            let record = RawRecord {
                key: Some(b"OUT-1"),
                payload: *payload,
                offset: *offset,
                received: *received,
            };
            match whole {
                Some(whole) => {
                    let d = engine.reject_too_large(stream, 0, &record, whole, 0);
                    assert!(d.original_truncated && d.original.len() < 400_000);
                    dead.push(d);
                }
                None => raw.push(record),
            }
        }
        dead.extend(
            engine
                .ingest(stream, 0, &raw, 0)
                .expect("ingest never fails a chunk"),
        );
        let accepted: Vec<i64> = records
            .iter()
            .filter(|r| r.forwarded_whole())
            .filter_map(|r| accepted_event_time(stream, r.payload, latest))
            .collect();
        // Every input accepted or dead-lettered with a reason, and the router's progress
        // is exactly the largest event time the engine accepted.
        assert_eq!(dead.len() + accepted.len(), payloads.len());
        assert!(dead
            .iter()
            .all(|d| !d.reason.is_empty() && !d.error.is_empty()));
        assert_eq!(engine.partition_max_event((stream, 0)), progress);
        assert_eq!(accepted.iter().copied().max(), progress);
        if let Some(t) = progress {
            assert!((PROGRAM_START_US..=latest).contains(&t), "{t}");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            engine.advance(0).await.expect("advance");
            engine.finish(0).await.expect("finish");
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: fuzz_cases(),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn mutated_records_pass_router_and_engine_accepted_or_dead_lettered(
            (stream, chunk) in any_event_stream().prop_flat_map(|s| (Just(s), chunk_for(s)))
        ) {
            let payloads: Vec<Option<Vec<u8>>> = chunk.into_iter().map(|c| c.payload).collect();
            through_router_and_engine(stream, &payloads);
        }
    }

    fn payloads(raws: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
        raws.iter().map(|r| Some(r.to_vec())).collect()
    }

    fn reasons(stream: Stream, raws: &[String]) -> Vec<Option<Reason>> {
        let inputs: Vec<Option<Vec<u8>>> =
            raws.iter().map(|r| Some(r.clone().into_bytes())).collect();
        let accepted = check_accounting(stream, &inputs);
        let rejected = if stream == Stream::Outlets {
            decode_outlets(&inputs_of(&inputs)).1
        } else {
            decode_events(stream, &inputs_of(&inputs)).unwrap().rejected
        };
        (0..raws.len())
            .map(|i| {
                if accepted.contains(&i) {
                    None
                } else {
                    rejected
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map(|(_, r)| r.reason)
                }
            })
            .collect()
    }

    #[test]
    fn money_past_what_the_rollups_can_sum_is_rejected() {
        let with = |from: &str, to: &str| VALID.replace(from, to);
        let raws = vec![
            with(r#""amount":138000"#, r#""amount":9223372036854775807"#),
            with(r#""amount":138000"#, &format!(r#""amount":{MAX_RUPIAH}"#)),
            with(
                r#""amount":138000"#,
                &format!(r#""amount":{}"#, MAX_RUPIAH + 1),
            ),
            with(
                r#""balance_after":62000"#,
                r#""balance_after":9223372036854775807"#,
            ),
            with(
                r#""unit_price":28000"#,
                r#""unit_price":9223372036854775807"#,
            ),
            // Each in range; their product is not.
            with(r#""qty":10"#, r#""qty":1e300"#),
            with(r#""qty":10"#, r#""qty":100000000"#),
            with(r#""qty":10"#, r#""qty":1e300"#)
                .replace(r#""unit_price":11000"#, r#""unit_price":0"#),
        ];
        let got = reasons(Stream::Transactions, &raws);
        use Reason::InvalidValue as Bad;
        assert_eq!(
            got,
            vec![
                Some(Bad),
                None,
                Some(Bad),
                Some(Bad),
                Some(Bad),
                Some(Bad),
                Some(Bad),
                None
            ]
        );
        let transfer = TRANSFER.replace("5000000", "9223372036854775807");
        let disbursement = DISBURSEMENT.replace("400000", "9223372036854775807");
        assert_eq!(reasons(Stream::Transfers, &[transfer]), vec![Some(Bad)]);
        assert_eq!(
            reasons(Stream::Disbursements, &[disbursement]),
            vec![Some(Bad)]
        );
    }

    #[test]
    fn times_at_the_ends_of_the_calendar_are_decided_not_panicked_on() {
        let at = |t: &str| VALID.replace("2023-01-05T10:00:00+07:00", t);
        let raws: Vec<String> = [
            "0000-01-01T00:00:00+23:59",
            "0000-01-01T00:00:00-23:59",
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:59:59.999999999+23:59",
            "2023-01-05T23:59:60+07:00",
            "99999-01-01T00:00:00+07:00",
            "-0001-01-01T00:00:00+07:00",
            "2023-02-30T10:00:00+07:00",
            "-1",
        ]
        .iter()
        .map(|t| at(t))
        .collect();
        let got = reasons(Stream::Transactions, &raws);
        // Four-digit years are RFC 3339; both ends fit a µs timestamp and a Date32, and
        // the year 0 is before the program. With no receipt time there is no upper bound.
        assert!(
            got[..2].iter().all(|r| r == &Some(Reason::BeforeProgram)),
            "{got:?}"
        );
        assert!(got[2..5].iter().all(Option::is_none), "{got:?}");
        assert!(
            got[5..].iter().all(|r| r == &Some(Reason::InvalidValue)),
            "{got:?}"
        );
    }

    /// A receipt time of 2023-01-05T10:30+07:00 plus five minutes.
    const RECEIVED_LATEST: i64 = 1_672_889_400_000_000 + 300_000_000;

    fn decode_received(stream: Stream, raw: &str) -> Decoded {
        let input = Input {
            payload: Some(raw.as_bytes()),
            provenance: Provenance {
                partition: 0,
                offset: 0,
            },
            latest: RECEIVED_LATEST,
        };
        decode_events(stream, &[input]).unwrap()
    }

    #[test]
    fn a_record_dated_2099_is_rejected_as_future_and_1970_as_before_the_program() {
        let at = |t: &str| VALID.replace("2023-01-05T10:00:00+07:00", t);
        let reason = |raw: &str| {
            let d = decode_received(Stream::Transactions, raw);
            assert!(d.event_times.is_empty(), "{raw} was accepted");
            d.rejected[0].1.clone()
        };
        let future = reason(&at("2099-01-05T10:00:00+07:00"));
        assert_eq!(future.reason, Reason::Future);
        assert!(
            future.message.contains("occurred_at 2099-01-05"),
            "{future:?}"
        );
        assert_eq!(
            reason(&at("1970-01-01T07:00:00+07:00")).reason,
            Reason::BeforeProgram
        );
        assert_eq!(
            reason(&at("2016-12-31T23:59:59+07:00")).reason,
            Reason::BeforeProgram
        );
        // Up to the bound is accepted: a terminal a few minutes fast is still a sale.
        let fast = decode_received(Stream::Transactions, &at("2023-01-05T10:35:00+07:00"));
        assert_eq!(fast.event_times.len(), 1);
        assert_eq!(
            reason(&at("2023-01-05T10:35:01+07:00")).reason,
            Reason::Future
        );
        let disbursement = r#"{"disbursement_id":"D1","bank":"BRI","card_id":"K1","regency_code":"3604","period":"2099-01","months":1,"amount":200000,"credited_at":"2099-01-02T08:00:00+07:00"}"#;
        let d = decode_received(Stream::Disbursements, disbursement);
        assert_eq!(d.rejected[0].1.reason, Reason::Future);
    }

    #[test]
    fn the_router_takes_event_times_only_from_records_the_decoder_accepts() {
        let at = |t: &str| VALID.replace("2023-01-05T10:00:00+07:00", t);
        let cases = [
            VALID.to_string(),
            at("2099-01-05T10:00:00+07:00"),
            at("1970-01-01T07:00:00+07:00"),
            VALID.replace(r#""bank":"BRI""#, r#""bank":"BCA""#),
            VALID.replace(r#""amount":138000"#, r#""amount":0"#),
            "{not json".to_string(),
        ];
        for raw in &cases {
            let decoded = decode_received(Stream::Transactions, raw);
            let routed =
                accepted_event_time(Stream::Transactions, Some(raw.as_bytes()), RECEIVED_LATEST);
            assert_eq!(routed, decoded.event_times.first().copied(), "{raw}");
        }
        assert!(accepted_event_time(
            Stream::Transactions,
            Some(VALID.as_bytes()),
            RECEIVED_LATEST
        )
        .is_some());
    }

    #[test]
    fn a_period_must_be_exactly_yyyy_mm() {
        let raws: Vec<String> = [
            "2023-01",
            "0000-12",
            "2023-1",
            "2023-13",
            "2023-00",
            "+2023-01",
            "-999-01",
            "99999-01",
            "٢٠٢٣-٠١",
            "2023-1 ",
            // chrono's %Y takes a sign or leading blanks, so these passed a
            // parse-and-length check; the rules' `to_date(period || '-01')` fails on them.
            "-100-10",
            "+900-10",
            " 900-10",
            "  00-10",
        ]
        .iter()
        // The period alone: credited_at stays in 2023.
        .map(|p| DISBURSEMENT.replace(r#""period":"2023-01""#, &format!(r#""period":"{p}""#)))
        .collect();
        let got = reasons(Stream::Disbursements, &raws);
        assert_eq!(got[..2], [None, None]);
        assert!(
            got[2..].iter().all(|r| r == &Some(Reason::InvalidValue)),
            "{got:?}"
        );
    }

    #[test]
    fn a_huge_bad_value_gives_a_short_message() {
        for filler in ["x", "é", "🦀"] {
            let huge = filler.repeat(1 << 20);
            for raw in [
                VALID.replace(r#""bank":"BRI""#, &format!(r#""bank":"{huge}""#)),
                VALID.replace(r#""amount":138000"#, &format!(r#""amount":"{huge}""#)),
                VALID.replace("2023-01-05T10:00:00+07:00", &huge),
                VALID.replace(
                    r#""commodity":"BERAS","qty":10"#,
                    &format!(r#""commodity":"{huge}","qty":-1"#),
                ),
            ] {
                let d = decode_one(&raw);
                let message = &d.rejected[0].1.message;
                assert!(
                    message.chars().count() <= MAX_MESSAGE_CHARS + 1,
                    "{}",
                    message.len()
                );
            }
        }
    }

    #[test]
    fn nesting_a_million_deep_neither_overflows_the_stack_nor_fails_the_chunk() {
        let deep = "[".repeat(1_000_000) + &"]".repeat(1_000_000);
        let raws = [
            VALID.replace(r#""amount":138000"#, &format!(r#""amount":{deep}"#)),
            VALID.replace(r#""items":["#, &format!(r#""items":[{deep},"#)),
            deep.clone(),
            "[".repeat(1_000_000),
            // Unknown fields are allowed by the contract, however deep: serde_json skips
            // them without recursing.
            VALID.replace(
                r#""amount":138000"#,
                &format!(r#""x_extension":{deep},"amount":138000"#),
            ),
        ];
        let got = reasons(Stream::Transactions, &raws);
        assert!(got[..4].iter().all(Option::is_some), "{got:?}");
        assert_eq!(got[4], None);
        let raws = payloads(&[OUTLET
            .replace(
                r#""kpm_assigned":250"#,
                &format!(r#""kpm_assigned":{deep}"#),
            )
            .as_bytes()]);
        assert!(check_accounting(Stream::Outlets, &raws).is_empty());
    }

    #[test]
    fn thousands_of_items_stay_with_their_transaction() {
        let lines = vec![item_json(r#""BERAS""#, "1", "11000"); 5_000].join(",");
        let many = VALID.replace(
            &VALID[VALID.find(r#""items":"#).unwrap()..VALID.find(r#","balance_after""#).unwrap()],
            &format!(r#""items":[{lines}]"#),
        );
        let empty = VALID.replace(
            &VALID[VALID.find(r#""items":"#).unwrap()..VALID.find(r#","balance_after""#).unwrap()],
            r#""items":[]"#,
        );
        let inputs = payloads(&[many.as_bytes(), b"{", empty.as_bytes(), VALID.as_bytes()]);
        assert_eq!(
            check_accounting(Stream::Transactions, &inputs),
            vec![0, 2, 3]
        );
        let d = decode_events(Stream::Transactions, &inputs_of(&inputs)).unwrap();
        assert_eq!(d.items.unwrap().num_rows(), 5_002);
        let totals = d.batch.unwrap();
        let totals = totals
            .column_by_name("items_total")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert_eq!(totals.value(0), 55_000_000);
        // An empty list is a list of no items, not a missing one: no total.
        assert!(totals.is_null(1));
    }

    #[test]
    fn outlets_survive_what_events_survive() {
        let raws: Vec<String> = vec![
            OUTLET.to_string(),
            OUTLET.replace("250", "-1"),
            OUTLET.replace("2019-03-01T09:00:00+07:00", "99999-03-01T09:00:00+07:00"),
            OUTLET.replace(r#""active""#, "1"),
            OUTLET.replace(
                r#""bank":"BRI""#,
                &format!(r#""bank":"{}""#, "🦀".repeat(100_000)),
            ),
            String::new(),
        ];
        let got = reasons(Stream::Outlets, &raws);
        assert_eq!(
            got,
            vec![
                None,
                Some(Reason::InvalidValue),
                Some(Reason::InvalidValue),
                Some(Reason::WrongType),
                Some(Reason::UnknownBank),
                Some(Reason::EmptyMessage),
            ]
        );
    }

    /// A row type whose one column arrow can refuse, standing in for any validated row
    /// the validation let through by mistake.
    #[derive(Serialize)]
    struct Probe {
        v: serde_json::Value,
        t: i64,
    }

    impl EventRow for Probe {
        fn event_time(&self) -> i64 {
            self.t
        }
        fn dedup_key(&self) -> String {
            self.t.to_string()
        }
    }

    #[test]
    fn a_row_arrow_refuses_is_rejected_alone_not_its_chunk() {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let schema: SchemaRef = std::sync::Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, false),
            Field::new("t", DataType::Int64, false),
        ]));
        let raws = payloads(&[b"1", b"not a number", b"3"]);
        let d = decode_stream(&inputs_of(&raws), "probe", &schema, |input| {
            let raw = std::str::from_utf8(input.payload.unwrap()).unwrap();
            let v = raw
                .parse::<i64>()
                .map_or_else(|_| raw.into(), serde_json::Value::from);
            Ok((
                Probe {
                    v,
                    t: input.provenance.offset,
                },
                Vec::new(),
            ))
        });
        assert_eq!(d.batch.unwrap().num_rows(), 2);
        assert_eq!(d.event_times, vec![1_000, 1_002]);
        assert_eq!(d.dedup_keys.len(), 2);
        assert_eq!(d.rejected.len(), 1);
        let (at, why) = &d.rejected[0];
        assert_eq!((*at, why.reason), (1, Reason::InvalidValue));
        assert!(why.message.contains("probe"), "{}", why.message);
    }
}
