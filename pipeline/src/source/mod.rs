//! Where records come from: a history folder (`files`) or a Kafka consumer group
//! (`kafka`). Sources touch the disk or the network; everything after them is pure.

pub mod files;
pub mod kafka;
