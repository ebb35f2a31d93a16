//! The configuration's value types, each with a `parse` that says what is
//! wrong in a [`ValueError`], and a `Deserialize` through it (so the YAML
//! error is located): durations, names, addresses, intervals, bounded
//! integers, probe targets.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A value that does not parse; the message names it and the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("invalid duration {0:?} (use e.g. 10ms, 1.5s, 1m30s)")]
    Duration(String),
    #[error("duration {0:?} is too long (at most 365d)")]
    DurationRange(String),
    #[error("invalid name {0:?}: must be 1 to 64 bytes")]
    NameLength(String),
    #[error("invalid name {0:?}: no spaces or control characters")]
    NameChars(String),
    #[error("invalid address {0:?} (use host:port, e.g. 10.0.0.2:10026)")]
    Address(String),
    #[error("invalid listen address {0:?} (use ip:port or :port)")]
    ListenAddress(String),
    #[error("interval {0:?} out of range 10ms..60s")]
    IntervalRange(String),
    #[error("invalid probe target {target:?}: {why}")]
    ProbeTarget { target: String, why: String },
}

/// A duration written as Prometheus writes them: `10ms`, `1.5s`, `1m30s`, `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a visitor, so the deserializer attaches the error's location.
        struct Vis;
        impl serde::de::Visitor<'_> for Vis {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 10ms, 1.5s or 1m30s")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_str(Vis)
    }
}

/// Parses `10ms`, `250us`, `1.5s`, `1m30s`, `2h`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let bad = || ValueError::Duration(s.to_string());
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    // Exact decimal arithmetic in nanoseconds (no float rounding), saturating.
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (int, frac) = rest[..num_end]
            .split_once('.')
            .unwrap_or((&rest[..num_end], ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(bad());
        }
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ns: u128 = match &rest[..unit_end] {
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(bad()),
        };
        let digits = |t: &str| {
            t.bytes().try_fold(0u128, |a, c| {
                a.checked_mul(10)?.checked_add(u128::from(c - b'0'))
            })
        };
        // Past 39 digits the value is far beyond the limit anyway; fraction
        // digits past 18 are below a nanosecond.
        let int_v = digits(int).unwrap_or(u128::MAX);
        let frac = &frac[..frac.len().min(18)];
        let frac_v = digits(frac).unwrap_or(0);
        let frac_ns = frac_v.saturating_mul(unit_ns) / 10u128.pow(frac.len() as u32);
        total = total
            .saturating_add(int_v.saturating_mul(unit_ns))
            .saturating_add(frac_ns);
        rest = &rest[unit_end..];
    }
    u64::try_from(total)
        .ok()
        .map(Duration::from_nanos)
        .filter(|d| *d <= MAX_DURATION)
        .ok_or_else(|| ValueError::DurationRange(s.to_string()))
}

/// Longest duration any setting takes (365 days): longer ones are errors,
/// so nothing downstream overflows adding one to a clock.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// `secs` as a duration when it is finite, not negative and at most
/// [`MAX_DURATION`] (never panics, unlike `Duration::from_secs_f64`).
pub fn bounded_duration(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX_DURATION)
}

/// A peer or host name: 1 to 64 bytes, no whitespace or control characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(pub String);

impl Name {
    /// Checks a name.
    pub fn parse(s: &str) -> Result<Name, ValueError> {
        if s.is_empty() || s.len() > 64 {
            return Err(ValueError::NameLength(s.to_string()));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValueError::NameChars(s.to_string()));
        }
        Ok(Name(s.to_string()))
    }
}

/// `host:port` (a name, an IPv4 address or a bracketed IPv6 address), resolved when used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPort(pub String);

impl HostPort {
    /// Checks the shape and the port.
    pub fn parse(s: &str) -> Result<HostPort, ValueError> {
        let bad = || ValueError::Address(s.to_string());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = if let Some(v6) = host.strip_prefix('[') {
            v6.strip_suffix(']')
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        };
        if port == 0 || !host_ok {
            return Err(bad());
        }
        Ok(HostPort(s.to_string()))
    }
}

