//! The vocabulary every part of pantau shares, with no DataFusion and no Kafka client
//! underneath: the wire contract of the bank streams and of pantau's own topics
//! ([`model`]), the BPS regencies and kecamatan ([`regions`]), the keyed references that
//! stand for a card wherever a person reads ([`pseudonym`]), the text forms of durations,
//! numbers and dates in Bahasa Indonesia ([`text`]), the file form of a history
//! ([`history`] to read a folder, [`jsonl`] for alert and dead-letter files) and the shape
//! of each component's Prometheus metrics ([`metrics`]).

pub mod history;
pub mod jsonl;
pub mod metrics;
pub mod model;
pub mod pseudonym;
pub mod regions;
pub mod text;
