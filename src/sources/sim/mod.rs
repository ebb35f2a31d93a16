//! One host of the modelled cluster as a [`Source`] named `sim`, and
//! [`Pinger`], a fixed-interval prober of a modelled domain's service.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::snapshot::{
    Collection, Dom0Health, DomainMeta, DomainState, DomainStats, GuestReport, Histogram,
    HostStats, NetIf, ProbeStats, Vbd, Vcpu, WarningKind,
};
use crate::sources::{BoxFuture, Source, SourceError};

use crate::sim::{Cluster, SimHost, formulas};

mod pinger;
#[cfg(test)]
mod tests;

pub use pinger::Pinger;

/// The UUID Xen gives dom0.
pub const DOM0_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Reads one host of a shared [`Cluster`]; whoever owns the cluster steps it.
#[derive(Debug, Clone)]
pub struct SimSource {
    pub cluster: Arc<Mutex<Cluster>>,
    pub host: String,
    /// Probe durations per domain (by uuid) while it lives on this host.
    probes: Arc<Mutex<HashMap<String, Histogram>>>,
}

impl SimSource {
    /// A source for `host` of `cluster`.
    pub fn new(cluster: Arc<Mutex<Cluster>>, host: impl Into<String>) -> Self {
        SimSource {
            cluster,
            host: host.into(),
            probes: Arc::default(),
        }
    }

    /// Fills `out` from the cluster's current state (what `collect` does).
    pub fn fill(&self, out: &mut Collection) -> Result<(), SourceError> {
        let c = self
            .cluster
            .lock()
            .map_err(|_| SourceError("sim: cluster lock poisoned".into()))?;
        fill(&c, &self.host, out)?;
        self.probe(&c, out);
        Ok(())
    }

    /// The domain probe of a modelled domain: each collection probes every
    /// domain once; it answers (success) unless paused, down or still
    /// booting, after the time its request takes in the model (a walk of the
    /// working set, plus the major faults of the part in swap).
    fn probe(&self, c: &Cluster, out: &mut Collection) {
        let mut probes = self.probes.lock().unwrap_or_else(|e| e.into_inner());
        let here: Vec<_> = c.domains_on(&self.host).collect();
        // A set, not a scan of `here` per entry: that was quadratic (10,000
        // domains: 50 million comparisons per scrape).
        let live: HashSet<&str> = here.iter().map(|d| d.uuid.as_str()).collect();
        probes.retain(|uuid, _| live.contains(uuid.as_str()));
        for d in here {
            // Look up before inserting: `entry` would clone the uuid every time.
            if !probes.contains_key(&d.uuid) {
                let h = Histogram::new(&super::probe::DURATION_BUCKETS);
                probes.insert(d.uuid.clone(), h);
            }
            let h = probes.get_mut(&d.uuid).expect("just inserted");
            let success = Pinger::answers_for(c, d);
            h.observe(d.response_time_ms / 1000.0);
            out.probes.insert(
                d.domid,
                ProbeStats {
                    target: format!("sim://{}", d.name),
                    duration: h.clone(),
                    success,
                },
            );
        }
    }
}

impl Source for SimSource {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn collect<'a>(&'a self, out: &'a mut Collection) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move { self.fill(out) })
    }
}

/// dom0's health in the model: the load is the number of running vCPUs on
/// the host (dom0's included), the CPU package temperature rises linearly from
/// 35 °C idle to 80 °C with every physical CPU busy, and dom0's memory is its
/// allocation with a fixed 25 % in use.
fn dom0_health(c: &Cluster, host: &str, h: &SimHost) -> Dom0Health {
    let running: u32 = c
        .domains_on(host)
        .filter(|d| d.state == DomainState::Running)
        .map(|d| d.vcpus)
        .sum::<u32>()
        + h.spec.dom0_vcpus;
    let load = f64::from(running);
    let busy = (load / f64::from(h.spec.cpus.max(1))).min(1.0);
    Dom0Health {
        load: [load; 3],
        memory_available_bytes: h.spec.dom0_memory_bytes / 4 * 3,
        memory_total_bytes: h.spec.dom0_memory_bytes,
        temperatures: vec![("package".into(), 35.0 + 45.0 * busy)],
    }
}

