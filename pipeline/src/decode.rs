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
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::model::{Bank, OutletStatus, Payment, Stream, TxnType};
use crate::regions::Regions;
use crate::tables;

/// Why a record was rejected; the string form is the DLQ `reason` and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
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
    /// Older than the watermark: its windows may already have closed.
    Late,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::EmptyMessage,
        Reason::InvalidJson,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownBank,
        Reason::UnknownPayment,
        Reason::UnknownType,
        Reason::UnknownStatus,
        Reason::UnknownRegency,
        Reason::NonPositiveAmount,
        Reason::TimeWithoutOffset,
        Reason::InvalidValue,
        Reason::Late,
    ];

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
            Reason::Late => "late",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
}

impl Rejection {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
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
pub struct Decoded {
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
                format!("{field} {value:?} has no UTC offset (expected e.g. +07:00)"),
            ))
        }
        Err(e) => Err(Rejection::new(
            Reason::InvalidValue,
            format!("{field} {value:?} is not an RFC 3339 time: {e}"),
        )),
    }
}

fn parse_bank(value: &str) -> Result<Bank, Rejection> {
    Bank::parse(value).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownBank,
            format!("bank {value:?} is not a Himbara bank (BRI, BNI, MANDIRI, BTN, BSI)"),
        )
    })
}

fn positive_amount(field: &str, amount: i64) -> Result<i64, Rejection> {
    if amount > 0 {
        Ok(amount)
    } else {
        Err(Rejection::new(
            Reason::NonPositiveAmount,
            format!("{field} must be > 0 rupiah, got {amount}"),
        ))
    }
}

/// Offset of a known regency; an unknown code has no calendar, so it is rejected.
fn regency_offset(code: &str) -> Result<FixedOffset, Rejection> {
    Regions::get()
        .regency(code)
        .map(|r| r.utc_offset)
        .ok_or_else(|| {
            Rejection::new(
                Reason::UnknownRegency,
                format!("regency_code {code:?} is not a BPS regency code"),
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

fn validate_transaction(w: WireTransaction, p: Provenance) -> Result<ValidTransaction, Rejection> {
    let bank = parse_bank(&w.bank)?;
    let payment = Payment::parse(&w.payment).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownPayment,
            format!("payment {:?} is not one of KKS, DEBIT, QRIS", w.payment),
        )
    })?;
    let kind = TxnType::parse(&w.kind).ok_or_else(|| {
        Rejection::new(
            Reason::UnknownType,
            format!("type {:?} is not purchase or reversal", w.kind),
        )
    })?;
    let amount = positive_amount("amount", w.amount)?;
    let occurred_at = parse_time("occurred_at", &w.occurred_at)?;
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
    if let Some(balance) = w.balance_after.filter(|b| *b < 0) {
        return Err(Rejection::new(
            Reason::InvalidValue,
            format!("balance_after must be >= 0, got {balance}"),
        ));
    }
    let items = w.items.unwrap_or_default();
    for (i, item) in items.iter().enumerate() {
        if !(item.qty > 0.0 && item.qty.is_finite()) || item.unit_price < 0 {
            return Err(Rejection::new(
                Reason::InvalidValue,
                format!(
                    "items[{i}] ({}) needs qty > 0 and unit_price >= 0, got qty {} and unit_price {}",
                    item.commodity, item.qty, item.unit_price
                ),
            ));
        }
        if item.commodity.is_empty() {
            return Err(Rejection::new(
                Reason::InvalidValue,
                format!("items[{i}] has an empty commodity"),
            ));
        }
    }
    let items_total = (!items.is_empty()).then(|| {
        items
            .iter()
            .map(|i| i.qty * i.unit_price as f64)
            .sum::<f64>()
            .round() as i64
    });
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
            item_count: items.len() as i32,
            items_total,
            src_partition: p.partition,
            src_offset: p.offset,
        },
        items,
    })
}

fn validate_disbursement(w: WireDisbursement, p: Provenance) -> Result<DisbursementRow, Rejection> {
    let bank = parse_bank(&w.bank)?;
    let amount = positive_amount("amount", w.amount)?;
    if !(1..=3).contains(&w.months) {
        return Err(Rejection::new(
            Reason::InvalidValue,
            format!("months must be 1 to 3, got {}", w.months),
        ));
    }
    if NaiveDate::parse_from_str(&format!("{}-01", w.period), "%Y-%m-%d").is_err()
        || w.period.len() != 7
    {
        return Err(Rejection::new(
            Reason::InvalidValue,
            format!("period {:?} is not YYYY-MM", w.period),
        ));
    }
    let credited_at = parse_time("credited_at", &w.credited_at)?;
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

fn validate_transfer(w: WireTransfer, p: Provenance) -> Result<TransferRow, Rejection> {
    let bank = parse_bank(&w.bank)?;
    let amount = positive_amount("amount", w.amount)?;
    let occurred_at = parse_time("occurred_at", &w.occurred_at)?;
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
            format!("status {:?} is not active, suspended or revoked", w.status),
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

fn to_batch<S: Serialize>(schema: &SchemaRef, rows: &[S]) -> anyhow::Result<Option<RecordBatch>> {
    if rows.is_empty() {
        return Ok(None);
    }
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len())
        .build_decoder()?;
    decoder.serialize(rows)?;
    Ok(decoder.flush()?)
}

/// One input record as the decoder sees it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub payload: Option<&'a [u8]>,
    pub provenance: Provenance,
}

