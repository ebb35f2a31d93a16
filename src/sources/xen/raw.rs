//! The values libxenstat reports, copied out as plain data before any mapping.
//!
//! Field names and units follow `xenstat.h` (libxenstat 4.17) so a recorded
//! node reads like the C API: memory in bytes, CPU time in nanoseconds, block
//! I/O in 512-byte sectors.

use serde::{Deserialize, Serialize};

/// One `xenstat_node`: host totals and every domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawNode {
    /// `xenstat_node_tot_mem`, bytes.
    pub tot_mem: u64,
    /// `xenstat_node_free_mem`, bytes.
    pub free_mem: u64,
    /// `xenstat_node_num_cpus`.
    pub num_cpus: u32,
    /// `xenstat_node_cpu_hz`.
    pub cpu_hz: u64,
    /// `xenstat_node_xen_version`, e.g. `4.17.6-pre`; `None` when NULL or empty.
    pub xen_version: Option<String>,
    /// Every domain, in libxenstat's (domid) order.
    pub domains: Vec<RawDomain>,
}

/// One `xenstat_domain`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawDomain {
    /// Domain id.
    pub id: u32,
    /// `xenstat_domain_name` (read from xenstore by libxenstat); `None` when NULL.
    pub name: Option<String>,
    /// Nanoseconds of CPU time, all vCPUs.
    pub cpu_ns: u64,
    /// `xenstat_domain_num_vcpus`: max_vcpu_id + 1.
    pub num_vcpus: u32,
    /// One entry per vCPU index `0..num_vcpus` that libxenstat returned.
    pub vcpus: Vec<RawVcpu>,
    /// Bytes (tot_pages × page size).
    pub cur_mem: u64,
    /// Bytes; `u64::MAX` ((unsigned long long)-1) when unlimited.
    pub max_mem: u64,
    /// XSM security id (`ssidref`).
    pub ssid: u32,
    /// The `xenstat_domain_<state>` flags; several may be set at once.
    pub dying: bool,
    pub crashed: bool,
    pub shutdown: bool,
    pub paused: bool,
    pub blocked: bool,
    pub running: bool,
    pub networks: Vec<RawNetwork>,
    pub vbds: Vec<RawVbd>,
}

/// One `xenstat_vcpu`, at index `id` of its domain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawVcpu {
    /// Index within the domain.
    pub id: u32,
    pub online: bool,
    /// Nanoseconds of CPU time.
    pub ns: u64,
}

/// One `xenstat_network` (a vif), counters from the domain's side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawNetwork {
    /// Interface index (`vif<domid>.<id>`).
    pub id: u32,
    pub rbytes: u64,
    pub rpackets: u64,
    pub rerrs: u64,
    pub rdrop: u64,
    pub tbytes: u64,
    pub tpackets: u64,
    pub terrs: u64,
    pub tdrop: u64,
}

/// One `xenstat_vbd`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawVbd {
    /// `xenstat_vbd_type`: 1 blkback, 2 blktap; other backends (QEMU qdisk) vary.
    pub back_type: u32,
    /// Virtual device number, as in xenstore `device/vbd/<dev>`.
    pub dev: u32,
    pub oo_reqs: u64,
    pub rd_reqs: u64,
    pub wr_reqs: u64,
    /// 512-byte sectors.
    pub rd_sects: u64,
    /// 512-byte sectors.
    pub wr_sects: u64,
    /// `xenstat_vbd_error`: libxenstat could not read this vbd's statistics,
    /// so the counters above are meaningless.
    pub error: bool,
}
