//! The cluster's state in simulated time: hosts, domains, migrations, and
//! [`Cluster::step`], which advances them by integrating the formulas of
//! [`super::formulas`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::snapshot::{Direction, DomId, DomainState, Histogram, WarningKind};

use crate::sim::formulas;
use crate::sim::migration::{DOWNTIME_BUCKETS, DURATION_BUCKETS, Migration, MigrationId, Phase};
use crate::sim::params::{PAGE_SIZE, Workload};
use crate::sim::spec::{ClusterSpec, DiskSpec, DomainSpec, HostSpec, NicSpec, SimParams};
use crate::sim::{SimError, SplitMix64, derive_uuid};

mod failures;
mod migrate;

/// Longest interval integrated in one piece; [`Cluster::step`] splits longer ones.
pub const MAX_TICK: Duration = Duration::from_secs(1);

/// Hypervisor-side counters of a domain: they restart on each host, as a new
/// domain's do in Xen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HvCounters {
    pub vcpu_seconds: Vec<f64>,
    pub rx_bytes: f64,
    pub rx_packets: f64,
    pub tx_bytes: f64,
    pub tx_packets: f64,
    pub read_bytes: f64,
    pub read_requests: f64,
    pub write_bytes: f64,
    pub write_requests: f64,
}

/// One guest domain in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct SimDomain {
    pub name: String,
    pub uuid: String,
    /// The host it runs on now.
    pub host: String,
    /// Its domid on that host; a new one after each migration.
    pub domid: DomId,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub reserved_bytes: u64,
    pub workload: Workload,
    pub nic: NicSpec,
    pub disk: DiskSpec,
    pub state: DomainState,
    pub counters: HvCounters,
    /// Guest page faults since boot (they survive migration).
    pub minor_faults: f64,
    pub major_faults: f64,
    /// The model's response time at the last tick, ms.
    pub response_time_ms: f64,
    /// Simulated time it arrived on its current host.
    pub since: Duration,
    /// The migration in flight, if any.
    pub migration: Option<MigrationId>,
    /// Simulated time its guest has booted (0 for domains of the spec); a
    /// domain restarted by [`Cluster::restart`] answers nothing before it.
    pub booted_at: Duration,
    /// Highest working set touched since it last shrank (for minor faults).
    touched_ws: u64,
}

/// One physical host in the model.
#[derive(Debug, Clone, PartialEq)]
pub struct SimHost {
    pub spec: HostSpec,
    /// False once killed.
    pub alive: bool,
    pub warnings: BTreeMap<WarningKind, bool>,
    pub dom0_vcpu_seconds: Vec<f64>,
    /// Completed migration durations, by direction.
    pub durations: BTreeMap<Direction, Histogram>,
    /// Completed migration downtimes, by direction.
    pub downtimes: BTreeMap<Direction, Histogram>,
    /// Memory held for incoming migrations.
    pub incoming_bytes: u64,
    pub(in crate::sim) next_domid: DomId,
}

/// A domain that died with its host.
#[derive(Debug, Clone, PartialEq)]
pub struct LostDomain {
    pub name: String,
    pub uuid: String,
    pub host: String,
    /// Simulated time of the loss.
    pub at: Duration,
}

/// The modelled cluster. Deterministic: the same spec, seed and sequence of
/// [`Cluster::step`] calls give the same state.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub(in crate::sim) seed: u64,
    pub(in crate::sim) rng: SplitMix64,
    pub(in crate::sim) now: Duration,
    pub(in crate::sim) params: SimParams,
    pub(in crate::sim) hosts: Vec<SimHost>,
    pub(in crate::sim) domains: Vec<SimDomain>,
    pub(in crate::sim) migrations: Vec<Migration>,
    pub(in crate::sim) lost: Vec<LostDomain>,
    /// The lost domains as they were, for [`Cluster::restart`].
    pub(in crate::sim) corpses: Vec<SimDomain>,
}

