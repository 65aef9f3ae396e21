//! What a Tikor member reads: an alert turned into a subject, a plain-text and an HTML
//! body, in Bahasa Indonesia, from the templates in `notify/templates/` (`alert.txt`,
//! `alert.html`, and `categories.toml` for each category's name and expected action).
//!
//! A template uses `{name}` placeholders: `severity`, `category_name`, `action`,
//! `place`, `when`, `title`, `summary`, `dashboard_link`, `alert_id`, `outlet_name`,
//! `kecamatan`, `regency_name`. HTML gets every value escaped.
//!
//! The digests have text templates of their own: `digest.txt` (a district's daily
//! digest, [`DIGEST_PLACEHOLDERS`]) and `folded.txt` (the alerts past a channel's hourly
//! limit, [`FOLDED_PLACEHOLDERS`]); their HTML is the text, escaped.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Duration;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::chart::{evidence_chart, Chart};
use crate::error::{Error, Result};
use pantau_core::error::chain;
use pantau_core::model::{Alert, OutletInfo, Severity};
use pantau_core::regions::Regions;
use pantau_core::text::{fill, placeholders, tanggal};

pub const PLACEHOLDERS: [&str; 12] = [
    "severity",
    "category_name",
    "action",
    "place",
    "when",
    "title",
    "summary",
    "dashboard_link",
    "alert_id",
    "outlet_name",
    "kecamatan",
    "regency_name",
];

pub const DIGEST_PLACEHOLDERS: [&str; 7] = [
    "regency_name",
    "period",
    "total",
    "by_category",
    "top_outlets",
    "realization",
    "dashboard_link",
];

pub const FOLDED_PLACEHOLDERS: [&str; 4] = ["count", "limit", "per", "list"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CategoryText {
    pub name: String,
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub dashboard_link: String,
    /// The picture of the evidence, when the alert carries the series for one.
    pub chart: Option<Chart>,
}

/// The team's templates, checked when loaded.
#[derive(Debug, Clone)]
pub struct Templates {
    text: String,
    html: String,
    digest: String,
    folded: String,
    categories: BTreeMap<String, CategoryText>,
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Low => "RENDAH",
        Severity::Medium => "SEDANG",
        Severity::High => "TINGGI",
        Severity::Critical => "KRITIS",
    }
}

/// Text made safe inside HTML elements and attribute values.
pub fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The name of a kecamatan (BPS district code) of a regency.
pub fn kecamatan(regency_code: &str, district_code: &str) -> Option<String> {
    Regions::get()
        .districts(regency_code)
        .iter()
        .find(|d| d.code == district_code)
        .map(|d| d.name.clone())
}

/// A message from a text template; its HTML is the text, escaped, lines kept.
fn text_message(
    template: &str,
    subject: String,
    values: &[(&str, String)],
    link: String,
) -> Message {
    let row: Map<String, Value> = values
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
        .collect();
    // `fill` takes the regency's name apart from the row.
    let regency_name = values
        .iter()
        .find(|(k, _)| *k == "regency_name")
        .map_or("", |(_, v)| v.as_str());
    let text = fill(template, &row, regency_name);
    let html = format!(
        "<html><body><pre style=\"white-space:pre-wrap;font-family:sans-serif\">{}</pre></body></html>",
        escape_html(&text)
    );
    Message {
        subject,
        text,
        html,
        dashboard_link: link,
        chart: None,
    }
}

/// The district dashboard, opened on the alert's regency from a week before its window
/// to a day after.
pub(crate) fn dashboard_link(base: &str, alert: &Alert) -> String {
    let from = (alert.window_start - Duration::days(7)).timestamp_millis();
    let to = (alert.window_end + Duration::days(1)).timestamp_millis();
    format!(
        "{}/d/pantau-district?var-regency={}&from={from}&to={to}",
        base.trim_end_matches('/'),
        alert.regency_code
    )
}

