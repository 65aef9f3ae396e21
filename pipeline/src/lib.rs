//! pantau watches the bank transaction streams of Indonesia's non-cash food assistance
//! (BPNT / Program Sembako) and raises alerts on e-Warong outlets that misbehave.
//!
//! ```text
//!  Kafka topics / history folder
//!        │  source::{kafka, files}   (offsets committed only after alerts are acked)
//!        ▼
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
//!        ▼
//!  sink::{kafka, files}  pantau.alerts / pantau.dlq, alerts.jsonl / dlq.jsonl
//! ```
//! `pipeline` wires a source, the engine and a sink together. Over Kafka it runs two
//! steps: `route` forwards input records to the internal topic by province, and
//! `detect` keeps one engine per internal partition, checkpointed by `checkpoint`;
//! `backpressure` pauses the inputs that run ahead while the watermark waits.
//! `reload` takes up rule and snooze changes while running.
//! `health` tracks the broker (and the store's database) for `/health`, `dlq` paces dead letters,
//! `metrics` serves `/metrics`, `program` computes the realization, spending and price
//! figures it publishes for the dashboards, and `store` keeps alerts and the outlet
//! registry in PostgreSQL for the district drill-down; `notify` tells each district's
//! Tikor about its alerts; `report` writes the monthly reconciliation a district owes
//! the ministry; `chart` draws the PNGs both use; `sim` makes simulated districts; `demo` runs it all
//! in-process; `pseudonym` makes the keyed card references everything a person reads
//! uses; `text` the duration and hex forms every part shares; `eval` scores alerts
//! against the anomalies a simulation injected;
//! `lint`, `fixtures` and `backtest` are the rule author's tools (`pantau rules ...`).

pub mod alert;
pub mod backpressure;
pub mod backtest;
pub mod bench;
pub mod chart;
pub mod checkpoint;
pub mod config_file;
pub mod decode;
pub mod demo;
pub mod detect;
pub mod dlq;
pub mod engine;
pub mod eval;
pub mod feed;
pub mod fixtures;
pub mod health;
pub mod kafka;
pub mod lint;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod program;
pub mod pseudonym;
pub mod regions;
pub mod reload;
pub mod report;
pub mod route;
pub mod rules;
pub mod sim;
pub mod sink;
pub mod slot_table;
pub mod source;
pub mod store;
pub mod suppress;
pub mod tables;
pub mod text;
pub mod udf;
pub mod watermark;
pub mod window;
