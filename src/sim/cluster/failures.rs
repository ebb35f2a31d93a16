//! Host failures in the cluster: killing a host (its domains are lost, its
//! migrations fail) and restarting a lost domain on another host.

use std::time::Duration;

use crate::sim::SimError;
use crate::sim::migration::{MigrationState, Phase};
use crate::sim::params::PAGE_SIZE;
use crate::snapshot::DomainState;

use super::{Cluster, HvCounters, LostDomain};

impl Cluster {
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
        let mut corpses = Vec::new();
        self.domains.retain(|d| {
            if d.host == host {
                // Crashed, then gone: a dead host has no endpoint to show it.
                lost.push(LostDomain {
                    name: d.name.clone(),
                    uuid: d.uuid.clone(),
                    host: host.into(),
                    at: now,
                });
                corpses.push(d.clone());
                false
            } else {
                true
            }
        });
        self.lost.extend(lost);
        self.corpses.extend(corpses);
        Ok(before - self.domains.len())
    }

    /// Boots a domain lost with its host again on `host` (what an HA manager
    /// does from shared storage): a new domid, fresh hypervisor counters, the
    /// guest's counters from boot, and nothing answered until `boot` has passed.
    pub fn restart(&mut self, domain: &str, host: &str, boot: Duration) -> Result<(), SimError> {
        let i = self
            .corpses
            .iter()
            .position(|d| d.name == domain)
            .ok_or_else(|| SimError::UnknownDomain(domain.into()))?;
        let free = self
            .host_free_bytes(host)
            .ok_or_else(|| SimError::UnknownHost(host.into()))?;
        let h = self.host(host).expect("checked");
        if !h.alive {
            return Err(SimError::HostDown(host.into()));
        }
        let needed = self.corpses[i].memory_bytes;
        if free < needed {
            return Err(SimError::NoRoom {
                host: host.into(),
                needed,
                free,
            });
        }
        let now = self.now;
        let t = self.host_mut(host)?;
        let domid = t.next_domid;
        t.next_domid += 1;
        let mut d = self.corpses.remove(i);
        let ws = d.workload.working_set_bytes;
        d.host = host.into();
        d.domid = domid;
        d.state = DomainState::Blocked;
        d.counters = HvCounters {
            vcpu_seconds: vec![0.0; d.vcpus as usize],
            ..Default::default()
        };
        d.minor_faults = (ws / PAGE_SIZE) as f64;
        d.major_faults = 0.0;
        d.since = now;
        d.booted_at = now + boot;
        d.migration = None;
        d.touched_ws = ws;
        self.domains.push(d);
        Ok(())
    }
}
