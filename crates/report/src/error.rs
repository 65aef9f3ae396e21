//! What can stop `pantau report reconcile`, and what the caller should do about it. The
//! variants follow who has to act:
//!
//! - the files the report reads and writes (the history, the bank's totals, the output
//!   folder) follow their disk ([`io_recovery`]): a missing or forbidden file stops, a
//!   full disk or an interrupted read may pass;
//! - the input as a whole (no disbursement of the period, alerts on the topic that
//!   cannot be read): the same input gives the same answer, so stop;
//! - Kafka, the chart font and the charts, and the key of card references are judged
//!   where they fail ([`pantau_kafka::error`], [`pantau_notify::error`]).
//!
//! One line of the history or of the bank's totals that cannot be read is deliberately
//! not an error: it is named in the report's `problems` and the rest is read on.

use std::path::PathBuf;

use pantau_core::error::{io_recovery, Recoverable, Recovery};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the history or of the output (`action`: "opening", "reading",
    /// "creating", "writing"): its disk decides.
    #[error("{action} {}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bank's totals, or a CSV table of the output: its disk decides when the disk
    /// failed; a row the CSV writer refuses is a bug, stop.
    #[error("{action} {}", path.display())]
    Csv {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    /// The input has no credit of the period asked for: a wrong `--period` or input;
    /// stop.
    #[error("no disbursement names period {period}")]
    NoPeriod { period: String },
    /// A district's sum past `i64` (each record's amount is checked, so only a broken
    /// invariant gets here): stop.
    #[error("{0}")]
    Sum(String),
    /// Records of `pantau.alerts` that cannot be read: the report would miss alerts,
    /// and the same records stay unreadable; stop.
    #[error("records of {} could not be read: {}", pantau_core::model::TOPIC_ALERTS, problems.join("; "))]
    UnreadableAlerts { problems: Vec<String> },
    /// The report does not encode as JSON: a bug; stop.
    #[error("cannot encode the report as JSON")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
    /// A blocking task (`task`: "the reconciliation", "the alerts reader") ended
    /// without an answer: a panic is a bug (stop); one cancelled as the runtime stops
    /// runs again when the command does (retry).
    #[error("{task} stopped")]
    TaskStopped {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// Reading the input topics: Kafka decides.
    #[error(transparent)]
    Kafka(#[from] pantau_kafka::error::Error),
    /// The chart font, or a chart: `pantau_notify` decides.
    #[error(transparent)]
    Notify(#[from] pantau_notify::error::Error),
    /// No key to make card references with: set-up; stop.
    #[error(transparent)]
    Key(#[from] pantau_core::pseudonym::MissingKey),
}

impl Error {
    /// Wraps a failed `action` on the file at `path`.
    pub(crate) fn file(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::File {
            action,
            path,
            source,
        }
    }

    /// Wraps a failed `action` on the CSV file at `path`.
    pub(crate) fn csv(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(csv::Error) -> Error {
        let path = path.into();
        move |source| Error::Csv {
            action,
            path,
            source,
        }
    }

    /// Wraps a blocking task that ended without an answer.
    pub(crate) fn task(task: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Error {
        move |source| Error::TaskStopped { task, source }
    }
}

impl Recoverable for Error {
    fn recovery(&self) -> Recovery {
        match self {
            Error::File { source, .. } => io_recovery(source),
            Error::Csv { source, .. } => match source.kind() {
                csv::ErrorKind::Io(e) => io_recovery(e),
                _ => Recovery::Stop,
            },
            Error::NoPeriod { .. }
            | Error::Sum(_)
            | Error::UnreadableAlerts { .. }
            | Error::Encode { .. }
            | Error::Key(_) => Recovery::Stop,
            Error::TaskStopped { source, .. } => {
                if source.is_panic() {
                    Recovery::Stop
                } else {
                    Recovery::Retry
                }
            }
            Error::Kafka(e) => e.recovery(),
            Error::Notify(e) => e.recovery(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use pantau_core::error::chain;

    use super::*;

    #[test]
    fn a_missing_history_file_stops_and_a_full_output_disk_retries() {
        let missing = Error::file("opening", "/data/h/disbursements.jsonl")(
            std::io::ErrorKind::NotFound.into(),
        );
        assert_eq!(missing.recovery(), Recovery::Stop);
        assert_eq!(missing.to_string(), "opening /data/h/disbursements.jsonl");
        let full =
            Error::file("writing", "/out/reconcile.html")(std::io::ErrorKind::StorageFull.into());
        assert_eq!(full.recovery(), Recovery::Retry);
        assert!(
            chain(&full).starts_with("writing /out/reconcile.html: "),
            "{}",
            chain(&full)
        );
    }

    #[test]
    fn bank_totals_that_are_not_there_stop() {
        let source = csv::Reader::from_path("/nowhere/bank.csv").unwrap_err();
        let error = Error::csv("opening", "/nowhere/bank.csv")(source);
        assert_eq!(error.recovery(), Recovery::Stop);
        assert!(
            chain(&error).starts_with("opening /nowhere/bank.csv: "),
            "{}",
            chain(&error)
        );
    }

    #[test]
    fn a_missing_chart_font_stops_as_notify_says() {
        let error = Error::from(pantau_notify::error::Error::FontUnreadable {
            path: "/usr/share/fonts/x.ttf".into(),
            source: std::io::ErrorKind::NotFound.into(),
        });
        assert_eq!(error.recovery(), Recovery::Stop);
        assert!(
            chain(&error).starts_with("reading the chart font /usr/share/fonts/x.ttf"),
            "{}",
            chain(&error)
        );
    }
}
