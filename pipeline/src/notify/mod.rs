//! Tikor notifications: which district's coordination team hears about an alert
//! ([`routes`]), and what it reads ([`message`]), in Bahasa Indonesia, from templates the
//! team edits under `notify/templates/`.
//!
//! Delivery (the `pantau notify` consumer, its channels, retries and digests) builds on
//! these; see issue 8.

pub mod message;
pub mod routes;
