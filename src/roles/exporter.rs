//! `xentinel exporter`: builds a host's sources from flags and configuration
//! and serves them until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::collector::Collector;
use crate::config::{self, Config, HostPort, Name, PeerConfig, SourceKind, V};
use crate::guest::Rejections;
use crate::sim::shared::stepped;
use crate::sim::{Cluster, ClusterSpec};
use crate::sources::Source;
use crate::sources::heartbeat::{self, HeartbeatSource};
use crate::sources::host::HostSource;
use crate::sources::probe::ProbeSource;
use crate::sources::sim::SimSource;
use crate::sources::xen::XenSource;
use crate::sources::xenstore::XenstoreSource;
use crate::{http, signals};

/// Default exporter port: a free slot of Prometheus' default port allocations.
pub const DEFAULT_EXPORTER_PORT: u16 = 10025;

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
    #[arg(long = "heartbeat.listen-address", value_parser = config::ListenAddr::parse)]
    pub heartbeat_listen: Option<config::ListenAddr>,

    /// A heartbeat peer as `name=host:port`; repeat for more (adds to the configuration's).
    #[arg(long = "heartbeat.peer", value_parser = parse_peer)]
    pub heartbeat_peers: Vec<config::PeerConfig>,

    /// This host's name in its heartbeats, as its peers list it (default: the hostname).
    #[arg(long = "heartbeat.name", value_parser = config::Name::parse)]
    pub heartbeat_name: Option<config::Name>,
}

/// A `--heartbeat.peer` value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum BadPeerFlag {
    #[error("invalid peer {0:?} (use name=host:port)")]
    Shape(String),
    #[error(transparent)]
    Value(#[from] config::ValueError),
}

/// Parses `--heartbeat.peer name=host:port`.
pub fn parse_peer(s: &str) -> Result<config::PeerConfig, BadPeerFlag> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| BadPeerFlag::Shape(s.to_string()))?;
    Ok(PeerConfig {
        name: V(Name::parse(name)?),
        address: V(HostPort::parse(addr)?),
    })
}

/// The sources of a real Xen host: libxenstat, xenstore, dom0 health.
///
/// Fails with one sentence when libxenstat or the hypervisor is missing.
pub fn xen_sources(
    cfg: &Config,
    libxenstat: Option<&std::path::Path>,
    rej: &Arc<Rejections>,
) -> anyhow::Result<Vec<Box<dyn Source>>> {
    let lib = libxenstat.or(cfg.exporter.libxenstat.as_deref());
    let xen = XenSource::open(lib)?;
    let mut v: Vec<Box<dyn Source>> = vec![Box::new(xen)];
    if *cfg.exporter.xenstore {
        let timeout = cfg.exporter.source_timeout.0.0.mul_f64(0.8);
        let key = Some(cfg.warnings.maintenance_xenstore_key.0.clone());
        let resync = cfg.exporter.xenstore_resync.0.0;
        v.push(Box::new(
            XenstoreSource::new(rej.clone(), key, timeout).with_resync(resync),
        ));
    }
    v.push(Box::new(HostSource::new(cfg.warnings.clone())));
    v.extend(network_sources(cfg)?);
    Ok(v)
}

/// The heartbeat (when configured) and domain probe sources; starts their
/// background tasks, so call it inside the runtime.
pub fn network_sources(cfg: &Config) -> anyhow::Result<Vec<Box<dyn Source>>> {
    let mut v: Vec<Box<dyn Source>> = vec![];
    if cfg.heartbeat.enabled() {
        v.push(Box::new(HeartbeatSource::new(heartbeat::start(
            &cfg.heartbeat,
        )?)));
    }
    v.push(Box::new(ProbeSource::start(
        cfg.probes.0.clone(),
        cfg.exporter.probe_interval.0.0,
        cfg.exporter.probe_timeout.0.0,
    )));
    Ok(v)
}

