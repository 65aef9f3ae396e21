//! Text forms every part of pantau shares: durations as people write them in flags,
//! config files and rule metadata (`10m`, `7d`), the hex prefixes of digests that ids
//! and signatures are made of, and the Bahasa Indonesia forms of numbers, dates and
//! `{column}` templates that alerts, notifications and the monthly report are written in.

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

/// The longest duration any setting or rule may name: a hundred years. Durations are
/// added to event times in µs (`i64`); anything longer means a typo, and refusing it here
/// keeps every later sum in range.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit (ms, s, m, h, d), e.g. 10m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(format!("{s:?}: unit must be ms, s, m, h or d")),
    };
    if !secs.is_finite() || secs > MAX_DURATION.as_secs_f64() {
        return Err(format!("{s:?} is longer than the longest accepted, 36500d"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The first `n` hex digits of `bytes`.
pub fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(n)
        .collect()
}

/// Indonesian number formatting: `1.234.567` and `12,5`.
pub fn format_id_number(v: &Value) -> String {
    fn group(int: u64) -> String {
        let s = int.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push('.');
            }
            out.push(c);
        }
        out
    }
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let i = n.as_i64().unwrap_or(i64::MAX);
            let sign = if i < 0 { "-" } else { "" };
            format!("{sign}{}", group(i.unsigned_abs()))
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f != 0.0 && f.abs() < 0.01 {
                format!("{f:.1e}").replace('.', ",")
            } else {
                format!("{f:.2}").replace('.', ",")
            }
        }
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// Fills `{column}` placeholders from a result row (and `{regency_name}`). A column that
/// is null in the row (JSON rows leave nulls out) shows as `-`, never as the raw
/// placeholder.
pub fn fill(template: &str, row: &Map<String, Value>, regency_name: &str) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    for piece in template_pieces(template) {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Placeholder("regency_name") => out.push_str(regency_name),
            Piece::Placeholder(key) => match row.get(key) {
                Some(v) => out.push_str(&format_id_number(v)),
                None => out.push('-'),
            },
        }
    }
    out
}

/// The `{column}` names a template uses (`regency_name` included).
pub fn placeholders(template: &str) -> Vec<&str> {
    template_pieces(template)
        .into_iter()
        .filter_map(|p| match p {
            Piece::Placeholder(key) => Some(key),
            Piece::Text(_) => None,
        })
        .collect()
}

enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// A template split into literal text and `{name}` placeholders; an unclosed `{` is text.
fn template_pieces(template: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        pieces.push(Piece::Text(&rest[..open]));
        pieces.push(Piece::Placeholder(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    pieces.push(Piece::Text(rest));
    pieces
}

pub const MONTHS: [&str; 12] = [
    "Januari",
    "Februari",
    "Maret",
    "April",
    "Mei",
    "Juni",
    "Juli",
    "Agustus",
    "September",
    "Oktober",
    "November",
    "Desember",
];

/// A date as Indonesians write it: `3 Januari 2023`.
pub fn tanggal(at: DateTime<FixedOffset>) -> String {
    use chrono::Datelike;
    format!(
        "{} {} {}",
        at.day(),
        MONTHS[at.month0() as usize],
        at.year()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_too_long_to_represent_is_an_error_not_a_panic() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        let huge = format!("{}s", "9".repeat(400));
        for text in ["100000000000000000000d", huge.as_str(), "36501d"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains("longest accepted"), "{text}: {error}");
        }
        assert!(parse_duration("NaNs").is_err());
    }

    #[test]
    fn parses_durations_with_units() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert!(parse_duration("10 minutes").is_err());
    }
}
