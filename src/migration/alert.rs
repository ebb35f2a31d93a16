//! Alertmanager's webhook payload (version "4"): types, validation, and
//! sorting of each alert into "evacuate", "resolve" or "ignored (reason)".

use std::collections::BTreeMap;

use serde::Deserialize;

/// The label that asks the webhook to act, and the value that means evacuation.
pub const ACTION_LABEL: &str = "xentinel_action";
/// Value of [`ACTION_LABEL`] that asks for an evacuation.
pub const ACTION_EVACUATE: &str = "evacuate";
/// Label naming the host to evacuate.
pub const HOST_LABEL: &str = "host";

/// One webhook request body, as Alertmanager 0.x sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    pub version: String,
    #[serde(default)]
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u64,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub external_url: String,
    pub alerts: Vec<Alert>,
}

/// One alert of a payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default)]
    pub generator_url: String,
    pub fingerprint: String,
}

/// What one alert asks of the webhook.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Firing: evacuate `host`. One job per (fingerprint, instant of startsAt).
    Evacuate(AlertKey),
    /// Resolved: cancel what has not started for this alert.
    Resolve(AlertKey),
    /// Not for us; the reason is the `reason` label of `xentinel_alerts_ignored_total`.
    Ignored(&'static str),
}

/// The identity of one alert occurrence and the host it names.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertKey {
    pub fingerprint: String,
    /// `startsAt` in its one canonical spelling ([`Instant3339::canonical`]):
    /// with the fingerprint, the dedupe key, so one instant written four ways
    /// is one job.
    pub starts_at: String,
    /// `startsAt` as Unix seconds.
    pub starts_at_unix: f64,
    pub host: String,
}

/// What is wrong with a payload or one of its alerts: a sentence for the
/// 400 reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("malformed JSON payload: {0}")]
    Json(String),
    #[error("unsupported payload version {0:?} (this webhook speaks Alertmanager's version \"4\")")]
    Version(String),
    #[error("unknown payload status {0:?}")]
    PayloadStatus(String),
    #[error("alert {0:?} has {ACTION_LABEL}=\"{ACTION_EVACUATE}\" but no {HOST_LABEL:?} label")]
    NoHost(String),
    #[error("evacuation alert for host {0:?} has no fingerprint")]
    NoFingerprint(String),
    #[error("alert {fingerprint:?}: startsAt {starts_at:?} is not an RFC 3339 time")]
    StartsAt {
        fingerprint: String,
        starts_at: String,
    },
    #[error("alert {fingerprint:?}: unknown status {status:?}")]
    Status { fingerprint: String, status: String },
}

/// Parses and validates a body.
pub fn parse(body: &[u8]) -> Result<Payload, AlertError> {
    let p: Payload = serde_json::from_slice(body).map_err(|e| AlertError::Json(e.to_string()))?;
    if p.version != "4" {
        return Err(AlertError::Version(p.version));
    }
    if p.status != "firing" && p.status != "resolved" {
        return Err(AlertError::PayloadStatus(p.status));
    }
    Ok(p)
}

/// Sorts one alert; an evacuation alert with missing or bad fields is an error.
pub fn classify(a: &Alert) -> Result<Intent, AlertError> {
    if a.labels.get(ACTION_LABEL).map(String::as_str) != Some(ACTION_EVACUATE) {
        return Ok(Intent::Ignored("not_evacuate"));
    }
    let Some(host) = a.labels.get(HOST_LABEL).filter(|h| !h.is_empty()) else {
        return Err(AlertError::NoHost(a.fingerprint.clone()));
    };
    if a.fingerprint.is_empty() {
        return Err(AlertError::NoFingerprint(host.clone()));
    }
    let instant = parse_instant(&a.starts_at).ok_or_else(|| AlertError::StartsAt {
        fingerprint: a.fingerprint.clone(),
        starts_at: a.starts_at.clone(),
    })?;
    let key = AlertKey {
        fingerprint: a.fingerprint.clone(),
        starts_at: instant.canonical(),
        starts_at_unix: instant.unix(),
        host: host.clone(),
    };
    match a.status.as_str() {
        "firing" => Ok(Intent::Evacuate(key)),
        "resolved" => Ok(Intent::Resolve(key)),
        s => Err(AlertError::Status {
            fingerprint: a.fingerprint.clone(),
            status: s.to_string(),
        }),
    }
}

/// An instant parsed from RFC 3339: Unix seconds and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant3339 {
    pub secs: i64,
    pub nanos: u32,
}

impl Instant3339 {
    /// Unix seconds as a float (sub-microsecond precision is lost).
    pub fn unix(self) -> f64 {
        self.secs as f64 + f64::from(self.nanos) / 1e9
    }

    /// The one spelling of this instant: UTC, `Z`, and the fraction without
    /// trailing zeros (none when whole), as Go's `time.RFC3339Nano` writes it
    /// in UTC, which is what Alertmanager sends, so its own `startsAt` values
    /// keep their spelling.
    pub fn canonical(self) -> String {
        let base = crate::log::rfc3339(self.secs, 0);
        let base = base.strip_suffix(".000Z").unwrap_or(&base);
        if self.nanos == 0 {
            format!("{base}Z")
        } else {
            let frac = format!("{:09}", self.nanos);
            format!("{base}.{}Z", frac.trim_end_matches('0'))
        }
    }
}