/// The shipped templates, compiled in so that an installed binary without the source
/// folder still speaks Bahasa Indonesia to the Tikor.
const BUILT_IN_TEMPLATES: [(&str, &str); 5] = [
    (
        "alert.txt",
        include_str!("../../../notify/templates/alert.txt"),
    ),
    (
        "alert.html",
        include_str!("../../../notify/templates/alert.html"),
    ),
    (
        "digest.txt",
        include_str!("../../../notify/templates/digest.txt"),
    ),
    (
        "folded.txt",
        include_str!("../../../notify/templates/folded.txt"),
    ),
    (
        "categories.toml",
        include_str!("../../../notify/templates/categories.toml"),
    ),
];

/// Where the notifier looked for its templates when none was named, as `./rules` for rules.
pub(crate) const DEFAULT_TEMPLATES_DIR: &str = "notify/templates";

impl Templates {
    /// The templates of `--templates DIR`; without it those of `./notify/templates` when
    /// that folder exists, else the ones built into this binary. Logs which.
    pub(crate) fn locate(given: Option<&Path>) -> Result<Templates> {
        match pantau_core::bundled::folder_to_read(given, DEFAULT_TEMPLATES_DIR) {
            Some(dir) => {
                tracing::info!(from = %dir.display(), "notification templates loaded");
                Templates::load(&dir)
            }
            None => {
                tracing::info!(
                    from = "the templates built into this binary (no ./notify/templates folder)",
                    "notification templates loaded"
                );
                Templates::built_in()
            }
        }
    }

