//! The vocabulary every part of pantau shares, with no DataFusion, no Kafka client and no
//! Prometheus underneath: the wire contract of the bank streams and of pantau's own topics
//! ([`model`]), the BPS regencies and kecamatan ([`regions`]), the keyed references that
//! stand for a card wherever a person reads ([`pseudonym`]), the text forms of durations,
//! numbers and dates in Bahasa Indonesia ([`text`]) and the file form of a history
//! ([`history`] to read a folder, [`jsonl`] for alert and dead-letter files), what a failure
//! asks of its caller ([`error::Recovery`]) and how far a long read has gone
//! ([`progress`]), and where the rules and templates built into the binary may be
//! replaced ([`bundled`]).

pub mod bundled;
pub mod error;
pub mod history;
pub mod jsonl;
pub mod model;
pub mod progress;
pub mod pseudonym;
pub mod regions;
pub mod text;
