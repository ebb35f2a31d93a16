//! Configuration: the YAML file (`--config.file`), its defaults, and errors
//! that name the file, line, column and field — all of them at once.
//!
//! Every leaf is a [`V`], which records its own parse error and lets parsing
//! go on, so one run reports every bad value; unknown keys are found with
//! `serde_ignored` and located in the text. No file means all defaults.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

thread_local! {
    static ERRORS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Set for the strict second pass: leaves propagate their errors.
    static STRICT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A configuration leaf: a value of `T`, or (when it fails to parse) the
/// default with the error recorded for [`load_str`] to report.
#[derive(Debug, Clone, PartialEq)]
pub struct V<T>(pub T);

impl<T> std::ops::Deref for V<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Default> Default for V<T> {
    fn default() -> Self {
        V(T::default())
    }
}

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for V<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match T::deserialize(d) {
            Ok(v) => Ok(V(v)),
            Err(e) if STRICT.with(|s| s.get()) => Err(e),
            Err(e) => {
                ERRORS.with(|errs| errs.borrow_mut().push(e.to_string()));
                Ok(V(T::default()))
            }
        }
    }
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
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 10ms, 1.5s, 1m30s)");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Which source of domain data an exporter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// libxenstat and xenstore of the Xen host this runs on (dom0).
    Xen,
    /// The modelled cluster (one simulated host).
    #[default]
    Sim,
    /// No domain data: this host's health, heartbeats and probes only (a witness node).
    None,
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    pub exporter: ExporterConfig,
    pub warnings: WarningsConfig,
    pub heartbeat: HeartbeatConfig,
    /// Domain service probes named in the file (xenstore may name more).
    pub probes: V<Vec<ProbeConfig>>,
    pub webhook: WebhookConfig,
}

/// `exporter:` — how the exporter collects.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ExporterConfig {
    /// `xen` or `sim`; `--source` wins over it.
    pub source: V<Option<SourceKind>>,
    /// A source that takes longer than this is cut off and marked down.
    pub source_timeout: V<Dur>,
    /// Path of libxenstat; default: the soname Debian ships.
    pub libxenstat: V<Option<PathBuf>>,
    /// Read names, UUIDs, targets and guest data from xenstore (xen source only).
    pub xenstore: V<bool>,
    /// How often every domain probe runs.
    pub probe_interval: V<Dur>,
    /// A probe that has not succeeded within this has failed.
    pub probe_timeout: V<Dur>,
}

impl Default for ExporterConfig {
    fn default() -> Self {
        ExporterConfig {
            source: V(None),
            source_timeout: V(Dur(Duration::from_secs(5))),
            libxenstat: V(None),
            xenstore: V(true),
            probe_interval: V(Dur(Duration::from_secs(10))),
            probe_timeout: V(Dur(Duration::from_secs(2))),
        }
    }
}

/// Default UDP port of the heartbeat (next to the exporter's 10025).
pub const DEFAULT_HEARTBEAT_PORT: u16 = 10026;

/// `heartbeat:` — UDP heartbeats between exporters. The heartbeat runs when
/// a peer, a peers file or a listen address is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HeartbeatConfig {
    /// UDP address to listen on and send from (`:port` means all interfaces).
    pub listen: V<Option<ListenAddr>>,
    /// This host's name in its heartbeats, as its peers list it; default: the hostname.
    pub name: V<Option<Name>>,
    /// Time between two pings to each peer (10ms to 60s).
    pub interval: V<Interval>,
    /// Peers listed here; a peers file may add more.
    pub peers: V<Vec<PeerConfig>>,
    /// A YAML list of peers (same shape as `peers`), re-read when it changes.
    pub peers_file: V<Option<PathBuf>>,
    /// File holding the shared HMAC-SHA256 key; without it packets are not authenticated.
    pub key_file: V<Option<PathBuf>>,
    /// A peer is down after this many intervals without an answer.
    pub down_after: V<Bounded<1, 1000>>,
    /// Window over which the longest gap between two answers is kept.
    pub gap_window: V<Dur>,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            listen: V(None),
            name: V(None),
            interval: V(Interval(Duration::from_millis(100))),
            peers: V(vec![]),
            peers_file: V(None),
            key_file: V(None),
            down_after: V(Bounded(3)),
            gap_window: V(Dur(Duration::from_secs(300))),
        }
    }
}

