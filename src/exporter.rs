//! `xentinel exporter`: builds a host's sources from flags and configuration
//! and serves them until SIGINT/SIGTERM.

use std::sync::Arc;

use crate::cli::ExporterArgs;
use crate::collector::Collector;
use crate::config::{self, Config, SourceKind};
use crate::guest::Rejections;
use crate::heartbeat::{self, HeartbeatSource, probe::ProbeSource};
use crate::sources::Source;
use crate::sources::host::HostSource;
use crate::sources::xen::XenSource;
use crate::sources::xenstore::XenstoreSource;
use crate::{http, signals};

/// The sources of a real Xen host: libxenstat, xenstore, dom0 health.
///
/// Fails with one sentence when libxenstat or the hypervisor is missing.
pub fn xen_sources(
    cfg: &Config,
    libxenstat: Option<&std::path::Path>,
    rej: &Arc<Rejections>,
) -> anyhow::Result<Vec<Box<dyn Source>>> {
    let lib = libxenstat.or(cfg.exporter.libxenstat.as_deref());
    let xen = XenSource::open(lib).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut v: Vec<Box<dyn Source>> = vec![Box::new(xen)];
    if *cfg.exporter.xenstore {
        let timeout = cfg.exporter.source_timeout.0.0.mul_f64(0.8);
        let key = Some(cfg.warnings.maintenance_xenstore_key.0.clone());
        v.push(Box::new(XenstoreSource::new(rej.clone(), key, timeout)));
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
    let mut cfg = config::load(args.config_file.as_deref())?;
    apply_flags(&mut cfg, &args)?;
    let sec = crate::webconfig::load(args.web_config_file.as_deref())?;
    let kind = args.source.or(*cfg.exporter.source).unwrap_or_default();
    let rej = Arc::new(Rejections::default());
    let sources = match kind {
        SourceKind::Xen => xen_sources(&cfg, args.libxenstat.as_deref(), &rej)?,
        SourceKind::Sim => {
            let mut v = match args.sim_domains {
                Some(n) => crate::demo::synthetic_sources(&args.sim_host, n, args.sim_seed)?,
                None => crate::demo::standalone_sources(&args.sim_host, args.sim_seed)?,
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
    http::serve(listener, router, sec.clone(), signals::shutdown()).await
}
