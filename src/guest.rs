//! The guest-agent protocol: the keys a guest writes under its own xenstore
//! `data/xentinel/` directory, and their validation on the dom0 side.
//!
//! Anything may write there (the guest owns the directory), so every value is
//! checked: garbage, negative, oversized or implausible values make that one
//! metric absent for that domain and count one rejection, never a panic and
//! never a wrong number.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::snapshot::{DomId, GuestReport};

/// Directory under a domain's xenstore home where the agent writes.
pub const DATA_DIR: &str = "data/xentinel";
/// `/proc/vmstat` pgfault: all page faults (minor and major).
pub const KEY_PGFAULT: &str = "pgfault";
/// `/proc/vmstat` pgmajfault.
pub const KEY_PGMAJFAULT: &str = "pgmajfault";
/// MemAvailable in bytes.
pub const KEY_MEM_AVAILABLE: &str = "mem_available_bytes";
/// SwapTotal − SwapFree in bytes.
pub const KEY_SWAP_USED: &str = "swap_used_bytes";
/// Unix time of the report, in seconds.
pub const KEY_TIMESTAMP: &str = "timestamp";
/// Probe target for the domain's service (`tcp://host:port` or `http://…`).
pub const KEY_PROBE: &str = "probe";

/// Keys XCP-ng's guest agents (xe-guest-utilities, xen-guest-agent) write
/// directly under a domain's `data/`: MemAvailable and MemTotal, in KiB.
pub const XAPI_MEMINFO_FREE: &str = "data/meminfo_free";
/// See [`XAPI_MEMINFO_FREE`].
pub const XAPI_MEMINFO_TOTAL: &str = "data/meminfo_total";

/// Every rejection reason, rendered always so the counter exists from the start.
pub const REASONS: [&str; 4] = ["garbage", "negative", "oversized", "implausible"];

/// Longest accepted value, in bytes (u64::MAX has 20 digits).
const MAX_LEN: usize = 20;
/// How far in the future a report's timestamp may be (clock skew).
const MAX_FUTURE_SECS: f64 = 300.0;

/// Why a value was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Garbage,
    Negative,
    Oversized,
    Implausible,
}

impl Reject {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        REASONS[self as usize]
    }
}

/// Parses a non-negative decimal integer as the agent writes it.
pub fn parse_u64(raw: &str) -> Result<u64, Reject> {
    if raw.len() > MAX_LEN {
        return Err(Reject::Oversized);
    }
    if let Some(rest) = raw.strip_prefix('-') {
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Reject::Negative);
        }
        return Err(Reject::Garbage);
    }
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Reject::Garbage);
    }
    raw.parse::<u64>().map_err(|_| Reject::Oversized)
}

/// Counts rejections, once per distinct bad value of a key of a domain, so a
/// value that stays bad is not counted again at every scrape.
#[derive(Debug, Default)]
pub struct Rejections {
    inner: Mutex<RejectionState>,
}

#[derive(Debug, Default)]
struct RejectionState {
    counts: BTreeMap<&'static str, u64>,
    seen: HashMap<(DomId, &'static str), String>,
}

impl Rejections {
    /// Records the outcome for one key: a rejection counts when the bad value is new.
    pub fn record(&self, domid: DomId, key: &'static str, raw: &str, outcome: Result<(), Reject>) {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(()) => {
                st.seen.remove(&(domid, key));
            }
            Err(r) => {
                if st.seen.get(&(domid, key)).map(String::as_str) != Some(raw) {
                    st.seen.insert((domid, key), raw.to_string());
                    *st.counts.entry(r.as_str()).or_insert(0) += 1;
                    log::warn!(
                        "rejected guest value domid={domid} key={key} reason={} value={raw:?}",
                        r.as_str()
                    );
                }
            }
        }
    }

    /// Forgets domains that are gone (their domids may be reused).
    pub fn retain_domains(&self, alive: impl Fn(DomId) -> bool) {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.seen.retain(|(d, _), _| alive(*d));
    }

    /// Cumulative counts by reason.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counts
            .clone()
    }
}

/// Builds a validated report from the raw keys of one domain.
///
/// `keys` maps key name → raw value; `memory_limit` is the domain's maximum
/// memory (values above it are implausible); `now` is Unix time in seconds.
pub fn validate(
    domid: DomId,
    keys: &HashMap<String, String>,
    memory_limit: Option<u64>,
    now: f64,
    rej: &Rejections,
) -> GuestReport {
    let get = |key: &'static str, check: &dyn Fn(u64) -> bool| -> Option<u64> {
        let raw = keys.get(key)?;
        let res = parse_u64(raw).and_then(|v| {
            if check(v) {
                Ok(v)
            } else {
                Err(Reject::Implausible)
            }
        });
        rej.record(domid, key, raw, res.map(|_| ()));
        res.ok()
    };
    let within_memory = |v: u64| memory_limit.is_none_or(|m| v <= m);
    let total = get(KEY_PGFAULT, &|_| true);
    let major = get(KEY_PGMAJFAULT, &|v| total.is_none_or(|t| v <= t));
    let mem_available = get(KEY_MEM_AVAILABLE, &within_memory);
    let swap_used = get(KEY_SWAP_USED, &|v| v < (1u64 << 50));
    let ts = get(KEY_TIMESTAMP, &|v| (v as f64) <= now + MAX_FUTURE_SECS);
    GuestReport {
        page_faults_minor: match (total, major) {
            (Some(t), Some(m)) => Some(t - m),
            (Some(t), None) if !keys.contains_key(KEY_PGMAJFAULT) => Some(t),
            _ => None,
        },
        page_faults_major: major,
        memory_available_bytes: mem_available,
        swap_used_bytes: swap_used,
        age_seconds: ts.map(|t| (now - t as f64).max(0.0)),
    }
}

