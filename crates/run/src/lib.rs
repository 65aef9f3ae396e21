//! `pantau replay` and `pantau run`: a source, the engine and a sink wired together.
//!
//! [`pipeline`] holds both loops. A replay reads a history folder into one engine. Over
//! Kafka, `run` takes two steps: [`route`] forwards input records to the internal topic
//! `pantau.by-province`, and [`detect`] keeps one engine per internal partition,
//! checkpointed, committing input offsets only after the alerts are acknowledged;
//! [`backpressure`] pauses the inputs that run ahead while the watermark waits, [`dlq`]
//! paces dead letters, and [`reload`] takes up rule and snooze changes while running.
//! [`feed`] produces a history's records onto the input topics (`simulate --to-kafka`,
//! the demo). [`fixtures`] and [`backtest`] are the rule author's tools
//! (`pantau rules test`, `pantau rules backtest`).

pub mod backpressure;
pub mod backtest;
pub mod detect;
pub mod dlq;
pub mod engine_metrics;
pub mod error;
pub mod feed;
pub mod fixtures;
pub mod metrics;
pub mod pipeline;
pub mod reload;
