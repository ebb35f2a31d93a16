//! Renderer choice evidence: the same in-process snapshot rendered by
//! xentinel's renderer, by the `prometheus` crate (a custom
//! `prometheus::core::Collector` building `MetricFamily` values, gathered by a
//! `Registry` and encoded by `TextEncoder`) and by `prometheus-client` (a
//! custom `Collector` encoding the families). Times and allocations per
//! render are measured with a counting global allocator (see the bench root).
//!
//! Both crate adapters walk the snapshot with [`walk`], which hands them every
//! family of the contract with borrowed label values, so they do only the
//! work their API asks for.

use std::fmt::Write as _;
use std::time::Instant;

use xentinel::sim::{Cluster, ClusterSpec};
use xentinel::snapshot::{Collection, Domain, DomainState, Histogram, SelfStats, Snapshot};
use xentinel::sources::sim::SimSource;

/// Counter or gauge.
#[derive(Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A label value as the snapshot has it.
#[derive(Clone, Copy)]
pub enum Lv<'a> {
    S(&'a str),
    N(u64),
}

impl Lv<'_> {
    fn owned(self) -> String {
        match self {
            Lv::S(s) => s.to_string(),
            Lv::N(n) => n.to_string(),
        }
    }
}

/// Emits one sample: labels and value.
pub type Emit<'e> = dyn FnMut(&[(&'static str, Lv)], f64) + 'e;

/// Receives a snapshot's families, in order; `samples` calls its argument once
/// per sample of the family.
pub trait Sink {
    fn family(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        samples: &dyn Fn(&mut Emit),
    );
    fn histograms(
        &mut self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        hs: &[(&str, &Histogram)],
    );
}

