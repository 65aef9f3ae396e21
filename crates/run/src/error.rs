//! What a replay, a run or a rule tool can fail on. Most failures come from below and
//! keep their crate's answer (a refused credential stops, a broker away retries); what
//! this crate adds is a failure to produce (nothing was committed, so a restart reads
//! those records again), a rebalance that failed inside librdkafka's callback, a
//! shutdown that ran out of time, and the rule author's fixtures.

use std::path::PathBuf;

use pantau_core::error::{io_recovery, Recoverable, Recovery};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] pantau_core::error::Error),
    #[error(transparent)]
    Engine(#[from] pantau_engine::error::Error),
    #[error(transparent)]
    Kafka(#[from] pantau_kafka::error::Error),
    /// Alerts, dead letters or forwarded records the broker did not take: nothing of
    /// theirs was committed, so they come again after a restart.
    #[error("{what}")]
    Produce {
        what: &'static str,
        #[source]
        source: Box<pantau_kafka::error::Error>,
    },
    /// A partition could not be restored or handed over inside a rebalance callback;
    /// the loop stops on it at its next turn.
    #[error("rebalance failed")]
    Rebalance(#[source] Box<Error>),
    /// The loop's worker was not where a turn or a callback expected it: a bug.
    #[error("{0}")]
    WorkerLost(&'static str),
    /// The last checkpoint, commit or acknowledgement did not finish in time; what was
    /// not committed is read again on restart.
    #[error("shutdown took longer than --shutdown-timeout")]
    ShutdownTimeout,
    #[error("cannot create a scratch folder")]
    Scratch(#[source] std::io::Error),
    #[error("replaying {}", history.display())]
    Replay {
        history: PathBuf,
        #[source]
        source: Box<Error>,
    },
    /// A fixture folder the rule author has to mend.
    #[error("{}: {problem}", path.display())]
    Fixture { path: PathBuf, problem: String },
}

impl Recoverable for Error {
    fn recovery(&self) -> Recovery {
        match self {
            Error::Core(e) => e.recovery(),
            Error::Engine(e) => e.recovery(),
            Error::Kafka(e) => e.recovery(),
            // A record the broker will never take (too large) fails again on every
            // restart: someone has to look.
            Error::Produce { source, .. } => match source.recovery() {
                Recovery::DeadLetter => Recovery::Stop,
                other => other,
            },
            Error::Rebalance(e) | Error::Replay { source: e, .. } => e.recovery(),
            Error::Scratch(e) => io_recovery(e),
            Error::ShutdownTimeout => Recovery::Retry,
            Error::WorkerLost(_) | Error::Fixture { .. } => Recovery::Stop,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebalance_failure_asks_what_its_cause_asks_and_names_it() {
        let disk_full = pantau_core::error::Error::file("write", "/state/p0")(
            std::io::ErrorKind::StorageFull.into(),
        );
        let failed = Error::Rebalance(Box::new(Error::Core(disk_full)));
        assert_eq!(failed.recovery(), Recovery::Retry);
        assert!(
            pantau_core::error::chain(&failed)
                .starts_with("rebalance failed: cannot write /state/p0"),
            "{}",
            pantau_core::error::chain(&failed)
        );
        let lost = Error::Rebalance(Box::new(Error::WorkerLost("worker lock poisoned")));
        assert_eq!(lost.recovery(), Recovery::Stop);
    }

    #[test]
    fn a_shutdown_out_of_time_retries_and_a_broken_fixture_stops() {
        assert_eq!(Error::ShutdownTimeout.recovery(), Recovery::Retry);
        let fixture = Error::Fixture {
            path: "rules/tests/x/fixture.json".into(),
            problem: "names rule \"y\", which rules does not have".into(),
        };
        assert_eq!(fixture.recovery(), Recovery::Stop);
    }
}
