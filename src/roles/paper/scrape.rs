//! Reading a modelled host the way a user does: fill a collection from the
//! sim source (and a prober), merge it into a snapshot, render `/metrics`
//! with the product's writer and parse the text back with its parser.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::exposition::{self, names, parse};
use crate::sim::{Cluster, ClusterSpec};
use crate::snapshot::{Collection, SelfStats, Snapshot, SourceStatus};
use crate::sources::sim::{Pinger, SimSource};

/// A scenario's cluster from YAML.
pub fn spec(yaml: &str) -> anyhow::Result<ClusterSpec> {
    Ok(ClusterSpec::from_yaml_str(yaml, "paper scenario")?)
}

/// A parsed `/metrics` text.
pub struct Scrape(pub Vec<parse::Sample>);

impl Scrape {
    /// The value of the one series `name{want}`.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> anyhow::Result<f64> {
        Ok(parse::one(&self.0, name, want)?.value)
    }

    /// A domain's series `name{domain=…, want}`.
    pub fn domain(&self, name: &str, domain: &str, want: &[(&str, &str)]) -> anyhow::Result<f64> {
        let mut w = vec![("domain", domain)];
        w.extend_from_slice(want);
        self.value(name, &w)
    }

    /// A domain's CPU seconds (`xen_domain_cpu_seconds_total`).
    pub fn cpu(&self, domain: &str) -> anyhow::Result<f64> {
        self.domain(names::DOMAIN_CPU_SECONDS, domain, &[])
    }
}

/// Renders one collection as `/metrics` text.
fn render_text(col: Collection) -> String {
    let up = SourceStatus {
        name: "sim",
        up: true,
        duration_seconds: 0.0,
    };
    let snap = Snapshot::merge(col, vec![up], SelfStats::default());
    let mut text = String::new();
    exposition::render(&snap, &mut text);
    text
}

/// Renders and parses one collection.
fn render(col: Collection) -> anyhow::Result<Scrape> {
    let text = render_text(col);
    Ok(Scrape(
        parse::parse(&text).context("parsing our own /metrics")?,
    ))
}

/// A cluster in simulated time with one exporter per host and an optional
/// prober on a separate (storage) host.
pub struct Run {
    pub cluster: Arc<Mutex<Cluster>>,
    sources: Vec<SimSource>,
    pub pinger: Option<Pinger>,
}

impl Run {
    /// A run of `spec` (seed 1; the paper's specs have no noise).
    pub fn new(spec: ClusterSpec) -> anyhow::Result<Self> {
        let hosts: Vec<String> = spec.hosts.iter().map(|h| h.name.clone()).collect();
        let cluster = Arc::new(Mutex::new(Cluster::new(spec, 1)?));
        let sources = hosts
            .into_iter()
            .map(|h| SimSource::new(cluster.clone(), h))
            .collect();
        Ok(Run {
            cluster,
            sources,
            pinger: None,
        })
    }

    /// Runs `f` on the cluster.
    pub fn with<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        f(&mut self.cluster.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Simulated time now.
    pub fn now(&self) -> Duration {
        self.with(|c| c.now())
    }

    /// Advances by `dt`, in steps of the prober's interval when there is one.
    pub fn step(&mut self, dt: Duration) {
        let Some(p) = self.pinger.as_mut() else {
            self.with(|c| c.step(dt));
            return;
        };
        let mut left = dt;
        let tick = p.interval();
        let mut c = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
        while !left.is_zero() {
            let d = left.min(tick);
            c.step(d);
            p.tick(&c);
            left -= d;
        }
    }

    fn collect(&self, host: &str) -> anyhow::Result<Collection> {
        let src = self
            .sources
            .iter()
            .find(|s| s.host == host)
            .with_context(|| format!("no host {host}"))?;
        let mut col = Collection::default();
        src.fill(&mut col)?;
        Ok(col)
    }

    /// `/metrics` of `host`'s exporter now, parsed.
    pub fn scrape(&self, host: &str) -> anyhow::Result<Scrape> {
        render(self.collect(host)?)
    }

    /// `/metrics` of `host`'s exporter now, as text (a dead host's scrape fails).
    pub fn text(&self, host: &str) -> anyhow::Result<String> {
        Ok(render_text(self.collect(host)?))
    }

    /// `/metrics` of the storage host, which runs only the prober.
    pub fn scrape_prober(&self) -> anyhow::Result<Scrape> {
        let mut col = Collection::default();
        if let Some(p) = &self.pinger {
            p.fill(&mut col);
        }
        render(col)
    }
}
