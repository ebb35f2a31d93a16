//! Human units in YAML: durations (`30s`, `1m30s`, `500ms`) and byte sizes
//! (`256MiB`, `1GiB`, `100MB`, or a plain integer of bytes).

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// Parses `90`, `30s`, `1m30s`, `500ms`, `2h`, `1.5s` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return crate::config::bounded_duration(secs);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += num * scale;
    }
    crate::config::bounded_duration(total)
}

/// Parses `4096`, `256MiB`, `1GiB`, `100MB`, `64KiB`, `1.5GiB`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let num: f64 = s[..split].parse().ok()?;
    let scale = match s[split..].trim() {
        "" | "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    let v = num * scale;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v.round() as u64)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    U(u64),
    F(f64),
    S(String),
}

/// serde `deserialize_with` for a duration written as text or seconds.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::U(n) => crate::config::bounded_duration(n as f64)
            .ok_or_else(|| de::Error::custom(format!("invalid duration {n} (at most 365 days)"))),
        NumOrStr::F(f) => crate::config::bounded_duration(f).ok_or_else(|| {
            de::Error::custom(format!("invalid duration {f} (0 to 365 days, in seconds)"))
        }),
        NumOrStr::S(s) => parse_duration(&s).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid duration {s:?} (expected e.g. 30s, 1m30s, 500ms, 2h; at most 365 days)"
            ))
        }),
    }
}

/// serde `deserialize_with` for a byte size written as an integer or with a unit.
pub fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrStr::deserialize(d)? {
        NumOrStr::U(n) => Ok(n),
        NumOrStr::F(f) => Err(de::Error::custom(format!(
            "invalid byte size {f} (expected an integer or e.g. 256MiB)"
        ))),
        NumOrStr::S(s) => parse_bytes(&s).ok_or_else(|| {
            de::Error::custom(format!(
                "invalid byte size {s:?} (expected e.g. 4096, 64KiB, 256MiB, 1GiB, 100MB)"
            ))
        }),
    }
}

/// Like [`de_bytes`], for an optional field (use with `#[serde(default)]`).
pub fn de_opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_bytes(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_duration("3 parsecs"), None);
        assert_eq!(parse_duration("-1"), None);
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("256MiB"), Some(256 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_bytes("100MB"), Some(100_000_000));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("5 parsecs"), None);
    }
}
