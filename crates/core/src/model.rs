//! The wire contract of DESIGN.md §3 as Rust types: what the banks send, what pantau
//! emits (alerts, dead letters) and what the simulator reports it injected (truth).
//!
//! These are the *valid* shapes. Decoding untrusted bytes into them, with a reason for
//! every rejection, is `decode`'s job; `schemas/` holds the same contract as JSON Schema.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// The internal topic, partitioned by province.
pub const TOPIC_BY_PROVINCE: &str = "pantau.by-province";

/// Input topics, in the order their files are named in a history folder.
pub const TOPIC_TRANSACTIONS: &str = "bpnt.transactions";
pub const TOPIC_DISBURSEMENTS: &str = "bpnt.disbursements";
pub(crate) const TOPIC_TRANSFERS: &str = "bpnt.transfers";
pub const TOPIC_OUTLETS: &str = "bpnt.outlets";
pub const TOPIC_ALERTS: &str = "pantau.alerts";
/// Alerts of rules in shadow mode: watched by rule authors, notified to no one.
pub(crate) const TOPIC_SHADOW_ALERTS: &str = "pantau.alerts.shadow";
pub(crate) const TOPIC_DLQ: &str = "pantau.dlq";
/// Every topic `pantau run` reads or writes; it creates those missing (a broker that
/// cannot, like librdkafka's mock cluster, must have them made beforehand).
pub const ALL_TOPICS: [&str; 8] = [
    TOPIC_TRANSACTIONS,
    TOPIC_DISBURSEMENTS,
    TOPIC_TRANSFERS,
    TOPIC_OUTLETS,
    TOPIC_ALERTS,
    TOPIC_SHADOW_ALERTS,
    TOPIC_DLQ,
    TOPIC_BY_PROVINCE,
];

/// The largest money value (rupiah) a record may carry: Rp 1 trillion, far above any
/// payment, credit or transfer of the program. The rollups and rules sum these as
/// `BIGINT` and cast float sums of `qty × unit_price` back to `BIGINT`; a value near
/// `i64::MAX` would make that cast fail and stop the day's rollups for every outlet, so
/// one corrupt record is rejected on decoding instead.
pub const MAX_RUPIAH: i64 = 1_000_000_000_000;

/// The four input streams pantau consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    Transactions,
    Disbursements,
    Transfers,
    Outlets,
}

impl Stream {
    pub const ALL: [Stream; 4] = [
        Stream::Transactions,
        Stream::Disbursements,
        Stream::Transfers,
        Stream::Outlets,
    ];

    pub fn topic(self) -> &'static str {
        match self {
            Stream::Transactions => TOPIC_TRANSACTIONS,
            Stream::Disbursements => TOPIC_DISBURSEMENTS,
            Stream::Transfers => TOPIC_TRANSFERS,
            Stream::Outlets => TOPIC_OUTLETS,
        }
    }

    /// File name of this stream inside a replayable history folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Stream::Transactions => "transactions.jsonl",
            Stream::Disbursements => "disbursements.jsonl",
            Stream::Transfers => "transfers.jsonl",
            Stream::Outlets => "outlets.jsonl",
        }
    }

    pub fn from_topic(topic: &str) -> Option<Stream> {
        Stream::ALL.into_iter().find(|s| s.topic() == topic)
    }
}

/// Himbara banks that issue KKS cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Bank {
    Bri,
    Bni,
    Mandiri,
    Btn,
    Bsi,
}

impl Bank {
    pub const ALL: [Bank; 5] = [Bank::Bri, Bank::Bni, Bank::Mandiri, Bank::Btn, Bank::Bsi];

    pub fn as_str(self) -> &'static str {
        match self {
            Bank::Bri => "BRI",
            Bank::Bni => "BNI",
            Bank::Mandiri => "MANDIRI",
            Bank::Btn => "BTN",
            Bank::Bsi => "BSI",
        }
    }

    pub fn parse(s: &str) -> Option<Bank> {
        Bank::ALL.into_iter().find(|b| b.as_str() == s)
    }
}

/// `KKS` is the program card; `DEBIT` and `QRIS` are ordinary customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Payment {
    Kks,
    Debit,
    Qris,
}

impl Payment {
    pub const ALL: [Payment; 3] = [Payment::Kks, Payment::Debit, Payment::Qris];

