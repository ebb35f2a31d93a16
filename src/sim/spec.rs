//! The cluster description: hosts, domains and their workloads, and the
//! model's parameters. Loadable from YAML; byte sizes may carry units.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::params::{MemoryParams, MigrationParams, Workload, default_idle_cpu, default_touched};
use super::units::de_bytes;
use super::{SimError, YamlError};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Most domains a modelled cluster takes (`--sim.domains`, scenario files).
pub const MAX_DOMAINS: usize = 100_000;
/// Most vCPUs of one modelled domain or dom0 (each is a counter in memory).
pub const MAX_VCPUS: u32 = 4096;

/// 1 Gbit/s in bytes/s.
const GBIT: u64 = 125_000_000;

/// A whole cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    pub hosts: Vec<HostSpec>,
    pub domains: Vec<DomainSpec>,
    #[serde(default)]
    pub params: SimParams,
}

/// One physical Xen host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    /// Physical CPUs.
    pub cpus: u32,
    #[serde(deserialize_with = "de_bytes")]
    pub memory_bytes: u64,
    /// Migration link speed, bytes/s (`125MB` is 1 Gbit/s).
    #[serde(deserialize_with = "de_bytes")]
    pub migration_bandwidth: u64,
    /// Memory held by dom0 (default 1 GiB).
    #[serde(default = "default_dom0_memory", deserialize_with = "de_bytes")]
    pub dom0_memory_bytes: u64,
    /// dom0's vCPUs (default 2).
    #[serde(default = "default_dom0_vcpus")]
    pub dom0_vcpus: u32,
    /// CPU frequency in Hz (default 2.4 GHz).
    #[serde(default = "default_cpu_hz")]
    pub cpu_hz: u64,
    #[serde(default = "default_xen_version")]
    pub xen_version: String,
}

/// One guest domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainSpec {
    pub name: String,
    /// Derived from name and seed when absent.
    #[serde(default)]
    pub uuid: Option<String>,
    /// The host it starts on.
    pub host: String,
    pub vcpus: u32,
    /// Allocation (current reservation = max = balloon target).
    #[serde(deserialize_with = "de_bytes")]
    pub memory_bytes: u64,
    /// Memory the guest kernel keeps for itself (default 32 MiB).
    #[serde(default = "default_reserved", deserialize_with = "de_bytes")]
    pub reserved_bytes: u64,
    pub workload: Workload,
    #[serde(default)]
    pub nic: NicSpec,
    #[serde(default)]
    pub disk: DiskSpec,
}

/// The domain's one virtual NIC (`vif<domid>.0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NicSpec {
    /// Bytes received per request (default 512).
    #[serde(deserialize_with = "de_bytes")]
    pub rx_bytes_per_request: u64,
    /// Bytes sent per request (default 16 KiB).
    #[serde(deserialize_with = "de_bytes")]
    pub tx_bytes_per_request: u64,
    /// Largest packet payload, bytes (default 1500).
    pub mtu: u32,
}

impl Default for NicSpec {
    fn default() -> Self {
        NicSpec {
            rx_bytes_per_request: 512,
            tx_bytes_per_request: 16 * KIB,
            mtu: 1500,
        }
    }
}

/// The domain's one virtual block device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpec {
    /// Device name (default `xvda`).
    pub device: String,
    /// Bytes read per request (default 4 KiB).
    #[serde(deserialize_with = "de_bytes")]
    pub read_bytes_per_request: u64,
    /// Bytes written per request (default 1 KiB).
    #[serde(deserialize_with = "de_bytes")]
    pub write_bytes_per_request: u64,
    /// Average size of one block request (default 16 KiB).
    #[serde(deserialize_with = "de_bytes")]
    pub request_size_bytes: u64,
}

impl Default for DiskSpec {
    fn default() -> Self {
        DiskSpec {
            device: "xvda".into(),
            read_bytes_per_request: 4 * KIB,
            write_bytes_per_request: KIB,
            request_size_bytes: 16 * KIB,
        }
    }
}