impl SimDomain {
    fn new(spec: &DomainSpec, seed: u64, domid: DomId) -> Self {
        let ws = spec.workload.working_set_bytes;
        SimDomain {
            name: spec.name.clone(),
            uuid: spec
                .uuid
                .clone()
                .unwrap_or_else(|| derive_uuid(&spec.name, seed)),
            host: spec.host.clone(),
            domid,
            vcpus: spec.vcpus,
            memory_bytes: spec.memory_bytes,
            reserved_bytes: spec.reserved_bytes,
            workload: spec.workload.clone(),
            nic: spec.nic.clone(),
            disk: spec.disk.clone(),
            state: DomainState::Running,
            counters: HvCounters {
                vcpu_seconds: vec![0.0; spec.vcpus as usize],
                ..Default::default()
            },
            // The guest faulted its working set in while booting.
            minor_faults: (ws / PAGE_SIZE) as f64,
            major_faults: 0.0,
            response_time_ms: 0.0,
            since: Duration::ZERO,
            migration: None,
            booted_at: Duration::ZERO,
            touched_ws: ws,
        }
    }

    /// Memory its applications can use: allocation minus the reserve.
    pub fn usable_bytes(&self) -> u64 {
        formulas::usable_bytes(self.memory_bytes, self.reserved_bytes)
    }

    /// CPU seconds of all vCPUs on the current host.
    pub fn cpu_seconds(&self) -> f64 {
        self.counters.vcpu_seconds.iter().sum()
    }
}

impl SimHost {
    /// CPU seconds of dom0's vCPUs.
    pub fn dom0_cpu_seconds(&self) -> f64 {
        self.dom0_vcpu_seconds.iter().sum()
    }
}

impl Cluster {
    /// A cluster from a validated spec; `seed` drives uuids and noise.
    pub fn new(spec: ClusterSpec, seed: u64) -> Result<Self, SimError> {
        spec.validate()?;
        let mut hosts: Vec<SimHost> = spec
            .hosts
            .iter()
            .map(|h| SimHost {
                spec: h.clone(),
                alive: true,
                warnings: WarningKind::ALL.iter().map(|k| (*k, false)).collect(),
                dom0_vcpu_seconds: vec![0.0; h.dom0_vcpus as usize],
                durations: [Direction::Incoming, Direction::Outgoing]
                    .into_iter()
                    .map(|d| (d, Histogram::new(&DURATION_BUCKETS)))
                    .collect(),
                downtimes: [Direction::Incoming, Direction::Outgoing]
                    .into_iter()
                    .map(|d| (d, Histogram::new(&DOWNTIME_BUCKETS)))
                    .collect(),
                incoming_bytes: 0,
                next_domid: 1,
            })
            .collect();
        let mut domains = Vec::with_capacity(spec.domains.len());
        for d in &spec.domains {
            let h = hosts
                .iter_mut()
                .find(|h| h.spec.name == d.host)
                .expect("validated");
            let domid = h.next_domid;
            h.next_domid += 1;
            domains.push(SimDomain::new(d, seed, domid));
        }
        let mut uuids: Vec<&str> = domains.iter().map(|d| d.uuid.as_str()).collect();
        uuids.sort_unstable();
        if uuids.windows(2).any(|w| w[0] == w[1]) {
            return Err(SimError::InvalidSpec("two domains share a uuid".into()));
        }
        let mut c = Cluster {
            seed,
            rng: SplitMix64::new(seed),
            now: Duration::ZERO,
            params: spec.params,
            hosts,
            domains,
            migrations: Vec::new(),
            lost: Vec::new(),
            corpses: Vec::new(),
        };
        for d in &mut c.domains {
            d.response_time_ms = formulas::response_time_ms(
                d.workload.working_set_bytes,
                d.usable_bytes(),
                &c.params.memory,
            );
        }
        Ok(c)
    }

    /// [`ClusterSpec::default_demo`] as a cluster.
    pub fn default_demo(seed: u64) -> Self {
        Cluster::new(ClusterSpec::default_demo(), seed).expect("the demo spec is valid")
    }

