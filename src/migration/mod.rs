//! Migration: evacuates a host when Alertmanager reports a warning failure on
//! it (the webhook) or when asked directly (`xentinel evacuate`).
//!
//! - [`alert`]: Alertmanager's payload and which alerts act.
//! - [`receiver`]: the HTTP side (token, limits, 4xx reasons).
//! - [`joblog`]: the durable job log in SQLite (exactly-once lives here);
//!   [`store`]: whether its storage takes writes (full, read-only, removed).
//! - [`planner`] and [`prom`]: where the domains go, from Prometheus, the
//!   exporters or the sim.
//! - [`executor`]: `xl migrate` (an argv template) or the sim.
//! - [`runner`]: the job runner both commands share; [`metrics`].
//!
//! It takes plain option structs ([`EngineOptions`], the configuration's
//! `webhook:` section): it knows nothing of the command line or the demo,
//! which live in `crate::roles`.

pub mod alert;
pub mod executor;
pub mod joblog;
pub mod metrics;
pub mod planner;
pub mod prom;
pub mod receiver;
pub mod runner;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::WebhookConfig;
use crate::sim::SharedCluster;

use executor::{CommandExecutor, Executor};
use joblog::JobLog;
use planner::Inventory;
use prom::PromClient;
use receiver::{KnownHosts, Receiver};
use runner::{Engine, Event, Settings};

/// Prometheus' default address.
pub const DEFAULT_PROMETHEUS_URL: &str = "http://127.0.0.1:9090";

/// What runs the migrations.
#[derive(Clone)]
pub enum ExecutorChoice {
    /// `xl migrate` and `xl domid` (the default argv templates).
    Xl,
    /// The argv templates of the configuration's `webhook.executor`.
    Command,
    /// The modelled cluster, in this process.
    Sim(SharedCluster),
}

/// How to build an [`Engine`], besides the configuration's `webhook:` section.
#[derive(Clone)]
pub struct EngineOptions {
    pub executor: ExecutorChoice,
    /// Plan from this Prometheus; with the sim executor and no URL (and no
    /// exporters), the sim cluster itself is read.
    pub prometheus_url: Option<String>,
    /// Plan from these exporters (`host`, `/metrics` URL) instead; empty: the
    /// configuration's `webhook.exporters`.
    pub exporters: Vec<(String, String)>,
    /// The durable job log (SQLite).
    pub db_path: PathBuf,
    /// Plan and record the plan; migrate nothing.
    pub dry_run: bool,
}

