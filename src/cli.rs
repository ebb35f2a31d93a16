//! Command line: one binary, one subcommand per role. Doc comments here and
//! on each role's argument struct (in `crate::roles`) are the `--help` text;
//! flags follow node_exporter's dotted style. The top layer: it composes the
//! roles' flags and dispatches to them.

use clap::{Parser, Subcommand};

use crate::log::Format;
use crate::roles::demo::DemoArgs;
use crate::roles::evacuate::EvacuateArgs;
use crate::roles::exporter::ExporterArgs;
use crate::roles::guest_agent::GuestAgentArgs;
use crate::roles::paper::PaperArgs;
use crate::roles::webhook::WebhookArgs;

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
    /// Reproduce the seed paper's five tables from the simulator's own /metrics.
    Paper(PaperArgs),
}

impl Command {
    /// Runs the role until it ends (or until SIGINT/SIGTERM for the servers).
    pub async fn run(self) -> anyhow::Result<()> {
        use crate::roles;
        match self {
            Command::Exporter(a) => roles::exporter::run(a).await,
            Command::GuestAgent(a) => roles::guest_agent::run(a).await,
            Command::Demo(a) => roles::demo::run(a).await,
            Command::Webhook(a) => roles::webhook::run(a).await,
            Command::Evacuate(a) => roles::evacuate::run(a).await,
            Command::Paper(a) => roles::paper::run(a).await,
        }
    }
}