/// A socket address to bind; `:port` means every interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub std::net::SocketAddr);

impl ListenAddr {
    /// Parses `ip:port` or `:port`.
    pub fn parse(s: &str) -> Result<ListenAddr, ValueError> {
        let full = match s.strip_prefix(':') {
            Some(p) => format!("0.0.0.0:{p}"),
            None => s.to_string(),
        };
        full.parse()
            .map(ListenAddr)
            .map_err(|_| ValueError::ListenAddress(s.to_string()))
    }
}

/// The heartbeat interval: a duration from 10ms to 60s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval(pub Duration);

impl Interval {
    /// Parses and bounds an interval.
    pub fn parse(s: &str) -> Result<Interval, ValueError> {
        let d = parse_duration(s)?;
        if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
            return Err(ValueError::IntervalRange(s.to_string()));
        }
        Ok(Interval(d))
    }
}

/// An integer from `LO` to `HI`; its default is `LO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const LO: u64, const HI: u64>(pub u64);

impl<const LO: u64, const HI: u64> Default for Bounded<LO, HI> {
    fn default() -> Self {
        Bounded(LO)
    }
}

impl<'de, const LO: u64, const HI: u64> Deserialize<'de> for Bounded<LO, HI> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<const LO: u64, const HI: u64>;
        impl<const LO: u64, const HI: u64> serde::de::Visitor<'_> for Vis<LO, HI> {
            type Value = Bounded<LO, HI>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an integer from {LO} to {HI}")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if (LO..=HI).contains(&v) {
                    Ok(Bounded(v))
                } else {
                    Err(E::custom(format!("{v} out of range {LO}..{HI}")))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::custom(format!("{v} out of range {LO}..{HI}"))),
                }
            }
        }
        d.deserialize_u64(Vis::<LO, HI>)
    }
}

/// Where a domain probe goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ProbeTarget {
    /// Only a placeholder for a value that failed to parse.
    #[default]
    Invalid,
    /// A TCP connect to `host:port`.
    Tcp(HostPort),
    /// An HTTP/1.1 GET of `path` on `host:port`; 2xx and 3xx succeed.
    Http { authority: HostPort, path: String },
}

impl ProbeTarget {
    /// Parses `tcp://host:port` or `http://host:port[/path]` (port 80 by default).
    pub fn parse(s: &str) -> Result<ProbeTarget, ValueError> {
        let bad = |why: &dyn fmt::Display| ValueError::ProbeTarget {
            target: s.to_string(),
            why: why.to_string(),
        };
        if s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(&"too long or has spaces"));
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            return HostPort::parse(rest)
                .map(ProbeTarget::Tcp)
                .map_err(|e| bad(&e));
        }
        if let Some(rest) = s.strip_prefix("http://") {
            let (auth, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let has_port = auth.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
            let auth = if has_port {
                auth.to_string()
            } else {
                format!("{auth}:80")
            };
            let authority = HostPort::parse(&auth).map_err(|e| bad(&e))?;
            return Ok(ProbeTarget::Http {
                authority,
                path: path.to_string(),
            });
        }
        Err(bad(&"use tcp://host:port or http://host:port/path"))
    }
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeTarget::Invalid => f.write_str("invalid"),
            ProbeTarget::Tcp(a) => write!(f, "tcp://{}", a.0),
            ProbeTarget::Http { authority, path } => write!(f, "http://{}{path}", authority.0),
        }
    }
}

/// Implements `Deserialize` from a string through a visitor (so the error is
/// located) with the type's `parse`.
macro_rules! from_str_de {
    ($t:ty, $what:expr) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Vis;
                impl serde::de::Visitor<'_> for Vis {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$t, E> {
                        <$t>::parse(s).map_err(E::custom)
                    }
                }
                d.deserialize_str(Vis)
            }
        }
    };
}

from_str_de!(Name, "a name");
from_str_de!(HostPort, "host:port");
from_str_de!(ListenAddr, "ip:port or :port");
from_str_de!(Interval, "a duration from 10ms to 60s");
from_str_de!(ProbeTarget, "tcp://host:port or http://host:port/path");
