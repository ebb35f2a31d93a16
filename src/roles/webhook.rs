//! `xentinel webhook`: receives Alertmanager's webhooks and evacuates hosts
//! that raise a warning failure. Turns its flags (shared with `evacuate`)
//! into the plain options of [`crate::migration`] and serves its router.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::http;
use crate::migration::{self, EngineOptions, ExecutorChoice};
use crate::sim::{Cluster, SharedCluster};

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

/// A `--exporter` value that is not `host=URL`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not host=URL (e.g. xen1=http://10.0.0.1:10025/metrics)")]
pub struct BadExporterFlag(String);

/// Parses `--exporter host=URL`.
fn parse_exporter(s: &str) -> Result<(String, String), BadExporterFlag> {
    match s.split_once('=') {
        Some((h, u)) if !h.is_empty() && !u.is_empty() => Ok((h.to_string(), u.to_string())),
        _ => Err(BadExporterFlag(s.to_string())),
    }
}

impl MigrationArgs {
    /// The engine options these flags ask for. `--executor sim` uses the
    /// demo cluster, stepped in real time by this process.
    pub fn options(&self) -> EngineOptions {
        let executor = match self.executor {
            ExecutorKind::Xl => ExecutorChoice::Xl,
            ExecutorKind::Command => ExecutorChoice::Command,
            ExecutorKind::Sim => {
                let c: SharedCluster = crate::sim::shared::stepped(Cluster::default_demo(1));
                ExecutorChoice::Sim(c)
            }
        };
        EngineOptions {
            executor,
            prometheus_url: self.prometheus_url.clone(),
            exporters: self.exporters.clone(),
            db_path: self.db_path.clone(),
            dry_run: self.dry_run,
        }
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

    /// On SIGTERM or SIGINT, how long migrations in flight may take to finish (no new alerts
    /// or steps meanwhile); then they are killed and resumed at the next start. A second
    /// signal ends it at once. Keep systemd's TimeoutStopSec above it.
    #[arg(long = "shutdown.grace-period", default_value = "5m",
          value_parser = crate::config::parse_duration)]
    pub grace_period: std::time::Duration,

    #[command(flatten)]
    pub migration: MigrationArgs,
}

/// Reads a bearer token file (surrounding whitespace trimmed; must not be empty)
/// through the configuration reader: a regular file of bounded size, so a FIFO
/// or `/dev/zero` is an error at once, not a hang or a memory blow-up.
pub fn read_token(path: &Path) -> anyhow::Result<Vec<u8>> {
    let t = crate::config::read_text(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let t = t.trim();
    anyhow::ensure!(!t.is_empty(), "the token file {} is empty", path.display());
    Ok(t.as_bytes().to_vec())
}

/// `xentinel webhook`.
pub async fn run(a: WebhookArgs) -> anyhow::Result<()> {
    let cfg = crate::config::load(a.migration.config_file.as_deref())?.webhook;
    let token = match (&a.token_file, a.insecure_no_auth) {
        (Some(p), false) => Some(read_token(p)?),
        (None, true) => {
            log::warn!(
                "--insecure-no-auth: anyone who can reach this port can trigger evacuations"
            );
            None
        }
        _ => anyhow::bail!("pass --web.token-file, or --insecure-no-auth explicitly"),
    };
    let sec = http::webconfig::load(a.web_config_file.as_deref())?;
    anyhow::ensure!(
        !(sec.basic_auth.is_some() && token.is_some()),
        "--web.config.file sets basic auth and --web.token-file a bearer token: both use the \
         Authorization header; choose one (basic auth with --insecure-no-auth)"
    );
    let (router, engine) = migration::start(&a.migration.options(), &cfg, token)?;
    let listener = http::bind(&a.listen_address).await?;
    log::info!(
        "webhook listening on {} (executor {:?}, job log {}{})",
        listener.local_addr()?,
        a.migration.executor,
        a.migration.db_path.display(),
        if engine.settings.dry_run {
            ", dry run"
        } else {
            ""
        }
    );
    // Serve until a signal, then stop gracefully while still answering (503
    // for alerts, /jobs readable), then close the listener.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(http::serve(listener, router, sec, async {
        let _ = closed_rx.await;
    }));
    tokio::select! {
        r = &mut server => return Ok(r.context("the HTTP server task")??),
        _ = crate::signals::shutdown() => {}
    }
    tokio::select! {
        _ = engine.graceful_stop(a.grace_period) => {}
        _ = crate::signals::shutdown() => {
            log::warn!("second signal: ending the grace period now");
            engine.abort();
            engine.graceful_stop(a.grace_period).await;
        }
    }
    let _ = closed_tx.send(());
    match tokio::time::timeout(std::time::Duration::from_secs(5), server).await {
        Ok(r) => r.context("the HTTP server task")??,
        Err(_) => log::warn!("open connections did not close within 5 s; exiting anyway"),
    }
    Ok(())
}