/// Decodes a chunk of records of one event stream (transactions, disbursements or
/// transfers). The outlet registry goes through [`decode_outlets`].
pub fn decode_events(stream: Stream, inputs: &[Input<'_>]) -> anyhow::Result<Decoded> {
    let mut out = Decoded::default();
    match stream {
        Stream::Transactions => {
            let mut rows = Vec::with_capacity(inputs.len());
            let mut items = Vec::new();
            for (i, input) in inputs.iter().enumerate() {
                let valid = parse_wire::<WireTransaction>(input.payload)
                    .and_then(|w| validate_transaction(w, input.provenance));
                match valid {
                    Ok(v) => {
                        out.event_times.push(v.row.occurred_at);
                        out.dedup_keys
                            .push(Some(format!("{}\u{1f}{}", v.row.bank, v.row.txn_id)));
                        rows.push(v.row);
                        items.push(v.items);
                    }
                    Err(r) => out.rejected.push((i, r)),
                }
            }
            let item_rows: Vec<ItemRow> = rows
                .iter()
                .zip(&items)
                .flat_map(|(t, lines)| {
                    lines.iter().map(move |l| ItemRow {
                        txn_id: &t.txn_id,
                        bank: t.bank,
                        occurred_at: t.occurred_at,
                        local_date: t.local_date,
                        utc_offset_minutes: t.utc_offset_minutes,
                        outlet_id: &t.outlet_id,
                        terminal_id: &t.terminal_id,
                        regency_code: &t.regency_code,
                        card_id: &t.card_id,
                        payment: t.payment,
                        commodity: l.commodity.clone(),
                        qty: l.qty,
                        unit: l.unit.clone(),
                        unit_price: l.unit_price,
                        src_partition: t.src_partition,
                        src_offset: t.src_offset,
                    })
                })
                .collect();
            out.items = to_batch(&tables::TRANSACTION_ITEMS_SCHEMA, &item_rows)?;
            out.batch = to_batch(&tables::TRANSACTIONS_SCHEMA, &rows)?;
        }
        Stream::Disbursements => {
            let mut rows = Vec::with_capacity(inputs.len());
            for (i, input) in inputs.iter().enumerate() {
                match parse_wire::<WireDisbursement>(input.payload)
                    .and_then(|w| validate_disbursement(w, input.provenance))
                {
                    Ok(row) => {
                        out.event_times.push(row.credited_at);
                        out.dedup_keys
                            .push(Some(format!("{}\u{1f}{}", row.bank, row.disbursement_id)));
                        rows.push(row);
                    }
                    Err(r) => out.rejected.push((i, r)),
                }
            }
            out.batch = to_batch(&tables::DISBURSEMENTS_SCHEMA, &rows)?;
        }
        Stream::Transfers => {
            let mut rows = Vec::with_capacity(inputs.len());
            for (i, input) in inputs.iter().enumerate() {
                match parse_wire::<WireTransfer>(input.payload)
                    .and_then(|w| validate_transfer(w, input.provenance))
                {
                    Ok(row) => {
                        out.event_times.push(row.occurred_at);
                        out.dedup_keys
                            .push(Some(format!("{}\u{1f}{}", row.bank, row.transfer_id)));
                        rows.push(row);
                    }
                    Err(r) => out.rejected.push((i, r)),
                }
            }
            out.batch = to_batch(&tables::TRANSFERS_SCHEMA, &rows)?;
        }
        Stream::Outlets => anyhow::bail!("the outlet registry is decoded by decode_outlets"),
    }
    Ok(out)
}

/// Decodes registry records; returns the valid rows (input index, row) and rejections.
pub fn decode_outlets(inputs: &[Input<'_>]) -> (Vec<OutletRow>, Vec<(usize, Rejection)>) {
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
pub fn outlets_batch(latest: &HashMap<String, OutletRow>) -> anyhow::Result<RecordBatch> {
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
            })
            .collect();
        let d = decode_events(Stream::Transactions, &inputs).unwrap();
        assert_eq!(d.batch.unwrap().num_rows(), 2);
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].0, 1);
    }
}
