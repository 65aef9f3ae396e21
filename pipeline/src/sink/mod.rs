//! Where alerts and dead letters go: JSON-lines files beside a replay (`files`) or the
//! `pantau.alerts` and `pantau.dlq` topics (`kafka`).

pub mod files;
pub mod kafka;