/// Feeds every family of `s` to `sink` (`begin` only for non-empty families).
pub fn walk(s: &Snapshot, sink: &mut impl Sink) {
    type Each = fn(&Domain, &mut dyn FnMut(Option<(&'static str, Lv)>, f64));
    let fams: Vec<(&'static str, &'static str, Kind, Each)> = vec![
        (
            "xen_domain_info",
            "Information about a domain; always 1.",
            Kind::Gauge,
            |d, f| f(Some(("domid", Lv::N(u64::from(d.domid)))), 1.0),
        ),
        (
            "xen_domain_state",
            "Run state of a domain, one-hot.",
            Kind::Gauge,
            |d, f| {
                if let Some(st) = d.stats.as_ref().and_then(|s| s.state) {
                    for s in DomainState::ALL {
                        f(
                            Some(("state", Lv::S(s.as_str()))),
                            f64::from(u8::from(s == st)),
                        );
                    }
                }
            },
        ),
        (
            "xen_domain_cpu_seconds_total",
            "CPU time used by the domain's vCPUs.",
            Kind::Counter,
            |d, f| {
                if let Some(s) = &d.stats {
                    f(None, s.cpu_seconds)
                }
            },
        ),
        (
            "xen_domain_vcpu_seconds_total",
            "CPU time used by one vCPU.",
            Kind::Counter,
            |d, f| {
                for v in d.stats.iter().flat_map(|s| &s.vcpus) {
                    f(Some(("vcpu", Lv::N(u64::from(v.id)))), v.cpu_seconds)
                }
            },
        ),
        (
            "xen_domain_vcpu_online",
            "1 when the vCPU is online.",
            Kind::Gauge,
            |d, f| {
                for v in d.stats.iter().flat_map(|s| &s.vcpus) {
                    f(
                        Some(("vcpu", Lv::N(u64::from(v.id)))),
                        f64::from(u8::from(v.online)),
                    )
                }
            },
        ),
        (
            "xen_domain_vcpus",
            "Number of vCPUs of the domain.",
            Kind::Gauge,
            |d, f| {
                if let Some(s) = &d.stats {
                    f(None, f64::from(s.vcpu_count))
                }
            },
        ),
        (
            "xen_domain_memory_bytes",
            "Current memory reservation of the domain.",
            Kind::Gauge,
            |d, f| {
                if let Some(s) = &d.stats {
                    f(None, s.memory_bytes as f64)
                }
            },
        ),
        (
            "xen_domain_memory_max_bytes",
            "Maximum memory of the domain.",
            Kind::Gauge,
            |d, f| {
                if let Some(m) = d.stats.as_ref().and_then(|s| s.memory_max_bytes) {
                    f(None, m as f64)
                }
            },
        ),
        (
            "xen_domain_memory_target_bytes",
            "Balloon target from xenstore memory/target.",
            Kind::Gauge,
            |d, f| {
                if let Some(m) = d.meta.as_ref().and_then(|m| m.memory_target_bytes) {
                    f(None, m as f64)
                }
            },
        ),
        (
            "xen_domain_network_receive_bytes_total",
            "Bytes received by the domain.",
            Kind::Counter,
            |d, f| {
                for n in d.stats.iter().flat_map(|s| &s.networks) {
                    f(
                        Some(("interface", Lv::N(u64::from(n.id)))),
                        n.rx_bytes as f64,
                    )
                }
            },
        ),
        (
            "xen_domain_network_receive_packets_total",
            "Packets received by the domain.",
            Kind::Counter,
            |d, f| {
                for n in d.stats.iter().flat_map(|s| &s.networks) {
                    f(
                        Some(("interface", Lv::N(u64::from(n.id)))),
                        n.rx_packets as f64,
                    )
                }
            },
        ),
        (
            "xen_domain_network_receive_errors_total",
            "Receive errors.",
            Kind::Counter,
            |d, f| {
                for n in d.stats.iter().flat_map(|s| &s.networks) {
                    f(
                        Some(("interface", Lv::N(u64::from(n.id)))),
                        n.rx_errors as f64,
                    )
                }
            },
        ),
        (
            "xen_domain_network_receive_drops_total",
            "Received packets dropped.",
            Kind::Counter,
            |d, f| {
                for n in d.stats.iter().flat_map(|s| &s.networks) {
                    f(
                        Some(("interface", Lv::N(u64::from(n.id)))),
                        n.rx_drops as f64,
                    )
                }
            },
        ),
        (
            "xen_domain_network_transmit_bytes_total",
            "Bytes sent by the domain.",
            Kind::Counter,
            |d, f| {
                for n in d.stats.iter().flat_map(|s| &s.networks) {
                    f(
                        Some(("interface", Lv::N(u64::from(n.id)))),
                        n.tx_bytes as f64,
                    )
                }
            },
        ),
        (
            "xen_domain_network_transmit_packets_total",
            "Packets sent by the domain.",
            Kind::Counter,
            |d, f| {
                for n in d.stats.iter().flat_map(|s| &s.networks) {
                    f(
                        Some(("interface", Lv::N(u64::from(n.id)))),
                        n.tx_packets as f64,
                    )
                }
            },
        ),
        (
            "xen_domain_network_transmit_errors_total",
            "Transmit errors.",
            Kind::Counter,
            |d, f| {
                for n in d.stats.iter().flat_map(|s| &s.networks) {
                    f(
                        Some(("interface", Lv::N(u64::from(n.id)))),
                        n.tx_errors as f64,
                    )
                }
            },
        ),
        (
            "xen_domain_network_transmit_drops_total",
            "Sent packets dropped.",
            Kind::Counter,
            |d, f| {
                for n in d.stats.iter().flat_map(|s| &s.networks) {
                    f(
                        Some(("interface", Lv::N(u64::from(n.id)))),
                        n.tx_drops as f64,
                    )
                }
            },
        ),
        (
            "xen_domain_block_read_bytes_total",
            "Bytes read from the virtual block device.",
            Kind::Counter,
            |d, f| {
                for b in d.stats.iter().flat_map(|s| &s.vbds) {
                    f(Some(("device", Lv::S(&b.device))), b.read_bytes as f64)
                }
            },
        ),
        (
            "xen_domain_block_write_bytes_total",
            "Bytes written to the virtual block device.",
            Kind::Counter,
            |d, f| {
                for b in d.stats.iter().flat_map(|s| &s.vbds) {
                    f(Some(("device", Lv::S(&b.device))), b.write_bytes as f64)
                }
            },
        ),
        (
            "xen_domain_block_read_requests_total",
            "Read requests.",
            Kind::Counter,
            |d, f| {
                for b in d.stats.iter().flat_map(|s| &s.vbds) {
                    f(Some(("device", Lv::S(&b.device))), b.read_requests as f64)
                }
            },
        ),
        (
            "xen_domain_block_write_requests_total",
            "Write requests.",
            Kind::Counter,
            |d, f| {
                for b in d.stats.iter().flat_map(|s| &s.vbds) {
                    f(Some(("device", Lv::S(&b.device))), b.write_requests as f64)
                }
            },
        ),
        (
            "xen_domain_block_oo_requests_total",
            "Out-of-request events (ring full).",
            Kind::Counter,
            |d, f| {
                for b in d.stats.iter().flat_map(|s| &s.vbds) {
                    f(Some(("device", Lv::S(&b.device))), b.oo_requests as f64)
                }
            },
        ),
        (
            "xen_domain_guest_page_faults_total",
            "Page faults inside the guest, from its agent.",
            Kind::Counter,
            |d, f| {
                if let Some(g) = d.meta.as_ref().map(|m| &m.guest) {
                    if let Some(x) = g.page_faults_minor {
                        f(Some(("kind", Lv::S("minor"))), x as f64)
                    }
                    if let Some(x) = g.page_faults_major {
                        f(Some(("kind", Lv::S("major"))), x as f64)
                    }
                }
            },
        ),
        (
            "xen_domain_guest_memory_available_bytes",
            "MemAvailable inside the guest.",
            Kind::Gauge,
            |d, f| {
                if let Some(x) = d.meta.as_ref().and_then(|m| m.guest.memory_available_bytes) {
                    f(None, x as f64)
                }
            },
        ),
        (
            "xen_domain_guest_swap_used_bytes",
            "Swap used inside the guest.",
            Kind::Gauge,
            |d, f| {
                if let Some(x) = d.meta.as_ref().and_then(|m| m.guest.swap_used_bytes) {
                    f(None, x as f64)
                }
            },
        ),
        (
            "xen_domain_guest_report_age_seconds",
            "Seconds since the guest agent last reported.",
            Kind::Gauge,
            |d, f| {
                if let Some(x) = d.meta.as_ref().and_then(|m| m.guest.age_seconds) {
                    f(None, x)
                }
            },
        ),
    ];
    for (name, help, kind, each) in fams {
        // Families no domain has are absent, as in xentinel's output.
        let mut any = false;
        for d in &s.domains {
            each(d, &mut |_, _| any = true);
            if any {
                break;
            }
        }
        if !any {
            continue;
        }
        sink.family(name, help, kind, &|emit| {
            for d in &s.domains {
                each(d, &mut |extra, v| {
                    let base = [("domain", Lv::S(&d.name)), ("uuid", Lv::S(&d.uuid))];
                    match extra {
                        None => emit(&base, v),
                        Some(e) => emit(&[base[0], base[1], e], v),
                    }
                });
            }
        });
    }
    if let Some(h) = &s.host {
        let xv = h.xen_version.as_deref().unwrap_or("unknown");
        sink.family(
            "xen_host_info",
            "Information about the hypervisor; always 1.",
            Kind::Gauge,
            &|emit| emit(&[("xen_version", Lv::S(xv))], 1.0),
        );
        for (n, help, v) in [
            (
                "xen_host_memory_total_bytes",
                "Memory of the host, as the hypervisor sees it.",
                h.memory_total_bytes as f64,
            ),
            (
                "xen_host_memory_free_bytes",
                "Memory not given to any domain.",
                h.memory_free_bytes as f64,
            ),
            (
                "xen_host_cpus",
                "Physical CPUs of the host.",
                f64::from(h.cpus),
            ),
            (
                "xen_host_cpu_hz",
                "CPU frequency of the host.",
                h.cpu_hz as f64,
            ),
        ] {
            sink.family(n, help, Kind::Gauge, &|emit| emit(&[], v));
        }
    }
    sink.family(
        "xen_host_domains",
        "Domains on the host, dom0 included.",
        Kind::Gauge,
        &|emit| emit(&[], s.domains.len() as f64),
    );
    if !s.migrations.is_empty() {
        let hs: Vec<(&str, &Histogram)> =
            s.migrations.iter().map(|(d, h)| (d.as_str(), h)).collect();
        sink.histograms(
            "xen_domain_migration_duration_seconds",
            "Live migrations this host saw in xenstore, by direction.",
            "direction",
            &hs,
        );
    }
    sink.family(
        "xentinel_host_warning",
        "1 while a warning failure (a failure that announces itself) is raised on this host.",
        Kind::Gauge,
        &|emit| {
            for k in xentinel::snapshot::WarningKind::ALL {
                let on = s.warnings.get(&k).copied().unwrap_or(false);
                emit(&[("kind", Lv::S(k.as_str()))], f64::from(u8::from(on)));
            }
        },
    );
    let b = &xentinel::exposition::BUILD;
    sink.family(
        "xentinel_build_info",
        "Build of xentinel; always 1.",
        Kind::Gauge,
        &|emit| {
            emit(
                &[
                    ("version", Lv::S(b.version)),
                    ("revision", Lv::S(b.revision)),
                    ("rustversion", Lv::S(b.rustversion)),
                ],
                1.0,
            )
        },
    );
    if !s.sources.is_empty() {
        sink.family(
            "xentinel_source_up",
            "1 when the source's last collection succeeded.",
            Kind::Gauge,
            &|emit| {
                for st in &s.sources {
                    emit(&[("source", Lv::S(st.name))], f64::from(u8::from(st.up)));
                }
            },
        );
        sink.family(
            "xentinel_source_duration_seconds",
            "Duration of the source's last collection.",
            Kind::Gauge,
            &|emit| {
                for st in &s.sources {
                    emit(&[("source", Lv::S(st.name))], st.duration_seconds);
                }
            },
        );
    }
    sink.family(
        "xentinel_guest_reports_rejected_total",
        "Guest-agent values rejected as garbage, negative, oversized or implausible.",
        Kind::Counter,
        &|emit| {
            for reason in xentinel::guest::REASONS {
                let n = s
                    .self_stats
                    .guest_rejections
                    .get(reason)
                    .copied()
                    .unwrap_or(0);
                emit(&[("reason", Lv::S(reason))], n as f64);
            }
        },
    );
}

// ---- the `prometheus` crate -------------------------------------------------

mod rust_prometheus {
    use super::*;
    use prometheus::core::{Collector, Desc};
    use prometheus::proto::{self, LabelPair, Metric, MetricFamily, MetricType};

    /// Builds `MetricFamily` values from the snapshot on every `collect`.
    pub struct SnapCollector {
        pub snap: std::sync::Arc<Snapshot>,
        pub descs: Vec<Desc>,
    }

    struct Builder {
        out: Vec<MetricFamily>,
    }

    fn pairs(labels: &[(&'static str, Lv)]) -> Vec<LabelPair> {
        labels
            .iter()
            .map(|(k, val)| {
                let mut lp = LabelPair::default();
                lp.set_name(k.to_string());
                lp.set_value(val.owned());
                lp
            })
            .collect()
    }

    fn family(name: &str, help: &str, t: MetricType) -> MetricFamily {
        let mut mf = MetricFamily::default();
        mf.set_name(name.to_string());
        mf.set_help(help.to_string());
        mf.set_field_type(t);
        mf
    }

    impl Sink for Builder {
        fn family(
            &mut self,
            name: &'static str,
            help: &'static str,
            kind: Kind,
            samples: &dyn Fn(&mut Emit),
        ) {
            let t = match kind {
                Kind::Counter => MetricType::COUNTER,
                Kind::Gauge => MetricType::GAUGE,
            };
            let mut mf = family(name, help, t);
            let ms = mf.mut_metric();
            samples(&mut |labels, v| {
                let mut m = Metric::from_label(pairs(labels));
                match kind {
                    Kind::Counter => {
                        let mut c = proto::Counter::default();
                        c.set_value(v);
                        m.set_counter(c);
                    }
                    Kind::Gauge => {
                        let mut g = proto::Gauge::default();
                        g.set_value(v);
                        m.set_gauge(g);
                    }
                }
                ms.push(m);
            });
            self.out.push(mf);
        }

        fn histograms(
            &mut self,
            name: &'static str,
            help: &'static str,
            label: &'static str,
            hs: &[(&str, &Histogram)],
        ) {
            let mut mf = family(name, help, MetricType::HISTOGRAM);
            for (lv, h) in hs {
                let mut ph = proto::Histogram::default();
                ph.set_sample_count(h.count);
                ph.set_sample_sum(h.sum);
                ph.set_bucket(
                    h.bounds
                        .iter()
                        .zip(&h.counts)
                        .map(|(b, c)| {
                            let mut bk = proto::Bucket::default();
                            bk.set_upper_bound(*b);
                            bk.set_cumulative_count(*c);
                            bk
                        })
                        .collect(),
                );
                let mut m = Metric::from_label(pairs(&[(label, Lv::S(lv))]));
                m.set_histogram(ph);
                mf.mut_metric().push(m);
            }
            self.out.push(mf);
        }
    }

    impl Collector for SnapCollector {
        fn desc(&self) -> Vec<&Desc> {
            self.descs.iter().collect()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let mut b = Builder {
                out: Vec::with_capacity(48),
            };
            walk(&self.snap, &mut b);
            b.out
        }
    }

    /// One `Desc` per family, as registration wants (label names are not
    /// checked against the families by `gather`).
    pub fn descs(s: &Snapshot) -> Vec<Desc> {
        struct Names(Vec<(&'static str, &'static str)>);
        impl Sink for Names {
            fn family(
                &mut self,
                name: &'static str,
                help: &'static str,
                _: Kind,
                _: &dyn Fn(&mut Emit),
            ) {
                self.0.push((name, help));
            }
            fn histograms(
                &mut self,
                name: &'static str,
                help: &'static str,
                _: &'static str,
                _: &[(&str, &Histogram)],
            ) {
                self.0.push((name, help));
            }
        }
        let mut n = Names(Vec::new());
        walk(s, &mut n);
        n.0.into_iter()
            .map(|(name, help)| {
                Desc::new(name.into(), help.into(), vec![], Default::default()).expect("valid desc")
            })
            .collect()
    }
}

// ---- prometheus-client --------------------------------------------------------

mod prom_client {
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{
        DescriptorEncoder, EncodeLabelSet, LabelSetEncoder, NoLabelSet,
    };
    use prometheus_client::metrics::MetricType;

    /// Encodes the snapshot's families on every `encode`.
    #[derive(Debug)]
    pub struct SnapCollector {
        pub snap: std::sync::Arc<Snapshot>,
    }

    /// Borrowed labels as a label set.
    struct Labels<'a, 'b>(&'a [(&'static str, Lv<'b>)]);

    impl EncodeLabelSet for Labels<'_, '_> {
        fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
            use prometheus_client::encoding::EncodeLabel;
            for (k, v) in self.0 {
                match v {
                    Lv::S(s) => (*k, *s).encode(encoder.encode_label())?,
                    Lv::N(n) => (*k, *n).encode(encoder.encode_label())?,
                }
            }
            Ok(())
        }
    }

    struct Enc<'e> {
        enc: DescriptorEncoder<'e>,
        err: Option<std::fmt::Error>,
    }

    impl Sink for Enc<'_> {
        fn family(
            &mut self,
            name: &'static str,
            help: &'static str,
            kind: Kind,
            samples: &dyn Fn(&mut Emit),
        ) {
            if self.err.is_some() {
                return;
            }
            // prometheus-client appends `_total` to counters itself.
            let (name, mt) = match kind {
                Kind::Counter => (
                    name.strip_suffix("_total").unwrap_or(name),
                    MetricType::Counter,
                ),
                Kind::Gauge => (name, MetricType::Gauge),
            };
            let mut me = match self.enc.encode_descriptor(name, help, None, mt) {
                Ok(me) => me,
                Err(e) => {
                    self.err = Some(e);
                    return;
                }
            };
            let mut res = Ok(());
            samples(&mut |labels, v| {
                if res.is_err() {
                    return;
                }
                let l = Labels(labels);
                res = me.encode_family(&l).and_then(|mut m| match kind {
                    Kind::Counter => m.encode_counter::<NoLabelSet, f64, f64>(&v, None),
                    Kind::Gauge => m.encode_gauge(&v),
                });
            });
            if let Err(e) = res {
                self.err = Some(e);
            }
        }

        fn histograms(
            &mut self,
            name: &'static str,
            help: &'static str,
            label: &'static str,
            hs: &[(&str, &Histogram)],
        ) {
            if self.err.is_some() {
                return;
            }
            let r = (|| {
                let mut me = self
                    .enc
                    .encode_descriptor(name, help, None, MetricType::Histogram)?;
                for (lv, h) in hs {
                    // Per-bucket counts: the encoder accumulates them.
                    let last = h.counts.last().copied().unwrap_or(0);
                    let mut prev = 0;
                    let buckets: Vec<(f64, u64)> = h
                        .bounds
                        .iter()
                        .zip(&h.counts)
                        .map(|(b, c)| {
                            let d = c - prev;
                            prev = *c;
                            (*b, d)
                        })
                        .chain(std::iter::once((f64::MAX, h.count - last)))
                        .collect();
                    let labels = [(label, Lv::S(lv))];
                    let l = Labels(&labels);
                    me.encode_family(&l)?
                        .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
                }
                Ok(())
            })();
            if let Err(e) = r {
                self.err = Some(e);
            }
        }
    }

    impl Collector for SnapCollector {
        fn encode(&self, enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let mut e = Enc { enc, err: None };
            walk(&self.snap, &mut e);
            e.err.map_or(Ok(()), Err)
        }
    }
}

/// A `domains`-domain simulated host, stepped 5 simulated seconds.
pub fn source(domains: usize) -> SimSource {
    let mut cl = Cluster::new(ClusterSpec::one_host("xen1", domains), 1).expect("valid spec");
    cl.step(std::time::Duration::from_secs(5));
    SimSource::new(std::sync::Arc::new(std::sync::Mutex::new(cl)), "xen1")
}

/// A snapshot of `src` the way the collector builds one (sim fill, merge).
pub fn snapshot(src: &SimSource) -> Snapshot {
    let mut c = Collection::default();
    src.fill(&mut c).expect("sim fill");
    Snapshot::merge(
        c,
        vec![xentinel::snapshot::SourceStatus {
            name: "sim",
            up: true,
            duration_seconds: 0.001,
        }],
        SelfStats::default(),
    )
}

/// CPU time this thread has run, in ns (`/proc/thread-self/schedstat`):
/// unlike wall time, it does not count waiting for a CPU on a busy machine.
/// The kernel brings it up to date only at scheduler ticks, so it is read
/// around all the runs together, not around each one.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One renderer's figures: median wall ms, mean CPU ms, allocations and
/// bytes allocated per call, output bytes.
struct Fig {
    wall: f64,
    cpu: f64,
    allocs: u64,
    bytes: u64,
    len: usize,
}

/// Figures per call of `f` over `runs` runs (after one warm-up).
fn time_it(runs: usize, mut f: impl FnMut() -> usize) -> Fig {
    let mut wall = Vec::with_capacity(runs);
    let mut allocs = 0;
    let mut bytes = 0;
    let mut len = f();
    let c0 = thread_cpu_ns();
    for _ in 0..runs {
        let reg = stats_alloc::Region::new(crate::GLOBAL);
        let t = Instant::now();
        len = f();
        wall.push(t.elapsed().as_secs_f64() * 1e3);
        let c = reg.change();
        allocs += (c.allocations + c.reallocations) as u64;
        bytes += c.bytes_allocated as u64;
    }
    let cpu = (thread_cpu_ns() - c0) as f64 / 1e6 / runs as f64;
    wall.sort_by(f64::total_cmp);
    Fig {
        wall: wall[runs / 2],
        cpu,
        allocs: allocs / runs as u64,
        bytes: bytes / runs as u64,
        len,
    }
}

/// Renders the same `domains`-domain snapshot through each renderer `runs`
/// times; returns a Markdown table.
pub fn compare(domains: usize, runs: usize) -> String {
    let src = source(domains);
    // The crate adapters cover the domain, host and self families: leave out
    // the sim's dom0 health and domain probes so all three render the same.
    let mut snap = snapshot(&src);
    snap.dom0 = None;
    snap.probes.clear();
    let snap = std::sync::Arc::new(snap);
    let mut rows = Vec::new();
    // For scale: what building the snapshot costs before any renderer runs.
    rows.push((
        "(not a renderer: sim fill alone)",
        time_it(runs, || {
            let mut c = Collection::default();
            src.fill(&mut c).expect("sim fill");
            c.stats.len()
        }),
    ));
    rows.push((
        "(not a renderer: collecting the snapshot, sim fill + merge)",
        time_it(runs, || snapshot(&src).domains.len()),
    ));

    let mut last = 0;
    rows.push((
        "xentinel `render` into a fresh `String`",
        time_it(runs, || {
            let mut out = String::new();
            xentinel::exposition::render(&snap, &mut out);
            last = out.len();
            out.len()
        }),
    ));
    let mut buf = String::with_capacity(last + 4096);
    rows.push((
        "xentinel `render` into a reused buffer",
        time_it(runs, || {
            buf.clear();
            xentinel::exposition::render(&snap, &mut buf);
            buf.len()
        }),
    ));
    rows.push((
        "xentinel `Rendering` in 64 KiB pieces (what /metrics does)",
        time_it(runs, || {
            let mut r = xentinel::exposition::Rendering::new(&snap);
            let mut n = 0;
            loop {
                let mut piece = String::with_capacity(72 * 1024);
                let done = r.fill(&snap, &mut piece, 64 * 1024);
                n += piece.len();
                if done {
                    break n;
                }
            }
        }),
    ));

    let reg = prometheus::Registry::new();
    reg.register(Box::new(rust_prometheus::SnapCollector {
        snap: snap.clone(),
        descs: rust_prometheus::descs(&snap),
    }))
    .expect("register");
    rows.push((
        "`prometheus` 0.14: custom Collector → Registry::gather → TextEncoder",
        time_it(runs, || {
            let mfs = reg.gather();
            let mut out = String::new();
            prometheus::TextEncoder::new()
                .encode_utf8(&mfs, &mut out)
                .expect("encode");
            out.len()
        }),
    ));

    let mut creg = prometheus_client::registry::Registry::default();
    creg.register_collector(Box::new(prom_client::SnapCollector { snap: snap.clone() }));
    rows.push((
        "`prometheus-client` 0.26: custom Collector → text::encode",
        time_it(runs, || {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &creg).expect("encode");
            out.len()
        }),
    ));

    // Samples in each output, rendered once more outside the timings.
    let count = |t: &str| {
        t.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count()
    };
    let mut ours = String::new();
    xentinel::exposition::render(&snap, &mut ours);
    let mut theirs = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&reg.gather(), &mut theirs)
        .expect("encode");
    let mut client = String::new();
    prometheus_client::encoding::text::encode(&mut client, &creg).expect("encode");
    let series = [
        0,
        0,
        count(&ours),
        count(&ours),
        count(&ours),
        count(&theirs),
        count(&client),
    ];
    if std::env::var_os("XENTINEL_BENCH_DUMP").is_some() {
        for (name, t) in [
            ("ours", &ours),
            ("prometheus", &theirs),
            ("client", &client),
        ] {
            let _ = std::fs::write(std::env::temp_dir().join(format!("render-{name}.txt")), t);
        }
    }

    let mut t = format!(
        "{} domains (the simulator's dom0 and probe families left out: the crate adapters do not \
         cover them), {} runs each; CPU is this thread's, so it leaves out time spent waiting for \
         a CPU on a busy machine.\n\n\
         | renderer | median wall ms | mean CPU ms | allocations per render | bytes allocated per render | output bytes | samples |\n\
         |---|--:|--:|--:|--:|--:|--:|\n",
        domains, runs
    );
    for ((name, f), n) in rows.into_iter().zip(series) {
        let _ = writeln!(
            t,
            "| {name} | {:.2} | {:.2} | {} | {} | {} | {} |",
            f.wall,
            f.cpu,
            f.allocs,
            f.bytes,
            if n == 0 {
                "–".to_string()
            } else {
                f.len.to_string()
            },
            if n == 0 {
                "–".to_string()
            } else {
                n.to_string()
            },
        );
    }
    t
}
