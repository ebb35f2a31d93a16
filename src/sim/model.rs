//! The cluster's state in simulated time: hosts, domains, migrations, and
//! [`Cluster::step`], which advances them by integrating the formulas of
//! [`super::formulas`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{Direction, DomId, DomainState, Histogram, WarningKind};

use super::formulas::{self, PAGE_SIZE};
use super::spec::{ClusterSpec, DiskSpec, HostSpec, NicSpec, SimParams, Workload};
use super::{SimError, SplitMix64, derive_uuid};

/// Longest interval integrated in one piece; [`Cluster::step`] splits longer ones.
pub const MAX_TICK: Duration = Duration::from_secs(1);

/// Bucket bounds (seconds) of the migration duration histograms.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Bucket bounds (seconds) of the migration downtime histograms.
pub const DOWNTIME_BUCKETS: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Identifies one migration of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MigrationId(pub u64);

/// Where a migration is.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrationState {
    /// Pre-copy round `round` (0 sends all memory), or the stop-and-copy
    /// (`stop_and_copy`, domain paused); `remaining_bytes` are still to send
    /// in this round.
    Running {
        round: u32,
        remaining_bytes: u64,
        stop_and_copy: bool,
    },
    /// Resumed on the target.
    Done {
        duration: Duration,
        downtime: Duration,
    },
    /// Abandoned; the reason names the host that died.
    Failed(String),
}

/// A migration as seen from outside.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationStatus {
    pub id: MigrationId,
    pub domain: String,
    pub from: String,
    pub to: String,
    /// Simulated time it started.
    pub started: Duration,
    pub state: MigrationState,
}

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
    next_domid: DomId,
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

#[derive(Debug, Clone)]
enum Phase {
    /// Pre-copy round `round` of `bytes`, `sent` of them so far.
    PreCopy {
        round: u32,
        bytes: u64,
        sent: f64,
    },
    /// Paused; `rest` bytes to send, `left` seconds until resumption.
    StopAndCopy {
        round: u32,
        rest: u64,
        left: f64,
        downtime: f64,
    },
    Over(MigrationState),
}

#[derive(Debug, Clone)]
struct Migration {
    id: MigrationId,
    domain: String,
    from: String,
    to: String,
    started: Duration,
    bandwidth: f64,
    phase: Phase,
}

/// The modelled cluster. Deterministic: the same spec, seed and sequence of
/// [`Cluster::step`] calls give the same state.
#[derive(Debug, Clone)]
pub struct Cluster {
    seed: u64,
    rng: SplitMix64,
    now: Duration,
    params: SimParams,
    hosts: Vec<SimHost>,
    domains: Vec<SimDomain>,
    migrations: Vec<Migration>,
    lost: Vec<LostDomain>,
}

