//! Tikor notifications: which district's coordination team hears about an alert
//! ([`routes`]), and what it reads ([`message`]), in Bahasa Indonesia, from templates the
//! team edits under `notify/templates/`, with a picture of the evidence ([`crate::chart`]).
//!
//! [`deliver`] is the `pantau notify` consumer: a worker per channel ([`channel`]: a
//! signed webhook, the Telegram bot API, e-mail), retries with backoff, dead letters to
//! `pantau.notify.dlq`, offsets committed once every route of an alert is done. So that
//! nobody drowns, [`digest`] folds what is past a channel's hourly limit into one message
//! and sends each district a daily digest. What can fail, and whether to retry,
//! dead-letter or stop, is [`error::Error`].

pub mod channel;
pub mod chart;
pub mod deliver;
pub mod digest;
pub mod error;
pub mod message;
pub mod metrics;
pub mod routes;
