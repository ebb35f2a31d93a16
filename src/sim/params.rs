//! The model's parameters: what a domain does ([`Workload`]), and the
//! coefficients of the memory model and of pre-copy migration. Plain data,
//! loadable from YAML; [`super::formulas`] computes with them.

use serde::{Deserialize, Serialize};

use super::units::de_bytes;

const KIB: u64 = 1 << 10;

/// Bytes per guest page (x86 small page).
pub const PAGE_SIZE: u64 = 4096;

/// Parameters of the memory model: one request walks the domain's working
/// set once; the resident part costs RAM time, the part beyond the usable
/// allocation comes back from swap in major faults (docs/simulator.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryParams {
    /// Time of a request that touches no memory, in milliseconds.
    pub base_response_ms: f64,
    /// Time to walk one MiB of resident working set, in milliseconds.
    pub ram_ms_per_mib: f64,
    /// Bytes one major fault brings back from swap.
    #[serde(deserialize_with = "de_bytes")]
    pub fault_bytes: u64,
    /// Time of one major fault, in milliseconds.
    pub fault_ms: f64,
}

impl Default for MemoryParams {
    /// The values `xentinel paper` fits on Tables 2–3 (docs/paper.md).
    fn default() -> Self {
        MemoryParams {
            base_response_ms: 0.0283,
            ram_ms_per_mib: 0.00153,
            fault_bytes: 12_800 * KIB,
            fault_ms: 1.569,
        }
    }
}

/// Xen 4.17's pre-copy stopping rule (`tools/libs/guest/xg_sr_save.c`,
/// `send_memory_live` with `simple_precopy_policy`: `SPP_MAX_ITERATIONS` 5,
/// `SPP_TARGET_DIRTY_COUNT` 50) and the fixed cost of the stop-and-copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationParams {
    /// Stop and copy once fewer pages than this are dirty after a round.
    pub dirty_threshold_pages: u64,
    /// Stop and copy after this many live iterations (the first full copy included).
    pub max_iterations: u32,
    /// Fixed cost of suspending, sending vCPU/device state, creating the
    /// domain and its vif on the target and resuming, in ms: the downtime a
    /// 10 ms ping saw on real Xen 4.17 under QEMU emulation (1.39 s mean over
    /// four runs, an idle 256 MB PVH guest) divided by emulation's measured
    /// 25–30× slowdown (27.5): 50.5 ms.
    pub suspend_overhead_ms: f64,
}

impl Default for MigrationParams {
    fn default() -> Self {
        MigrationParams {
            dirty_threshold_pages: 50,
            max_iterations: 5,
            suspend_overhead_ms: 1390.0 / 27.5,
        }
    }
}

/// What a domain does; the scenario can change any field at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Requests served per second.
    pub request_rate: f64,
    /// Memory the application keeps in use.
    #[serde(deserialize_with = "de_bytes")]
    pub working_set_bytes: u64,
    /// Pages written per second.
    pub dirty_rate: f64,
    /// CPU seconds one request costs.
    pub cpu_seconds_per_request: f64,
    /// Share of each vCPU busy with no requests (default 0.02).
    #[serde(default = "default_idle_cpu")]
    pub idle_cpu: f64,
    /// Fresh anonymous memory each request touches (default 64 KiB).
    #[serde(default = "default_touched", deserialize_with = "de_bytes")]
    pub touched_bytes_per_request: u64,
}

pub(super) fn default_idle_cpu() -> f64 {
    0.02
}
pub(super) fn default_touched() -> u64 {
    64 * KIB
}