impl HeartbeatConfig {
    /// Whether the heartbeat should run at all.
    pub fn enabled(&self) -> bool {
        self.listen.is_some() || !self.peers.is_empty() || self.peers_file.is_some()
    }
}

/// One heartbeat peer. Both fields are required.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PeerConfig {
    /// The peer's name: the `peer` label, and the name it sends in its packets.
    pub name: V<Name>,
    /// `host:port` of the peer's heartbeat socket.
    pub address: V<HostPort>,
}

/// One domain probe. Both fields are required.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ProbeConfig {
    /// The domain's name on this host.
    pub domain: V<String>,
    /// `tcp://host:port` or `http://host:port/path`.
    pub target: V<ProbeTarget>,
}

/// A peer or host name: 1 to 64 bytes, no whitespace or control characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(pub String);

impl Name {
    /// Checks a name.
    pub fn parse(s: &str) -> Result<Name, String> {
        if s.is_empty() || s.len() > 64 {
            return Err(format!("invalid name {s:?}: must be 1 to 64 bytes"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "invalid name {s:?}: no spaces or control characters"
            ));
        }
        Ok(Name(s.to_string()))
    }
}

/// `host:port` (a name, an IPv4 address or a bracketed IPv6 address), resolved when used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPort(pub String);

impl HostPort {
    /// Checks the shape and the port.
    pub fn parse(s: &str) -> Result<HostPort, String> {
        let bad = || format!("invalid address {s:?} (use host:port, e.g. 10.0.0.2:10026)");
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
    pub fn parse(s: &str) -> Result<ListenAddr, String> {
        let full = match s.strip_prefix(':') {
            Some(p) => format!("0.0.0.0:{p}"),
            None => s.to_string(),
        };
        full.parse()
            .map(ListenAddr)
            .map_err(|_| format!("invalid listen address {s:?} (use ip:port or :port)"))
    }
}

/// The heartbeat interval: a duration from 10ms to 60s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interval(pub Duration);

impl Interval {
    /// Parses and bounds an interval.
    pub fn parse(s: &str) -> Result<Interval, String> {
        let d = parse_duration(s)?;
        if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
            return Err(format!("interval {s:?} out of range 10ms..60s"));
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
    pub fn parse(s: &str) -> Result<ProbeTarget, String> {
        let bad = |why: &str| format!("invalid probe target {s:?}: {why}");
        if s.len() > 512 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("too long or has spaces"));
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
        Err(bad("use tcp://host:port or http://host:port/path"))
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

/// `warnings:` — where the warning-failure signals come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WarningsConfig {
    /// A file whose existence means: this host is in maintenance.
    pub maintenance_file: V<PathBuf>,
    /// A xenstore key whose value `1` means maintenance (set by an operator from dom0).
    pub maintenance_xenstore_key: V<String>,
    /// Command printing NUT `upsc` output (`ups.status: OB …` means on battery).
    pub ups_command: V<Vec<String>>,
    /// Or a file holding `upsc` output or a bare status such as `OB DISCHRG`.
    pub ups_status_file: V<Option<PathBuf>>,
    /// EDAC memory-controller directory.
    pub edac_dir: V<PathBuf>,
    /// Corrected errors above this count raise `hardware_errors` (uncorrected: any).
    pub corrected_errors_threshold: V<u64>,
    /// A sensor above this many degrees Celsius raises `temperature`.
    pub temperature_celsius: V<f64>,
    /// Files whose existence means the host is shutting down.
    pub shutdown_files: V<Vec<PathBuf>>,
}

impl Default for WarningsConfig {
    fn default() -> Self {
        WarningsConfig {
            maintenance_file: V(PathBuf::from("/run/xentinel/maintenance")),
            maintenance_xenstore_key: V("/xentinel/maintenance".into()),
            ups_command: V(vec![]),
            ups_status_file: V(None),
            edac_dir: V(PathBuf::from("/sys/devices/system/edac/mc")),
            corrected_errors_threshold: V(100),
            temperature_celsius: V(90.0),
            shutdown_files: V(vec![
                PathBuf::from("/run/systemd/shutdown/scheduled"),
                PathBuf::from("/run/xentinel/shutdown"),
            ]),
        }
    }
}

/// `webhook:` — the migration webhook and `xentinel evacuate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// Known hosts; when empty, the inventory's hosts (Prometheus, the exporters or the sim)
    /// are the known ones.
    pub hosts: V<Vec<String>>,
    /// Plan from these exporters' /metrics instead of Prometheus (`--exporter` wins over it).
    pub exporters: V<Vec<ExporterEntry>>,
    /// Free memory every target keeps after the planned placements.
    pub headroom_bytes: V<u64>,
    /// Migrations at once out of one host.
    pub max_parallel_per_source: V<u32>,
    /// Migrations at once into one host.
    pub max_parallel_per_target: V<u32>,
    /// Scrape job of the exporters (for `up{job=...}`).
    pub prometheus_job: V<String>,
    /// Timeout of one Prometheus query (or one exporter scrape with `exporters`).
    pub prometheus_timeout: V<Dur>,
    /// Longest wait between retries while Prometheus is unreachable.
    pub retry_max_backoff: V<Dur>,
    /// Largest accepted request body.
    pub body_limit_bytes: V<u64>,
    pub executor: ExecutorConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            hosts: V(vec![]),
            exporters: V(vec![]),
            headroom_bytes: V(512 << 20),
            max_parallel_per_source: V(2),
            max_parallel_per_target: V(1),
            prometheus_job: V("xentinel".into()),
            prometheus_timeout: V(Dur(Duration::from_secs(5))),
            retry_max_backoff: V(Dur(Duration::from_secs(30))),
            body_limit_bytes: V(1 << 20),
            executor: ExecutorConfig::default(),
        }
    }
}

