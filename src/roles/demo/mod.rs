//! `xentinel demo`: the modelled cluster in real time, one exporter endpoint
//! per simulated host, each served by the same collector and renderer as a
//! real Xen host, and (with the stack) real Prometheus and Alertmanager and
//! the migration webhook on the modelled cluster.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod narrator;
pub mod stack;
pub mod webhook;

use anyhow::Context;
use clap::Args;

use crate::collector::Collector;
use crate::guest::Rejections;
use crate::roles::webhook::DEFAULT_WEBHOOK_PORT;
use crate::sim::{Cluster, ClusterSpec, Scenario, SharedCluster, spawn_stepper};
use crate::sources::Source;
use crate::sources::heartbeat::{Heartbeat, HeartbeatSource, MeshConfig, PeerSpec};
use crate::sources::sim::SimSource;
use crate::{http, signals};

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
    #[arg(long = "speed", default_value_t = 1.0, value_parser = parse_speed)]
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

/// Heartbeat interval between the simulated hosts.
const DEMO_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(100);

/// A full mesh costs n² packets and one thread per host: past this many
/// simulated hosts (benchmark clusters), the demo runs without heartbeats.
const DEMO_MESH_MAX_HOSTS: usize = 16;

/// Starts the real heartbeat mesh between the simulated hosts, over UDP on
/// loopback; a host the scenario kills goes silent (its socket is muted).
/// The meshes run while their peer lists' senders live: keep them.
type PeerSenders = Vec<tokio::sync::watch::Sender<Vec<PeerSpec>>>;

fn start_meshes(
    hosts: &[String],
    cluster: SharedCluster,
) -> anyhow::Result<(Vec<Heartbeat>, PeerSenders)> {
    if hosts.len() > DEMO_MESH_MAX_HOSTS {
        log::info!(
            "{} simulated hosts: no heartbeat mesh (it runs for up to {DEMO_MESH_MAX_HOSTS})",
            hosts.len()
        );
        return Ok((vec![], vec![]));
    }
    let socks = hosts
        .iter()
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let addrs = socks
        .iter()
        .map(|s| s.local_addr())
        .collect::<Result<Vec<_>, _>>()?;
    let mut meshes = Vec::new();
    let mut senders = Vec::new();
    for (i, sock) in socks.into_iter().enumerate() {
        let peers: Vec<PeerSpec> = hosts
            .iter()
            .zip(&addrs)
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, (name, addr))| PeerSpec {
                name: name.clone(),
                addr: *addr,
            })
            .collect();
        let (tx, rx) = tokio::sync::watch::channel(peers);
        senders.push(tx);
        let cfg = MeshConfig {
            name: hosts[i].clone(),
            interval: DEMO_HEARTBEAT_INTERVAL,
            down_after: 3,
            gap_window: Duration::from_secs(300),
            key: None,
        };
        meshes.push(Heartbeat::start_on_thread(sock, cfg, rx)?);
    }
    let controls: Vec<_> = meshes.iter().map(|m| m.control()).collect();
    let names = hosts.to_vec();
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(DEMO_HEARTBEAT_INTERVAL);
        loop {
            iv.tick().await;
            let c = cluster.lock().unwrap_or_else(|e| e.into_inner());
            for (name, ctl) in names.iter().zip(&controls) {
                ctl.set_mute(!c.host(name).is_some_and(|h| h.alive));
            }
        }
    });
    Ok((meshes, senders))
}

