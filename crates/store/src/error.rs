//! What can fail in the alert store, and what the caller should do about it. The
//! variants follow who has to act:
//!
//! - the connection string, its TLS settings and the card-reference key are set-up: a
//!   string pantau cannot read, a CA file that cannot be read or holds no certificate, a
//!   missing key stop until someone fixes them;
//! - everything PostgreSQL itself answers (connecting, creating the schema, writing) is
//!   decided by [`postgres_recovery`], the one place that reads SQLSTATEs: the server
//!   away, shutting down or busy is retried; a refused password, a missing privilege or
//!   database, a certificate that does not verify stop; a value the database refuses
//!   belongs to one record, which [`Store::write`](crate::Store::write) leaves out;
//! - the files `pantau store load` reads follow their disk ([`io_recovery`]), and one of
//!   their lines that is not a record is a dead letter: listed, never a reason to stop;
//! - Kafka (the follower's consumer) answers for itself.

use std::path::PathBuf;

use pantau_core::error::{io_recovery, Recoverable, Recovery};
use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key card references are made with is not set: Stop, until someone sets it.
    #[error(transparent)]
    MissingKey(#[from] pantau_core::pseudonym::MissingKey),
    /// The connection to the store could not be made: whatever stood in the way decides.
    #[error("cannot connect to PostgreSQL (--postgres)")]
    Connect {
        #[source]
        source: Box<Error>,
    },
    /// A connection string pantau cannot use (an unknown `sslmode`, a client
    /// certificate, a value without its quote); the text says what. Stop: it reads the
    /// same until someone changes it.
    #[error("{0}")]
    ConnectionString(String),
    /// A percent-encoded part of a URL that is not UTF-8: Stop, as the string is wrong.
    #[error("the connection string's {key} is not UTF-8")]
    NotUtf8 {
        key: String,
        #[source]
        source: std::str::Utf8Error,
    },
    /// tokio-postgres refused the connection string: Stop, as the string is wrong.
    #[error("cannot read the PostgreSQL connection string")]
    UnreadableConnectionString {
        #[source]
        source: tokio_postgres::Error,
    },
    /// `sslrootcert` names a file that cannot be read: Stop, a certificate pantau cannot
    /// read cannot verify the server on a second try either.
    #[error("cannot read sslrootcert {}", path.display())]
    RootCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `sslrootcert` is not a PEM certificate (a damaged one, or none at all): Stop,
    /// the file has to change.
    #[error("sslrootcert {} holds no PEM certificate", path.display())]
    RootCertPem {
        path: PathBuf,
        #[source]
        source: Option<native_tls::Error>,
    },
    /// The system's TLS library could not make a connector of the settings: Stop.
    #[error("cannot set up TLS for PostgreSQL")]
    TlsSetup {
        #[source]
        source: native_tls::Error,
    },
    /// PostgreSQL (or the way to it) failed a connection, a transaction's begin or
    /// commit: [`postgres_recovery`] decides.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// A step of putting the schema and the region names in place (`step` is the
    /// message): [`postgres_recovery`] decides, except that no record is to blame for a
    /// value refused there (pantau's own names, its own SQL): Stop.
    #[error("{step}")]
    Schema {
        step: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// Writing alerts or registry entries (`what` is the message): [`postgres_recovery`]
    /// decides, a refused value being the record's (dead letter).
    #[error("{what}")]
    Write {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A file given to `pantau store load` that cannot be read: its disk decides.
    #[error("reading {}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of such a file that is not an alert or a registry entry. Never returned:
    /// `load` lists it among its problems and stores the rest. Dead letter: the lines
    /// after it may be fine.
    #[error("{}:{line}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        #[source]
        source: Box<pantau_kafka::error::Error>,
    },
    /// The follower of `pantau.alerts` and `bpnt.outlets` failed: Kafka's error decides.
    #[error(transparent)]
    Kafka(Box<pantau_kafka::error::Error>),
}

impl From<pantau_kafka::error::Error> for Error {
    fn from(e: pantau_kafka::error::Error) -> Error {
        Error::Kafka(Box::new(e))
    }
}

impl Error {
    /// PostgreSQL's error under a failed write, if that is what failed.
    pub(crate) fn postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Error::Postgres(e) | Error::Write { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

impl Recoverable for Error {
    fn recovery(&self) -> Recovery {
        match self {
            Error::MissingKey(_)
            | Error::ConnectionString(_)
            | Error::NotUtf8 { .. }
            | Error::UnreadableConnectionString { .. }
            | Error::RootCert { .. }
            | Error::RootCertPem { .. }
            | Error::TlsSetup { .. } => Recovery::Stop,
            Error::Connect { source } => source.recovery(),
            Error::Postgres(e) | Error::Write { source: e, .. } => postgres_recovery(e),
            Error::Schema { source, .. } => match postgres_recovery(source) {
                Recovery::DeadLetter => Recovery::Stop,
                other => other,
            },
            Error::ReadFile { source, .. } => io_recovery(source),
            Error::Line { .. } => Recovery::DeadLetter,
            Error::Kafka(e) => e.recovery(),
        }
    }
}

/// What an error of tokio-postgres asks for. The connection closed is retried. An error
/// PostgreSQL raised is decided by its SQLSTATE ([`sqlstate_recovery`]). Without one,
/// an I/O error anywhere under it (a refused or reset connection, a timeout, a name that
/// does not resolve, even mid-handshake) is the network or the server, retried; what is
/// left is set-up the client refused before asking the server anything (a certificate
/// that does not verify, a server without the TLS required, an authentication method or
/// a setting it cannot use) or a value pantau cannot encode: Stop.
pub(crate) fn postgres_recovery(e: &tokio_postgres::Error) -> Recovery {
    if e.is_closed() {
        return Recovery::Retry;
    }
    if let Some(code) = e.code() {
        return sqlstate_recovery(code);
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        // OpenSSL 3 reports a server that hung up mid-handshake (a restart) as an SSL
        // error with no I/O error under it.
        let text = c.to_string();
        if c.is::<std::io::Error>() || text.contains("unexpected eof") {
            return Recovery::Retry;
        }
        cause = c.source();
    }
    Recovery::Stop
}

/// By SQLSTATE: a value refused (data exceptions 22, integrity violations 23, program
/// limits 54) is one record's; the server away, shutting down, short of resources, or a
/// transaction that lost a race (serialization failure, deadlock, a lock or statement
/// timeout, a standby not yet writable) passes; anything else (a refused password 28, a
/// missing privilege or table 42, an unknown database 3D, a dropped database, an
/// internal error) needs a person.
fn sqlstate_recovery(code: &SqlState) -> Recovery {
    let code = code.code();
    match code.get(..2).unwrap_or(code) {
        "22" | "23" | "54" => Recovery::DeadLetter,
        // Connection exceptions, transaction rollbacks, insufficient resources.
        "08" | "40" | "53" => Recovery::Retry,
        // Operator intervention: shutting down, restarting, not yet accepting
        // connections, a statement cancelled by its timeout; not a dropped database.
        "57" if code != SqlState::DATABASE_DROPPED.code() => Recovery::Retry,
        _ => match code {
            // System error, I/O error on the server; lock_not_available, object_in_use;
            // read_only_sql_transaction (a standby during failover);
            // idle_in_transaction_session_timeout.
            "58000" | "58030" | "55P03" | "55006" | "25006" | "25P03" => Recovery::Retry,
            _ => Recovery::Stop,
        },
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use pantau_core::error::chain;

    #[test]
    fn sqlstates_split_into_refused_values_passing_states_and_set_up() {
        for (code, wanted) in [
            (SqlState::STRING_DATA_RIGHT_TRUNCATION, Recovery::DeadLetter),
            (SqlState::CHARACTER_NOT_IN_REPERTOIRE, Recovery::DeadLetter),
            (SqlState::NOT_NULL_VIOLATION, Recovery::DeadLetter),
            (SqlState::PROGRAM_LIMIT_EXCEEDED, Recovery::DeadLetter),
            (SqlState::CONNECTION_FAILURE, Recovery::Retry),
            (
                SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                Recovery::Retry,
            ),
            (SqlState::ADMIN_SHUTDOWN, Recovery::Retry),
            (SqlState::CRASH_SHUTDOWN, Recovery::Retry),
            (SqlState::CANNOT_CONNECT_NOW, Recovery::Retry),
            (SqlState::QUERY_CANCELED, Recovery::Retry),
            (SqlState::T_R_SERIALIZATION_FAILURE, Recovery::Retry),
            (SqlState::T_R_DEADLOCK_DETECTED, Recovery::Retry),
            (SqlState::LOCK_NOT_AVAILABLE, Recovery::Retry),
            (SqlState::DISK_FULL, Recovery::Retry),
            (SqlState::TOO_MANY_CONNECTIONS, Recovery::Retry),
            (SqlState::READ_ONLY_SQL_TRANSACTION, Recovery::Retry),
            (SqlState::INVALID_PASSWORD, Recovery::Stop),
            (
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
                Recovery::Stop,
            ),
            (SqlState::INSUFFICIENT_PRIVILEGE, Recovery::Stop),
            (SqlState::INVALID_CATALOG_NAME, Recovery::Stop),
            (SqlState::UNDEFINED_TABLE, Recovery::Stop),
            (SqlState::DATABASE_DROPPED, Recovery::Stop),
            (SqlState::INTERNAL_ERROR, Recovery::Stop),
        ] {
            assert_eq!(sqlstate_recovery(&code), wanted, "{}", code.code());
        }
    }

    /// What [`crate::Store::write`] leaves out is exactly what is dead-lettered here.
    #[test]
    fn only_data_integrity_and_limit_errors_are_a_records_fault() {
        for code in [
            "22001", "22021", "22P02", "23502", "23505", "23514", "54000", "54001", "08006",
            "40001", "42501", "53100", "57P01", "XX000",
        ] {
            let refused = ["22", "23", "54"].iter().any(|c| code.starts_with(c));
            assert_eq!(
                sqlstate_recovery(&SqlState::from_code(code)) == Recovery::DeadLetter,
                refused,
                "{code}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_retried() {
        // A port that was free a moment ago: nothing listens there.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let config: tokio_postgres::Config = format!("host=127.0.0.1 port={port} user=pantau")
            .parse()
            .unwrap();
        let Err(e) = config.connect(tokio_postgres::NoTls).await else {
            panic!("connected to a port nobody listens on");
        };
        assert_eq!(postgres_recovery(&e), Recovery::Retry, "{}", chain(&e));
        let connect = Error::Connect {
            source: Box::new(Error::Postgres(e)),
        };
        assert_eq!(connect.recovery(), Recovery::Retry);
        assert!(
            chain(&connect).starts_with(
                "cannot connect to PostgreSQL (--postgres): error connecting to server: "
            ),
            "{}",
            chain(&connect)
        );
    }

    #[tokio::test]
    async fn a_server_without_the_tls_required_stops_rather_than_retries() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Answers the client's SSLRequest with 'N': no TLS here.
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            socket.read_exact(&mut request).await.unwrap();
            socket.write_all(b"N").await.unwrap();
            let _ = socket.read(&mut request).await;
        });
        let Err(e) = crate::tls::connect(&format!(
            "host=127.0.0.1 port={port} user=pantau sslmode=require"
        ))
        .await
        else {
            panic!("connected without TLS although it was required");
        };
        assert_eq!(e.recovery(), Recovery::Stop, "{}", chain(&e));
        assert_eq!(
            chain(&e),
            "error performing TLS handshake: server does not support TLS"
        );
    }

    #[test]
    fn a_root_certificate_that_cannot_be_read_stops() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ca.pem");
        let conn = format!(
            "host=localhost sslmode=verify-full sslrootcert='{}'",
            missing.display()
        );
        let target = crate::tls::Target::parse(&conn).unwrap();
        let e = target.connector().map(|_| ()).unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        assert_eq!(
            e.to_string(),
            format!("cannot read sslrootcert {}", missing.display())
        );
        std::fs::write(
            &missing,
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = target.connector().map(|_| ()).unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
    }

    /// It used to trust no CA at all and fail every connection later with "certificate
    /// verify failed", which points at the server instead of at the file.
    #[test]
    fn a_root_certificate_file_without_any_certificate_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let conn = format!(
            "host=localhost sslmode=require sslrootcert='{}'",
            path.display()
        );
        let target = crate::tls::Target::parse(&conn).unwrap();
        let e = target.connector().map(|_| ()).unwrap_err();
        assert_eq!(e.recovery(), Recovery::Stop);
        assert_eq!(
            e.to_string(),
            format!("sslrootcert {} holds no PEM certificate", path.display())
        );
    }

    #[test]
    fn an_unreadable_line_is_a_dead_letter_named_by_its_place() {
        let source = pantau_kafka::follow::parse_followed("pantau.alerts", b"{not json")
            .map(|_| ())
            .unwrap_err();
        let line = Error::Line {
            path: "/data/alerts.jsonl".into(),
            line: 3,
            source: Box::new(source),
        };
        assert_eq!(line.recovery(), Recovery::DeadLetter);
        assert!(
            chain(&line).starts_with("/data/alerts.jsonl:3: key must be a string"),
            "{}",
            chain(&line)
        );
    }

    /// The error a server gives that refuses the connection at start with SQLSTATE
    /// `code` (no PostgreSQL needed: one ErrorResponse is all it says).
    async fn refused_at_start(code: &str, message: &str) -> tokio_postgres::Error {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut fields = Vec::new();
        for (kind, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', code),
            (b'M', message),
        ] {
            fields.push(kind);
            fields.extend(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut response = vec![b'E'];
        response.extend((fields.len() as i32 + 4).to_be_bytes());
        response.extend(fields);
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let length = socket.read_i32().await.unwrap();
            let mut startup = vec![0u8; length as usize - 4];
            socket.read_exact(&mut startup).await.unwrap();
            socket.write_all(&response).await.unwrap();
        });
        let config: tokio_postgres::Config =
            format!("host=127.0.0.1 port={port} user=pantau sslmode=disable")
                .parse()
                .unwrap();
        match config.connect(tokio_postgres::NoTls).await {
            Ok(_) => panic!("the server let pantau in"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn a_refused_credential_stops_rather_than_retries() {
        let e = refused_at_start(
            "28P01",
            "password authentication failed for user \"pantau\"",
        )
        .await;
        assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD));
        assert_eq!(postgres_recovery(&e), Recovery::Stop);
        let e = Error::Connect {
            source: Box::new(Error::Postgres(e)),
        };
        assert_eq!(e.recovery(), Recovery::Stop);
        assert_eq!(
            chain(&e),
            "cannot connect to PostgreSQL (--postgres): db error: FATAL: password authentication failed for user \"pantau\""
        );
        for (code, wanted) in [
            ("42501", Recovery::Stop),
            ("3D000", Recovery::Stop),
            ("57P01", Recovery::Retry),
            ("57P03", Recovery::Retry),
            ("53300", Recovery::Retry),
        ] {
            let e = refused_at_start(code, "refused").await;
            assert_eq!(postgres_recovery(&e), wanted, "{code}");
        }
    }

    #[tokio::test]
    async fn a_refused_value_is_a_dead_letter_in_a_record_and_a_stop_in_the_schema() {
        let refused =
            || refused_at_start("22021", "invalid byte sequence for encoding \"UTF8\": 0x00");
        let write = Error::Write {
            what: "writing alerts",
            source: refused().await,
        };
        assert_eq!(write.recovery(), Recovery::DeadLetter);
        assert_eq!(
            write.postgres().and_then(tokio_postgres::Error::code),
            Some(&SqlState::CHARACTER_NOT_IN_REPERTOIRE)
        );
        let schema = Error::Schema {
            step: "writing the regency names",
            source: refused().await,
        };
        assert_eq!(schema.recovery(), Recovery::Stop);
        let failover = Error::Schema {
            step: "creating the store's tables",
            source: refused_at_start("40001", "could not serialize access").await,
        };
        assert_eq!(failover.recovery(), Recovery::Retry);
    }

    #[test]
    fn a_missing_key_or_file_to_load_stops() {
        let missing = Error::MissingKey(pantau_core::pseudonym::MissingKey(
            "PANTAU_REFERENCE_KEY".into(),
        ));
        assert_eq!(missing.recovery(), Recovery::Stop);
        let unreadable = Error::ReadFile {
            path: "/nowhere/alerts.jsonl".into(),
            source: std::io::ErrorKind::NotFound.into(),
        };
        assert_eq!(unreadable.recovery(), Recovery::Stop);
        assert_eq!(unreadable.to_string(), "reading /nowhere/alerts.jsonl");
    }
}