impl SimDomain {
    fn new(spec: &super::spec::DomainSpec, seed: u64, domid: DomId) -> Self {
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
            touched_ws: ws,
        }
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
        };
        for d in &mut c.domains {
            d.response_time_ms = formulas::response_time_ms(
                d.workload.working_set_bytes,
                d.memory_bytes,
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

    /// Kills a host: its domains are lost (counted in [`Cluster::lost`]), and
    /// migrations from or to it fail. Returns how many domains were lost.
    pub fn kill_host(&mut self, host: &str) -> Result<usize, SimError> {
        let h = self.host_mut(host)?;
        if !h.alive {
            return Err(SimError::HostDown(host.into()));
        }
        h.alive = false;
        h.incoming_bytes = 0;
        for i in 0..self.migrations.len() {
            let m = &self.migrations[i];
            if matches!(m.phase, Phase::Over(_)) || (m.from != host && m.to != host) {
                continue;
            }
            let (id, dom, from, to, memory) = {
                let d = self.domain(&m.domain).map(|d| d.memory_bytes).unwrap_or(0);
                (m.id, m.domain.clone(), m.from.clone(), m.to.clone(), d)
            };
            let reason = if from == host {
                format!("source host {host} died")
            } else {
                format!("target host {to} died")
            };
            self.migrations[i].phase = Phase::Over(MigrationState::Failed(reason));
            if from != host {
                // The domain stays (and resumes, if paused) on its source.
                if let Some(d) = self
                    .domains
                    .iter_mut()
                    .find(|d| d.name == dom && d.migration == Some(id))
                {
                    d.migration = None;
                    d.state = DomainState::Running;
                }
            } else if let Ok(t) = self.host_mut(&to) {
                t.incoming_bytes = t.incoming_bytes.saturating_sub(memory);
            }
        }
        let now = self.now;
        let before = self.domains.len();
        let mut lost = Vec::new();
        self.domains.retain(|d| {
            if d.host == host {
                // Crashed, then gone: a dead host has no endpoint to show it.
                lost.push(LostDomain {
                    name: d.name.clone(),
                    uuid: d.uuid.clone(),
                    host: host.into(),
                    at: now,
                });
                false
            } else {
                true
            }
        });
        self.lost.extend(lost);
        Ok(before - self.domains.len())
    }

    /// Starts a pre-copy live migration of `domain` to `target`.
    pub fn start_migration(&mut self, domain: &str, target: &str) -> Result<MigrationId, SimError> {
        let d = self
            .domain(domain)
            .ok_or_else(|| SimError::UnknownDomain(domain.into()))?;
        let t = self
            .host(target)
            .ok_or_else(|| SimError::UnknownHost(target.into()))?;
        if !t.alive {
            return Err(SimError::HostDown(target.into()));
        }
        if d.migration.is_some() {
            return Err(SimError::AlreadyMigrating(domain.into()));
        }
        if d.host == target {
            return Err(SimError::SameHost(target.into()));
        }
        let free = self.host_free_bytes(target).unwrap_or(0);
        if free < d.memory_bytes {
            return Err(SimError::NoRoom {
                host: target.into(),
                needed: d.memory_bytes,
                free,
            });
        }
        let s = self.host(&d.host).expect("a live domain's host exists");
        let bandwidth = s.spec.migration_bandwidth.min(t.spec.migration_bandwidth) as f64;
        let id = MigrationId(self.migrations.len() as u64 + 1);
        let (from, memory) = (d.host.clone(), d.memory_bytes);
        self.migrations.push(Migration {
            id,
            domain: domain.into(),
            from,
            to: target.into(),
            started: self.now,
            bandwidth,
            phase: Phase::PreCopy {
                round: 0,
                bytes: memory,
                sent: 0.0,
            },
        });
        self.host_mut(target)?.incoming_bytes += memory;
        self.domain_mut(domain).expect("exists").migration = Some(id);
        Ok(id)
    }

    /// A migration's status.
    pub fn migration(&self, id: MigrationId) -> Option<MigrationStatus> {
        self.migrations
            .iter()
            .find(|m| m.id == id)
            .map(|m| MigrationStatus {
                id: m.id,
                domain: m.domain.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                started: m.started,
                state: match &m.phase {
                    Phase::PreCopy { round, bytes, sent } => MigrationState::Running {
                        round: *round,
                        remaining_bytes: (*bytes as f64 - sent).max(0.0) as u64,
                        stop_and_copy: false,
                    },
                    Phase::StopAndCopy {
                        round, rest, left, ..
                    } => {
                        // The rest is sent first, then the fixed resume overhead.
                        let overhead = self.params.migration.resume_overhead_ms / 1000.0;
                        let sending = (left - overhead).max(0.0);
                        MigrationState::Running {
                            round: *round,
                            remaining_bytes: ((sending * m.bandwidth) as u64).min(*rest),
                            stop_and_copy: true,
                        }
                    }
                    Phase::Over(s) => s.clone(),
                },
            })
    }

    /// Every migration ever started, oldest first.
    pub fn migrations(&self) -> Vec<MigrationStatus> {
        self.migrations
            .iter()
            .filter_map(|m| self.migration(m.id))
            .collect()
    }

    /// Advances the model by `dt` of simulated time, in ticks of at most
    /// [`MAX_TICK`].
    pub fn step(&mut self, dt: Duration) {
        let mut left = dt;
        while !left.is_zero() {
            let tick = left.min(MAX_TICK);
            self.tick(tick);
            left -= tick;
        }
    }

    fn host_mut(&mut self, name: &str) -> Result<&mut SimHost, SimError> {
        self.hosts
            .iter_mut()
            .find(|h| h.spec.name == name)
            .ok_or_else(|| SimError::UnknownHost(name.into()))
    }

    fn domain_mut(&mut self, name: &str) -> Option<&mut SimDomain> {
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
        // 4. Integrate each domain.
        for (d, (rate, active, cpu)) in self.domains.iter_mut().zip(demand) {
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
            c.rx_packets += packets(rx, d.nic.mtu).max(served);
            c.tx_packets += packets(tx, d.nic.mtu).max(served);
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
            let (minor, major) =
                formulas::fault_rates(&d.workload, rate * active, d.memory_bytes, d.reserved_bytes);
            d.minor_faults += minor * secs;
            d.major_faults += major * secs;
            d.response_time_ms =
                formulas::response_time_ms(ws, d.memory_bytes, &self.params.memory);
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
        self.now += dt;
    }

    /// Runs migration `i` for `secs`; returns the seconds its domain was paused.
    fn advance_migration(&mut self, i: usize, secs: f64) -> f64 {
        let mut left = secs;
        let mut paused = 0.0;
        let p = self.params.migration.clone();
        loop {
            let m = &self.migrations[i];
            let bw = m.bandwidth;
            let Some(d) = self.domains.iter().find(|d| d.name == m.domain) else {
                self.migrations[i].phase =
                    Phase::Over(MigrationState::Failed("domain vanished".into()));
                return paused;
            };
            let (memory, dirty) = (d.memory_bytes, d.workload.dirty_rate);
            match m.phase.clone() {
                Phase::PreCopy { round, bytes, sent } => {
                    let need = (bytes as f64 - sent) / bw;
                    if need > left {
                        self.migrations[i].phase = Phase::PreCopy {
                            round,
                            bytes,
                            sent: sent + left * bw,
                        };
                        return paused;
                    }
                    left -= need;
                    let round_secs = bytes as f64 / bw;
                    let (next, stop) =
                        formulas::after_round(round, round_secs, dirty, memory, bw, &p);
                    self.migrations[i].phase = if stop {
                        let downtime = formulas::downtime_secs(next, bw, &p);
                        let name = self.migrations[i].domain.clone();
                        self.domain_mut(&name).expect("checked").state = DomainState::Paused;
                        Phase::StopAndCopy {
                            round: round + 1,
                            rest: next,
                            left: downtime,
                            downtime,
                        }
                    } else {
                        Phase::PreCopy {
                            round: round + 1,
                            bytes: next,
                            sent: 0.0,
                        }
                    };
                }
                Phase::StopAndCopy {
                    round,
                    rest,
                    left: l,
                    downtime,
                } => {
                    if l > left {
                        self.migrations[i].phase = Phase::StopAndCopy {
                            round,
                            rest,
                            left: l - left,
                            downtime,
                        };
                        return paused + left;
                    }
                    paused += l;
                    let done_at = self.now + Duration::from_secs_f64(secs - left + l);
                    self.complete(i, done_at, downtime);
                    return paused;
                }
                Phase::Over(_) => return paused,
            }
        }
    }

    /// Moves migration `i`'s domain to its target at `at`.
    fn complete(&mut self, i: usize, at: Duration, downtime: f64) {
        let (name, from, to, started) = {
            let m = &self.migrations[i];
            (m.domain.clone(), m.from.clone(), m.to.clone(), m.started)
        };
        let duration = at.saturating_sub(started);
        let down = Duration::from_secs_f64(downtime);
        let memory = self.domain(&name).map(|d| d.memory_bytes).unwrap_or(0);
        let t = self.host_mut(&to).expect("target exists");
        t.incoming_bytes = t.incoming_bytes.saturating_sub(memory);
        let domid = t.next_domid;
        t.next_domid += 1;
        for (host, dir) in [(&from, Direction::Outgoing), (&to, Direction::Incoming)] {
            let h = self.host_mut(host).expect("exists");
            h.durations
                .get_mut(&dir)
                .expect("both directions")
                .observe(duration.as_secs_f64());
            h.downtimes
                .get_mut(&dir)
                .expect("both directions")
                .observe(downtime);
        }
        let d = self.domain_mut(&name).expect("migrating domain exists");
        d.host = to;
        d.domid = domid;
        d.state = DomainState::Running;
        d.since = at;
        d.migration = None;
        d.counters = HvCounters {
            vcpu_seconds: vec![0.0; d.vcpus as usize],
            ..Default::default()
        };
        self.migrations[i].phase = Phase::Over(MigrationState::Done {
            duration,
            downtime: down,
        });
    }
}