/// Runs the demo until Ctrl-C.
/// `--speed`: a finite factor from 0.001 to 10,000 (anything else would
/// make a tick of simulated time overflow or stand still).
fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() && (0.001..=10_000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s} is out of range 0.001..10000"))
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let cluster = match &args.cluster {
        Some(p) => {
            let spec = ClusterSpec::load(p)?;
            Cluster::new(spec, args.seed).with_context(|| p.display().to_string())?
        }
        None => Cluster::default_demo(args.seed),
    };
    let scenario = match &args.scenario {
        Some(p) => Scenario::load(p)?,
        None if args.no_scenario => Scenario::default(),
        None => Scenario::default_demo(),
    };
    scenario.check(&cluster).context("scenario")?;
    let hosts: Vec<String> = cluster
        .hosts()
        .iter()
        .map(|h| h.spec.name.clone())
        .collect();
    let shared = Arc::new(Mutex::new(cluster));
    spawn_stepper(
        shared.clone(),
        scenario,
        Duration::from_millis(100),
        args.speed,
    );

    let sec = crate::http::webconfig::WebSecurity::default();
    let mut servers = Vec::new();
    let mut targets = Vec::new();
    let (meshes, _peer_senders) = start_meshes(&hosts, shared.clone())?;
    let mut meshes = meshes.into_iter();
    for (i, host) in hosts.iter().enumerate() {
        let rej = Arc::new(Rejections::default());
        let mut src: Vec<Box<dyn Source>> =
            vec![Box::new(SimSource::new(shared.clone(), host.clone()))];
        if let Some(hb) = meshes.next() {
            src.push(Box::new(HeartbeatSource::new(hb)));
        }
        let collector = Arc::new(Collector::new(src, Duration::from_secs(5), rej));
        let addr = format!("{}:{}", args.listen_host, args.base_port + i as u16);
        let listener = http::bind(&addr).await?;
        let local = listener.local_addr()?;
        targets.push((host.clone(), local.to_string()));
        let router = http::router(collector, "/metrics", &format!("xentinel demo host {host}"));
        // A killed host's exporter dies with it: Prometheus sees `up == 0`.
        let (c, name) = (shared.clone(), host.clone());
        let router = router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let alive = c
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .host(&name)
                    .is_some_and(|h| h.alive);
                async move {
                    if alive {
                        next.run(req).await
                    } else {
                        use axum::response::IntoResponse;
                        (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "host is down\n",
                        )
                            .into_response()
                    }
                }
            },
        ));
        servers.push(tokio::spawn(http::serve(
            listener,
            router,
            sec.clone(),
            signals::shutdown(),
        )));
    }
    let stack_bins = match args.stack {
        StackMode::Off => None,
        StackMode::Auto => crate::roles::demo::stack::binaries(),
        StackMode::On => Some(crate::roles::demo::stack::binaries().ok_or_else(|| {
            anyhow::anyhow!(
                "--stack on: prometheus and alertmanager are not on PATH \
                 (Debian: apt-get install prometheus prometheus-alertmanager)"
            )
        })?),
    };
    let prom_url = stack_bins
        .as_ref()
        .map(|_| format!("http://{}", args.prometheus_address));
    let webhook = if !args.no_webhook && (args.webhook || stack_bins.is_some()) {
        let planner = args.webhook_prometheus_url.clone().or(prom_url.clone());
        Some(
            webhook::spawn(
                shared.clone(),
                webhook::Flags {
                    listen_address: &args.webhook_listen_address,
                    token_file: args.webhook_token_file.as_deref(),
                    insecure_no_auth: args.webhook_insecure_no_auth,
                },
                planner,
            )
            .await?,
        )
    } else {
        None
    };
    // Kept alive until the demo ends: dropping it stops Prometheus and Alertmanager.
    let mut _stack = None;
    if stack_bins.is_some() {
        let dir = std::env::temp_dir().join(format!("xentinel-demo-{}/stack", std::process::id()));
        let spec = crate::roles::demo::stack::StackSpec {
            exporters: targets.clone(),
            webhook: webhook.as_ref().map(|w| w.addr.clone()),
            token_file: webhook.as_ref().and_then(|w| w.token_file.clone()),
            prometheus_addr: args.prometheus_address.clone(),
            alertmanager_addr: args.alertmanager_address.clone(),
            interval: args.stack_interval,
        };
        let st = crate::roles::demo::stack::start(&spec, &dir).await?;
        println!(
            "prometheus:   {}  (alerts: {}/alerts)",
            st.prometheus_url, st.prometheus_url
        );
        println!(
            "alertmanager: {}  (config and logs in {})",
            st.alertmanager_url,
            st.dir.display()
        );
        narrator::spawn(
            st.prometheus_url.clone(),
            webhook.as_ref().map(|w| w.db_path.clone()),
            shared.clone(),
        );
        _stack = Some(st);
    } else if args.stack == StackMode::Auto {
        println!(
            "prometheus and alertmanager are not on PATH: running the exporters alone \
             (Debian: apt-get install prometheus prometheus-alertmanager, then run the demo again \
             for the whole loop: alert -> webhook -> migrations)"
        );
    }
    println!(
        "xentinel demo: {} simulated Xen hosts (seed {}, speed x{})",
        hosts.len(),
        args.seed,
        args.speed
    );
    for (host, addr) in &targets {
        println!("  {host:<6} http://{addr}/metrics");
    }
    println!(
        "\nPoint Prometheus at them with a file_sd targets file (prometheus/targets/xentinel.yml):"
    );
    for (host, addr) in &targets {
        println!("- targets: ['{addr}']\n  labels: {{host: {host}}}");
    }
    println!("\nCtrl-C stops the demo.");
    for s in servers {
        s.await??;
    }
    Ok(())
}