/// Model-wide parameters; every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimParams {
    /// Relative jitter of each domain's request rate per tick (0.05 = ±5%).
    pub noise: f64,
    /// Share of each dom0 vCPU busy at rest (default 0.02).
    pub dom0_idle_cpu: f64,
    /// dom0 vCPUs busy per migration stream in or out (default 0.5).
    pub dom0_migration_cpu: f64,
    /// Seconds between guest-agent reports (default 10).
    pub guest_report_interval_seconds: f64,
    /// dom0 CPU seconds per packet its netback forwards for a domain (default 0).
    pub dom0_cpu_seconds_per_packet: f64,
    pub memory: MemoryParams,
    pub migration: MigrationParams,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            noise: 0.05,
            dom0_idle_cpu: 0.02,
            dom0_migration_cpu: 0.5,
            guest_report_interval_seconds: 10.0,
            dom0_cpu_seconds_per_packet: 0.0,
            memory: MemoryParams::default(),
            migration: MigrationParams::default(),
        }
    }
}

fn default_dom0_memory() -> u64 {
    GIB
}
fn default_dom0_vcpus() -> u32 {
    2
}
fn default_cpu_hz() -> u64 {
    2_400_000_000
}
fn default_xen_version() -> String {
    "4.17.0-sim".into()
}
fn default_reserved() -> u64 {
    32 * MIB
}

