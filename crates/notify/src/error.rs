//! What can fail in `pantau notify` (and in the charts `pantau report` draws), and what
//! the caller should do about it. The variants are split by who has to act:
//!
//! - the set-up read at start (the routing file, the templates, the chart font, a
//!   channel's secrets and addresses): wrong until someone edits it, so it stops;
//! - one try of a delivery: the channel's own answer decides. A timeout, a refused
//!   connection, an HTTP 5xx or 429, an SMTP 4xx may pass and are retried; an HTTP 4xx,
//!   an SMTP 5xx (a refused credential, a refused recipient) or a certificate that does
//!   not verify stays so until someone acts: stop. `deliver` itself retries every failed
//!   try up to `--max-tries` and then dead-letters the notification, as before: the
//!   recovery says what the failure was, for whoever reads it;
//! - one alert's evidence that cannot be drawn, or one message that cannot be encoded:
//!   that input's problem, dead-letter (the message goes without its chart);
//! - the state folder (`delivered.log`, the digests' tally) follows its disk
//!   ([`io_recovery`]); Kafka's failures are Kafka's to judge ([`pantau_kafka::error`]).
//!
//! An alert on `pantau.alerts` that cannot be read is deliberately not an error here:
//! the follower counts and logs it, and the notifier passes over it, committing its
//! offset (what [`Recovery::DeadLetter`] asks for).

use std::path::PathBuf;