/// One item of `webhook.exporters`: a host name and its exporter's metrics URL.
/// Both fields are required (checked after parsing, like peers and probes).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ExporterEntry {
    pub host: V<String>,
    /// `http://addr:port/metrics`.
    pub url: V<String>,
}

/// `webhook.executor:` — the command that migrates a domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ExecutorConfig {
    /// argv template; `{domain}`, `{source}`, `{target}` are replaced inside each element.
    pub command: V<Vec<String>>,
    /// argv template answering "is `{domain}` on `{host}`?" by its exit status (0 = yes).
    pub locate_command: V<Vec<String>>,
    /// A migration running longer is killed and its step fails.
    pub timeout: V<Dur>,
    /// argv template printing `{domain}`'s `xl list` line on `{host}` (its state column is read;
    /// non-zero exit = not there), asked after a failed migration.
    pub state_command: V<Vec<String>>,
    /// argv template unpausing `{domain}` on `{host}` (a failed migration left it paused).
    pub resume_command: V<Vec<String>>,
    /// Attempts after a failed migration that left the domain running on its source (0..=10).
    pub retries: V<u32>,
    /// Wait before the first retry; doubled for each next one, up to `retry_max_backoff`.
    pub retry_backoff: V<Dur>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            command: V(crate::migration::executor::DEFAULT_COMMAND
                .map(String::from)
                .to_vec()),
            locate_command: V(crate::migration::executor::DEFAULT_LOCATE
                .map(String::from)
                .to_vec()),
            timeout: V(Dur(Duration::from_secs(600))),
            state_command: V(crate::migration::executor::DEFAULT_STATE
                .map(String::from)
                .to_vec()),
            resume_command: V(crate::migration::executor::DEFAULT_RESUME
                .map(String::from)
                .to_vec()),
            retries: V(2),
            retry_backoff: V(Dur(Duration::from_secs(5))),
        }
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.field, self.message
        )
    }
}

/// Every problem found in one file, reported together.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) in configuration:", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Loads a file; `None` gives the defaults.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_yaml(path)
}

/// Loads any YAML file whose leaves are [`V`]s; `None` gives `T::default()`.
pub fn load_yaml<T: serde::de::DeserializeOwned + Default>(
    path: Option<&Path>,
) -> Result<T, ConfigErrors> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            line: 0,
            column: 0,
            field: "-".into(),
            message: format!("cannot read: {e}"),
        }])
    })?;
    parse_yaml(&text, &name)
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Silences the panic message of this thread while on (the lenient pass's
/// panic is caught and reported as a configuration error instead).
fn quiet_panics(on: bool) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                prev(info);
            }
        }));
    });
    QUIET.with(|q| q.set(on));
}