    /// Simulated time since start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The seed it was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The model's parameters.
    pub fn params(&self) -> &SimParams {
        &self.params
    }

    /// Every host, dead ones included, in spec order.
    pub fn hosts(&self) -> &[SimHost] {
        &self.hosts
    }

    /// One host by name.
    pub fn host(&self, name: &str) -> Option<&SimHost> {
        self.hosts.iter().find(|h| h.spec.name == name)
    }

    /// Every live domain.
    pub fn domains(&self) -> &[SimDomain] {
        &self.domains
    }

    /// One live domain by name.
    pub fn domain(&self, name: &str) -> Option<&SimDomain> {
        self.domains.iter().find(|d| d.name == name)
    }

    /// The domains running on `host`.
    pub fn domains_on<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a SimDomain> + 'a {
        self.domains.iter().filter(move |d| d.host == host)
    }

    /// Domains lost with their hosts.
    pub fn lost(&self) -> &[LostDomain] {
        &self.lost
    }

    /// Hypervisor free memory: total − dom0 − domains − incoming reservations.
    pub fn host_free_bytes(&self, name: &str) -> Option<u64> {
        let h = self.host(name)?;
        let used: u64 = self.domains_on(name).map(|d| d.memory_bytes).sum();
        Some(
            h.spec
                .memory_bytes
                .saturating_sub(h.spec.dom0_memory_bytes + used + h.incoming_bytes),
        )
    }

    /// A domain's workload, to change it.
    pub fn workload_mut(&mut self, domain: &str) -> Result<&mut Workload, SimError> {
        self.domains
            .iter_mut()
            .find(|d| d.name == domain)
            .map(|d| &mut d.workload)
            .ok_or_else(|| SimError::UnknownDomain(domain.into()))
    }

    /// Raises or clears a warning failure on a host.
    pub fn set_warning(&mut self, host: &str, kind: WarningKind, on: bool) -> Result<(), SimError> {
        let h = self.host_mut(host)?;
        h.warnings.insert(kind, on);
        Ok(())
    }

    /// [`MAX_TICK`].
    pub fn step(&mut self, dt: Duration) {
        let mut left = dt;
        while !left.is_zero() {
            let tick = left.min(MAX_TICK);
            self.tick(tick);
            left -= tick;
        }
    }

    pub(in crate::sim) fn host_mut(&mut self, name: &str) -> Result<&mut SimHost, SimError> {
        self.hosts
            .iter_mut()
            .find(|h| h.spec.name == name)
            .ok_or_else(|| SimError::UnknownHost(name.into()))
    }

    pub(in crate::sim) fn domain_mut(&mut self, name: &str) -> Option<&mut SimDomain> {
        self.domains.iter_mut().find(|d| d.name == name)
    }

    fn tick(&mut self, dt: Duration) {
        let secs = dt.as_secs_f64();
        // 1. Migrations: how long each domain was paused during this tick.
        let mut paused: BTreeMap<String, f64> = BTreeMap::new();
        for i in 0..self.migrations.len() {
            if !matches!(self.migrations[i].phase, Phase::Over(_)) {
                let p = self.advance_migration(i, secs);
                paused.insert(self.migrations[i].domain.clone(), p);
            }
        }
        // 2. Demand per domain, with noise on the request rate.
        let noise = self.params.noise;
        let mut demand = Vec::with_capacity(self.domains.len());
        for d in &self.domains {
            let jitter = 1.0 + noise * (2.0 * self.rng.next_f64() - 1.0);
            let rate = d.workload.request_rate * jitter;
            let active = 1.0 - paused.get(&d.name).copied().unwrap_or(0.0) / secs;
            let cpu = formulas::cpu_demand_vcpus(&d.workload, rate, d.vcpus);
            demand.push((rate, active.clamp(0.0, 1.0), cpu));
        }
        // 3. dom0 and contention per host.
        let mut scale: BTreeMap<String, f64> = BTreeMap::new();
        for h in &mut self.hosts {
            if !h.alive {
                continue;
            }
            let name = &h.spec.name;
            let streams = self
                .migrations
                .iter()
                .filter(|m| {
                    !matches!(m.phase, Phase::Over(_)) && (&m.from == name || &m.to == name)
                })
                .count() as f64;
            let v = f64::from(h.spec.dom0_vcpus.max(1));
            let dom0 =
                (v * self.params.dom0_idle_cpu + streams * self.params.dom0_migration_cpu).min(v);
            for s in &mut h.dom0_vcpu_seconds {
                *s += dom0 / v * secs;
            }
            let want: f64 = self
                .domains
                .iter()
                .zip(&demand)
                .filter(|(d, _)| &d.host == name)
                .map(|(_, (_, active, cpu))| cpu * active)
                .sum();
            let room = (f64::from(h.spec.cpus) - dom0).max(0.0);
            let s = if want > room { room / want } else { 1.0 };
            scale.insert(name.clone(), s);
        }
        // 4. Integrate each domain; dom0 forwards its packets.
        let per_packet = self.params.dom0_cpu_seconds_per_packet;
        let mut forwarded: BTreeMap<String, f64> = BTreeMap::new();
        let now = self.now;
        for (d, (rate, active, cpu)) in self.domains.iter_mut().zip(demand) {
            // A booting guest serves nothing yet.
            let (rate, cpu) = if now < d.booted_at {
                (0.0, 0.0)
            } else {
                (rate, cpu)
            };
            let s = scale.get(&d.host).copied().unwrap_or(1.0);
            let busy = cpu * active * s;
            let per_vcpu = busy / f64::from(d.vcpus.max(1)) * secs;
            for v in &mut d.counters.vcpu_seconds {
                *v += per_vcpu;
            }
            let served = rate * active * s.min(1.0) * secs;
            let c = &mut d.counters;
            let packets = |bytes: f64, mtu: u32| bytes / f64::from(mtu.max(1));
            let rx = served * d.nic.rx_bytes_per_request as f64;
            let tx = served * d.nic.tx_bytes_per_request as f64;
            c.rx_bytes += rx;
            c.tx_bytes += tx;
            // At least one packet each way per request.
            let (rx_p, tx_p) = (
                packets(rx, d.nic.mtu).max(served),
                packets(tx, d.nic.mtu).max(served),
            );
            c.rx_packets += rx_p;
            c.tx_packets += tx_p;
            *forwarded.entry(d.host.clone()).or_default() += rx_p + tx_p;
            let rd = served * d.disk.read_bytes_per_request as f64;
            let wr = served * d.disk.write_bytes_per_request as f64;
            let io = d.disk.request_size_bytes.max(1) as f64;
            c.read_bytes += rd;
            c.write_bytes += wr;
            c.read_requests += rd / io;
            c.write_requests += wr / io;
            // Memory: working-set growth faults pages in, then steady faults.
            let ws = d.workload.working_set_bytes;
            if ws > d.touched_ws {
                d.minor_faults += ((ws - d.touched_ws) / PAGE_SIZE) as f64;
            }
            d.touched_ws = ws;
            let usable = d.usable_bytes();
            let (minor, major) =
                formulas::fault_rates(&d.workload, rate * active, usable, &self.params.memory);
            d.minor_faults += minor * secs;
            d.major_faults += major * secs;
            d.response_time_ms = formulas::response_time_ms(ws, usable, &self.params.memory);
            // Sampled state: running with the probability its vCPUs are busy.
            if d.state != DomainState::Paused {
                let u = self.rng.next_f64();
                let busy_frac = busy / f64::from(d.vcpus.max(1));
                d.state = if u < busy_frac {
                    DomainState::Running
                } else {
                    DomainState::Blocked
                };
            }
        }
        // dom0's netback forwarding, beyond its capped demand above.
        for h in &mut self.hosts {
            let n = forwarded.get(&h.spec.name).copied().unwrap_or(0.0);
            let v = h.dom0_vcpu_seconds.len().max(1) as f64;
            for s in &mut h.dom0_vcpu_seconds {
                *s += n * per_packet / v;
            }
        }
        self.now += dt;
    }
}