/// The sources of one simulated host (`exporter --source sim`): the default
/// demo cluster, stepped in real time, seen from `host`.
pub fn standalone_sources(host: &str, seed: u64) -> anyhow::Result<Vec<Box<dyn Source>>> {
    let cluster = Cluster::default_demo(seed);
    if cluster.host(host).is_none() {
        let names: Vec<_> = cluster
            .hosts()
            .iter()
            .map(|h| h.spec.name.clone())
            .collect();
        anyhow::bail!(
            "no simulated host {host:?}; the demo cluster has {}",
            names.join(", ")
        );
    }
    Ok(vec![Box::new(SimSource::new(stepped(cluster), host))])
}

/// The sources of a synthetic simulated host running `n` domains
/// (`exporter --source sim --sim.domains N`, see [`ClusterSpec::one_host`]),
/// stepped in real time like the demo, without a scenario.
pub fn synthetic_sources(host: &str, n: usize, seed: u64) -> anyhow::Result<Vec<Box<dyn Source>>> {
    let cluster = Cluster::new(ClusterSpec::one_host(host, n), seed)
        .with_context(|| format!("--sim.domains {n}"))?;
    Ok(vec![Box::new(SimSource::new(stepped(cluster), host))])
}

/// Applies the `--heartbeat.*` flags over the configuration; a peer name
/// given twice is an error.
pub fn apply_flags(cfg: &mut Config, args: &ExporterArgs) -> anyhow::Result<()> {
    if let Some(l) = args.heartbeat_listen {
        cfg.heartbeat.listen.0 = Some(l);
    }
    if let Some(n) = &args.heartbeat_name {
        cfg.heartbeat.name.0 = Some(n.clone());
    }
    cfg.heartbeat
        .peers
        .0
        .extend(args.heartbeat_peers.iter().cloned());
    let mut names: Vec<&str> = cfg
        .heartbeat
        .peers
        .iter()
        .map(|p| p.name.0.0.as_str())
        .collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        anyhow::bail!("heartbeat peer {:?} is given twice", w[0]);
    }
    Ok(())
}

/// Runs the exporter.
pub async fn run(args: ExporterArgs) -> anyhow::Result<()> {
    http::check_telemetry_path(&args.telemetry_path)?;
    if let Some(n) = args.sim_domains
        && n > crate::sim::spec::MAX_DOMAINS
    {
        anyhow::bail!(
            "--sim.domains {n}: at most {} domains",
            crate::sim::spec::MAX_DOMAINS
        );
    }
    let mut cfg = config::load(args.config_file.as_deref())?;
    apply_flags(&mut cfg, &args)?;
    let sec = crate::http::webconfig::load(args.web_config_file.as_deref())?;
    let kind = args.source.or(*cfg.exporter.source).unwrap_or_default();
    let rej = Arc::new(Rejections::default());
    let sources = match kind {
        SourceKind::Xen => xen_sources(&cfg, args.libxenstat.as_deref(), &rej)?,
        SourceKind::Sim => {
            let mut v = match args.sim_domains {
                Some(n) => synthetic_sources(&args.sim_host, n, args.sim_seed)?,
                None => standalone_sources(&args.sim_host, args.sim_seed)?,
            };
            v.extend(network_sources(&cfg)?);
            v
        }
        SourceKind::None => {
            let mut v: Vec<Box<dyn Source>> = vec![Box::new(HostSource::new(cfg.warnings.clone()))];
            v.extend(network_sources(&cfg)?);
            v
        }
    };
    let collector = Arc::new(Collector::new(
        sources,
        cfg.exporter.source_timeout.0.0,
        rej,
    ));
    let listener = http::bind(&args.listen_address).await?;
    log::info!(
        "listening on {} source={kind:?} telemetry_path={}",
        listener.local_addr()?,
        args.telemetry_path
    );
    let router = http::router(collector, &args.telemetry_path, "xentinel exporter");
    http::serve(listener, router, sec.clone(), signals::shutdown()).await?;
    Ok(())
}