/// Parses configuration text; `file` names it in errors.
pub fn load_str(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    parse_checked(text, file, |cfg: &Config| {
        let mut errs = check_peers(text, file, "heartbeat.peers", &cfg.heartbeat.peers);
        let mut hosts = std::collections::BTreeSet::new();
        for (i, e) in cfg.webhook.exporters.iter().enumerate() {
            let msg = if e.host.is_empty() || e.url.is_empty() {
                "missing host or url: an exporter needs both".to_string()
            } else if !hosts.insert(e.host.as_str()) {
                format!("duplicate exporter host {:?}", e.host.0)
            } else {
                continue;
            };
            errs.push(item_error(text, file, "webhook.exporters", i, &msg));
        }
        if *cfg.webhook.executor.retries > 10 {
            let (line, column) = locate_key(text, "webhook.executor.retries");
            errs.push(ConfigError {
                file: file.into(),
                line,
                column,
                field: "webhook.executor.retries".into(),
                message: "at most 10: each retry can take a whole migration".into(),
            });
        }
        for (i, p) in cfg.probes.iter().enumerate() {
            if p.domain.is_empty() || *p.target == ProbeTarget::Invalid {
                errs.push(item_error(
                    text,
                    file,
                    "probes",
                    i,
                    "missing domain or target: a probe needs both",
                ));
            }
        }
        errs
    })
}

/// Checks a list of peers (`path` locates it: "" for a whole document):
/// every entry has a name and an address, and names are unique.
pub fn check_peers(text: &str, file: &str, path: &str, peers: &[PeerConfig]) -> Vec<ConfigError> {
    let mut errs = vec![];
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in peers.iter().enumerate() {
        let fresh = p.name.0.0.is_empty() || seen.insert(p.name.0.0.as_str());
        if p.name.0.0.is_empty() || p.address.0.0.is_empty() {
            errs.push(item_error(
                text,
                file,
                path,
                i,
                "missing name or address: a peer needs both",
            ));
        } else if !fresh {
            let msg = format!("duplicate peer name {:?}", p.name.0.0);
            errs.push(item_error(text, file, path, i, &msg));
        }
    }
    errs
}

fn item_error(text: &str, file: &str, path: &str, i: usize, message: &str) -> ConfigError {
    let (line, column) = locate_item(text, path, i);
    ConfigError {
        file: file.into(),
        line,
        column,
        field: if path.is_empty() {
            format!("[{i}]")
        } else {
            format!("{path}[{i}]")
        },
        message: message.into(),
    }
}

/// Parses YAML text into `T`, collecting every error; `file` names it in errors.
pub fn parse_yaml<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    file: &str,
) -> Result<T, ConfigErrors> {
    parse_checked(text, file, |_| vec![])
}

/// [`parse_yaml`] plus the checks of `check` on what parsed, all reported together.
pub fn parse_checked<T: DeserializeOwned + Default>(
    text: &str,
    file: &str,
    check: impl FnOnce(&T) -> Vec<ConfigError>,
) -> Result<T, ConfigErrors> {
    ERRORS.with(|e| e.borrow_mut().clear());
    let mut unknown = Vec::new();
    let lenient = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        quiet_panics(true);
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let r = serde_ignored::deserialize(de, |p| unknown.push(p.to_string().replace(".?", "")));
        quiet_panics(false);
        r
    }));
    // A leaf that met a sequence or mapping where it wanted a scalar leaves
    // serde_yaml_ng's event stream out of step, and it panics. Parse again
    // strictly: the first error, with its location, is then reported alone.
    let parsed: Result<T, _> = match lenient {
        Ok(r) => r,
        Err(_) => {
            quiet_panics(false);
            ERRORS.with(|e| e.borrow_mut().clear());
            unknown.clear();
            STRICT.with(|s| s.set(true));
            let r = serde_yaml_ng::from_str::<T>(text);
            STRICT.with(|s| s.set(false));
            r
        }
    };
    let mut errors: Vec<ConfigError> = ERRORS
        .with(|e| std::mem::take(&mut *e.borrow_mut()))
        .iter()
        .map(|m| from_yaml_message(m, file))
        .collect();
    match parsed {
        Ok(cfg) => {
            // An entry whose own value failed to parse is reported once, there.
            for c in check(&cfg) {
                let inner = format!("{}.", c.field);
                if !errors.iter().any(|e| e.field.starts_with(&inner)) {
                    errors.push(c);
                }
            }
            for path in unknown {
                let (line, column) = locate_key(text, &path);
                errors.push(ConfigError {
                    file: file.into(),
                    line,
                    column,
                    field: bracket_indices(&path),
                    message: "unknown field".into(),
                });
            }
            if errors.is_empty() {
                return Ok(cfg);
            }
        }
        Err(e) => {
            // An empty document is all defaults.
            if text.trim().is_empty() {
                return Ok(T::default());
            }
            // A syntax error makes every other finding unreliable: report it alone.
            if let Err(syntax) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
                errors.clear();
                errors.push(from_yaml_message(&syntax.to_string(), file));
            } else {
                errors.push(from_yaml_message(&e.to_string(), file));
            }
        }
    }
    errors.sort_by_key(|e| (e.line, e.column));
    Err(ConfigErrors(errors))
}