/// Fills `out` with what `host` of `c` shows now.
fn fill(c: &Cluster, host: &str, out: &mut Collection) -> Result<(), SourceError> {
    let h = c
        .host(host)
        .ok_or_else(|| SourceError(format!("sim: unknown host {host:?}")))?;
    if !h.alive {
        return Err(SourceError(format!("sim: host {host} is down")));
    }
    let now = c.now().as_secs_f64();
    // Domain-0.
    let dom0_vcpus: Vec<Vcpu> = h
        .dom0_vcpu_seconds
        .iter()
        .enumerate()
        .map(|(i, s)| Vcpu {
            id: i as u32,
            online: true,
            cpu_seconds: *s,
        })
        .collect();
    out.stats.insert(
        0,
        DomainStats {
            domid: 0,
            name: Some("Domain-0".into()),
            state: Some(DomainState::Running),
            cpu_seconds: h.dom0_cpu_seconds(),
            vcpu_count: dom0_vcpus.len() as u32,
            vcpus: dom0_vcpus,
            memory_bytes: h.spec.dom0_memory_bytes,
            memory_max_bytes: Some(h.spec.dom0_memory_bytes),
            ..Default::default()
        },
    );
    out.meta.insert(
        0,
        DomainMeta {
            domid: 0,
            name: Some("Domain-0".into()),
            uuid: Some(DOM0_UUID.into()),
            memory_target_bytes: Some(h.spec.dom0_memory_bytes),
            ..Default::default()
        },
    );
    let interval = c.params().guest_report_interval_seconds.max(1e-3);
    for d in c.domains_on(host) {
        let c_ = &d.counters;
        out.stats.insert(
            d.domid,
            DomainStats {
                domid: d.domid,
                name: Some(d.name.clone()),
                state: Some(d.state),
                cpu_seconds: d.cpu_seconds(),
                vcpus: c_
                    .vcpu_seconds
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Vcpu {
                        id: i as u32,
                        online: true,
                        cpu_seconds: *s,
                    })
                    .collect(),
                vcpu_count: d.vcpus,
                memory_bytes: d.memory_bytes,
                memory_max_bytes: Some(d.memory_bytes),
                ssid: None,
                networks: vec![NetIf {
                    id: 0,
                    rx_bytes: c_.rx_bytes as u64,
                    rx_packets: c_.rx_packets as u64,
                    tx_bytes: c_.tx_bytes as u64,
                    tx_packets: c_.tx_packets as u64,
                    ..Default::default()
                }],
                vbds: vec![Vbd {
                    device: d.disk.device.clone(),
                    read_requests: c_.read_requests as u64,
                    write_requests: c_.write_requests as u64,
                    read_bytes: c_.read_bytes as u64,
                    write_bytes: c_.write_bytes as u64,
                    ..Default::default()
                }],
            },
        );
        let ws = d.workload.working_set_bytes;
        out.meta.insert(
            d.domid,
            DomainMeta {
                domid: d.domid,
                name: Some(d.name.clone()),
                uuid: Some(d.uuid.clone()),
                memory_target_bytes: Some(d.memory_bytes),
                guest: GuestReport {
                    page_faults_minor: Some(d.minor_faults as u64),
                    page_faults_major: Some(d.major_faults as u64),
                    memory_available_bytes: Some(formulas::memory_available_bytes(
                        ws,
                        d.memory_bytes,
                        d.reserved_bytes,
                    )),
                    swap_used_bytes: Some(formulas::swap_used_bytes(
                        ws,
                        d.memory_bytes,
                        d.reserved_bytes,
                    )),
                    // The agent reports every interval since the domain arrived.
                    age_seconds: Some((now - d.since.as_secs_f64()).max(0.0) % interval),
                },
                probe_target: None,
            },
        );
    }
    out.host = Some(HostStats {
        memory_total_bytes: h.spec.memory_bytes,
        memory_free_bytes: c.host_free_bytes(host).unwrap_or(0),
        cpus: h.spec.cpus,
        cpu_hz: h.spec.cpu_hz,
        xen_version: Some(h.spec.xen_version.clone()),
    });
    for kind in WarningKind::ALL {
        out.warn(kind, h.warnings.get(&kind).copied().unwrap_or(false));
    }
    out.dom0 = Some(dom0_health(c, host, h));
    for (dir, hist) in &h.durations {
        out.migrations.insert(*dir, hist.clone());
    }
    Ok(())
}