use pantau_core::error::{io_recovery, Recoverable, Recovery};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The routing file or a template that cannot be read: read once at start, it
    /// stays missing until someone puts it there; stop.
    #[error("reading {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A routing file that is not valid: someone must edit it; stop.
    #[error("routing file {}", path.display())]
    RoutingFile {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
    /// Routing file text that is not TOML, or not of the routing file's shape: stop.
    #[error(transparent)]
    RoutesToml(toml_edit::de::Error),
    /// Every problem of a routing file, each naming its route or channel: stop.
    #[error("{}", problems.join("; "))]
    Routes { problems: Vec<String> },
    /// A `categories.toml` of the templates that does not parse: stop.
    #[error("{origin}/categories.toml")]
    Categories {
        origin: String,
        #[source]
        source: toml_edit::de::Error,
    },
    /// A template with a placeholder the notifier cannot fill: its author must fix it;
    /// stop.
    #[error("{origin}/{file}: unknown placeholders {unknown:?}; known: {}", known.join(", "))]
    UnknownPlaceholders {
        origin: String,
        file: &'static str,
        unknown: Vec<String>,
        known: &'static [&'static str],
    },
    /// The chart font cannot be read: like the routing file, a set-up file; stop.
    #[error(
        "reading the chart font {} (Debian: fonts-dejavu-core; or pass --chart-font)",
        path.display()
    )]
    FontUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--chart-font` names a file that is not a font: stop.
    #[error("{} is not a TrueType font", path.display())]
    NotAFont { path: PathBuf },
    /// A channel's secret is not in the environment: set-up; stop.
    #[error("channel {channel:?}: environment variable {env} is not set")]
    SecretUnset {
        channel: String,
        env: String,
        #[source]
        source: std::env::VarError,
    },
    /// An e-mail channel without `[smtp]` (the routing file's check refuses it first):
    /// stop.
    #[error("channel {channel:?}: no [smtp] section")]
    NoSmtp { channel: String },
    /// An address of an e-mail channel (`from` or a recipient) that is not one: stop.
    #[error("channel {channel:?}: {address:?} is not an e-mail address")]
    Address {
        channel: String,
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    /// TLS towards the SMTP host cannot be set up: stop.
    #[error("channel {channel:?}: TLS for {host}")]
    SmtpTls {
        channel: String,
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// One HTTP try (a webhook, the Telegram API) failed: [`http_recovery`] reads the
    /// answer (5xx, 429, timeouts, refused connections retry; other 4xx stop).
    #[error(transparent)]
    Http(Box<ureq::Error>),
    /// The Telegram API answered, but not `ok`: a request it will refuse again (a
    /// wrong `base_url`, a chat the bot is not in); stop.
    #[error("the Telegram API did not accept {method}: {answer}")]
    TelegramRefused { method: String, answer: String },
    /// The mail server did not take a message: [`smtp_recovery`] reads its answer
    /// (4xx and network failures retry; 5xx, a refused credential, TLS stop).
    #[error("the mail server did not take the message")]
    MailRefused {
        #[source]
        source: Box<lettre::transport::smtp::Error>,
    },
    /// A mail that cannot be composed from the channel's addresses: every message
    /// would fail alike; stop.
    #[error(transparent)]
    Mail(lettre::error::Error),
    /// A blocking task (`task`: "the HTTP task", "the SMTP task", "the registry reader")
    /// ended without an answer: a panic is a bug (stop); one cancelled as the runtime
    /// stops runs again after a restart (retry).
    #[error("{task} stopped")]
    TaskStopped {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// A message, or a state line, that does not encode as JSON: that one input's
    /// problem; dead-letter.
    #[error("cannot encode {what} as JSON")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// An alert's `first_day` that is not a date: that alert's evidence is bad;
    /// dead-letter (its message goes without a chart).
    #[error("evidence first_day {first_day:?} is not a date")]
    EvidenceDate {
        first_day: String,
        #[source]
        source: chrono::ParseError,
    },
    /// An alert's evidence series that cannot be drawn (empty, of different lengths):
    /// as above, dead-letter.
    #[error("{0}")]
    Evidence(String),
    /// A realization chart asked for with no days: the report's own invariant; stop.
    #[error("no days to draw for {regency_name}")]
    NoDays { regency_name: String },
    /// plotters refused a chart pantau laid out: a bug, and the same data fails the
    /// same way; stop.
    #[error("drawing the chart")]
    Draw {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The drawn chart does not encode as PNG: as above, stop.
    #[error("encoding the chart as PNG")]
    Png {
        #[source]
        source: png::EncodingError,
    },
    /// A file of the state folder (`action`: "creating", "reading", "opening",
    /// "writing", "replacing") failed: its disk decides ([`io_recovery`]: a full disk
    /// retries, a forbidden folder stops).
    #[error("{action} {}", path.display())]
    State {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A worker panicked while recording a delivery: a bug; stop.
    #[error("delivered log poisoned")]
    LogPoisoned,
    /// Prometheus did not answer a query for the daily digest's realization.
    #[error("querying {metric} from {url}")]
    PrometheusQuery {
        metric: &'static str,
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    /// Prometheus' answer broke off while read.
    #[error("reading Prometheus' answer for {metric}")]
    PrometheusAnswer {
        metric: &'static str,
        #[source]
        source: Box<ureq::Error>,
    },
    /// `prometheus_url` answered something that is not JSON: not a Prometheus; stop.
    #[error("Prometheus' answer for {metric} is not JSON")]
    PrometheusNotJson {
        metric: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Prometheus answered without a result: not the query API; stop.
    #[error("Prometheus answered {metric} without a result: {answer}")]
    PrometheusNoResult {
        metric: &'static str,
        answer: String,
    },
    /// `pantau.notify.dlq` could not be made sure of: Kafka decides.
    #[error("creating pantau.notify.dlq")]
    DlqTopic {
        #[source]
        source: pantau_kafka::error::Error,
    },
    /// Reading or writing Kafka: Kafka decides.
    #[error(transparent)]
    Kafka(#[from] pantau_kafka::error::Error),
    /// No key to make card references with: set-up; stop.
    #[error(transparent)]
    Key(#[from] pantau_core::pseudonym::MissingKey),
    /// SIGTERM cannot be listened for: the notifier could not stop cleanly; stop.
    #[error("cannot listen for SIGTERM")]
    Signal {
        #[source]
        source: std::io::Error,
    },
    /// A channel's worker ended while alerts still come: it panicked, a bug; stop.
    #[error("the worker of channel {channel} stopped")]
    WorkerStopped { channel: String },
}

impl Error {
    /// Wraps a failure of a state file's `action` on `path`.
    pub(crate) fn state(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::State {
            action,
            path,
            source,
        }
    }

    /// Wraps a blocking task that ended without an answer.
    pub(crate) fn task(task: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Error {
        move |source| Error::TaskStopped { task, source }
    }

    /// Wraps `what` that does not encode as JSON.
    pub(crate) fn encode(what: &'static str) -> impl FnOnce(serde_json::Error) -> Error {
        move |source| Error::Encode { what, source }
    }

    pub(crate) fn http(source: ureq::Error) -> Error {
        Error::Http(Box::new(source))
    }
}

impl Recoverable for Error {
    fn recovery(&self) -> Recovery {
        match self {
            Error::Unreadable { .. }
            | Error::RoutesToml(_)
            | Error::Routes { .. }
            | Error::Categories { .. }
            | Error::UnknownPlaceholders { .. }
            | Error::FontUnreadable { .. }
            | Error::NotAFont { .. }
            | Error::SecretUnset { .. }
            | Error::NoSmtp { .. }
            | Error::Address { .. }
            | Error::SmtpTls { .. }
            | Error::TelegramRefused { .. }
            | Error::Mail(_)
            | Error::NoDays { .. }
            | Error::Draw { .. }
            | Error::Png { .. }
            | Error::LogPoisoned
            | Error::PrometheusNotJson { .. }
            | Error::PrometheusNoResult { .. }
            | Error::Key(_)
            | Error::Signal { .. }
            | Error::WorkerStopped { .. } => Recovery::Stop,
            Error::RoutingFile { source, .. } => source.recovery(),
            Error::Http(source)
            | Error::PrometheusQuery { source, .. }
            | Error::PrometheusAnswer { source, .. } => http_recovery(source),
            Error::MailRefused { source } => smtp_recovery(source),
            Error::TaskStopped { source, .. } => {
                if source.is_panic() {
                    Recovery::Stop
                } else {
                    Recovery::Retry
                }
            }
            Error::Encode { .. } | Error::EvidenceDate { .. } | Error::Evidence(_) => {
                Recovery::DeadLetter
            }
            Error::State { source, .. } => io_recovery(source),
            Error::DlqTopic { source } | Error::Kafka(source) => source.recovery(),
        }
    }
}

/// What a failed HTTP try asks for: a server error, a rate limit (429), a request
/// timeout (408), a timeout, a refused or broken connection or a name that did not
/// resolve may pass; any other answer (a 4xx: a refused token, a wrong URL), a
/// certificate that does not verify or a request that cannot be made stays so.
pub(crate) fn http_recovery(error: &ureq::Error) -> Recovery {
    use ureq::Error as E;
    match error {
        E::StatusCode(code) => match code {
            408 | 429 | 500..=599 => Recovery::Retry,
            _ => Recovery::Stop,
        },
        E::Io(e) => io_recovery(e),
        E::Timeout(_)
        | E::HostNotFound
        | E::ConnectionFailed
        | E::Protocol(_)
        | E::ConnectProxyFailed(_)
        | E::BodyStalled => Recovery::Retry,
        E::Http(_)
        | E::BadUri(_)
        | E::RedirectFailed
        | E::InvalidProxyUrl
        | E::TooManyRedirects
        | E::Tls(_)
        | E::NativeTls(_)
        | E::Der(_)
        | E::Pem(_)
        | E::RequireHttpsOnly(_)
        | E::TlsRequired
        | E::BodyExceedsLimit(_)
        | E::LargeResponseHeader(..) => Recovery::Stop,
        // Whatever else lies between pantau and the receiver may pass.
        _ => Recovery::Retry,
    }
}

/// What a mail server's refusal asks for: its transient (4xx) answers, network and
/// connection failures and a transport shutting down may pass; its permanent (5xx)
/// answers (a refused credential, a refused sender or recipient), a TLS failure and
/// the client's own refusals (no authentication mechanism in common) stay so.
pub(crate) fn smtp_recovery(error: &lettre::transport::smtp::Error) -> Recovery {
    if error.is_permanent() || error.is_tls() || error.is_client() {
        Recovery::Stop
    } else {
        Recovery::Retry
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use pantau_core::error::chain;

    use super::*;

    #[test]
    fn a_server_error_or_a_rate_limit_is_retried_and_a_refusal_stops() {
        for (error, wanted) in [
            (ureq::Error::StatusCode(503), Recovery::Retry),
            (ureq::Error::StatusCode(502), Recovery::Retry),
            (ureq::Error::StatusCode(429), Recovery::Retry),
            (ureq::Error::Timeout(ureq::Timeout::Global), Recovery::Retry),
            (ureq::Error::ConnectionFailed, Recovery::Retry),
            (
                ureq::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
                Recovery::Retry,
            ),
            (ureq::Error::StatusCode(401), Recovery::Stop),
            (ureq::Error::StatusCode(403), Recovery::Stop),
            (ureq::Error::StatusCode(400), Recovery::Stop),
            (ureq::Error::StatusCode(404), Recovery::Stop),
        ] {
            let text = error.to_string();
            let error = Error::http(error);
            assert_eq!(error.recovery(), wanted, "{error:?}");
            // A delivery's error reads as it did: the dead letter carries it.
            assert_eq!(chain(&error), text);
        }
    }

    /// A mail server on localhost that greets, answers EHLO, and answers MAIL FROM
    /// with `answer`.
    fn mail_server(answer: &'static str) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream);
            out.write_all(b"220 mail.example ESMTP\r\n").unwrap();
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                let reply = match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                    Some("EHLO") => "250 mail.example\r\n",
                    Some("MAIL") => answer,
                    Some("QUIT") => "221 bye\r\n",
                    _ => "250 ok\r\n",
                };
                if out.write_all(reply.as_bytes()).is_err() {
                    break;
                }
                line.clear();
            }
        });
        port
    }

    fn send_to(port: u16) -> lettre::transport::smtp::Error {
        use lettre::Transport;
        let transport = lettre::SmtpTransport::builder_dangerous("127.0.0.1")
            .port(port)
            .timeout(Some(std::time::Duration::from_secs(5)))
            .build();
        let mail = lettre::Message::builder()
            .from("pantau@dinsos.example".parse().unwrap())
            .to("tikor@serangkab.example".parse().unwrap())
            .subject("uji")
            .body("isi".to_owned())
            .unwrap();
        transport.send(&mail).unwrap_err()
    }

    #[test]
    fn a_mail_server_refusing_pantau_stops_and_one_busy_or_away_retries() {
        let refused = Error::MailRefused {
            source: Box::new(send_to(mail_server(
                "530 5.7.0 Authentication required\r\n",
            ))),
        };
        assert_eq!(refused.recovery(), Recovery::Stop, "{}", chain(&refused));
        assert!(
            chain(&refused).starts_with("the mail server did not take the message: "),
            "{}",
            chain(&refused)
        );
        let busy = send_to(mail_server("451 4.3.0 try again later\r\n"));
        assert_eq!(smtp_recovery(&busy), Recovery::Retry, "{busy}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let away = send_to(port);
        assert_eq!(smtp_recovery(&away), Recovery::Retry, "{away}");
    }

    #[test]
    fn a_missing_secret_or_routing_file_stops_at_start() {
        let unset = Error::SecretUnset {
            channel: "tikor-serang".into(),
            env: "TELEGRAM_TOKEN".into(),
            source: std::env::VarError::NotPresent,
        };
        assert_eq!(unset.recovery(), Recovery::Stop);
        // Stop even where a disk would say "try again": it is read once, at start.
        let unreadable = Error::Unreadable {
            path: "/etc/pantau/routes.toml".into(),
            source: std::io::ErrorKind::Interrupted.into(),
        };
        assert_eq!(unreadable.recovery(), Recovery::Stop);
        assert_eq!(unreadable.to_string(), "reading /etc/pantau/routes.toml");
        let invalid = Error::RoutingFile {
            path: "routes.toml".into(),
            source: Box::new(Error::Routes {
                problems: vec!["route 1: no channels".into()],
            }),
        };
        assert_eq!(invalid.recovery(), Recovery::Stop);
        assert_eq!(
            chain(&invalid),
            "routing file routes.toml: route 1: no channels"
        );
    }

    #[test]
    fn a_full_state_disk_retries_and_a_forbidden_one_stops() {
        let full = Error::state("writing", "/var/lib/pantau/tally.jsonl")(
            std::io::ErrorKind::StorageFull.into(),
        );
        assert_eq!(full.recovery(), Recovery::Retry);
        let forbidden = Error::state("creating", "/var/lib/pantau")(
            std::io::ErrorKind::PermissionDenied.into(),
        );
        assert_eq!(forbidden.recovery(), Recovery::Stop);
        assert_eq!(forbidden.to_string(), "creating /var/lib/pantau");
    }

    #[test]
    fn kafkas_verdict_on_the_dead_letter_topic_is_kept() {
        // Just created, not yet known to the broker asked: it passes.
        let missing = Error::DlqTopic {
            source: pantau_kafka::error::Error::NoPartitions {
                topic: "pantau.notify.dlq".into(),
            },
        };
        assert_eq!(missing.recovery(), Recovery::Retry);
        assert_eq!(
            chain(&missing),
            "creating pantau.notify.dlq: topic pantau.notify.dlq has no partitions"
        );
        let refused = Error::DlqTopic {
            source: pantau_kafka::error::Error::Refused {
                brokers: "kafka:9093".into(),
                reason: "SASL authentication failed".into(),
            },
        };
        assert_eq!(refused.recovery(), Recovery::Stop);
        let slow = Error::Kafka(pantau_kafka::error::Error::NotReadToEnd {
            topic: "bpnt.outlets".into(),
        });
        assert_eq!(slow.recovery(), Recovery::Retry);
    }
}