/// MemAvailable in bytes from XCP-ng's `data/meminfo_free` (KiB), checked
/// like the agent's own value: at most `data/meminfo_total` (when given and
/// valid) and the domain's maximum memory. Used only when the domain has no
/// `data/xentinel/mem_available_bytes`, which wins when both exist.
pub fn validate_xapi_free(
    domid: DomId,
    free_kib: &str,
    total_kib: Option<&str>,
    memory_limit: Option<u64>,
    rej: &Rejections,
) -> Option<u64> {
    let total = total_kib
        .and_then(|t| parse_u64(t).ok())
        .and_then(|t| t.checked_mul(1024));
    let res = parse_u64(free_kib).and_then(|kib| {
        let bytes = kib.checked_mul(1024).ok_or(Reject::Oversized)?;
        let plausible = total.is_none_or(|t| bytes <= t) && memory_limit.is_none_or(|m| bytes <= m);
        if plausible {
            Ok(bytes)
        } else {
            Err(Reject::Implausible)
        }
    });
    rej.record(domid, XAPI_MEMINFO_FREE, free_kib, res.map(|_| ()));
    res.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_rejects_every_kind_of_bad_value() {
        assert_eq!(parse_u64("42"), Ok(42));
        assert_eq!(parse_u64("-5"), Err(Reject::Negative));
        assert_eq!(parse_u64("-"), Err(Reject::Garbage));
        assert_eq!(parse_u64("12abc"), Err(Reject::Garbage));
        assert_eq!(parse_u64(""), Err(Reject::Garbage));
        assert_eq!(parse_u64(" 1"), Err(Reject::Garbage));
        assert_eq!(parse_u64("1.5"), Err(Reject::Garbage));
        assert_eq!(parse_u64("99999999999999999999"), Err(Reject::Oversized));
        assert_eq!(parse_u64(&"9".repeat(4096)), Err(Reject::Oversized));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
    }

    #[test]
    fn a_good_report_is_split_into_minor_and_major() {
        let rej = Rejections::default();
        let k = keys(&[
            ("pgfault", "1000"),
            ("pgmajfault", "10"),
            ("mem_available_bytes", "1048576"),
            ("swap_used_bytes", "0"),
            ("timestamp", "1000"),
        ]);
        let r = validate(5, &k, Some(1 << 30), 1002.5, &rej);
        assert_eq!(r.page_faults_minor, Some(990));
        assert_eq!(r.page_faults_major, Some(10));
        assert_eq!(r.memory_available_bytes, Some(1_048_576));
        assert_eq!(r.age_seconds, Some(2.5));
        assert!(rej.counts().is_empty());
    }

    #[test]
    fn bad_values_are_absent_and_counted_once() {
        let rej = Rejections::default();
        let k = keys(&[
            ("pgfault", "garbage"),
            ("pgmajfault", "-3"),
            ("mem_available_bytes", "99999999999"),
            ("timestamp", "99999999999"),
        ]);
        for _ in 0..3 {
            let r = validate(5, &k, Some(1 << 30), 1000.0, &rej);
            assert_eq!(r, GuestReport::default());
        }
        let c = rej.counts();
        assert_eq!(c.get("garbage"), Some(&1));
        assert_eq!(c.get("negative"), Some(&1));
        assert_eq!(c.get("implausible"), Some(&2));
        // A new bad value counts again.
        let k2 = keys(&[("pgfault", "other garbage")]);
        validate(5, &k2, None, 1000.0, &rej);
        assert_eq!(rej.counts().get("garbage"), Some(&2));
    }

    #[test]
    fn xcp_ng_meminfo_free_is_kib_and_checked() {
        let rej = Rejections::default();
        let v = validate_xapi_free(3, "524288", Some("1048576"), Some(1 << 30), &rej);
        assert_eq!(v, Some(512 << 20));
        assert_eq!(
            validate_xapi_free(3, "524288", None, None, &rej),
            Some(512 << 20)
        );
        // Above MemTotal, above the domain's maximum, garbage, overflow.
        assert_eq!(
            validate_xapi_free(4, "2048", Some("1024"), None, &rej),
            None
        );
        assert_eq!(
            validate_xapi_free(5, "2048", None, Some(1 << 20), &rej),
            None
        );
        assert_eq!(validate_xapi_free(6, "12 kB", None, None, &rej), None);
        assert_eq!(
            validate_xapi_free(7, "18446744073709551615", None, None, &rej),
            None
        );
        let c = rej.counts();
        assert_eq!(c.get("implausible"), Some(&2));
        assert_eq!(c.get("garbage"), Some(&1));
        assert_eq!(c.get("oversized"), Some(&1));
    }

    #[test]
    fn major_above_total_is_implausible() {
        let rej = Rejections::default();
        let k = keys(&[("pgfault", "10"), ("pgmajfault", "11")]);
        let r = validate(1, &k, None, 0.0, &rej);
        assert_eq!(r.page_faults_major, None);
        assert_eq!(r.page_faults_minor, None);
        assert_eq!(rej.counts().get("implausible"), Some(&1));
    }
}