    pub fn as_str(self) -> &'static str {
        match self {
            Payment::Kks => "KKS",
            Payment::Debit => "DEBIT",
            Payment::Qris => "QRIS",
        }
    }

    pub fn parse(s: &str) -> Option<Payment> {
        Payment::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnType {
    Purchase,
    Reversal,
}

impl TxnType {
    pub fn as_str(self) -> &'static str {
        match self {
            TxnType::Purchase => "purchase",
            TxnType::Reversal => "reversal",
        }
    }

    pub fn parse(s: &str) -> Option<TxnType> {
        match s {
            "purchase" => Some(TxnType::Purchase),
            "reversal" => Some(TxnType::Reversal),
            _ => None,
        }
    }
}

/// One line of a KKS purchase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Upper-case commodity name, e.g. `BERAS`, `TELUR`, `MINYAK_GORENG`.
    pub commodity: String,
    pub qty: f64,
    /// `kg`, `l`, `pcs`, `ikat` ...
    pub unit: String,
    /// Rupiah per unit.
    pub unit_price: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub txn_id: String,
    pub bank: Bank,
    pub occurred_at: DateTime<FixedOffset>,
    pub outlet_id: String,
    pub terminal_id: String,
    pub regency_code: String,
    pub card_id: String,
    pub payment: Payment,
    #[serde(rename = "type")]
    pub kind: TxnType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses_txn_id: Option<String>,
    pub amount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Item>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disbursement {
    pub disbursement_id: String,
    pub bank: Bank,
    pub card_id: String,
    pub regency_code: String,
    /// `YYYY-MM`, the first month the credit covers.
    pub period: String,
    /// 1 to 3.
    pub months: u8,
    pub amount: i64,
    pub credited_at: DateTime<FixedOffset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub transfer_id: String,
    pub bank: Bank,
    pub outlet_id: String,
    pub regency_code: String,
    pub occurred_at: DateTime<FixedOffset>,
    pub counterparty_id: String,
    pub amount: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutletStatus {
    Active,
    Suspended,
    Revoked,
}

impl OutletStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutletStatus::Active => "active",
            OutletStatus::Suspended => "suspended",
            OutletStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<OutletStatus> {
        match s {
            "active" => Some(OutletStatus::Active),
            "suspended" => Some(OutletStatus::Suspended),
            "revoked" => Some(OutletStatus::Revoked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outlet {
    pub outlet_id: String,
    pub name: String,
    pub regency_code: String,
    pub district_code: String,
    pub bank: Bank,
    pub registered_at: DateTime<FixedOffset>,
    pub status: OutletStatus,
    pub kpm_assigned: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// An alert pantau raised, as produced to `pantau.alerts` and written to `alerts.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic: a hash of rule, entity and window.
    pub alert_id: String,
    pub rule_id: String,
    pub rule_version: String,
    pub category: String,
    pub severity: Severity,
    pub entity_type: String,
    pub entity_id: String,
    pub regency_code: String,
    pub window_start: DateTime<FixedOffset>,
    pub window_end: DateTime<FixedOffset>,
    /// Wall-clock time of detection; the only field that differs between two runs.
    pub detected_at: DateTime<FixedOffset>,
    pub score: f64,
    /// Bahasa Indonesia.
    pub title: String,
    /// Bahasa Indonesia.
    pub summary: String,
    /// The figures that fired the rule and the peer figures they were compared with.
    pub evidence: serde_json::Map<String, serde_json::Value>,
    /// Raised by a rule in shadow mode: goes to `pantau.alerts.shadow`, notifies no one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

impl Alert {
    /// The outlet an alert is about: its entity, or the outlet its evidence names (a
    /// terminal's, a supplier ring's). None for alerts about a card or a regency.
    pub fn outlet_id(&self) -> Option<&str> {
        if self.entity_type == "outlet" {
            return Some(&self.entity_id);
        }
        self.evidence.get("outlet_id").and_then(|v| v.as_str())
    }
}

/// An input record pantau could not accept, with its provenance and the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The original bytes: as text when they are UTF-8, otherwise base64.
    pub original: String,
    /// `text` or `base64`.
    pub original_encoding: String,
    /// The original's length in bytes, whole even when `original` is cut short.
    #[serde(default)]
    pub original_length: u64,
    /// SHA-256 of the whole original, hex: finds the record in the bank's own logs.
    #[serde(default)]
    pub original_sha256: String,
    /// True when `original` holds only the first bytes of a record too large to
    /// dead-letter whole (over `decode::MAX_DEAD_LETTER_ORIGINAL` bytes).
    #[serde(default)]
    pub original_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// Machine-readable reason, e.g. `invalid_json`, `missing_field`, `late`.
    pub reason: String,
    /// Human-readable explanation naming what was wrong.
    pub error: String,
    pub rejected_at: DateTime<FixedOffset>,
}

/// An anomaly the simulator injected (one line of `truth.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// Same vocabulary as alert categories, plus `malformed` for injected bad records.
    pub category: String,
    /// `outlet`, `terminal`, `ring`, `card`, `district` (kecamatan), `regency` or `record`.
    pub entity_type: String,
    pub entity_id: String,
    pub regency_code: String,
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
    /// For a ring: every outlet in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlets: Vec<String>,
    /// How the anomaly was made (intensity, commodity, counts ...).
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// Alert and truth categories, one per pattern of DESIGN.md §1.
pub mod category {
    pub const SEASONAL_OUTLET: &str = "seasonal_outlet";
    pub const SUPPLIER_DEPENDENT: &str = "supplier_dependent";
    pub const CARD_COLLECTION: &str = "card_collection";
    pub const PRICE_MARKUP: &str = "price_markup";
    pub const SHORT_QUANTITY: &str = "short_quantity";
    pub const PAPERWORK_MISMATCH: &str = "paperwork_mismatch";
    pub const NON_TRANSACTING: &str = "non_transacting";
    /// One KKS card (cloned, or held by an agent) swiped at several outlets within hours.
    pub const CARD_MANY_PLACES: &str = "card_many_places";
    /// A whole regency's KPM spend their benefit later than its peers' in one period.
    pub const REALIZATION_LAG: &str = "realization_lag";
    /// An outlet charging every KPM the same round figure (the whole benefit, a fixed
    /// package) while its peers' baskets vary.
    pub const FIXED_AMOUNT: &str = "fixed_amount";
    /// An outlet serving more KPM than the program's norm allows.
    pub const KPM_OVER_NORM: &str = "kpm_over_norm";
    /// Rice sold to KPM above the premium-grade ceiling (HET) of the outlet's zone.
    pub const PRICE_ABOVE_CEILING: &str = "price_above_ceiling";
    /// Not an outlet's fault: a whole kecamatan sells dearer than the rest of its regency
    /// (transport to the interior, supply), a low-severity note to the monitoring team.
    pub const AREA_PRICE_LEVEL: &str = "area_price_level";
    /// Truth only: a record deliberately broken so it must reach the DLQ.
    pub const MALFORMED: &str = "malformed";
}

/// The registry entry of the outlet an alert is about, as the notifier knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutletInfo {
    pub name: String,
    pub district_code: String,
}

/// A source partition: which stream and which partition of it.
pub type PartitionId = (Stream, i32);

// The internal topic `pantau.by-province` (see `route`): what its records may carry.

/// What the router keeps of an input record too large to forward whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Whole {
    pub length: u64,
    /// SHA-256 of the whole record, hex.
    pub sha256: String,
}

/// The most bytes of key and value an input record may have to be forwarded whole.
/// pantau's header adds under 200 bytes, so a forwarded record stays under librdkafka's
/// default `message.max.bytes` (1,000,000) even when the input record sat at Kafka's own
/// limit (1,048,588); a larger one is forwarded cut short and dead-lettered, never
/// refused by the producer (which would stop the router on it after every restart).
pub const MAX_FORWARDED_BYTES: usize = 990_000;

/// The longest key forwarded or dead-lettered; record keys are outlet and card ids.
pub const MAX_KEY_BYTES: usize = 1024;

/// The earliest event time accepted: 2017-01-01T00:00:00+07:00, before BPNT's first
/// disbursement (February 2017). An older time is a terminal clock reset (1970) or a
/// typo, and would otherwise hold a partition's event time back or open windows for
/// years that never were.
pub const PROGRAM_START_US: i64 = 1_483_203_600_000_000;

/// One record to produce: topic, partition (or by key), key and payload.
pub struct Outgoing {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

impl Outgoing {
    pub fn alert(a: &Alert) -> crate::error::Result<Outgoing> {
        Ok(Outgoing {
            topic: if a.shadow {
                TOPIC_SHADOW_ALERTS
            } else {
                TOPIC_ALERTS
            }
            .to_string(),
            partition: None,
            key: Some(a.entity_id.clone()),
            payload: serde_json::to_vec(a).map_err(|source| crate::error::Error::Encode {
                what: "an alert",
                source,
            })?,
        })
    }

    pub fn dead_letter(d: &DeadLetter) -> crate::error::Result<Outgoing> {
        Ok(Outgoing {
            topic: TOPIC_DLQ.to_string(),
            partition: None,
            key: d.key.clone(),
            payload: serde_json::to_vec(d).map_err(|source| crate::error::Error::Encode {
                what: "a dead letter",
                source,
            })?,
        })
    }
}