/// Writes list indices as serde_yaml_ng does: `a.0.b` becomes `a[0].b`.
fn bracket_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    for seg in path.split('.') {
        if seg.parse::<usize>().is_ok() {
            out.push('[');
            out.push_str(seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// Splits serde_yaml_ng's `path: message at line L column C` into parts.
fn from_yaml_message(m: &str, file: &str) -> ConfigError {
    let (body, line, column) = match m.rfind(" at line ") {
        Some(i) => {
            let loc = &m[i + " at line ".len()..];
            let mut it = loc.split(" column ");
            let line = it.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
            let column = it.next().and_then(|c| c.trim().parse().ok()).unwrap_or(0);
            (&m[..i], line, column)
        }
        None => (m, 0, 0),
    };
    let (field, message) = match body.split_once(": ") {
        Some((f, msg)) if !f.contains(' ') => {
            (f.trim_start_matches('.').to_string(), msg.to_string())
        }
        _ => ("-".to_string(), body.to_string()),
    };
    ConfigError {
        file: file.into(),
        line,
        column,
        field,
        message,
    }
}

/// Finds the line and column of item `index` of the block-style list at the
/// dotted `path` ("" for a document that is a list).
fn locate_item(text: &str, path: &str, index: usize) -> (usize, usize) {
    let (start, key_indent) = if path.is_empty() {
        (0, None)
    } else {
        match locate_key(text, path) {
            (0, _) => return (0, 0),
            (l, c) => (l, Some(c - 1)),
        }
    };
    let mut item_indent = None;
    let mut n = 0;
    for (i, line) in text.lines().enumerate().skip(start) {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = line.len() - t.len();
        if key_indent.is_some_and(|k| ind <= k && !t.starts_with('-')) {
            break;
        }
        if !t.starts_with('-') {
            continue;
        }
        let want = *item_indent.get_or_insert(ind);
        if ind < want {
            break;
        }
        if ind == want {
            if n == index {
                return (i + 1, ind + 1);
            }
            n += 1;
        }
    }
    (0, 0)
}

/// Finds the line and column of a dotted key path in block-style YAML.
fn locate_key(text: &str, path: &str) -> (usize, usize) {
    let want: Vec<&str> = path
        .split('.')
        .filter(|s| s.parse::<usize>().is_err() && *s != "?")
        .collect();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(" #").next().unwrap_or("");
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = line.len() - trimmed.len();
        let mut item = trimmed;
        while let Some(rest) = item.strip_prefix("- ") {
            indent += 2;
            item = rest.trim_start();
        }
        let Some((key, _)) = item.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        while stack.last().is_some_and(|(ind, _)| *ind >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
        if stack.len() == want.len() && stack.iter().zip(&want).all(|((_, k), w)| k == w) {
            return (i + 1, indent + 1);
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (line, column, field) of each error, for comparing locations.
    fn located(errs: &[ConfigError]) -> Vec<(usize, usize, &str)> {
        errs.iter()
            .map(|e| (e.line, e.column, e.field.as_str()))
            .collect()
    }

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn empty_and_missing_files_are_defaults() {
        let c = load_str("", "x.yml").unwrap();
        assert_eq!(*c.exporter.source_timeout, Dur(Duration::from_secs(5)));
        assert!(load(None).is_ok());
    }

    #[test]
    fn every_error_is_reported_at_once_with_file_line_column_and_field() {
        let text = "\
exporter:
  source: xenn
  source_timeout: 5 parsecs
  xenstore: true
warnings:
  temperature_celsius: hot
  tempreature: 80
bogus: 1
";
        let errs = load_str(text, "/etc/xentinel.yml").unwrap_err().0;
        let got = located(&errs);
        assert_eq!(
            got,
            [
                (2, 11, "exporter.source"),
                (3, 19, "exporter.source_timeout"),
                (6, 24, "warnings.temperature_celsius"),
                (7, 3, "warnings.tempreature"),
                (8, 1, "bogus"),
            ],
            "{errs:#?}"
        );
        assert!(
            errs[0]
                .to_string()
                .starts_with("/etc/xentinel.yml:2:11: exporter.source: unknown variant `xenn`")
        );
        assert!(errs[1].message.contains("invalid duration"));
        assert_eq!(errs[3].message, "unknown field");
    }

    #[test]
    fn webhook_section_reports_located_errors() {
        let text = "webhook:\n  headroom_bytes: lots\n  executor:\n    timeout: forever\n    comand: [x]\n";
        let errs = load_str(text, "w.yml").unwrap_err().0;
        let got: Vec<_> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "webhook.headroom_bytes"),
                (4, "webhook.executor.timeout"),
                (5, "webhook.executor.comand"),
            ],
            "{errs:#?}"
        );
        let ok = load_str("webhook:\n  executor:\n    command: [sh, -c, x]\n", "w").unwrap();
        assert_eq!(ok.webhook.executor.command.0, ["sh", "-c", "x"]);
        let errs = load_str(
            "webhook:\n  executor:\n    retry_backoff: 2s\n    retries: 11\n",
            "w",
        )
        .unwrap_err()
        .0;
        let got: Vec<_> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(got, [(4, "webhook.executor.retries")], "{errs:#?}");
        let ok = load_str(
            "webhook:\n  executor:\n    retries: 0\n    retry_backoff: 2s\n",
            "w",
        )
        .unwrap();
        assert_eq!(
            (
                *ok.webhook.executor.retries,
                ok.webhook.executor.retry_backoff.0.0
            ),
            (0, Duration::from_secs(2))
        );
        assert_eq!(
            Config::default().webhook.executor.state_command.0,
            ["xl", "list", "{domain}"]
        );
        let text = "webhook:\n  exporters:\n    - host: a\n      url: http://a:1/metrics\n    - host: b\n    - host: a\n      url: http://x:1/metrics\n    - host: c\n      url: http://c:1/metrics\n      uri: x\n";
        let errs = load_str(text, "w.yml").unwrap_err().0;
        let got: Vec<_> = errs
            .iter()
            .map(|e| (e.line, e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    5,
                    "webhook.exporters[1]",
                    "missing host or url: an exporter needs both"
                ),
                (6, "webhook.exporters[2]", "duplicate exporter host \"a\""),
                (10, "webhook.exporters[3].uri", "unknown field"),
            ],
            "{errs:#?}"
        );
        let text = "webhook:\n  exporters:\n    - host: a\n      url: http://a:1/metrics\n";
        let ok = load_str(text, "w.yml").unwrap();
        let got: Vec<(&str, &str)> = ok
            .webhook
            .exporters
            .iter()
            .map(|e| (e.host.as_str(), e.url.as_str()))
            .collect();
        assert_eq!(got, [("a", "http://a:1/metrics")]);
        assert_eq!(*ok.webhook.headroom_bytes, 512 << 20);
    }

    #[test]
    fn a_sequence_where_a_scalar_belongs_is_an_error_not_a_panic() {
        let errs = load_str(
            "warnings:\n  maintenance_xenstore_key: [x, y]\n  temperature_celsius: hot\n",
            "c.yml",
        )
        .unwrap_err()
        .0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].line, errs[0].field.as_str()),
            (2, "warnings.maintenance_xenstore_key")
        );
        assert!(errs[0].message.contains("sequence"), "{}", errs[0]);
        // The lenient pass works again afterwards.
        let errs = load_str(
            "warnings:\n  temperature_celsius: hot\n  tempreature: 1\n",
            "c.yml",
        )
        .unwrap_err()
        .0;
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn syntax_errors_are_located() {
        let errs = load_str("exporter:\n  source: [xen\n", "c.yml")
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1);
        assert!(errs[0].line >= 2, "{:?}", errs[0]);
    }

    #[test]
    fn heartbeat_and_probe_errors_are_located_all_at_once() {
        let text = "\
heartbeat:
  listen: nowhere
  interval: 1ms
  down_after: 0
  peers:
    - name: h2
      address: 10.0.0.2
    - name: h3
    - name: h2
      address: 10.0.0.9:10026
    - name: \"has space\"
      address: h4:1
  gap_window: soon
probes:
  - domain: web
    target: ftp://x
  - domain: db
exporter:
  probe_timeout: 2 parsecs
";
        let errs = load_str(text, "c.yml").unwrap_err().0;
        let got = located(&errs);
        assert_eq!(
            got,
            [
                (2, 11, "heartbeat.listen"),
                (3, 13, "heartbeat.interval"),
                (4, 15, "heartbeat.down_after"),
                (7, 16, "heartbeat.peers[0].address"),
                (8, 5, "heartbeat.peers[1]"),
                (9, 5, "heartbeat.peers[2]"),
                (11, 13, "heartbeat.peers[3].name"),
                (13, 15, "heartbeat.gap_window"),
                (16, 13, "probes[0].target"),
                (17, 3, "probes[1]"),
                (19, 18, "exporter.probe_timeout"),
            ],
            "{errs:#?}"
        );
        assert!(errs[1].message.contains("out of range 10ms..60s"));
        assert!(errs[2].message.contains("0 out of range 1..1000"));
        assert!(errs[4].message.contains("missing name or address"));
        assert!(errs[5].message.contains("duplicate peer name \"h2\""));
        assert!(errs[8].message.contains("invalid probe target"));
    }

    #[test]
    fn heartbeat_and_probe_values_are_taken() {
        let c = load_str(
            "heartbeat:\n  listen: \":10026\"\n  interval: 10ms\n  name: h1\n  peers:\n    - {name: h2, address: \"[::1]:10026\"}\nprobes:\n  - domain: web\n    target: http://10.0.0.5\n",
            "c",
        )
        .unwrap();
        let hb = &c.heartbeat;
        assert!(hb.enabled());
        assert_eq!(hb.listen.unwrap().0, "0.0.0.0:10026".parse().unwrap());
        assert_eq!(hb.interval.0.0, Duration::from_millis(10));
        assert_eq!(hb.peers[0].address.0.0, "[::1]:10026");
        assert_eq!(*hb.down_after, Bounded(3));
        assert_eq!(c.probes[0].target.to_string(), "http://10.0.0.5:80/");
        assert!(!Config::default().heartbeat.enabled());
    }

    #[test]
    fn probe_targets_parse_strictly() {
        assert!(matches!(
            ProbeTarget::parse("tcp://h:80"),
            Ok(ProbeTarget::Tcp(_))
        ));
        assert!(ProbeTarget::parse("tcp://h").is_err());
        assert!(ProbeTarget::parse("tcp://h:0").is_err());
        assert!(ProbeTarget::parse("http://h:99999/").is_err());
        assert!(ProbeTarget::parse("http://h/a b").is_err());
        assert!(ProbeTarget::parse("gopher://h:70").is_err());
        assert_eq!(
            ProbeTarget::parse("http://[::1]:8080/x")
                .unwrap()
                .to_string(),
            "http://[::1]:8080/x"
        );
    }

    #[test]
    fn good_values_are_taken() {
        let c = load_str("exporter:\n  source: xen\n  source_timeout: 2s\nwarnings:\n  temperature_celsius: 75.5\n", "c").unwrap();
        assert_eq!(*c.exporter.source, Some(SourceKind::Xen));
        assert_eq!(c.exporter.source_timeout.0, Dur(Duration::from_secs(2)));
        assert_eq!(*c.warnings.temperature_celsius, 75.5);
    }
}
