//! Migration: the `xentinel webhook` that evacuates a host when Alertmanager
//! reports a warning failure on it, and `xentinel evacuate` that does the same
//! from the command line.
//!
//! - [`alert`]: Alertmanager's payload and which alerts act.
//! - [`receiver`]: the HTTP side (token, limits, 4xx reasons).
//! - [`joblog`]: the durable job log in SQLite (exactly-once lives here).
//! - [`planner`] and [`prom`]: where the domains go, from Prometheus or the sim.
//! - [`executor`]: `xl migrate` (an argv template) or the sim.
//! - [`runner`]: the job runner both commands share; [`metrics`]; [`evacuate`].

pub mod alert;
pub mod evacuate;
pub mod executor;
pub mod joblog;
pub mod metrics;
pub mod planner;
pub mod prom;
pub mod receiver;
pub mod runner;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::cli::{DemoArgs, ExecutorKind, MigrationArgs, WebhookArgs};
use crate::config::WebhookConfig;
use crate::demo::SharedCluster;
use crate::{http, signals};

use executor::{CommandExecutor, Executor};
use joblog::JobLog;
use planner::Inventory;
use prom::PromClient;
use receiver::{KnownHosts, Receiver};
use runner::{Engine, Event, Settings};

/// Prometheus' default address.
pub const DEFAULT_PROMETHEUS_URL: &str = "http://127.0.0.1:9090";

