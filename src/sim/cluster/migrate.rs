//! Pre-copy live migration within the cluster: starting one, advancing it in
//! simulated time, and landing the domain on its target.

use std::time::Duration;

use crate::sim::SimError;
use crate::sim::formulas;
use crate::sim::migration::{Migration, MigrationId, MigrationState, MigrationStatus, Phase};
use crate::snapshot::{Direction, DomainState};

use super::{Cluster, HvCounters};

impl Cluster {
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
                        // The rest is sent first, then the fixed suspend overhead.
                        let overhead = self.params.migration.suspend_overhead_ms / 1000.0;
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
    /// Runs migration `i` for `secs`; returns the seconds its domain was paused.
    pub(super) fn advance_migration(&mut self, i: usize, secs: f64) -> f64 {
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
                    let (next, stop) = formulas::after_round(round, round_secs, dirty, memory, &p);
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
                    let done_at = self.now.saturating_add(
                        Duration::try_from_secs_f64(secs - left + l).unwrap_or(Duration::MAX),
                    );
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
        let down = Duration::try_from_secs_f64(downtime).unwrap_or(Duration::MAX);
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
