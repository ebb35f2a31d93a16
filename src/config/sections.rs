//! The sections of the configuration file (`exporter:`, `warnings:`,
//! `heartbeat:`, `probes:`, `webhook:`) and their defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::leaf::V;
use super::values::{Bounded, Dur, HostPort, Interval, ListenAddr, Name, ProbeTarget};

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
    /// How often the xenstore source rereads every domain, whatever its
    /// watch reported (bounds the drift of a lost event; `0s`: every scrape).
    pub xenstore_resync: V<Dur>,
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
            xenstore_resync: V(Dur(Duration::from_secs(60))),
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

/// Default migrate argv (`webhook.executor.command`).
pub const DEFAULT_MIGRATE_COMMAND: [&str; 4] = ["xl", "migrate", "{domain}", "{target}"];
/// Default locate argv (`webhook.executor.locate_command`): exit 0 = the
/// domain is on this (the source) host.
pub const DEFAULT_LOCATE_COMMAND: [&str; 3] = ["xl", "domid", "{domain}"];
/// Default state argv (`webhook.executor.state_command`): `xl list`'s line for
/// the domain; its state column (`rbpscd`) is read, a non-zero exit means the
/// domain is not there.
pub const DEFAULT_STATE_COMMAND: [&str; 3] = ["xl", "list", "{domain}"];
/// Default resume argv (`webhook.executor.resume_command`), for a domain left
/// paused on the source.
pub const DEFAULT_RESUME_COMMAND: [&str; 3] = ["xl", "unpause", "{domain}"];

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
            command: V(DEFAULT_MIGRATE_COMMAND.map(String::from).to_vec()),
            locate_command: V(DEFAULT_LOCATE_COMMAND.map(String::from).to_vec()),
            timeout: V(Dur(Duration::from_secs(600))),
            state_command: V(DEFAULT_STATE_COMMAND.map(String::from).to_vec()),
            resume_command: V(DEFAULT_RESUME_COMMAND.map(String::from).to_vec()),
            retries: V(2),
            retry_backoff: V(Dur(Duration::from_secs(5))),
        }
    }
}
