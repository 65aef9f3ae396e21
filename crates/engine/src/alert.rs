//! Where an alert is made: a rule's result rows for a closed window become [`Alert`]s
//! with deterministic ids, Bahasa Indonesia text and the evidence that fired them.
//!
//! The id hashes rule, entity and window, so a replay, a restart or a redelivery always
//! names the same alert the same way, and every consumer can drop repeats by id.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::RuleOutputError;
use crate::rules::Rule;
use crate::suppress::Ongoing;
use pantau_core::model::{Alert, Severity};
use pantau_core::regions::Regions;
use pantau_core::text::{fill, hex_prefix, tanggal};

/// Columns every rule must return; the rest is evidence.
pub(crate) const REQUIRED_COLUMNS: [&str; 3] = ["entity_id", "regency_code", "score"];

pub fn alert_id(
    rule_id: &str,
    entity_id: &str,
    window_start_us: i64,
    window_end_us: i64,
) -> String {
    let mut h = Sha256::new();
    for part in [
        rule_id,
        entity_id,
        &window_start_us.to_string(),
        &window_end_us.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0x1f]);
    }
    hex_prefix(&h.finalize(), 32)
}

fn local_time(us: i64, offset: FixedOffset) -> DateTime<FixedOffset> {
    Utc.timestamp_micros(us)
        .single()
        .unwrap_or_default()
        .with_timezone(&offset)
}

/// Alerts by id without `detected_at`, the one field that differs between two runs over
/// the same input (it is the wall clock): what the demo and the tests compare.
pub fn comparable(alerts: &[Alert]) -> serde_json::Result<BTreeMap<String, Value>> {
    alerts
        .iter()
        .map(|a| {
            let mut value = serde_json::to_value(a)?;
            if let Some(fields) = value.as_object_mut() {
                fields.remove("detected_at");
            }
            Ok((a.alert_id.clone(), value))
        })
        .collect()
}

/// Turns one rule's result rows for one window into alerts.
pub(crate) fn make_alerts(
    rule: &Rule,
    window_start_us: i64,
    window_end_us: i64,
    rows: Vec<Map<String, Value>>,
    detected_at: DateTime<Utc>,
) -> Result<Vec<Alert>, RuleOutputError> {
    let regions = Regions::get();
    let mut alerts = Vec::with_capacity(rows.len());
    for (i, mut row) in rows.into_iter().enumerate() {
        let problem = |p: &str| RuleOutputError {
            rule_id: rule.id.clone(),
            row: i,
            problem: p.to_string(),
        };
        let entity_id = match row.get("entity_id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(problem("has no text entity_id")),
        };
        let regency_code = match row.get("regency_code") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(problem("has no text regency_code")),
        };
        let score = row
            .get("score")
            .and_then(Value::as_f64)
            .ok_or_else(|| problem("has no numeric score"))?;
        let severity = match row.get("severity") {
            Some(Value::String(s)) => Severity::parse(s)
                .ok_or_else(|| problem("has a severity that is not low/medium/high/critical"))?,
            _ => rule.severity,
        };
        let regency = regions.regency(&regency_code);
        let offset = regions.offset_of(&regency_code);
        let regency_name = regency.map(|r| r.name.as_str()).unwrap_or(&regency_code);
        let title = fill(&rule.title, &row, regency_name);
        let summary = fill(&rule.summary, &row, regency_name);
        for key in [
            "entity_id",
            "regency_code",
            "score",
            "severity",
            "window_start",
            "window_end",
        ] {
            row.remove(key);
        }
        alerts.push(Alert {
            alert_id: alert_id(&rule.id, &entity_id, window_start_us, window_end_us),
            rule_id: rule.id.clone(),
            rule_version: rule.version.clone(),
            category: rule.category.clone(),
            severity,
            entity_type: rule.entity_type.clone(),
            entity_id,
            regency_code,
            window_start: local_time(window_start_us, offset),
            window_end: local_time(window_end_us, offset),
            detected_at: detected_at.with_timezone(&offset),
            score,
            title,
            summary,
            evidence: row,
            shadow: rule.shadow,
        });
    }
    Ok(alerts)
}

/// An alert that continues an episode (see `suppress`) says since when, how long, and
/// how many detections since the last alert were not sent again.
pub(crate) fn mark_ongoing(alert: &mut Alert, ongoing: Ongoing) {
    let since = local_time(ongoing.since, *alert.window_start.offset());
    let days = ((alert.window_end - since).num_hours() + 23) / 24;
    alert.evidence.insert(
        "ongoing_since".into(),
        Value::String(since.format("%Y-%m-%d").to_string()),
    );
    alert.evidence.insert("ongoing_days".into(), days.into());
    alert
        .evidence
        .insert("held_back".into(), ongoing.suppressed.into());
    alert.summary.push_str(&format!(
        " Berlangsung sejak {} ({days} hari).",
        tanggal(since)
    ));
    if ongoing.suppressed > 0 {
        alert.summary.push_str(&format!(
            " {} deteksi sejak peringatan sebelumnya tidak dikirim ulang.",
            ongoing.suppressed
        ));
    }
}

/// One readable line for a terminal. A person reads it: an entity that names a person
/// (a card) is shown by type alone.
pub fn one_line(a: &Alert) -> String {
    let entity = if pantau_core::pseudonym::names_a_person(&a.entity_type) {
        ""
    } else {
        a.entity_id.as_str()
    };
    format!(
        "[{}{}] {} {} {} {}: {} — {}",
        if a.shadow { "SHADOW " } else { "" },
        a.severity.as_str().to_uppercase(),
        a.window_start.format("%Y-%m-%d %H:%M%:z"),
        a.category,
        a.entity_type,
        entity,
        a.title,
        a.summary
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_depend_on_rule_entity_and_window_only() {
        let a = alert_id("r", "O1", 0, 10);
        assert_eq!(a, alert_id("r", "O1", 0, 10));
        assert_ne!(a, alert_id("r", "O2", 0, 10));
        assert_ne!(a, alert_id("r", "O1", 10, 20));
        assert_ne!(a, alert_id("q", "O1", 0, 10));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn fills_templates_with_indonesian_numbers() {
        let row = json!({"price": 27000, "ratio": 1.456, "p": 0.0000123, "name": "Toko A"});
        let row = row.as_object().unwrap();
        assert_eq!(
            fill(
                "{name} Rp {price} ({ratio}x, p={p}) di {regency_name} {missing}",
                row,
                "Kota X"
            ),
            "Toko A Rp 27.000 (1,46x, p=1,2e-5) di Kota X -"
        );
    }
}
