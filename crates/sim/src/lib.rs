//! The history simulator (`pantau simulate`): a deterministic, seeded imitation of the
//! four bank streams of DESIGN.md §3 for a few regencies — benefit credits, KKS
//! purchases, ordinary customers, outlet transfers and the outlet registry — with every
//! misbehaviour pattern of DESIGN.md §1 injected at configurable rates and written down
//! as `Truth` lines, plus redeliveries, bounded disorder and malformed records.
//!
//! Pipeline: `world` (population and calendar) -> `anomalies` (the plan of what goes
//! wrong) -> `behaviour` (drafts of every record) -> `output` (ids, ordering, delivery
//! quirks, files). The same config always gives byte-identical output. Failures are
//! [`error::Error`], each saying whether to retry or stop.

mod anomalies;
mod basket;
mod behaviour;
mod ceilings;
mod config;
pub mod error;
pub mod eval;
mod output;
mod world;

#[cfg(test)]
mod tests;

use std::path::Path;

use error::Result;

pub use config::SimConfig;
pub use output::MALFORMED_REASONS;

use pantau_core::model::{Disbursement, Outlet, Stream, Transaction, Transfer, Truth};

/// Everything one simulation produced, in delivery order per stream.
#[derive(Debug, Clone)]
pub struct History {
    /// In delivery order, redeliveries included (see `redeliveries`).
    pub transactions: Vec<Transaction>,
    pub disbursements: Vec<Disbursement>,
    pub transfers: Vec<Transfer>,
    pub outlets: Vec<Outlet>,
    /// One line per injected anomaly (and per non-transacting card and period, and per
    /// malformed record).
    pub truth: Vec<Truth>,
    /// Deliberately broken records, each with the stream it belongs to, its raw line (may
    /// be empty = "empty message"), the position (index in that stream's record order)
    /// before which it is inserted, and the Kafka key to use.
    pub malformed: Vec<Malformed>,
    /// Indices into `transactions` of redeliveries: exact repeats of an earlier record.
    pub redeliveries: Vec<usize>,
}

/// A record that must be rejected (dead-lettered) by a correct consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub stream: Stream,
    /// Inserted before record `position` of its stream (at the end if past it).
    pub position: usize,
    /// The raw line; empty for `empty_message`.
    pub raw: String,
    pub key: String,
    /// One of [`MALFORMED_REASONS`].
    pub reason: &'static str,
    /// `MAL-000001` ...: the truth line's entity id, and the record's own id field when
    /// the record still has one.
    pub id: String,
}

/// Runs the simulation described by `cfg` (validated first).
pub fn simulate(cfg: &SimConfig) -> Result<History> {
    cfg.validate()?;
    let mut world = world::build(cfg)?;
    let mut plan = anomalies::plan(cfg, &mut world);
    let drafts = behaviour::generate(cfg, &world, &mut plan);
    output::finish(cfg, &world, drafts, std::mem::take(&mut plan.truth))
}

/// Writes transactions.jsonl, disbursements.jsonl, transfers.jsonl, outlets.jsonl
/// (malformed lines inserted at their positions) and truth.jsonl into `dir`, creating it
/// if missing.
pub fn write_folder(h: &History, dir: &Path) -> Result<()> {
    output::write_folder(h, dir)
}

impl History {
    /// Every record of every stream in the order a bank would produce them: the registry
    /// first, then the event streams merged by event time ([`pantau_core::history::interleave`]).
    pub fn interleaved(&self) -> Vec<pantau_core::model::Outgoing> {
        pantau_core::history::interleave(
            Stream::ALL.iter().map(|s| (*s, self.records(*s))).collect(),
        )
    }

    /// Every record of one stream as (Kafka key, JSON bytes) in file order, malformed
    /// included: the keys of DESIGN.md §3 (transactions, transfers and outlets by
    /// `outlet_id`, disbursements by `card_id`).
    pub fn records(&self, stream: Stream) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::with_capacity(match stream {
            Stream::Transactions => self.transactions.len(),
            Stream::Disbursements => self.disbursements.len(),
            Stream::Transfers => self.transfers.len(),
            Stream::Outlets => self.outlets.len(),
        });
        // Serializing these types into memory cannot fail.
        let _ = output::for_each_record(self, stream, |key, bytes| {
            out.push((key.to_string(), bytes.to_vec()));
            Ok(())
        });
        out
    }
}
