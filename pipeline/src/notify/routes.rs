//! The routing file: district code → channels and the lowest severity they want, with
//! province-level catch-alls for districts that have no route of their own.
//! `notify/routes.example.toml` shows every field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::model::{Alert, Severity};
use crate::regions::Regions;

/// One way of reaching a team.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Channel {
    /// A JSON POST, signed with HMAC-SHA256 when `secret_env` names a secret.
    Webhook {
        url: String,
        secret_env: Option<String>,
    },
    /// A chat through the Telegram bot API; `base_url` replaces api.telegram.org.
    Telegram {
        chat_id: String,
        token_env: String,
        base_url: Option<String>,
    },
    /// Mail through the file's `[smtp]` server.
    Email { to: Vec<String> },
}

/// The mail server e-mail channels go through.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    pub from: String,
}

fn default_smtp_port() -> u16 {
    25
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
    pub channels: BTreeMap<String, Channel>,
    pub routes: Vec<Route>,
}

impl Routes {
    pub fn load(path: &Path) -> anyhow::Result<Routes> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Routes::parse(&text).with_context(|| format!("routing file {}", path.display()))
    }

    /// Parses and checks a routing file: every problem is named with the route (by its
    /// position, from 1) or channel it is in.
    pub fn parse(text: &str) -> anyhow::Result<Routes> {
        let file: RoutesFile = toml::from_str(text)?;
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
            if let Channel::Email { to } = channel {
                if to.is_empty() {
                    problems.push(format!("channel {name:?}: no recipients"));
                }
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(Routes {
            dashboard_url: file.dashboard_url.trim_end_matches('/').to_owned(),
            smtp: file.smtp,
            channels: file.channels,
            routes,
        })
    }

    /// The channels an alert goes to: the routes of its regency, or, when the regency has
    /// none, its province's; each channel once, and only where the alert is severe enough.
    pub fn channels_for(&self, alert: &Alert) -> Vec<&str> {
        let province = &alert.regency_code[..alert.regency_code.len().min(2)];
        let own: Vec<&Route> = self
            .routes
            .iter()
            .filter(|r| r.scope == Scope::Regency(alert.regency_code.clone()))
            .collect();
        let applicable = if own.is_empty() {
            self.routes
                .iter()
                .filter(|r| r.scope == Scope::Province(province.to_owned()))
                .collect()
        } else {
            own
        };
        let mut seen = BTreeSet::new();
        applicable
            .into_iter()
            .filter(|r| alert.severity >= r.min_severity)
            .flat_map(|r| r.channels.iter().map(String::as_str))
            .filter(|c| seen.insert(*c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Severity;

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
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../notify/routes.example.toml"),
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
        // No route in Jawa Barat at all.
        assert!(routes
            .channels_for(&alert("3201", Severity::Critical))
            .is_empty());
    }

    #[test]
    fn every_problem_of_a_routing_file_is_named() {
        let text = r#"
dashboard_url = "http://grafana"
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
        let error = format!("{:#}", Routes::parse(text).unwrap_err());
        for expected in [
            "route 1: \"9999\" is not a BPS regency code",
            "route 2: name either a regency or a province",
            "route 3: no channel named \"sms\"",
            "channel \"mail\": e-mail needs an [smtp] section",
            "channel \"mail\": no recipients",
        ] {
            assert!(error.contains(expected), "{expected} missing from: {error}");
        }
        let unknown_kind = "dashboard_url = \"x\"\n[channels.a]\nkind = \"pigeon\"\n";
        let error = format!("{:#}", Routes::parse(unknown_kind).unwrap_err());
        assert!(error.contains("pigeon"), "{error}");
    }
}