    /// Reads `alert.txt`, `alert.html`, `digest.txt`, `folded.txt` and `categories.toml`
    /// from `dir`. A placeholder the notifier cannot fill is an error naming the file.
    pub fn load(dir: &Path) -> Result<Templates> {
        Templates::parse(&dir.display().to_string(), |name| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| Error::Unreadable { path, source })
        })
    }

    /// The templates as they were in `notify/templates/` when this binary was built.
    pub fn built_in() -> Result<Templates> {
        Templates::parse("built-in notify/templates", |name| {
            let (_, text) = BUILT_IN_TEMPLATES
                .iter()
                .find(|(file, _)| *file == name)
                .expect("every template file is built in");
            Ok(text.to_string())
        })
    }

    fn parse(origin: &str, read: impl Fn(&str) -> Result<String>) -> Result<Templates> {
        let templates = Templates {
            text: read("alert.txt")?,
            html: read("alert.html")?,
            digest: read("digest.txt")?,
            folded: read("folded.txt")?,
            categories: toml_edit::de::from_str(&read("categories.toml")?).map_err(|source| {
                Error::Categories {
                    origin: origin.to_owned(),
                    source,
                }
            })?,
        };
        let checks: [(&'static str, &String, &'static [&'static str]); 4] = [
            ("alert.txt", &templates.text, &PLACEHOLDERS),
            ("alert.html", &templates.html, &PLACEHOLDERS),
            ("digest.txt", &templates.digest, &DIGEST_PLACEHOLDERS),
            ("folded.txt", &templates.folded, &FOLDED_PLACEHOLDERS),
        ];
        for (name, template, known) in checks {
            let unknown: Vec<String> = placeholders(template)
                .into_iter()
                .filter(|p| !known.contains(p))
                .map(str::to_owned)
                .collect();
            if !unknown.is_empty() {
                return Err(Error::UnknownPlaceholders {
                    origin: origin.to_owned(),
                    file: name,
                    unknown,
                    known,
                });
            }
        }
        Ok(templates)
    }

    /// A category's name in Bahasa Indonesia, or its code when the file has none.
    pub(crate) fn category_name<'a>(&'a self, category: &'a str) -> &'a str {
        self.categories
            .get(category)
            .map_or(category, |c| c.name.as_str())
    }

    /// A district's daily digest from `digest.txt`; `values` fill its placeholders.
    pub(crate) fn daily_digest(
        &self,
        subject: String,
        values: &[(&str, String)],
        link: String,
    ) -> Message {
        text_message(&self.digest, subject, values, link)
    }

    /// The alerts past a channel's limit, as one message from `folded.txt`.
    pub(crate) fn folded(&self, subject: String, values: &[(&str, String)]) -> Message {
        text_message(&self.folded, subject, values, String::new())
    }

    /// The shipped templates folder of the source tree, for tests.
    #[cfg(test)]
    pub fn shipped_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../notify/templates")
    }

    pub fn render(
        &self,
        alert: &Alert,
        outlet: Option<&OutletInfo>,
        dashboard_url: &str,
    ) -> Message {
        let regions = Regions::get();
        let regency_name = regions
            .regency(&alert.regency_code)
            .map(|r| r.name.clone())
            .unwrap_or_else(|| alert.regency_code.clone());
        // An alert about a whole kecamatan names it as its entity.
        let district_code = match outlet {
            Some(o) => Some(o.district_code.as_str()),
            None => (alert.entity_type == "district").then_some(alert.entity_id.as_str()),
        };
        let kecamatan = district_code.and_then(|d| kecamatan(&alert.regency_code, d));
        let place = match (outlet, alert.outlet_id()) {
            (Some(o), Some(id)) => format!(
                "e-Warong {} ({id}), Kecamatan {}, {regency_name}",
                o.name,
                kecamatan.as_deref().unwrap_or("-")
            ),
            (None, Some(id)) => format!("e-Warong {id}, {regency_name}"),
            _ => match &kecamatan {
                Some(k) => format!("Kecamatan {k}, {regency_name}"),
                None => regency_name.clone(),
            },
        };
        // A window ends at the start of the day after its last day.
        let last = alert.window_end - Duration::microseconds(1);
        let when = if alert.window_start.date_naive() == last.date_naive() {
            tanggal(alert.window_start)
        } else {
            format!("{} s.d. {}", tanggal(alert.window_start), tanggal(last))
        };
        let category = self.categories.get(&alert.category);
        let link = dashboard_link(dashboard_url, alert);
        let values: Vec<(&str, String)> = vec![
            ("severity", severity_word(alert.severity).to_owned()),
            (
                "category_name",
                category.map_or_else(|| alert.category.clone(), |c| c.name.clone()),
            ),
            (
                "action",
                category.map_or_else(
                    || "Verifikasi di lapangan bersama bank penyalur.".to_owned(),
                    |c| c.action.clone(),
                ),
            ),
            ("place", place.clone()),
            ("when", when),
            ("title", alert.title.clone()),
            ("summary", alert.summary.clone()),
            ("dashboard_link", link.clone()),
            ("alert_id", alert.alert_id.clone()),
            (
                "outlet_name",
                outlet.map(|o| o.name.clone()).unwrap_or_default(),
            ),
            ("kecamatan", kecamatan.unwrap_or_default()),
        ];
        let row = |escape: bool| -> Map<String, Value> {
            values
                .iter()
                .map(|(k, v)| {
                    let v = if escape { escape_html(v) } else { v.clone() };
                    ((*k).to_owned(), Value::String(v))
                })
                .collect()
        };
        let regency_html = escape_html(&regency_name);
        Message {
            subject: format!(
                "[{}] {} di {place}",
                severity_word(alert.severity),
                category.map_or(alert.category.as_str(), |c| c.name.as_str())
            ),
            text: fill(&self.text, &row(false), &regency_name),
            html: fill(&self.html, &row(true), &regency_html),
            dashboard_link: link,
            chart: evidence_chart(alert, outlet).unwrap_or_else(|e| {
                tracing::warn!(alert_id = %alert.alert_id, error = %chain(&e), "evidence chart not drawn; the message goes without it");
                None
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pantau_core::error::{Recoverable, Recovery};

    pub(crate) fn alert() -> Alert {
        let start = chrono::DateTime::parse_from_rfc3339("2023-01-04T00:00:00+07:00").unwrap();
        let mut evidence = Map::new();
        evidence.insert("outlet_id".into(), "EW-3604-0096".into());
        Alert {
            alert_id: "3ce025511af9ace7899671c4d1366588".into(),
            rule_id: "price_markup".into(),
            rule_version: "144ecd3b749c".into(),
            category: "price_markup".into(),
            severity: Severity::Medium,
            entity_type: "outlet".into(),
            entity_id: "EW-3604-0096".into(),
            regency_code: "3604".into(),
            window_start: start,
            window_end: start + Duration::days(1),
            detected_at: start + Duration::days(1),
            score: 15.24,
            title: "Harga BERAS di e-Warong <Karya> jauh di atas median".into(),
            summary: "e-Warong menjual BERAS Rp 17.000/kg, 1,50 kali median Rp 11.350/kg.".into(),
            evidence,
            shadow: false,
        }
    }

    #[test]
    fn a_message_names_the_outlet_its_kecamatan_what_to_do_and_links_the_dashboard() {
        let templates = Templates::load(&Templates::shipped_dir()).unwrap();
        let outlet = OutletInfo {
            name: "KUBE Karya Bersama".into(),
            district_code: "3604020".into(),
        };
        let m = templates.render(&alert(), Some(&outlet), "http://grafana:3000/");
        let kecamatan = &Regions::get()
            .districts("3604")
            .iter()
            .find(|d| d.code == "3604020")
            .unwrap()
            .name;
        assert_eq!(
            m.subject,
            format!("[SEDANG] Harga di atas kewajaran (tepat harga) di e-Warong KUBE Karya Bersama (EW-3604-0096), Kecamatan {kecamatan}, Kabupaten Serang")
        );
        assert!(
            m.text.contains("Waktu kejadian: 4 Januari 2023\n"),
            "{}",
            m.text
        );
        assert!(
            m.text.contains("Tindak lanjut: Kunjungi e-Warong"),
            "{}",
            m.text
        );
        assert!(m.text.contains("<Karya>"), "plain text is not escaped");
        assert!(m.html.contains("&lt;Karya&gt;"), "{}", m.html);
        assert_eq!(
            m.dashboard_link,
            "http://grafana:3000/d/pantau-district?var-regency=3604&from=1672160400000&to=1672938000000"
        );
        assert!(m.text.contains(&m.dashboard_link));
        assert!(
            !m.text.contains('{'),
            "every placeholder filled: {}",
            m.text
        );
    }

    #[test]
    fn every_shipped_category_has_a_name_and_an_action() {
        let templates = Templates::load(&Templates::shipped_dir()).unwrap();
        for category in [
            pantau_core::model::category::SEASONAL_OUTLET,
            pantau_core::model::category::SUPPLIER_DEPENDENT,
            pantau_core::model::category::CARD_COLLECTION,
            pantau_core::model::category::PRICE_MARKUP,
            pantau_core::model::category::SHORT_QUANTITY,
            pantau_core::model::category::PAPERWORK_MISMATCH,
            pantau_core::model::category::NON_TRANSACTING,
            pantau_core::model::category::CARD_MANY_PLACES,
            pantau_core::model::category::REALIZATION_LAG,
        ] {
            assert!(templates.categories.contains_key(category), "{category}");
        }
    }

    #[test]
    fn a_template_with_an_unknown_placeholder_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["alert.html", "categories.toml", "digest.txt", "folded.txt"] {
            std::fs::copy(Templates::shipped_dir().join(name), dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("alert.txt"), "{title} di {outlet}\n").unwrap();
        let error = Templates::load(dir.path()).unwrap_err();
        assert_eq!(error.recovery(), Recovery::Stop);
        let error = error.to_string();
        assert!(
            error.contains("alert.txt") && error.contains("\"outlet\""),
            "{error}"
        );
    }

    #[test]
    fn without_a_templates_folder_the_notifier_speaks_with_the_built_in_templates() {
        // The unit tests run in crates/notify/, where ./notify/templates does not exist.
        assert!(!Path::new(DEFAULT_TEMPLATES_DIR).exists());
        let located = Templates::locate(None).unwrap();
        let shipped = Templates::load(&Templates::shipped_dir()).unwrap();
        assert_eq!(located.text, shipped.text);
        assert_eq!(located.html, shipped.html);
        assert_eq!(located.digest, shipped.digest);
        assert_eq!(located.folded, shipped.folded);
        assert_eq!(
            located.category_name("card_collection"),
            shipped.category_name("card_collection")
        );
        assert_ne!(located.category_name("card_collection"), "card_collection");
    }
}
