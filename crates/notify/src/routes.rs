//! The routing file: district code → channels and the lowest severity they want, with
//! province-level catch-alls for districts that have no route of their own; how many
//! messages a channel takes in an hour; when each district's daily digest goes out.
//! `notify/routes.example.toml` shows every field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use pantau_core::model::{Alert, Severity};
use pantau_core::regions::Regions;

/// One way of reaching a team.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Channel {
    /// A JSON POST, signed with HMAC-SHA256 when `secret_env` names a secret.
    Webhook {
        url: String,
        secret_env: Option<String>,
        max_messages: Option<u32>,
    },
    /// A chat through the Telegram bot API; `base_url` replaces api.telegram.org.
    Telegram {
        chat_id: String,
        token_env: String,
        base_url: Option<String>,
        max_messages: Option<u32>,
    },
    /// Mail through the file's `[smtp]` server.
    Email {
        to: Vec<String>,
        max_messages: Option<u32>,
    },
}

impl Channel {
    /// The channel's own limit, overriding `[limits] max_messages`.
    fn max_messages(&self) -> Option<u32> {
        match self {
            Channel::Webhook { max_messages, .. }
            | Channel::Telegram { max_messages, .. }
            | Channel::Email { max_messages, .. } => *max_messages,
        }
    }
}

/// How the connection to the mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP, upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Unencrypted: only for a relay on the same host or network.
    None,
}

/// The mail server e-mail channels go through.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    pub from: String,
    #[serde(default = "default_security")]
    pub security: SmtpSecurity,
    /// Environment variables holding the login, when the server wants one.
    pub username_env: Option<String>,
    pub password_env: Option<String>,
}

fn default_smtp_port() -> u16 {
    587
}

fn default_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}

/// At most `max_messages` per channel in each `per`; the rest are folded into one digest
/// sent when the period is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_messages: Option<u32>,
    pub per: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsEntry {
    max_messages: Option<u32>,
    #[serde(default = "one_hour")]
    per: String,
}

fn one_hour() -> String {
    "1h".to_owned()
}

