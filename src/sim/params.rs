//! The model's parameters: what a domain does ([`Workload`]), and the
//! coefficients of the memory-pressure and pre-copy formulas. Plain data,
//! loadable from YAML; [`super::formulas`] computes with them.

use serde::{Deserialize, Serialize};

use super::units::de_bytes;

const KIB: u64 = 1 << 10;

/// Bytes per guest page (x86 small page).
pub const PAGE_SIZE: u64 = 4096;

/// Parameters of the memory-pressure model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryParams {
    /// Response time with no memory pressure, in milliseconds.
    pub base_response_ms: f64,
    /// Pressure coefficient `k`.
    pub pressure_k: f64,
    /// Exponent `p` of the working-set ratio in the numerator.
    pub pressure_p: f64,
    /// Exponent `n` of the pole `1 / (1 - x)^n`.
    pub pressure_n: f64,
    /// The ratio at which the pole is cut off (keeps the value finite).
    pub pressure_cap: f64,
}

impl Default for MemoryParams {
    fn default() -> Self {
        MemoryParams {
            base_response_ms: 0.035,
            pressure_k: 180.0,
            pressure_p: 2.0,
            pressure_n: 0.5,
            pressure_cap: 0.99,
        }
    }
}

/// Parameters of pre-copy live migration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MigrationParams {
    /// Pre-copy stops once a round would send no more than this.
    pub stop_threshold_bytes: u64,
    /// Pre-copy rounds (round 0 included) before stop-and-copy is forced.
    pub max_rounds: u32,
    /// Fixed cost of pausing, sending vCPU/device state and resuming, in ms.
    pub resume_overhead_ms: f64,
}

impl Default for MigrationParams {
    fn default() -> Self {
        MigrationParams {
            stop_threshold_bytes: 64 * PAGE_SIZE,
            max_rounds: 30,
            resume_overhead_ms: 40.0,
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
