//! Command line: one binary, one subcommand per role. Doc comments here are
//! the `--help` text; flags follow node_exporter's dotted style.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::SourceKind;
use crate::log::Format;

/// Default exporter port: a free slot of Prometheus' default port allocations.
pub const DEFAULT_EXPORTER_PORT: u16 = 10025;

/// Prometheus exporter, heartbeat and migration webhook for Xen hosts.
#[derive(Debug, Parser)]
#[command(name = "xentinel", version, about, propagate_version = true)]
pub struct Cli {
    /// Only log messages with the given severity or above: debug, info, warn, error.
    #[arg(long = "log.level", global = true, default_value = "info", value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: String,

    /// Output format of log messages.
    #[arg(
        long = "log.format",
        global = true,
        value_enum,
        default_value = "logfmt"
    )]
    pub log_format: Format,

    #[command(subcommand)]
    pub command: Command,
}

/// The roles of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve /metrics for every domain of this host (run it in dom0).
    Exporter(ExporterArgs),
    /// Run inside a domU: publish page faults and memory into xenstore for dom0's exporter.
    GuestAgent(GuestAgentArgs),
    /// Run a simulated Xen cluster with one exporter endpoint per host (no Xen needed).
    Demo(DemoArgs),
    /// Receive Alertmanager webhooks and evacuate hosts that raise a warning failure.
    Webhook(WebhookArgs),
    /// Move every domain off a host now (e.g. from a systemd unit on shutdown).
    Evacuate(EvacuateArgs),
}

/// Default port of the migration webhook.
pub const DEFAULT_WEBHOOK_PORT: u16 = 10027;

/// How migrations are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// `xl migrate {domain} {target}` (the default argv template).
    Xl,
    /// The modelled cluster, in this process (demos and tests).
    Sim,
    /// The argv template of `webhook.executor.command` in the configuration file.
    Command,
}

/// Flags shared by `webhook` and `evacuate`.
#[derive(Debug, Clone, Args)]
pub struct MigrationArgs {
    /// YAML configuration file (its `webhook:` section); without it every default applies.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,

    /// Prometheus to plan from [default: http://127.0.0.1:9090; with `--executor sim` and no
    /// URL, the sim cluster itself is read].
    #[arg(long = "prometheus.url")]
    pub prometheus_url: Option<String>,

    /// Plan from this host's exporter instead of Prometheus: `host=http://addr:port/metrics`
    /// (repeat the flag, one per host; replaces `webhook.exporters` of the configuration).
    #[arg(long = "exporter", value_parser = parse_exporter, conflicts_with = "prometheus_url")]
    pub exporters: Vec<(String, String)>,

    /// What runs the migrations.
    #[arg(long = "executor", value_enum, default_value = "xl")]
    pub executor: ExecutorKind,

    /// The durable job log (SQLite).
    #[arg(long = "db.path", default_value = "/var/lib/xentinel/jobs.sqlite")]
    pub db_path: PathBuf,

    /// Plan and record (or print) the plan; migrate nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

/// Parses `--exporter host=URL`.
fn parse_exporter(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((h, u)) if !h.is_empty() && !u.is_empty() => Ok((h.to_string(), u.to_string())),
        _ => Err(format!(
            "{s:?} is not host=URL (e.g. xen1=http://10.0.0.1:10025/metrics)"
        )),
    }
}

/// Flags of `xentinel webhook`.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Address to listen on (`:port` means all interfaces).
    #[arg(long = "web.listen-address", default_value_t = format!(":{DEFAULT_WEBHOOK_PORT}"))]
    pub listen_address: String,

    /// File holding the bearer token Alertmanager sends (its `credentials_file`).
    #[arg(long = "web.token-file", required_unless_present = "insecure_no_auth")]
    pub token_file: Option<PathBuf>,

    /// Accept requests without a token (tests and demos only).
    #[arg(long = "insecure-no-auth", conflicts_with = "token_file")]
    pub insecure_no_auth: bool,

    /// Web configuration (TLS, basic auth) in the Prometheus exporter-toolkit format.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,

    #[command(flatten)]
    pub migration: MigrationArgs,
}

/// Flags of `xentinel evacuate`.
#[derive(Debug, Args)]
pub struct EvacuateArgs {
    /// The host to empty.
    #[arg(long = "host")]
    pub host: String,

    /// Only these targets (repeat the flag); warned, down and unreachable hosts are never used.
    #[arg(long = "to")]
    pub to: Vec<String>,

    #[command(flatten)]
    pub migration: MigrationArgs,
}

/// First port of the demo's exporters; host i listens on this + i.
pub const DEFAULT_DEMO_BASE_PORT: u16 = 10031;

/// Whether the demo runs Prometheus and Alertmanager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StackMode {
    /// When `prometheus` and `alertmanager` are on PATH.
    Auto,
    /// Always; fail when they are missing.
    On,
    /// Never: the exporters (and `--webhook`, if asked) alone.
    Off,
}

