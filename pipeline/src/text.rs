//! Text forms every part of pantau shares: durations as people write them in flags,
//! config files and rule metadata (`10m`, `7d`), and the hex prefixes of digests that
//! ids and signatures are made of.

use std::time::Duration;

/// The longest duration any setting or rule may name: a hundred years. Durations are
/// added to event times in µs (`i64`); anything longer means a typo, and refusing it here
/// keeps every later sum in range.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

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
