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
    /// Firing: evacuate `host`. One job per (fingerprint, starts_at).
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
    /// `startsAt` exactly as sent (the dedupe key).
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
    let starts_at_unix = parse_rfc3339(&a.starts_at).ok_or_else(|| AlertError::StartsAt {
        fingerprint: a.fingerprint.clone(),
        starts_at: a.starts_at.clone(),
    })?;
    let key = AlertKey {
        fingerprint: a.fingerprint.clone(),
        starts_at: a.starts_at.clone(),
        starts_at_unix,
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

/// Parses `2024-05-01T12:00:00.123Z` or `...+02:00` into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..n]).parse().ok()?;
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (num_str(&o[1..3])? * 3600 + num_str(&o[4..6])? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some((days * 86400 + h * 3600 + mi * 60 + sec - offset) as f64 + frac)
}

fn num_str(s: &str) -> Option<i64> {
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())?
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