/// Why the webhook or `evacuate` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "webhook.executor.command, locate_command, state_command and resume_command must not \
         be empty"
    )]
    EmptyCommand,
    #[error("--prometheus.url and webhook.exporters both choose where to plan from: use one")]
    TwoInventories,
    #[error("webhook.exporters: host {0:?} has no url")]
    NoUrl(String),
    #[error("exporter host name {0:?} is not a plain name ([A-Za-z0-9._:@+-])")]
    BadHostName(String),
    #[error("exporter host {0} given twice")]
    DuplicateHost(String),
    #[error(transparent)]
    Url(#[from] crate::http_client::UrlError),
    #[error(transparent)]
    Prometheus(#[from] prom::ClientError),
    #[error("cannot open the job log {}", path.display())]
    JobLog {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Recover(#[from] runner::DbError),
}

/// Where command executors put a running child's stderr: beside the job log.
pub fn state_dir(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".steps");
    PathBuf::from(s)
}

/// Runner settings from the configuration.
pub fn settings(cfg: &WebhookConfig, dry_run: bool) -> Settings {
    Settings {
        headroom_bytes: *cfg.headroom_bytes,
        max_per_source: *cfg.max_parallel_per_source as usize,
        max_per_target: *cfg.max_parallel_per_target as usize,
        backoff_max: cfg.retry_max_backoff.0.0,
        migrate_retries: *cfg.executor.retries,
        migrate_backoff: cfg.executor.retry_backoff.0.0,
        dry_run,
    }
}

/// The executor and inventory the options ask for.
pub fn executor_and_inventory(
    o: &EngineOptions,
    cfg: &WebhookConfig,
) -> Result<(Executor, Inventory), SetupError> {
    let timeout = cfg.executor.timeout.0.0;
    let (executor, sim) = match &o.executor {
        ExecutorChoice::Sim(c) => (
            Executor::Sim {
                cluster: c.clone(),
                timeout,
            },
            Some(c.clone()),
        ),
        kind => {
            let e = &cfg.executor;
            let (command, locate, state, resume) = if matches!(kind, ExecutorChoice::Xl) {
                let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
                (
                    v(&crate::config::DEFAULT_MIGRATE_COMMAND),
                    v(&crate::config::DEFAULT_LOCATE_COMMAND),
                    v(&crate::config::DEFAULT_STATE_COMMAND),
                    v(&crate::config::DEFAULT_RESUME_COMMAND),
                )
            } else {
                (
                    e.command.0.clone(),
                    e.locate_command.0.clone(),
                    e.state_command.0.clone(),
                    e.resume_command.0.clone(),
                )
            };
            if [&command, &locate, &state, &resume]
                .iter()
                .any(|c| c.is_empty())
            {
                return Err(SetupError::EmptyCommand);
            }
            let ex = Executor::Command(CommandExecutor {
                command,
                locate,
                state,
                resume,
                timeout,
                state_dir: state_dir(&o.db_path),
            });
            (ex, None)
        }
    };
    let exporters: Vec<(String, String)> = if o.exporters.is_empty() {
        cfg.exporters
            .iter()
            .map(|e| (e.host.0.clone(), e.url.0.clone()))
            .collect()
    } else {
        o.exporters.clone()
    };
    let inventory = match (&o.prometheus_url, sim) {
        (url, _) if !exporters.is_empty() => {
            if url.is_some() {
                return Err(SetupError::TwoInventories);
            }
            let mut seen = std::collections::BTreeSet::new();
            let mut list = Vec::new();
            for (host, url) in exporters {
                if url.is_empty() {
                    return Err(SetupError::NoUrl(host));
                }
                if !executor::safe_name(&host) {
                    return Err(SetupError::BadHostName(host));
                }
                if !seen.insert(host.clone()) {
                    return Err(SetupError::DuplicateHost(host));
                }
                let e = crate::http_client::Endpoint::parse(&url, &format!("exporter {host}'s"))?;
                list.push((host, e));
            }
            Inventory::Exporters {
                exporters: list,
                client: crate::http_client::Client::default(),
                timeout: cfg.prometheus_timeout.0.0,
            }
        }
        (None, Some(c)) => Inventory::Sim(c),
        (url, _) => Inventory::Prometheus {
            client: PromClient::new(
                url.as_deref().unwrap_or(DEFAULT_PROMETHEUS_URL),
                cfg.prometheus_timeout.0.0,
            )?,
            job: cfg.prometheus_job.0.clone(),
        },
    };
    Ok((executor, inventory))
}

/// Opens the job log and builds an engine.
pub fn engine(
    o: &EngineOptions,
    cfg: &WebhookConfig,
    events: Option<mpsc::UnboundedSender<Event>>,
) -> Result<Arc<Engine>, SetupError> {
    let (executor, inventory) = executor_and_inventory(o, cfg)?;
    let log = JobLog::open(&o.db_path).map_err(|source| SetupError::JobLog {
        path: o.db_path.clone(),
        source,
    })?;
    Ok(Arc::new(Engine::new(
        log,
        executor,
        inventory,
        metrics::Metrics::new(),
        settings(cfg, o.dry_run),
        events,
    )))
}

/// Known hosts: the configured list, or the inventory's.
pub fn known_hosts(cfg: &WebhookConfig, inv: &Inventory) -> KnownHosts {
    if cfg.hosts.is_empty() {
        KnownHosts::Inventory(inv.clone())
    } else {
        KnownHosts::Static(cfg.hosts.0.clone())
    }
}

/// Builds the engine, resumes unfinished jobs, and returns the webhook's
/// router (serve it with `crate::http::serve`).
pub fn start(
    o: &EngineOptions,
    cfg: &WebhookConfig,
    token: Option<Vec<u8>>,
) -> Result<(axum::Router, Arc<Engine>), SetupError> {
    let engine = engine(o, cfg, None)?;
    engine.watch_store();
    let n = engine.recover()?;
    if n > 0 {
        log::info!("resuming {n} unfinished job(s)");
    }
    let rx = Arc::new(Receiver {
        engine: engine.clone(),
        token,
        hosts: known_hosts(cfg, &engine.inventory),
    });
    Ok((receiver::router(rx, *cfg.body_limit_bytes as usize), engine))
}
