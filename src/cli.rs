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

    /// Where domain data comes from: `xen` (libxenstat + xenstore, in dom0) or `sim` (a modelled host).
    #[arg(long = "source", value_enum)]
    pub source: Option<SourceKind>,

    /// Path of libxenstat (default: the soname Xen 4.17 installs).
    #[arg(long = "xen.libxenstat")]
    pub libxenstat: Option<PathBuf>,

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
