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
}

/// First port of the demo's exporters; host i listens on this + i.
pub const DEFAULT_DEMO_BASE_PORT: u16 = 10031;

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

    /// With `--source sim`: seed of the model.
    #[arg(long = "sim.seed", default_value_t = 1)]
    pub sim_seed: u64,
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