impl ClusterSpec {
    /// Parses YAML; `origin` (usually the file name) prefixes errors.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Self, YamlError> {
        crate::config::check_depth(text).map_err(|e| YamlError::depth(origin, e))?;
        serde_yaml_ng::from_str(text).map_err(|e| YamlError::from_serde(origin, e))
    }

    /// Reads and parses a YAML file.
    pub fn load(path: &Path) -> Result<Self, YamlError> {
        let origin = path.display().to_string();
        let text = crate::config::read_text(path).map_err(|e| YamlError::io(&origin, e))?;
        Self::from_yaml_str(&text, &origin)
    }

    /// Checks names are unique, hosts exist, sizes are positive and every
    /// host can hold its domains.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |m: String| Err(SimError::InvalidSpec(m));
        if self.domains.len() > MAX_DOMAINS {
            return bad(format!("at most {MAX_DOMAINS} domains"));
        }
        let mut hosts = BTreeSet::new();
        for h in &self.hosts {
            if !hosts.insert(h.name.as_str()) {
                return bad(format!("host {:?} appears twice", h.name));
            }
            if h.dom0_vcpus > MAX_VCPUS {
                return bad(format!("host {:?}: at most {MAX_VCPUS} dom0 vCPUs", h.name));
            }
            if h.cpus == 0 || h.migration_bandwidth == 0 || h.memory_bytes <= h.dom0_memory_bytes {
                return bad(format!(
                    "host {:?} needs cpus, bandwidth and more memory than dom0",
                    h.name
                ));
            }
        }
        let mut names = BTreeSet::new();
        for d in &self.domains {
            if !names.insert(d.name.as_str()) {
                return bad(format!("domain {:?} appears twice", d.name));
            }
            if d.name == "Domain-0" {
                return bad("Domain-0 is implicit on every host".into());
            }
            if !hosts.contains(d.host.as_str()) {
                return bad(format!(
                    "domain {:?} is on unknown host {:?}",
                    d.name, d.host
                ));
            }
            if d.vcpus > MAX_VCPUS {
                return bad(format!("domain {:?}: at most {MAX_VCPUS} vCPUs", d.name));
            }
            if d.vcpus == 0 || d.memory_bytes == 0 {
                return bad(format!("domain {:?} needs vcpus and memory", d.name));
            }
            let w = &d.workload;
            let rates = [
                w.request_rate,
                w.dirty_rate,
                w.cpu_seconds_per_request,
                w.idle_cpu,
            ];
            if rates.iter().any(|r| !r.is_finite() || *r < 0.0) {
                return bad(format!(
                    "domain {:?} has a negative or non-finite rate",
                    d.name
                ));
            }
        }
        for h in &self.hosts {
            let used: u64 = self
                .domains
                .iter()
                .filter(|d| d.host == h.name)
                .map(|d| d.memory_bytes)
                .sum();
            if used + h.dom0_memory_bytes > h.memory_bytes {
                return bad(format!("host {:?} cannot hold its domains", h.name));
            }
        }
        Ok(())
    }

    /// A synthetic one-host cluster of `n` domains for benchmarks
    /// (`xentinel exporter --source sim --sim.domains N`): every family of the
    /// metrics contract is present (2 vCPUs, 1 NIC, 1 disk, guest reports),
    /// and the host is big enough for all of them without CPU contention.
    /// Workloads vary a little with the index so counters differ.
    pub fn one_host(host: &str, n: usize) -> Self {
        // More than the limit makes no more than it plus one, which `validate` refuses.
        let n = n.min(MAX_DOMAINS + 1);
        let dom_mem = 512 * MIB;
        let domains: Vec<DomainSpec> = (0..n)
            .map(|i| DomainSpec {
                name: format!("bench-{i:05}"),
                uuid: None,
                host: host.into(),
                vcpus: 2,
                memory_bytes: dom_mem,
                reserved_bytes: default_reserved(),
                workload: Workload {
                    request_rate: 10.0 + (i % 50) as f64,
                    // Past usable memory for one domain in 16: swap and major faults show.
                    working_set_bytes: if i % 16 == 15 {
                        500 * MIB
                    } else {
                        (64 + (i % 256) as u64) * MIB
                    },
                    dirty_rate: 100.0,
                    cpu_seconds_per_request: 1e-3,
                    idle_cpu: default_idle_cpu(),
                    touched_bytes_per_request: default_touched(),
                },
                nic: NicSpec::default(),
                disk: DiskSpec::default(),
            })
            .collect();
        let cpus = u32::try_from(n.saturating_mul(2))
            .unwrap_or(u32::MAX)
            .max(16);
        ClusterSpec {
            hosts: vec![HostSpec {
                name: host.into(),
                cpus,
                memory_bytes: dom_mem * n as u64 + 64 * GIB,
                migration_bandwidth: 10 * GBIT,
                dom0_memory_bytes: default_dom0_memory(),
                dom0_vcpus: default_dom0_vcpus(),
                cpu_hz: default_cpu_hz(),
                xen_version: default_xen_version(),
            }],
            domains,
            params: SimParams::default(),
        }
    }

    /// The demo cluster: four hosts (two large on 10 Gbit/s, two small on
    /// 1 Gbit/s) and ten domains of varied sizes and workloads, including the
    /// paper's 256 MiB Apache domain and a domain whose dirty rate outruns a
    /// 1 Gbit/s link.
    pub fn default_demo() -> Self {
        let host = |name: &str, cpus, mem, bw| HostSpec {
            name: name.into(),
            cpus,
            memory_bytes: mem,
            migration_bandwidth: bw,
            dom0_memory_bytes: default_dom0_memory(),
            dom0_vcpus: default_dom0_vcpus(),
            cpu_hz: default_cpu_hz(),
            xen_version: default_xen_version(),
        };
        #[allow(clippy::too_many_arguments)]
        let dom = |name: &str, host: &str, vcpus, mem, rate, ws, dirty, cps, idle| DomainSpec {
            name: name.into(),
            uuid: None,
            host: host.into(),
            vcpus,
            memory_bytes: mem,
            reserved_bytes: default_reserved(),
            workload: Workload {
                request_rate: rate,
                working_set_bytes: ws,
                dirty_rate: dirty,
                cpu_seconds_per_request: cps,
                idle_cpu: idle,
                touched_bytes_per_request: default_touched(),
            },
            nic: NicSpec::default(),
            disk: DiskSpec::default(),
        };
        let mut domains = vec![
            dom(
                "web1",
                "xen1",
                2,
                2 * GIB,
                300.0,
                600 * MIB,
                2_000.0,
                2e-3,
                0.02,
            ),
            dom(
                "db1",
                "xen1",
                4,
                8 * GIB,
                200.0,
                6 * GIB,
                20_000.0,
                5e-3,
                0.03,
            ),
            dom(
                "idle1",
                "xen1",
                1,
                512 * MIB,
                0.0,
                100 * MIB,
                20.0,
                0.0,
                0.01,
            ),
            dom(
                "web2",
                "xen2",
                2,
                2 * GIB,
                250.0,
                700 * MIB,
                2_000.0,
                2e-3,
                0.02,
            ),
            // Working set at 90% of the allocation: visible memory pressure.
            dom(
                "cache1",
                "xen2",
                2,
                4 * GIB,
                1_500.0,
                3686 * MIB,
                15_000.0,
                3e-4,
                0.02,
            ),
            // 60 000 pages/s ≈ 246 MB/s: does not converge over 1 Gbit/s.
            dom(
                "batch1",
                "xen3",
                6,
                12 * GIB,
                20.0,
                10 * GIB,
                60_000.0,
                0.25,
                0.05,
            ),
            dom("mail1", "xen3", 1, GIB, 10.0, 300 * MIB, 200.0, 1e-2, 0.02),
            dom(
                "dns1",
                "xen4",
                1,
                256 * MIB,
                100.0,
                64 * MIB,
                50.0,
                1e-4,
                0.01,
            ),
            // The paper's DomU2: 256 MB, Apache, Table 4's CPU fit.
            dom(
                "apache1",
                "xen4",
                1,
                256 * MIB,
                300.0,
                25 * MIB,
                100.0,
                77e-6,
                0.657,
            ),
            dom("ci1", "xen4", 4, 8 * GIB, 5.0, 4 * GIB, 5_000.0, 0.5, 0.05),
        ];
        domains[5].disk.write_bytes_per_request = MIB;
        domains[5].disk.read_bytes_per_request = 4 * MIB;
        ClusterSpec {
            hosts: vec![
                host("xen1", 16, 64 * GIB, 10 * GBIT),
                host("xen2", 16, 64 * GIB, 10 * GBIT),
                host("xen3", 8, 32 * GIB, GBIT),
                host("xen4", 8, 32 * GIB, GBIT),
            ],
            domains,
            params: SimParams::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_spec_is_valid() {
        let s = ClusterSpec::default_demo();
        s.validate().unwrap();
        assert_eq!(s.hosts.len(), 4);
        assert_eq!(s.domains.len(), 10);
    }

    #[test]
    fn spec_round_trips_through_yaml_with_units() {
        let yaml = "
hosts:
  - {name: a, cpus: 4, memory_bytes: 8GiB, migration_bandwidth: 125MB}
domains:
  - name: d
    host: a
    vcpus: 1
    memory_bytes: 256MiB
    workload: {request_rate: 10, working_set_bytes: 25MiB, dirty_rate: 5, cpu_seconds_per_request: 0.001}
";
        let s = ClusterSpec::from_yaml_str(yaml, "t.yaml").unwrap();
        s.validate().unwrap();
        assert_eq!(s.domains[0].memory_bytes, 256 * MIB);
        assert_eq!(s.hosts[0].migration_bandwidth, GBIT);
        assert_eq!(s.domains[0].disk.device, "xvda");
    }

    #[test]
    fn one_host_spec_is_valid_at_any_size() {
        for n in [0, 1, 10, 1000] {
            let s = ClusterSpec::one_host("xen1", n);
            s.validate().unwrap();
            assert_eq!(s.domains.len(), n);
            assert!(s.domains.iter().all(|d| d.host == "xen1" && d.vcpus == 2));
        }
    }

    #[test]
    fn validate_rejects_an_overfull_host() {
        let mut s = ClusterSpec::default_demo();
        s.domains[0].memory_bytes = 200 * GIB;
        assert!(matches!(s.validate(), Err(SimError::InvalidSpec(_))));
    }
}