/// Each district's daily digest: alerts by category, the top outlets, realization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSchedule {
    /// Local time of the district at which a digest goes out.
    pub at: chrono::NaiveTime,
    /// A day, unless shortened to try it out.
    pub every: Duration,
    /// The Prometheus that scrapes `pantau run`, for realization so far.
    pub prometheus_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestEntry {
    #[serde(default = "seven_am")]
    at: String,
    #[serde(default = "one_day")]
    every: String,
    prometheus_url: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn seven_am() -> String {
    "07:00".to_owned()
}

fn one_day() -> String {
    "24h".to_owned()
}

fn yes() -> bool {
    true
}

impl Default for DigestEntry {
    fn default() -> Self {
        DigestEntry {
            at: seven_am(),
            every: one_day(),
            prometheus_url: None,
            enabled: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    regency: Option<String>,
    province: Option<String>,
    channels: Vec<String>,
    #[serde(default = "lowest")]
    min_severity: Severity,
}

fn lowest() -> Severity {
    Severity::Low
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesFile {
    dashboard_url: String,
    smtp: Option<Smtp>,
    limits: Option<LimitsEntry>,
    #[serde(default)]
    digest: DigestEntry,
    #[serde(default)]
    channels: BTreeMap<String, Channel>,
    #[serde(default)]
    routes: Vec<RouteEntry>,
}

/// Where a route applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Regency(String),
    /// Regencies of this province without a route of their own.
    Province(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub scope: Scope,
    pub channels: Vec<String>,
    pub min_severity: Severity,
}

/// A checked routing file.
#[derive(Debug, Clone)]
pub struct Routes {
    pub dashboard_url: String,
    pub smtp: Option<Smtp>,
    pub limits: Limits,
    /// None when `[digest] enabled = false`.
    pub digest: Option<DigestSchedule>,
    pub channels: BTreeMap<String, Channel>,
    pub routes: Vec<Route>,
}

impl Routes {
    pub fn load(path: &Path) -> Result<Routes> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        Routes::parse(&text).map_err(|e| Error::RoutingFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses and checks a routing file: every problem is named with the route (by its
    /// position, from 1) or channel it is in.
    pub fn parse(text: &str) -> Result<Routes> {
        let file: RoutesFile = toml_edit::de::from_str(text).map_err(Error::RoutesToml)?;
        let regions = Regions::get();
        let mut problems = Vec::new();
        let mut routes = Vec::new();
        for (i, entry) in file.routes.into_iter().enumerate() {
            let n = i + 1;
            let scope = match (entry.regency, entry.province) {
                (Some(code), None) if regions.regency(&code).is_some() => Scope::Regency(code),
                (Some(code), None) => {
                    problems.push(format!("route {n}: {code:?} is not a BPS regency code"));
                    continue;
                }
                (None, Some(code))
                    if regions.regencies().iter().any(|r| r.province_code == code) =>
                {
                    Scope::Province(code)
                }
                (None, Some(code)) => {
                    problems.push(format!("route {n}: {code:?} is not a BPS province code"));
                    continue;
                }
                _ => {
                    problems.push(format!(
                        "route {n}: name either a regency or a province, not both or neither"
                    ));
                    continue;
                }
            };
            if entry.channels.is_empty() {
                problems.push(format!("route {n}: no channels"));
            }
            for name in &entry.channels {
                if !file.channels.contains_key(name) {
                    problems.push(format!("route {n}: no channel named {name:?}"));
                }
            }
            routes.push(Route {
                scope,
                channels: entry.channels,
                min_severity: entry.min_severity,
            });
        }
        for (name, channel) in &file.channels {
            if matches!(channel, Channel::Email { .. }) && file.smtp.is_none() {
                problems.push(format!("channel {name:?}: e-mail needs an [smtp] section"));
            }
            if let Channel::Email { to, .. } = channel {
                if to.is_empty() {
                    problems.push(format!("channel {name:?}: no recipients"));
                }
            }
            if channel.max_messages() == Some(0) {
                problems.push(format!("channel {name:?}: max_messages must be at least 1"));
            }
        }
        let limits_entry = file.limits.unwrap_or(LimitsEntry {
            max_messages: None,
            per: one_hour(),
        });
        let per = pantau_core::text::parse_duration(&limits_entry.per)
            .map_err(|e| problems.push(format!("[limits] per: {e}")))
            .unwrap_or(Duration::from_secs(3600));
        if limits_entry.max_messages == Some(0) {
            problems.push("[limits] max_messages must be at least 1".to_owned());
        }
        let digest_entry = file.digest;
        let at = chrono::NaiveTime::parse_from_str(&digest_entry.at, "%H:%M")
            .map_err(|_| problems.push(format!("[digest] at: {:?} is not HH:MM", digest_entry.at)))
            .unwrap_or_default();
        let every = pantau_core::text::parse_duration(&digest_entry.every)
            .map_err(|e| problems.push(format!("[digest] every: {e}")))
            .unwrap_or(Duration::from_secs(86_400));
        if every < Duration::from_secs(1) {
            problems.push("[digest] every must be at least 1s".to_owned());
        }
        if !problems.is_empty() {
            return Err(Error::Routes { problems });
        }
        Ok(Routes {
            dashboard_url: file.dashboard_url.trim_end_matches('/').to_owned(),
            smtp: file.smtp,
            limits: Limits {
                max_messages: limits_entry.max_messages,
                per,
            },
            digest: digest_entry.enabled.then(|| DigestSchedule {
                at,
                every,
                prometheus_url: digest_entry
                    .prometheus_url
                    .map(|u| u.trim_end_matches('/').to_owned()),
            }),
            channels: file.channels,
            routes,
        })
    }

    /// The most messages a channel takes in `limits.per`, if limited.
    pub(crate) fn max_messages(&self, channel: &str) -> Option<u32> {
        self.channels
            .get(channel)
            .and_then(Channel::max_messages)
            .or(self.limits.max_messages)
    }

    /// The routes that apply to a regency: its own, or else its province's catch-alls
    /// (then `true`).
    pub(crate) fn routes_of(&self, regency_code: &str) -> (Vec<&Route>, bool) {
        let province = &regency_code[..regency_code.len().min(2)];
        let own: Vec<&Route> = self
            .routes
            .iter()
            .filter(|r| matches!(&r.scope, Scope::Regency(code) if code == regency_code))
            .collect();
        if !own.is_empty() {
            return (own, false);
        }
        let catch_all = self
            .routes
            .iter()
            .filter(|r| matches!(&r.scope, Scope::Province(code) if code == province))
            .collect();
        (catch_all, true)
    }

    /// The channels an alert goes to: the routes of its regency, or, when the regency has
    /// none, its province's; each channel once, and only where the alert is severe enough.
    pub fn channels_for(&self, alert: &Alert) -> Vec<&str> {
        let (applicable, _) = self.routes_of(&alert.regency_code);
        unique_channels(
            applicable
                .into_iter()
                .filter(|r| alert.severity >= r.min_severity),
        )
    }

    /// Where a regency's daily digest goes: every channel of its routes, whatever their
    /// minimum severity (the digest is where the rest is seen), and whether they are a
    /// province's catch-all.
    pub(crate) fn digest_channels(&self, regency_code: &str) -> (Vec<&str>, bool) {
        let (applicable, catch_all) = self.routes_of(regency_code);
        (unique_channels(applicable.into_iter()), catch_all)
    }
}

fn unique_channels<'a>(routes: impl Iterator<Item = &'a Route>) -> Vec<&'a str> {
    let mut seen = BTreeSet::new();
    routes
        .flat_map(|r| r.channels.iter().map(String::as_str))
        .filter(|c| seen.insert(*c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pantau_core::error::{chain, Recoverable, Recovery};
    use pantau_core::model::Severity;

    fn alert(regency: &str, severity: Severity) -> Alert {
        let at = chrono::DateTime::parse_from_rfc3339("2023-01-05T00:00:00+07:00").unwrap();
        Alert {
            alert_id: "a".into(),
            rule_id: "price_markup".into(),
            rule_version: "v".into(),
            category: "price_markup".into(),
            severity,
            entity_type: "outlet".into(),
            entity_id: "EW-1".into(),
            regency_code: regency.into(),
            window_start: at,
            window_end: at,
            detected_at: at,
            score: 1.0,
            title: "t".into(),
            summary: "s".into(),
            evidence: Default::default(),
            shadow: false,
        }
    }

    #[test]
    fn the_example_file_routes_a_regency_to_its_own_channels_and_others_to_the_province() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../notify/routes.example.toml"),
        )
        .unwrap();
        let routes = Routes::parse(&text).unwrap();
        assert_eq!(
            routes.channels_for(&alert("3604", Severity::High)),
            vec!["serang-webhook", "serang-telegram"]
        );
        // Below the regency route's minimum: nothing, and no fallback to the province.
        assert!(routes
            .channels_for(&alert("3604", Severity::Low))
            .is_empty());
        // Kota Cilegon (3672) has no route: Banten's catch-all, high and above only.
        assert_eq!(
            routes.channels_for(&alert("3672", Severity::Critical)),
            vec!["banten-email"]
        );
        assert!(routes
            .channels_for(&alert("3672", Severity::Medium))
            .is_empty());
        assert_eq!(routes.max_messages("serang-telegram"), Some(10));
        assert_eq!(routes.max_messages("serang-webhook"), Some(20));
        assert_eq!(routes.limits.per, Duration::from_secs(3600));
        let digest = routes.digest.as_ref().expect("the digest is on");
        assert_eq!(
            (digest.at.to_string().as_str(), digest.every),
            ("07:00:00", Duration::from_secs(86_400))
        );
        // The digest goes to every channel of a route, whatever its minimum severity.
        assert_eq!(
            routes.digest_channels("3604"),
            (vec!["serang-webhook", "serang-telegram"], false)
        );
        assert_eq!(routes.digest_channels("3672"), (vec!["banten-email"], true));
        // No route in Jawa Barat at all.
        assert!(routes
            .channels_for(&alert("3201", Severity::Critical))
            .is_empty());
    }

    #[test]
    fn every_problem_of_a_routing_file_is_named() {
        let text = r#"
dashboard_url = "http://grafana"
[limits]
max_messages = 0
per = "soon"
[digest]
at = "7am"
[channels.mail]
kind = "email"
to = []
[[routes]]
regency = "9999"
channels = ["mail"]
[[routes]]
province = "36"
regency = "3604"
channels = ["mail"]
[[routes]]
regency = "3604"
channels = ["sms"]
"#;
        let error = Routes::parse(text).unwrap_err();
        // Someone has to edit the file: restarting reads the same problems.
        assert_eq!(error.recovery(), Recovery::Stop);
        let error = chain(&error);
        for expected in [
            "route 1: \"9999\" is not a BPS regency code",
            "route 2: name either a regency or a province",
            "route 3: no channel named \"sms\"",
            "channel \"mail\": e-mail needs an [smtp] section",
            "channel \"mail\": no recipients",
            "[limits] per: \"soon\"",
            "[limits] max_messages must be at least 1",
            "[digest] at: \"7am\" is not HH:MM",
        ] {
            assert!(error.contains(expected), "{expected} missing from: {error}");
        }
        let unknown_kind = "dashboard_url = \"x\"\n[channels.a]\nkind = \"pigeon\"\n";
        let error = chain(&Routes::parse(unknown_kind).unwrap_err());
        assert!(error.contains("pigeon"), "{error}");
    }
}
