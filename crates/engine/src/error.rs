//! What can fail in the engine, and what the caller should do about it. The variants are
//! split by who has to act:
//!
//! - the rules folder (its rules, views and reference tables) and the snooze file are
//!   set-up: a rule or table that cannot be read, parsed or linted stops the command
//!   ([`Recovery::Stop`]) until someone fixes it; a snooze file follows what its disk
//!   says ([`io_recovery`]);
//! - a checkpoint written to disk follows its disk too; a checkpoint read back is either
//!   restored or [`Unusable`](crate::checkpoint::Unusable) (which the run loop passes
//!   over for an older one; for a caller that asked for that exact one, it is a stop);
//! - an internal-topic record that does not decode is one bad input: skipped and counted;
//! - what goes wrong on the engine's own batches (an Arrow operation, a built-in rollup
//!   query, a table without its columns) is a bug: stop.
//!
//! Two things are deliberately not errors. A record that fails decoding is a dead letter
//! with its [`Reason`](crate::decode::Reason), returned beside everything valid. A rule
//! (or view, or figure query) that fails over one window is [`RuleError`]: counted under
//! its [`RuleFailure`] and logged, while the other rules and the pipeline go on.

use std::path::PathBuf;
use std::time::Duration;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use pantau_core::error::{io_recovery, Recoverable, Recovery};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rules folder (or its `views/`) cannot be listed: a wrong `--rules`; stop.
    #[error("cannot read rules folder {}", dir.display())]
    RulesFolder {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A rule, view or reference table file cannot be read: a rule that is not there does
    /// not run; stop.
    #[error("cannot read {}", path.display())]
    RuleFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A rule or view file's metadata is wrong (the line when known): its author must fix
    /// it; stop.
    #[error("{}{}: {problem}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    RuleHeader {
        path: PathBuf,
        line: Option<usize>,
        problem: String,
    },
    /// A rule's `-- window:` does not parse: as a bad header; stop.
    #[error("{}: bad window", path.display())]
    RuleWindow {
        path: PathBuf,
        #[source]
        source: BadWindow,
    },
    /// Two rule files share an id: which one runs would be a guess; stop.
    #[error("rule id {id:?} is used by both {} and {}", first.display(), second.display())]
    DuplicateRule {
        id: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// Two view files share a name: as two rules with one id; stop.
    #[error("view {name:?} is defined by both {} and {}", first.display(), second.display())]
    DuplicateView {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// A CSV in the rules folder's `tables/` is not a reference table pantau declares: a
    /// table read with an inferred schema would change the rules' contract unseen; stop.
    #[error("{}: no reference table is called {name:?} (known: {known})", path.display())]
    UnknownReferenceTable {
        path: PathBuf,
        name: String,
        known: String,
    },
    /// A reference table file is not CSV with its table's header (a wrong column, a row
    /// with too many or too few fields): as a bad rule file; stop.
    #[error("{}: not the CSV of reference table {table}", path.display())]
    ReferenceCsv {
        path: PathBuf,
        table: &'static str,
        #[source]
        source: ArrowError,
    },
    /// A value of a reference table file does not fit its declared column: rules would
    /// compare prices against a wrong or missing figure; its author must fix it; stop.
    #[error("{}:{line}: column {column}: {value:?} {problem}", path.display())]
    ReferenceValue {
        path: PathBuf,
        line: usize,
        column: String,
        value: String,
        problem: String,
    },
    /// The snooze file cannot be read: missing or forbidden stops, a passing disk fault
    /// may be retried.
    #[error("cannot read snooze file {}", path.display())]
    SnoozeFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record of the internal topic is not what the router writes: only pantau writes
    /// that topic, so it is one bad record (a bug or tampering); skip and count it.
    #[error("{problem}")]
    InternalRecord {
        problem: String,
        #[source]
        source: Option<std::num::ParseIntError>,
    },
    /// An internal record's header is not UTF-8: as any bad internal record; skip it.
    #[error("internal header is not UTF-8")]
    InternalHeaderNotUtf8(#[source] std::str::Utf8Error),
    /// A checkpoint file or folder cannot be created, written, synced or read: the disk
    /// decides (a full disk may pass, a forbidden folder will not).
    #[error("{action} {}", path.display())]
    CheckpointFile {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint's Arrow file cannot be written or read: its I/O cause decides as a
    /// file's does; anything else Arrow refuses will be refused again; stop.
    #[error("{action} {}", path.display())]
    CheckpointArrow {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: ArrowError,
    },
    /// A written checkpoint cannot be renamed into place: the disk decides.
    #[error("publishing checkpoint {name} of partition {partition}")]
    PublishCheckpoint {
        name: String,
        partition: i32,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint's manifest is not JSON of this format: it stays so; stop.
    #[error("checkpoint {} has a bad manifest", dir.display())]
    BadManifest {
        dir: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A manifest the engine built cannot be encoded: a bug; stop.
    #[error("cannot encode a checkpoint manifest")]
    EncodeManifest(#[source] serde_json::Error),
    /// A checkpoint's files disagree with its manifest or with the tables: damaged; stop.
    #[error("checkpoint {}: {problem}", dir.display())]
    CheckpointInconsistent { dir: PathBuf, problem: String },
    /// A checkpoint names a topic, table, bank, status or window this pantau does not
    /// know: damaged or from another version; stop.
    #[error("unknown {what} {value:?} in a checkpoint")]
    UnknownInCheckpoint { what: &'static str, value: String },
    /// A built-in rollup query failed: not a rule's fault, so the same day would fail
    /// again; stop.
    #[error("building rollup {table}")]
    RollupQuery {
        table: &'static str,
        #[source]
        source: DataFusionError,
    },
    /// A rollup's result does not fit its declared table: a bug; stop.
    #[error("rollup {table}")]
    Rollup {
        table: &'static str,
        #[source]
        source: Box<Error>,
    },
    /// An Arrow operation on the engine's own batches failed: a bug; stop.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
    /// Something the engine relies on of its own data does not hold (a batch without
    /// its columns, a stream sent to the wrong decoder): a bug; stop.
    #[error("{0}")]
    Invariant(String),
}

impl Recoverable for Error {
    fn recovery(&self) -> Recovery {
        match self {
            Error::SnoozeFile { source, .. }
            | Error::CheckpointFile { source, .. }
            | Error::PublishCheckpoint { source, .. } => io_recovery(source),
            Error::CheckpointArrow { source, .. } => match source {
                ArrowError::IoError(_, io) => io_recovery(io),
                _ => Recovery::Stop,
            },
            Error::InternalRecord { .. } | Error::InternalHeaderNotUtf8(_) => Recovery::DeadLetter,
            Error::RulesFolder { .. }
            | Error::RuleFile { .. }
            | Error::RuleHeader { .. }
            | Error::RuleWindow { .. }
            | Error::DuplicateRule { .. }
            | Error::DuplicateView { .. }
            | Error::UnknownReferenceTable { .. }
            | Error::ReferenceCsv { .. }
            | Error::ReferenceValue { .. }
            | Error::BadManifest { .. }
            | Error::EncodeManifest(_)
            | Error::CheckpointInconsistent { .. }
            | Error::UnknownInCheckpoint { .. }
            | Error::RollupQuery { .. }
            | Error::Rollup { .. }
            | Error::Arrow(_)
            | Error::Invariant(_) => Recovery::Stop,
        }
    }
}

impl Error {
    /// A rule or view file's metadata problem, at a line of it when known.
    pub(crate) fn header(
        path: &std::path::Path,
        line: Option<usize>,
        problem: impl Into<String>,
    ) -> Error {
        Error::RuleHeader {
            path: path.to_path_buf(),
            line,
            problem: problem.into(),
        }
    }

    /// For `map_err`: a checkpoint file that `action` failed on.
    pub(crate) fn checkpoint_file(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::CheckpointFile {
            action,
            path,
            source,
        }
    }

    /// For `map_err`: a checkpoint Arrow file that `action` failed on.
    pub(crate) fn checkpoint_arrow(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(ArrowError) -> Error {
        let path = path.into();
        move |source| Error::CheckpointArrow {
            action,
            path,
            source,
        }
    }

    pub(crate) fn internal_record(
        problem: impl Into<String>,
    ) -> impl FnOnce(std::num::ParseIntError) -> Error {
        let problem = problem.into();
        move |source| Error::InternalRecord {
            problem,
            source: Some(source),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A `-- window:` text that does not parse; the message says what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BadWindow {
    message: String,
    #[source]
    source: Option<std::num::ParseIntError>,
}

impl BadWindow {
    pub(crate) fn new(message: impl Into<String>) -> BadWindow {
        BadWindow {
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn number(
        message: impl Into<String>,
    ) -> impl FnOnce(std::num::ParseIntError) -> BadWindow {
        let message = message.into();
        move |source| BadWindow {
            message,
            source: Some(source),
        }
    }
}

/// A rule returned something that cannot become an alert.
#[derive(Debug, thiserror::Error)]
#[error("rule {rule_id}: result row {row} {problem}")]
pub(crate) struct RuleOutputError {
    pub rule_id: String,
    pub row: usize,
    pub problem: String,
}

/// Why one evaluation (a rule, a view, a figure query) was skipped for one window. It is
/// never returned: the engine counts it under its `RuleFailure`, logs it, and the
/// other rules and the pipeline go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RuleError {
    /// The SQL does not plan or fails to run over this window.
    #[error(transparent)]
    Query(#[from] DataFusionError),
    /// The result has a column the rows of an alert cannot carry.
    #[error(transparent)]
    Rows(#[from] ArrowError),
    #[error(transparent)]
    RowsJson(#[from] serde_json::Error),
    /// A result row lacks what an alert needs.
    #[error(transparent)]
    Output(#[from] RuleOutputError),
    #[error("ran longer than its budget of {0:?}")]
    OverBudget(Duration),
}

impl Recoverable for RuleError {
    /// The rule is skipped for this window and counted: one bad input, not a stop.
    fn recovery(&self) -> Recovery {
        Recovery::DeadLetter
    }
}

pub(crate) use pantau_core::error::chain;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::RuleFailure;
    use std::io::ErrorKind;

    #[test]
    fn a_rule_file_that_does_not_parse_stops() {
        let e = crate::rules::Rule::parse(std::path::Path::new("x.sql"), "-- id: a\nSELECT 1")
            .unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        assert_eq!(
            e.to_string(),
            "x.sql: missing metadata line `-- severity: ...`"
        );
    }

    #[test]
    fn a_missing_rules_folder_stops() {
        let e = crate::rules::load_dir(std::path::Path::new("/nowhere/rules")).unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        let text = chain(&e);
        assert!(
            text.starts_with("cannot read rules folder /nowhere/rules: No such file"),
            "{text}"
        );
    }

    #[test]
    fn a_checkpoint_on_a_full_disk_retries_and_on_a_forbidden_one_stops() {
        let full = Error::checkpoint_file("creating", "/state/0")(ErrorKind::StorageFull.into());
        assert_eq!(full.recovery(), Recovery::Retry);
        assert_eq!(full.to_string(), "creating /state/0");
        let forbidden =
            Error::checkpoint_file("creating", "/state/0")(ErrorKind::PermissionDenied.into());
        assert_eq!(forbidden.recovery(), Recovery::Stop);
        let arrow_full = Error::checkpoint_arrow("writing", "/state/0/seen.arrow")(
            ArrowError::IoError("write".into(), ErrorKind::StorageFull.into()),
        );
        assert_eq!(arrow_full.recovery(), Recovery::Retry);
        let arrow_bad = Error::checkpoint_arrow("reading", "/state/0/seen.arrow")(
            ArrowError::ParseError("not an Arrow file".into()),
        );
        assert_eq!(arrow_bad.recovery(), Recovery::Stop);
    }

    #[test]
    fn a_bad_internal_record_is_skipped_not_a_stop() {
        let e = crate::route::Envelope::decode(b"R t x 2 1\n{}").unwrap_err();
        assert_eq!(e.recovery(), Recovery::DeadLetter);
        assert_eq!(
            chain(&e),
            "bad source partition: invalid digit found in string"
        );
    }

    #[test]
    fn a_failing_rule_is_counted_and_skipped_while_a_failing_rollup_stops() {
        let rule = RuleError::from(DataFusionError::Plan("no such column".into()));
        assert_eq!(rule.recovery(), Recovery::DeadLetter);
        assert_eq!(RuleFailure::of(&rule), RuleFailure::Error);
        assert_eq!(
            RuleFailure::of(&RuleError::OverBudget(Duration::from_millis(200))),
            RuleFailure::Timeout
        );
        let rollup = Error::RollupQuery {
            table: "outlet_daily",
            source: DataFusionError::Plan("no such column".into()),
        };
        assert_eq!(rollup.recovery(), Recovery::Stop);
    }
}
