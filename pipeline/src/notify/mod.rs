//! Tikor notifications: which district's coordination team hears about an alert
//! ([`routes`]), and what it reads ([`message`]), in Bahasa Indonesia, from templates the
//! team edits under `notify/templates/`.
//!
//! [`deliver`] is the `pantau notify` consumer: a worker per channel ([`channel`]: a
//! signed webhook, the Telegram bot API), retries with backoff, dead letters to
//! `pantau.notify.dlq`, offsets committed once every route of an alert is done.

pub mod channel;
pub mod deliver;
pub mod message;
pub mod routes;
