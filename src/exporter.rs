//! `xentinel exporter`: builds a host's sources from flags and configuration
//! and serves them until SIGINT/SIGTERM.

use std::sync::Arc;

use crate::cli::ExporterArgs;
use crate::collector::Collector;
use crate::config::{self, Config, SourceKind};
use crate::guest::Rejections;
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
    Ok(v)
}

/// Runs the exporter.
pub async fn run(args: ExporterArgs) -> anyhow::Result<()> {
    let cfg = config::load(args.config_file.as_deref())?;
    let sec = crate::webconfig::load(args.web_config_file.as_deref())?;
    let kind = args.source.or(*cfg.exporter.source).unwrap_or_default();
    let rej = Arc::new(Rejections::default());
    let sources = match kind {
        SourceKind::Xen => xen_sources(&cfg, args.libxenstat.as_deref(), &rej)?,
        SourceKind::Sim => crate::demo::standalone_sources(&args.sim_host, args.sim_seed)?,
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