/// Flags of `xentinel demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seed of the model's random draws: the same seed replays the same run.
    #[arg(long = "seed", default_value_t = 1)]
    pub seed: u64,

    /// Cluster description (YAML, see docs/simulator.md); default: 4 hosts, 10 domains.
    #[arg(long = "cluster")]
    pub cluster: Option<PathBuf>,

    /// Scenario file (YAML): timed workload changes, warnings, host deaths.
    #[arg(long = "scenario", conflicts_with = "no_scenario")]
    pub scenario: Option<PathBuf>,

    /// Run no scenario at all (the built-in one raises a UPS warning on xen3 at 45 s).
    #[arg(long = "no-scenario")]
    pub no_scenario: bool,

    /// Address the simulated hosts' exporters listen on.
    #[arg(long = "listen-host", default_value = "127.0.0.1")]
    pub listen_host: String,

    /// Port of the first host's exporter; the others follow.
    #[arg(long = "base-port", default_value_t = DEFAULT_DEMO_BASE_PORT)]
    pub base_port: u16,

    /// Simulated seconds per real second.
    #[arg(long = "speed", default_value_t = 1.0)]
    pub speed: f64,

    /// Also run the migration webhook in this process, on the modelled cluster (sim executor).
    #[arg(long = "webhook")]
    pub webhook: bool,

    /// Never run the webhook, even with the stack: alerts fire and nothing acts
    /// (the paper's "no reaction" case).
    #[arg(long = "no-webhook", conflicts_with = "webhook")]
    pub no_webhook: bool,

    /// Run real Prometheus and Alertmanager beside the cluster (with the shipped rules and
    /// routing, fast intervals) and the webhook: `auto` does it when both are on PATH.
    #[arg(long = "stack", value_enum, default_value = "auto")]
    pub stack: StackMode,

    /// With the stack: Prometheus' listen address.
    #[arg(long = "stack.prometheus-address", default_value = "127.0.0.1:10090")]
    pub prometheus_address: String,

    /// With the stack: Alertmanager's listen address.
    #[arg(long = "stack.alertmanager-address", default_value = "127.0.0.1:10093")]
    pub alertmanager_address: String,

    /// With the stack: scrape and rule-evaluation interval.
    #[arg(long = "stack.interval", default_value = "1s", value_parser = crate::config::parse_duration)]
    pub stack_interval: std::time::Duration,

    /// With `--webhook`: its listen address.
    #[arg(long = "webhook.listen-address", default_value_t = format!("127.0.0.1:{DEFAULT_WEBHOOK_PORT}"))]
    pub webhook_listen_address: String,

    /// With `--webhook`: the bearer token file; default: a new random token in a temp dir (printed).
    #[arg(long = "webhook.token-file")]
    pub webhook_token_file: Option<PathBuf>,

    /// With `--webhook`: plan from this Prometheus (default: the demo's own stack's, else the model).
    #[arg(long = "webhook.prometheus-url")]
    pub webhook_prometheus_url: Option<String>,

    /// With `--webhook`: accept requests without a token.
    #[arg(
        long = "webhook.insecure-no-auth",
        conflicts_with = "webhook_token_file"
    )]
    pub webhook_insecure_no_auth: bool,
}

/// Flags of `xentinel exporter`.
#[derive(Debug, Args)]
pub struct ExporterArgs {
    /// Address on which to expose metrics and web interface (`:port` means all interfaces).
    #[arg(long = "web.listen-address", default_value_t = format!(":{DEFAULT_EXPORTER_PORT}"))]
    pub listen_address: String,

    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics")]
    pub telemetry_path: String,

    /// YAML configuration file; without it every default applies.
    #[arg(long = "config.file")]
    pub config_file: Option<PathBuf>,

    /// exporter-toolkit web configuration file: TLS and/or basic auth.
    #[arg(long = "web.config.file")]
    pub web_config_file: Option<PathBuf>,

    /// Where domain data comes from: `xen` (libxenstat + xenstore, in dom0) or `sim` (a modelled host).
    #[arg(long = "source", value_enum)]
    pub source: Option<SourceKind>,

    /// Path of libxenstat (default: the soname Xen 4.17 installs).
    #[arg(long = "xen.libxenstat")]
    pub libxenstat: Option<PathBuf>,

    /// With `--source sim`: which host of the demo cluster to be.
    #[arg(long = "sim.host", default_value = "xen1")]
    pub sim_host: String,

    /// With `--source sim`: instead of the demo cluster, a synthetic host
    /// (named by `--sim.host`) running this many domains, each with 2 vCPUs,
    /// 1 NIC, 1 disk and guest reports (for benchmarks).
    #[arg(long = "sim.domains")]
    pub sim_domains: Option<usize>,

    /// With `--source sim`: seed of the model.
    #[arg(long = "sim.seed", default_value_t = 1)]
    pub sim_seed: u64,

    /// UDP address for heartbeats (`:port` means all interfaces; default :10026 when peers are set).
    #[arg(long = "heartbeat.listen-address", value_parser = crate::config::ListenAddr::parse)]
    pub heartbeat_listen: Option<crate::config::ListenAddr>,

    /// A heartbeat peer as `name=host:port`; repeat for more (adds to the configuration's).
    #[arg(long = "heartbeat.peer", value_parser = parse_peer)]
    pub heartbeat_peers: Vec<crate::config::PeerConfig>,

    /// This host's name in its heartbeats, as its peers list it (default: the hostname).
    #[arg(long = "heartbeat.name", value_parser = crate::config::Name::parse)]
    pub heartbeat_name: Option<crate::config::Name>,
}

/// Parses `--heartbeat.peer name=host:port`.
pub fn parse_peer(s: &str) -> Result<crate::config::PeerConfig, String> {
    use crate::config::{HostPort, Name, PeerConfig, V};
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid peer {s:?} (use name=host:port)"))?;
    Ok(PeerConfig {
        name: V(Name::parse(name)?),
        address: V(HostPort::parse(addr)?),
    })
}

/// Flags of `xentinel guest-agent`.
#[derive(Debug, Args)]
pub struct GuestAgentArgs {
    /// How often to publish (e.g. 1s, 5s).
    #[arg(long = "interval", default_value = "5s", value_parser = crate::config::parse_duration)]
    pub interval: std::time::Duration,

    /// Probe target to publish for dom0's domain probe (`tcp://host:port` or `http://host:port/path`).
    #[arg(long = "probe")]
    pub probe: Option<String>,

    /// Publish one report and exit (non-zero when xenstore cannot be written).
    #[arg(long = "once")]
    pub once: bool,
}