/// Parses `2024-05-01T12:00:00.123Z` or `...+02:00` into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    parse_instant(s).map(Instant3339::unix)
}

/// Parses RFC 3339 (`2024-05-01T12:00:00.123456789Z`, `...+02:00`; `t`, `z`
/// and a space separator accepted) into an instant. Works on bytes and
/// checks every one, so any text (multi-byte characters included) gives
/// `None` or an instant, never a panic; at most 9 fraction digits.
pub fn parse_instant(s: &str) -> Option<Instant3339> {
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i64> {
        let t = b.get(from..from + n)?;
        t.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let at = |i: usize, ok: &[u8]| b.get(i).is_some_and(|c| ok.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt ") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (y, mo, d) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (h, mi, sec) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if at(i, b".") {
        i += 1;
        let n = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let f = u32::try_from(digits(i, n)?).ok()?;
        nanos = f * 10u32.pow(9 - n as u32);
        i += n;
    }
    let offset = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(Instant3339 {
        secs: days * 86400 + h * 3600 + mi * 60 + sec - offset,
        nanos,
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats Unix seconds as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339(unix: f64) -> String {
    let ms = (unix * 1000.0).round() as i64;
    crate::log::rfc3339(ms.div_euclid(1000), ms.rem_euclid(1000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_rejects_garbage() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339("2024-03-01T12:30:15.5+01:00"),
            Some(1_709_292_615.5)
        );
        assert_eq!(format_rfc3339(1_709_292_615.5), "2024-03-01T11:30:15.500Z");
        let t = 1_700_000_123.25;
        assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn multi_byte_offsets_and_odd_lengths_are_rejected_not_panics() {
        // Issue 15, finding 1: these panicked with "byte index 3 is not a char boundary".
        for bad in [
            "2024-01-01T00:00:00+0é00",
            "2024-01-01T00:00:00+€00",
            "2024-01-01T00:00:00.€Z",
            "2024-01-01T00:00:00é",
            "2024-01-01T00:00:€0Z",
            "€€€€€€€€€€€€€€€€€€€€",
            "2024-01-01T00:00:00+01:00x",
            "2024-01-01T00:00:00+24:00",
            "2024-02-30T00:00:00Z",
            "2024-01-01T00:00:00.1234567890Z",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
        let mut a = alert(
            "firing",
            &[("xentinel_action", "evacuate"), ("host", "xen1")],
        );
        a.starts_at = "2024-01-01T00:00:00+0é00".into();
        let e = classify(&a).unwrap_err().to_string();
        assert!(e.contains("is not an RFC 3339 time"), "{e}");
    }

    #[test]
    fn one_instant_has_one_canonical_spelling() {
        // Issue 15, finding 2: four spellings of one instant made four jobs.
        let spellings = [
            "2024-05-01T12:00:00.5Z",
            "2024-05-01T14:00:00.500+02:00",
            "2024-05-01t07:30:00.500000000-04:30",
            "2024-05-01 12:00:00.50z",
        ];
        for s in spellings {
            let i = parse_instant(s).unwrap();
            assert_eq!(i.canonical(), "2024-05-01T12:00:00.5Z", "{s}");
        }
        // What Alertmanager sends (Go's RFC3339Nano in UTC) keeps its spelling,
        // so job logs written before this change still match.
        for s in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.123456789Z",
            "1999-12-31T23:59:59.01Z",
        ] {
            assert_eq!(parse_instant(s).unwrap().canonical(), s);
        }
        let mut a = alert(
            "firing",
            &[("xentinel_action", "evacuate"), ("host", "xen1")],
        );
        a.starts_at = "2024-05-01T14:00:00.500+02:00".into();
        let Ok(Intent::Evacuate(k)) = classify(&a) else {
            panic!("not an evacuation")
        };
        assert_eq!(k.starts_at, "2024-05-01T12:00:00.5Z");
        assert_eq!(k.starts_at_unix, 1_714_564_800.5);
    }

    fn alert(status: &str, labels: &[(&str, &str)]) -> Alert {
        Alert {
            status: status.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at: "2024-01-01T00:00:00Z".into(),
            ends_at: String::new(),
            generator_url: String::new(),
            fingerprint: "abc".into(),
        }
    }

    #[test]
    fn alerts_are_sorted_by_action_and_status() {
        let ev = [("xentinel_action", "evacuate"), ("host", "xen1")];
        assert!(
            matches!(classify(&alert("firing", &ev)), Ok(Intent::Evacuate(k)) if k.host == "xen1")
        );
        assert!(matches!(
            classify(&alert("resolved", &ev)),
            Ok(Intent::Resolve(_))
        ));
        assert_eq!(
            classify(&alert("firing", &[("alertname", "X")])),
            Ok(Intent::Ignored("not_evacuate"))
        );
        assert!(classify(&alert("firing", &[("xentinel_action", "evacuate")])).is_err());
    }

    #[test]
    fn payload_version_is_checked() {
        let body = br#"{"version":"3","status":"firing","alerts":[]}"#;
        assert!(parse(body).unwrap_err().to_string().contains("version"));
        assert!(
            parse(b"{")
                .unwrap_err()
                .to_string()
                .contains("malformed JSON")
        );
        let ok = br#"{"version":"4","status":"firing","alerts":[]}"#;
        assert!(parse(ok).is_ok());
    }
}
