//! The pure model: CPU from per-request cost, memory (response time, major
//! faults, MemAvailable, swap) from the working set against the usable
//! allocation, and pre-copy migration rounds under Xen's stopping rule.
//!
//! Every function here is a formula of its arguments, documented in
//! `docs/simulator.md`; `xentinel paper` (docs/paper.md) fits the few free
//! parameters on named rows of the paper and predicts the others.

use super::params::{MemoryParams, MigrationParams, PAGE_SIZE, Workload};

const MIB: f64 = (1u64 << 20) as f64;

/// vCPUs' worth of CPU a domain demands: `vcpus × min(1, idle + rate × s/req / vcpus)`.
pub fn cpu_demand_vcpus(w: &Workload, request_rate: f64, vcpus: u32) -> f64 {
    let v = f64::from(vcpus.max(1));
    let frac = w.idle_cpu + request_rate.max(0.0) * w.cpu_seconds_per_request / v;
    v * frac.clamp(0.0, 1.0)
}

/// Memory the guest's applications can use: allocation minus the guest
/// kernel's (and its other processes') reserve.
pub fn usable_bytes(alloc: u64, reserved: u64) -> u64 {
    alloc.saturating_sub(reserved)
}

/// Guest MemAvailable: `max(0, alloc − reserved − working set)`.
pub fn memory_available_bytes(ws: u64, alloc: u64, reserved: u64) -> u64 {
    usable_bytes(alloc, reserved).saturating_sub(ws)
}

/// Guest swap in use: `max(0, working set − usable)`.
pub fn swap_used_bytes(ws: u64, alloc: u64, reserved: u64) -> u64 {
    ws.saturating_sub(usable_bytes(alloc, reserved))
}

/// Major faults of one request, which walks the working set once: the
/// swapped part `(ws − usable)⁺` comes back `fault_bytes` at a time.
pub fn major_faults_per_request(ws: u64, usable: u64, p: &MemoryParams) -> f64 {
    ws.saturating_sub(usable) as f64 / p.fault_bytes.max(1) as f64
}

/// Response time in ms of one request: `base + resident MiB × ram_ms_per_mib
/// + major faults × fault_ms`, where the resident part is `min(ws, usable)`.
pub fn response_time_ms(ws: u64, usable: u64, p: &MemoryParams) -> f64 {
    let resident = ws.min(usable) as f64 / MIB;
    p.base_response_ms
        + resident * p.ram_ms_per_mib
        + major_faults_per_request(ws, usable, p) * p.fault_ms
}

/// Page-fault rates (minor/s, major/s) at a given request rate.
///
/// Minor: one fault per fresh 4 KiB page of anonymous memory touched
/// (256 per MiB, as measured in a Xen guest): `rate × touched / PAGE_SIZE`.
/// Major: `rate ×` [`major_faults_per_request`].
pub fn fault_rates(w: &Workload, request_rate: f64, usable: u64, p: &MemoryParams) -> (f64, f64) {
    let rate = request_rate.max(0.0);
    let touched = rate * w.touched_bytes_per_request as f64 / PAGE_SIZE as f64;
    (
        touched,
        rate * major_faults_per_request(w.working_set_bytes, usable, p),
    )
}

/// Bytes a pre-copy round must send after a round of `round_secs`:
/// `min(memory, dirty_rate × round_secs × PAGE_SIZE)`.
pub fn dirtied_bytes(dirty_rate: f64, round_secs: f64, memory: u64) -> u64 {
    let b = dirty_rate.max(0.0) * round_secs * PAGE_SIZE as f64;
    if b >= memory as f64 { memory } else { b as u64 }
}

/// After pre-copy round `round` (0-based) of `round_secs`: the bytes dirtied
/// meanwhile, and whether to stop and copy now. This is Xen 4.17's rule
/// (`tools/libs/guest/xg_sr_save.c`, `send_memory_live` asking
/// `simple_precopy_policy`): stop once fewer than `dirty_threshold_pages`
/// (50) pages are dirty, or once `max_iterations` (5) live iterations, the
/// first full copy included, are done. A guest that dirties faster than the
/// link sends is not special-cased: Xen runs its five iterations anyway.
pub fn after_round(
    round: u32,
    round_secs: f64,
    dirty_rate: f64,
    memory: u64,
    p: &MigrationParams,
) -> (u64, bool) {
    let next = dirtied_bytes(dirty_rate, round_secs, memory);
    let pages = next / PAGE_SIZE;
    let stop = pages < p.dirty_threshold_pages || round + 1 >= p.max_iterations;
    (next, stop)
}

/// Stop-and-copy downtime in seconds: `rest / bandwidth + suspend overhead`.
pub fn downtime_secs(rest: u64, bandwidth: f64, p: &MigrationParams) -> f64 {
    rest as f64 / bandwidth + p.suspend_overhead_ms / 1000.0
}

/// A whole pre-copy migration at a constant dirty rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecopyPlan {
    /// Pre-copy rounds, round 0 included.
    pub rounds: u32,
    /// Bytes sent, stop-and-copy included.
    pub sent_bytes: u64,
    /// Seconds from start to resumption on the target.
    pub duration_secs: f64,
    /// Seconds the domain is paused.
    pub downtime_secs: f64,
}

/// Plans a migration of `memory` bytes at `dirty_rate` pages/s over `bandwidth`
/// bytes/s, exactly as [`super::Cluster::step`] runs one with a constant
/// dirty rate.
pub fn plan_precopy(
    memory: u64,
    dirty_rate: f64,
    bandwidth: f64,
    p: &MigrationParams,
) -> PrecopyPlan {
    let mut round = 0;
    let mut bytes = memory;
    let mut sent = 0u64;
    let mut secs = 0.0;
    loop {
        let t = bytes as f64 / bandwidth;
        sent += bytes;
        secs += t;
        let (next, stop) = after_round(round, t, dirty_rate, memory, p);
        round += 1;
        if stop {
            let down = downtime_secs(next, bandwidth, p);
            return PrecopyPlan {
                rounds: round,
                sent_bytes: sent + next,
                duration_secs: secs + down,
                downtime_secs: down,
            };
        }
        bytes = next;
    }
}

#[cfg(test)]
mod tests;
