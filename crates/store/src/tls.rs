//! TLS to PostgreSQL as libpq does it: `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert` in the connection string, in its URL
//! or its `key=value` form. tokio-postgres knows only the first three modes and no
//! certificate settings, so those are taken out of the string here and given to the
//! TLS connector (the system OpenSSL, through native-tls).

use std::path::PathBuf;

use pantau_core::error::chain;
use percent_encoding::percent_decode_str;
use tokio_postgres::{Client, NoTls};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(Error::ConnectionString(
                    "sslmode=allow is not supported: use prefer or require".into(),
                ))
            }
            other => {
                return Err(Error::ConnectionString(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                )))
            }
        })
    }

    /// What tokio-postgres is told: whether to ask for TLS and whether to insist.
    fn negotiation(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// A connection string with its TLS settings taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// What tokio-postgres parses (sslmode reduced to what it knows).
    pub rest: String,
    pub mode: SslMode,
    /// `sslrootcert`: the CA file to trust instead of the system's (`system`: the
    /// system's, as libpq 16 spells it).
    pub root_cert: Option<PathBuf>,
}

/// Parameters libpq has that pantau does not support yet, refused by name rather than
/// left to tokio-postgres's "unknown option".
const UNSUPPORTED: [&str; 4] = ["sslcert", "sslkey", "sslpassword", "sslcrl"];

impl Target {
    pub fn parse(conn: &str) -> Result<Target> {
        let is_url = conn.starts_with("postgres://") || conn.starts_with("postgresql://");
        let (head, pairs) = if is_url {
            match conn.split_once('?') {
                Some((head, query)) => (head.to_string(), url_pairs(query)?),
                None => (conn.to_string(), Vec::new()),
            }
        } else {
            (String::new(), keyword_pairs(conn)?)
        };
        // libpq's default: TLS when the server offers it.
        let mut mode = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "sslmode" => mode = SslMode::parse(&value)?,
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                key if UNSUPPORTED.contains(&key) => {
                    return Err(Error::ConnectionString(format!(
                        "{key} in the PostgreSQL connection string is not supported (client certificates); use a password"
                    )))
                }
                _ => kept.push((key, value)),
            }
        }
        kept.push(("sslmode".to_string(), mode.negotiation().to_string()));
        let rest = if is_url {
            let query: Vec<String> = kept
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}={}",
                        percent_encoding::utf8_percent_encode(
                            v,
                            percent_encoding::NON_ALPHANUMERIC
                        )
                    )
                })
                .collect();
            format!("{head}?{}", query.join("&"))
        } else {
            let words: Vec<String> = kept
                .iter()
                .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
                .collect();
            words.join(" ")
        };
        Ok(Target {
            rest,
            mode,
            root_cert,
        })
    }

    /// The TLS connector the mode asks for. Like libpq, `require` and `prefer` check the
    /// certificate only when `sslrootcert` is given; `verify-ca` checks it against the
    /// CA; `verify-full` also checks that it names the host connected to.
    pub(crate) fn connector(&self) -> Result<postgres_native_tls::MakeTlsConnector> {
        let mut builder = native_tls::TlsConnector::builder();
        let trusted_ca = match self.root_cert.as_deref() {
            Some(path) if path.as_os_str() == "system" => true,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| Error::RootCert {
                    path: path.to_path_buf(),
                    source,
                })?;
                let no_certificate = |source| Error::RootCertPem {
                    path: path.to_path_buf(),
                    source,
                };
                let certificates = native_tls::Certificate::stack_from_pem(&pem)
                    .map_err(|e| no_certificate(Some(e)))?;
                if certificates.is_empty() {
                    return Err(no_certificate(None));
                }
                builder.disable_built_in_roots(true);
                for certificate in certificates {
                    builder.add_root_certificate(certificate);
                }
                true
            }
            None => false,
        };
        let (check_chain, check_host) = match self.mode {
            SslMode::VerifyFull => (true, true),
            SslMode::VerifyCa => (true, false),
            SslMode::Require | SslMode::Prefer | SslMode::Disable => (trusted_ca, false),
        };
        builder
            .danger_accept_invalid_certs(!check_chain)
            .danger_accept_invalid_hostnames(!check_host);
        let connector = builder
            .build()
            .map_err(|source| Error::TlsSetup { source })?;
        Ok(postgres_native_tls::MakeTlsConnector::new(connector))
    }
}