/// Reads a bearer token file (surrounding whitespace trimmed; must not be empty).
pub fn read_token(path: &Path) -> anyhow::Result<Vec<u8>> {
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let t = t.trim();
    anyhow::ensure!(!t.is_empty(), "the token file {} is empty", path.display());
    Ok(t.as_bytes().to_vec())
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

/// The executor and inventory the flags ask for. `cluster` is the shared sim
/// cluster for `--executor sim` (a new stepped demo cluster when `None`).
pub fn executor_and_inventory(
    m: &MigrationArgs,
    cfg: &WebhookConfig,
    cluster: Option<SharedCluster>,
) -> anyhow::Result<(Executor, Inventory)> {
    let timeout = cfg.executor.timeout.0.0;
    let (executor, sim) = match m.executor {
        ExecutorKind::Sim => {
            let c = cluster.unwrap_or_else(|| {
                let c = Arc::new(Mutex::new(crate::sim::Cluster::default_demo(1)));
                crate::demo::spawn_stepper(
                    c.clone(),
                    crate::sim::Scenario::default(),
                    Duration::from_millis(100),
                    1.0,
                );
                c
            });
            (
                Executor::Sim {
                    cluster: c.clone(),
                    timeout,
                },
                Some(c),
            )
        }
        kind => {
            let e = &cfg.executor;
            let (command, locate, state, resume) = if kind == ExecutorKind::Xl {
                let v = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
                (
                    v(&executor::DEFAULT_COMMAND),
                    v(&executor::DEFAULT_LOCATE),
                    v(&executor::DEFAULT_STATE),
                    v(&executor::DEFAULT_RESUME),
                )
            } else {
                (
                    e.command.0.clone(),
                    e.locate_command.0.clone(),
                    e.state_command.0.clone(),
                    e.resume_command.0.clone(),
                )
            };
            anyhow::ensure!(
                [&command, &locate, &state, &resume]
                    .iter()
                    .all(|c| !c.is_empty()),
                "webhook.executor.command, locate_command, state_command and resume_command \
                 must not be empty"
            );
            let ex = Executor::Command(CommandExecutor {
                command,
                locate,
                state,
                resume,
                timeout,
                state_dir: state_dir(&m.db_path),
            });
            (ex, None)
        }
    };
    let exporters: Vec<(String, String)> = if m.exporters.is_empty() {
        cfg.exporters
            .iter()
            .map(|e| (e.host.0.clone(), e.url.0.clone()))
            .collect()
    } else {
        m.exporters.clone()
    };
    let inventory = match (&m.prometheus_url, sim) {
        (url, _) if !exporters.is_empty() => {
            anyhow::ensure!(
                url.is_none(),
                "--prometheus.url and webhook.exporters both choose where to plan from: use one"
            );
            let mut seen = std::collections::BTreeSet::new();
            let mut list = Vec::new();
            for (host, url) in exporters {
                anyhow::ensure!(
                    !url.is_empty(),
                    "webhook.exporters: host {host:?} has no url"
                );
                anyhow::ensure!(
                    executor::safe_name(&host),
                    "exporter host name {host:?} is not a plain name ([A-Za-z0-9._:@+-])"
                );
                anyhow::ensure!(
                    seen.insert(host.clone()),
                    "exporter host {host} given twice"
                );
                let e = prom::HttpEndpoint::parse(&url, &format!("exporter {host}'s"))
                    .map_err(anyhow::Error::msg)?;
                list.push((host, e));
            }
            Inventory::Exporters {
                exporters: list,
                timeout: cfg.prometheus_timeout.0.0,
            }
        }
        (None, Some(c)) => Inventory::Sim(c),
        (url, _) => Inventory::Prometheus {
            client: PromClient::new(
                url.as_deref().unwrap_or(DEFAULT_PROMETHEUS_URL),
                cfg.prometheus_timeout.0.0,
            )
            .map_err(anyhow::Error::msg)?,
            job: cfg.prometheus_job.0.clone(),
        },
    };
    Ok((executor, inventory))
}

/// Opens the job log and builds an engine.
pub fn engine(
    m: &MigrationArgs,
    cfg: &WebhookConfig,
    cluster: Option<SharedCluster>,
    events: Option<mpsc::UnboundedSender<Event>>,
) -> anyhow::Result<Arc<Engine>> {
    let (executor, inventory) = executor_and_inventory(m, cfg, cluster)?;
    let log = JobLog::open(&m.db_path)
        .with_context(|| format!("cannot open the job log {}", m.db_path.display()))?;
    Ok(Arc::new(Engine::new(
        log,
        executor,
        inventory,
        metrics::Metrics::new(),
        settings(cfg, m.dry_run),
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

/// Builds the engine, resumes unfinished jobs, and returns the router.
pub fn start(
    m: &MigrationArgs,
    cfg: &WebhookConfig,
    token: Option<Vec<u8>>,
    cluster: Option<SharedCluster>,
) -> anyhow::Result<(axum::Router, Arc<Engine>)> {
    let engine = engine(m, cfg, cluster, None)?;
    let n = engine.recover().map_err(anyhow::Error::msg)?;
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

/// `xentinel webhook`.
pub async fn run_webhook(a: WebhookArgs) -> anyhow::Result<()> {
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
    let sec = crate::webconfig::load(a.web_config_file.as_deref())?;
    anyhow::ensure!(
        !(sec.basic_auth.is_some() && token.is_some()),
        "--web.config.file sets basic auth and --web.token-file a bearer token: both use the \
         Authorization header; choose one (basic auth with --insecure-no-auth)"
    );
    let (router, engine) = start(&a.migration, &cfg, token, None)?;
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
    http::serve(listener, router, sec, signals::shutdown()).await
}

fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Where the demo's webhook listens and keeps its state.
#[derive(Debug, Clone)]
pub struct DemoWebhook {
    /// `host:port` it listens on.
    pub addr: String,
    /// Its bearer token file, unless it runs without auth.
    pub token_file: Option<PathBuf>,
    /// Its SQLite job log.
    pub db_path: PathBuf,
}

/// `xentinel demo --webhook`: the webhook in the demo's process, on its
/// cluster; it plans from `prometheus_url` when given, else from the model.
pub async fn spawn_for_demo(
    cluster: SharedCluster,
    a: &DemoArgs,
    prometheus_url: Option<String>,
) -> anyhow::Result<DemoWebhook> {
    let dir = std::env::temp_dir().join(format!("xentinel-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (token, token_file) = if a.webhook_insecure_no_auth {
        (None, None)
    } else if let Some(p) = &a.webhook_token_file {
        (Some(read_token(p)?), Some(p.clone()))
    } else {
        let p = dir.join("webhook.token");
        std::fs::write(&p, random_token()? + "\n")?;
        println!("webhook bearer token file: {}", p.display());
        (Some(read_token(&p)?), Some(p))
    };
    let m = MigrationArgs {
        config_file: None,
        prometheus_url,
        exporters: vec![],
        executor: ExecutorKind::Sim,
        db_path: dir.join("jobs.sqlite"),
        dry_run: false,
    };
    let (router, _) = start(&m, &WebhookConfig::default(), token, Some(cluster))?;
    let listener = http::bind(&a.webhook_listen_address).await?;
    let addr = listener.local_addr()?.to_string();
    println!(
        "migration webhook: http://{addr}/alerts (job log {})",
        m.db_path.display()
    );
    tokio::spawn(async move {
        let sec = crate::webconfig::WebSecurity::default();
        if let Err(e) = http::serve(listener, router, sec, signals::shutdown()).await {
            log::error!("webhook: {e}");
        }
    });
    Ok(DemoWebhook {
        addr,
        token_file,
        db_path: m.db_path,
    })
}
