//! What a failure asks of whoever called: every library crate of pantau returns its own
//! error enum (thiserror), and each of them answers [`Recovery`] so that the caller (the
//! run loop, a consumer of a followed topic, the binary choosing its exit status) can act
//! without reading the message. This crate's own [`Error`] covers the files of a history
//! and of alerts.

use std::path::PathBuf;

/// What the caller of a failed operation should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The cause lies outside pantau and may pass (a broker restarting, a network cut, a
    /// full disk): the same call, or the same process restarted, may succeed.
    Retry,
    /// One input is bad and nothing else is wrong: route it to the dead-letter topic (or
    /// count and skip it) and go on.
    DeadLetter,
    /// pantau cannot go on as it is set up (a missing file, a refused credential, a rule
    /// that does not compile, a broken invariant): a person has to act, and restarting
    /// alone will not help.
    Stop,
}

/// An error that says what its caller should do about it.
pub trait Recoverable {
    fn recovery(&self) -> Recovery;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} {}", path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: not a valid record", path.display())]
    Record {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A history folder that is not one.
    #[error("{0}")]
    NotAHistory(String),
    #[error("cannot encode {what} as JSON")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("a shadow alert without a shadow file")]
    ShadowWithoutFile,
}

impl Error {
    pub fn file(
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
}

impl Recoverable for Error {
    fn recovery(&self) -> Recovery {
        match self {
            Error::File { source, .. } => io_recovery(source),
            Error::Record { .. }
            | Error::NotAHistory(_)
            | Error::Encode { .. }
            | Error::ShadowWithoutFile => Recovery::Stop,
        }
    }
}

/// A file that is missing, forbidden or malformed stays so until someone acts; anything
/// else on a disk or socket (a full disk, an interrupted read, a timeout) may pass.
pub fn io_recovery(e: &std::io::Error) -> Recovery {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound | PermissionDenied | InvalidInput | InvalidData | AlreadyExists | Unsupported
        | IsADirectory | NotADirectory | ReadOnlyFilesystem
        // A truncated (e.g. gzipped) file stays truncated.
        | UnexpectedEof | InvalidFilename | FileTooLarge => Recovery::Stop,
        _ => Recovery::Retry,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error and its causes on one line, "what: why: why", as a log line or a message
/// shows it (what anyhow's `{:#}` prints; a thiserror type's `{:#}` shows only the
/// first).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_stops_and_a_full_disk_retries() {
        let missing = Error::file("open", "/nowhere/x.jsonl")(std::io::ErrorKind::NotFound.into());
        assert_eq!(missing.recovery(), Recovery::Stop);
        assert_eq!(missing.to_string(), "cannot open /nowhere/x.jsonl");
        let truncated = Error::file("read", "/h/transactions.jsonl.gz")(
            std::io::ErrorKind::UnexpectedEof.into(),
        );
        assert_eq!(truncated.recovery(), Recovery::Stop);
        let full = Error::file("write", "/data/x.jsonl")(std::io::ErrorKind::StorageFull.into());
        assert_eq!(full.recovery(), Recovery::Retry);
        let cause = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(chain(&full), format!("cannot write /data/x.jsonl: {cause}"));
    }
}
