//! The detection engine: records in, alerts and dead letters out, with no Kafka client
//! underneath. The data flows one way through it:
//!
//! ```text
//!  decode    JSON → validated rows → Arrow batches; bad record → dead letter
//!        ▼
//!  window    watermark (min over partitions − lateness), buffers, windows close
//!        ▼
//!  engine    daily rollups + rules/*.sql in DataFusion (udf: statrs tails;
//!            slot_table: window tables swapped under plans made once per rule)
//!        ▼
//!  alert     rows → alerts with deterministic ids, Bahasa Indonesia text
//!        ▼
//!  suppress  cooldown per rule and entity, the snooze list
//! ```
//! [`engine::Engine`] is the entry point. [`rules`] loads the rules and views (the
//! shipped ones are built in by `build.rs`), [`tables`] declares what a rule can read,
//! [`reference`] reads the reference tables (official prices) a rules folder ships,
//! [`lint`] checks a rule before it runs, [`program`] computes the realization, spending
//! and price figures of the dashboards when a day or period closes, [`checkpoint`] writes
//! and restores an engine's state, and [`tally`] is what it counts and returns (the
//! engine reads no clock and publishes nothing: time is an argument, figures a result).
//! [`error`] says what a failure asks of the caller.

pub mod alert;
pub mod checkpoint;
pub mod decode;
pub mod engine;
pub mod error;
pub mod lint;
pub mod program;
pub mod reference;
pub mod route;
pub mod rules;
pub mod slot_table;
pub mod suppress;
pub mod tables;
pub mod tally;
pub mod udf;
pub mod watermark;
pub mod window;