/// Connects as `conn` asks (TLS included) and drives the connection in a task of its
/// own; the connection's end is logged.
pub async fn connect(conn: &str) -> Result<Client> {
    let target = Target::parse(conn)?;
    let config: tokio_postgres::Config = target
        .rest
        .parse()
        .map_err(|source| Error::UnreadableConnectionString { source })?;
    let log_end = |result: std::result::Result<(), tokio_postgres::Error>| {
        if let Err(e) = result {
            tracing::error!(error = %chain(&e), "PostgreSQL connection closed");
        }
    };
    let client = if target.mode == SslMode::Disable {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move { log_end(connection.await) });
        client
    } else {
        let (client, connection) = config.connect(target.connector()?).await?;
        tokio::spawn(async move { log_end(connection.await) });
        client
    };
    Ok(client)
}

/// The connection string with its password replaced, for `Debug` and logs.
pub fn redacted(conn: &str) -> String {
    if let Some(rest) = conn
        .strip_prefix("postgres://")
        .or_else(|| conn.strip_prefix("postgresql://"))
    {
        let scheme = &conn[..conn.len() - rest.len()];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!("{scheme}{}:<redacted>{}", &rest[..colon], &rest[at..]);
            }
        }
        return conn.to_string();
    }
    match keyword_pairs(conn) {
        Ok(pairs) => pairs
            .into_iter()
            .map(|(k, v)| {
                if k == "password" {
                    format!("{k}=<redacted>")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "<unreadable connection string>".into(),
    }
}

fn url_pairs(query: &str) -> Result<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| {
                percent_decode_str(text)
                    .decode_utf8()
                    .map(|t| t.into_owned())
                    .map_err(|source| Error::NotUtf8 {
                        key: key.to_owned(),
                        source,
                    })
            };
            Ok((decode(key)?, decode(value)?))
        })
        .collect()
}

/// libpq's `key=value` form: values may be single-quoted, with `\'` and `\\` inside.
fn keyword_pairs(conn: &str) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = conn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(Error::ConnectionString(format!(
                "the PostgreSQL connection string has {key:?} without '=' after it"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(Error::ConnectionString(format!(
                            "the PostgreSQL connection string's {key} has no closing quote"
                        )))
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_full_and_its_ca_are_taken_out_of_a_url_and_tls_is_required() {
        let target = Target::parse(
            "postgres://pantau:pw@db.dinsos.example:5432/pantau?sslmode=verify-full&sslrootcert=%2Fetc%2Fpantau%2Fca.pem&application_name=store",
        )
        .unwrap();
        assert_eq!(target.mode, SslMode::VerifyFull);
        assert_eq!(target.root_cert, Some(PathBuf::from("/etc/pantau/ca.pem")));
        assert_eq!(
            target.rest,
            "postgres://pantau:pw@db.dinsos.example:5432/pantau?application_name=store&sslmode=require"
        );
        let config: tokio_postgres::Config = target.rest.parse().unwrap();
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
    }

    #[test]
    fn the_keyword_form_keeps_quoted_values_and_loses_only_the_tls_settings() {
        let target = Target::parse(
            r"host=localhost user=pantau password='it\'s secret' sslmode = verify-ca sslrootcert='/etc/my ca.pem'",
        )
        .unwrap();
        assert_eq!(target.mode, SslMode::VerifyCa);
        assert_eq!(target.root_cert, Some(PathBuf::from("/etc/my ca.pem")));
        let config: tokio_postgres::Config = target.rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"it's secret"[..]));
    }

    #[test]
    fn an_unknown_sslmode_and_a_client_certificate_are_named() {
        let error = Target::parse("postgres://localhost/pantau?sslmode=verify_full")
            .unwrap_err()
            .to_string();
        assert!(error.contains("sslmode=verify_full"), "{error}");
        let error = Target::parse("host=localhost sslcert=/etc/client.pem")
            .unwrap_err()
            .to_string();
        assert!(error.contains("sslcert"), "{error}");
    }

    #[test]
    fn a_connection_string_is_shown_without_its_password() {
        assert_eq!(
            redacted("postgres://pantau:s3cret@localhost:5432/pantau?sslmode=require"),
            "postgres://pantau:<redacted>@localhost:5432/pantau?sslmode=require"
        );
        let shown = redacted("host=localhost password='s3cret word' user=pantau");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("user=pantau"), "{shown}");
    }
}
