//! End-to-end tests of pantau: the wire contract, replay, the Kafka path against a real
//! Kafka-protocol broker (tansu, started per test), the demo and the bench.
//!
//! One test binary on purpose: compile time is the scarce resource.

#[path = "e2e/support.rs"]
mod support;

#[path = "e2e/contract.rs"]
mod contract;
#[path = "e2e/faults.rs"]
mod faults;
#[path = "e2e/hostile.rs"]
mod hostile;
#[path = "e2e/kafka.rs"]
mod kafka;
#[path = "e2e/notify.rs"]
mod notify;
#[path = "e2e/replay.rs"]
mod replay;
#[path = "e2e/report.rs"]
mod report;
#[path = "e2e/rules.rs"]
mod rules;
#[path = "e2e/secured.rs"]
mod secured;
#[path = "e2e/stack.rs"]
mod stack;
#[path = "e2e/workflow.rs"]
mod workflow;
