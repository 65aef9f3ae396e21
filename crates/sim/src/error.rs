//! What can go wrong in `pantau simulate` and `pantau eval`, split by who has to act. The
//! simulator's own failures are all set-up: an option out of range, options that leave
//! nothing to inject into, or an internal invariant broken; `pantau eval` adds a history
//! folder that is not one and a detection below the asked bounds. Reading and writing
//! files (the history folder, alerts, truth, dead letters, the JSON report) goes through
//! `pantau_core`'s [`Error`](pantau_core::error::Error), wrapped as it is, so that a
//! missing or malformed file stops while a full disk may be retried, exactly as for core.

use std::path::{Path, PathBuf};

use pantau_core::error::{Recoverable, Recovery};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option of `pantau simulate` out of its range; the message names the flag. The
    /// same options fail the same way until someone changes them: Stop.
    #[error("{0}")]
    InvalidConfig(String),
    /// `--malformed` asks for broken records among transactions the options did not
    /// produce: the options have to change, Stop.
    #[error("--malformed {malformed}: no transactions were simulated to place them among")]
    NothingToMalform { malformed: usize },
    /// A promise of the simulator's own code does not hold (a fixed distribution that
    /// does not build, a validated month out of range): a bug, and a rerun gives the same,
    /// Stop.
    #[error("{0}")]
    Invariant(String),
    /// `pantau eval` was pointed at a folder without `truth.jsonl`: the argument is wrong,
    /// Stop.
    #[error(
        "{} not found: DIR must be a history folder written by `pantau simulate --out DIR`",
        truth.display()
    )]
    NotAHistory { truth: PathBuf },
    /// The alerts scored below `--min-recall` or `--min-precision`: a verdict on the rules,
    /// and the same files give it again, Stop.
    #[error("detection below the bounds:\n  {}", failures.join("\n  "))]
    BelowBounds { failures: Vec<String> },
    /// A file of the history, of alerts or of the report that cannot be read, parsed or
    /// written: core decides (a missing or malformed file stops, a full disk retries).
    #[error(transparent)]
    Core(#[from] pantau_core::error::Error),
}

impl Error {
    /// `action` ("read", "write", "create" ...) on `path` failed.
    pub(crate) fn file(action: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Core(pantau_core::error::Error::File {
            action,
            path: path.to_path_buf(),
            source,
        })
    }

    /// `what` does not serialize as JSON.
    pub(crate) fn encode(what: &'static str, source: serde_json::Error) -> Error {
        Error::Core(pantau_core::error::Error::Encode { what, source })
    }

    /// Serializing `what` straight into the file at `path` failed: a failed write of the
    /// file, or a record that does not encode.
    pub(crate) fn json_to_file(what: &'static str, path: &Path, e: serde_json::Error) -> Error {
        if e.io_error_kind().is_some() {
            Error::file("write", path, e.into())
        } else {
            Error::encode(what, e)
        }
    }
}

impl Recoverable for Error {
    fn recovery(&self) -> Recovery {
        match self {
            Error::InvalidConfig(_)
            | Error::NothingToMalform { .. }
            | Error::Invariant(_)
            | Error::NotAHistory { .. }
            | Error::BelowBounds { .. } => Recovery::Stop,
            Error::Core(e) => e.recovery(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{self, EvalConfig};
    use crate::{write_folder, History, SimConfig};

    fn eval_config(dir: &Path) -> EvalConfig {
        EvalConfig {
            dir: dir.to_path_buf(),
            alerts: dir.join("alerts.jsonl"),
            json: None,
            min_recall: None,
            min_precision: None,
            show_misses: false,
            dlq: None,
        }
    }

    fn empty_history() -> History {
        History {
            transactions: Vec::new(),
            disbursements: Vec::new(),
            transfers: Vec::new(),
            outlets: Vec::new(),
            truth: Vec::new(),
            malformed: Vec::new(),
            redeliveries: Vec::new(),
        }
    }

    #[test]
    fn an_option_out_of_range_stops_with_its_message() {
        let cfg = SimConfig {
            months: 0,
            ..SimConfig::default()
        };
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        assert_eq!(e.to_string(), "--months must be between 1 and 120, got 0");
        let e = crate::simulate(&SimConfig {
            start: "2016-12".into(),
            ..SimConfig::default()
        })
        .unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        assert!(e.to_string().starts_with("--start must lie between"), "{e}");
    }

    #[test]
    fn a_folder_that_cannot_be_created_stops_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let e = write_folder(&empty_history(), &file.join("history")).unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        assert_eq!(
            e.to_string(),
            format!("cannot create folder {}", file.join("history").display())
        );
    }

    #[test]
    fn a_full_disk_while_writing_the_history_retries() {
        let e = Error::file(
            "write",
            Path::new("/data/transactions.jsonl"),
            std::io::ErrorKind::StorageFull.into(),
        );
        assert_eq!(e.recovery(), Recovery::Retry);
        assert_eq!(e.to_string(), "cannot write /data/transactions.jsonl");
    }

    #[test]
    fn a_folder_without_truth_stops() {
        let dir = tempfile::tempdir().unwrap();
        let e = eval::run(&eval_config(dir.path())).unwrap_err();
        assert!(matches!(e, Error::NotAHistory { .. }), "{e:?}");
        assert_eq!(e.recovery(), Recovery::Stop);
        assert!(e.to_string().contains("truth.jsonl not found"), "{e}");
    }

    #[test]
    fn a_missing_or_malformed_alerts_file_stops_naming_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("truth.jsonl"), "").unwrap();
        let config = eval_config(dir.path());
        let e = eval::run(&config).unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        assert_eq!(
            e.to_string(),
            format!("cannot read {}", config.alerts.display())
        );

        std::fs::write(&config.alerts, "\n{\"not\": \"an alert\"}\n").unwrap();
        let e = eval::run(&config).unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        assert_eq!(
            e.to_string(),
            format!("{}:2: not a valid record", config.alerts.display())
        );
    }

    #[test]
    fn detection_below_the_bounds_stops() {
        let e = Error::BelowBounds {
            failures: vec!["price_markup: recall 0.500 (1/2) is below 0.8".into()],
        };
        assert_eq!(e.recovery(), Recovery::Stop);
        assert_eq!(
            e.to_string(),
            "detection below the bounds:\n  price_markup: recall 0.500 (1/2) is below 0.8"
        );
    }
}
