//! The pure model: CPU from request rate, memory pressure (response time,
//! page faults, MemAvailable, swap) and pre-copy migration rounds.
//!
//! Every function here is a formula of its arguments, documented in
//! `docs/simulator.md` next to the paper table it was fitted to.

use super::params::{MemoryParams, MigrationParams, PAGE_SIZE, Workload};

/// vCPUs' worth of CPU a domain demands: `vcpus × min(1, idle + rate × s/req / vcpus)`.
pub fn cpu_demand_vcpus(w: &Workload, request_rate: f64, vcpus: u32) -> f64 {
    let v = f64::from(vcpus.max(1));
    let frac = w.idle_cpu + request_rate.max(0.0) * w.cpu_seconds_per_request / v;
    v * frac.clamp(0.0, 1.0)
}

/// Memory the guest's applications can use: allocation minus the guest
/// kernel's reserve.
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

/// Response time in ms for working set `ws` in allocation `alloc`:
/// `base × (1 + k × x^p / (1 − min(x, cap))^n)` with `x = ws / alloc`.
/// The numerator keeps growing past `x = 1`, which is the swapping regime.
pub fn response_time_ms(ws: u64, alloc: u64, p: &MemoryParams) -> f64 {
    let x = ws as f64 / (alloc.max(1) as f64);
    let pole = (1.0 - x.min(p.pressure_cap)).powf(p.pressure_n);
    p.base_response_ms * (1.0 + p.pressure_k * x.powf(p.pressure_p) / pole)
}

/// Fraction of working-set accesses that miss RAM: `max(0, 1 − usable / ws)`
/// (the swapped-out share of a uniformly accessed working set).
pub fn miss_fraction(ws: u64, usable: u64) -> f64 {
    if ws == 0 || ws <= usable {
        0.0
    } else {
        1.0 - usable as f64 / ws as f64
    }
}

/// Page-fault rates (minor/s, major/s) at a given request rate.
///
/// Minor: one fault per fresh 4 KiB page of anonymous memory touched
/// (256 per MiB): `rate × touched_bytes_per_request / PAGE_SIZE`.
/// Major: every page access to the working set (the touched pages plus the
/// dirtied pages) misses with [`miss_fraction`].
pub fn fault_rates(w: &Workload, request_rate: f64, alloc: u64, reserved: u64) -> (f64, f64) {
    let touched = request_rate.max(0.0) * w.touched_bytes_per_request as f64 / PAGE_SIZE as f64;
    let miss = miss_fraction(w.working_set_bytes, usable_bytes(alloc, reserved));
    (touched, (touched + w.dirty_rate.max(0.0)) * miss)
}

/// Bytes a pre-copy round must send after a round of `round_secs`:
/// `min(memory, dirty_rate × round_secs × PAGE_SIZE)`.
pub fn dirtied_bytes(dirty_rate: f64, round_secs: f64, memory: u64) -> u64 {
    let b = dirty_rate.max(0.0) * round_secs * PAGE_SIZE as f64;
    if b >= memory as f64 { memory } else { b as u64 }
}

/// After pre-copy round `round` (0-based) of `round_secs`: the bytes left to
/// send, and whether to stop and copy now. Stops when the rest is under the
/// threshold, after `max_rounds` rounds, or when the guest dirties memory at
/// least as fast as the link sends it (no round would shrink the rest).
pub fn after_round(
    round: u32,
    round_secs: f64,
    dirty_rate: f64,
    memory: u64,
    bandwidth: f64,
    p: &MigrationParams,
) -> (u64, bool) {
    let next = dirtied_bytes(dirty_rate, round_secs, memory);
    let non_convergent = dirty_rate * PAGE_SIZE as f64 >= bandwidth;
    let stop = next <= p.stop_threshold_bytes || round + 1 >= p.max_rounds || non_convergent;
    (next, stop)
}

/// Stop-and-copy downtime in seconds: `rest / bandwidth + resume overhead`.
pub fn downtime_secs(rest: u64, bandwidth: f64, p: &MigrationParams) -> f64 {
    rest as f64 / bandwidth + p.resume_overhead_ms / 1000.0
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
        let (next, stop) = after_round(round, t, dirty_rate, memory, bandwidth, p);
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
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GBIT: f64 = 125_000_000.0;

    fn workload(rate: f64) -> Workload {
        Workload {
            request_rate: rate,
            working_set_bytes: 25 * MIB,
            dirty_rate: 100.0,
            cpu_seconds_per_request: 77e-6,
            idle_cpu: 0.657,
            touched_bytes_per_request: 64 * 1024,
        }
    }

    #[test]
    fn cpu_grows_monotonically_with_request_rate_and_caps_at_vcpus() {
        let w = workload(0.0);
        let mut last = -1.0;
        for rate in (0..=20_000).step_by(100) {
            let c = cpu_demand_vcpus(&w, f64::from(rate), 1);
            assert!(c >= last, "cpu fell at {rate} req/s");
            assert!(c <= 1.0);
            last = c;
        }
        assert_eq!(cpu_demand_vcpus(&w, 1e9, 4), 4.0);
        // Table 4 fit: 100 → 500 req/s on one vCPU is 66.5% → 69.5%.
        let lo = cpu_demand_vcpus(&w, 100.0, 1);
        let hi = cpu_demand_vcpus(&w, 500.0, 1);
        assert!(
            (lo - 0.665).abs() < 0.005 && (hi - 0.696).abs() < 0.005,
            "{lo} {hi}"
        );
        assert!(cpu_demand_vcpus(&w, 500.0, 1) > cpu_demand_vcpus(&w, 100.0, 1));
    }

    #[test]
    fn response_time_rises_sharply_near_the_allocation() {
        let p = MemoryParams::default();
        let alloc = 256 * MIB;
        let rt = |f: f64| response_time_ms((alloc as f64 * f) as u64, alloc, &p);
        assert!(rt(0.95) > 10.0 * rt(0.1), "{} vs {}", rt(0.95), rt(0.1));
        assert!(rt(0.99) > 2.0 * rt(0.9));
        assert!(rt(1.6) > rt(1.2) && rt(1.2) > rt(0.99));
        // Table 2, smallest point: 5 MB of 256 MB is ~0.036 ms.
        let small = response_time_ms(5 * MIB, alloc, &p);
        assert!((0.03..0.045).contains(&small), "{small}");
        // Table 3, largest point: 425 MB of 256 MB is ~169 ms.
        let big = response_time_ms(425 * MIB, alloc, &p);
        assert!((120.0..240.0).contains(&big), "{big}");
    }

    #[test]
    fn major_faults_appear_only_near_and_past_the_allocation() {
        let alloc = 256 * MIB;
        let reserved = 32 * MIB;
        let mut w = workload(300.0);
        let at = |w: &mut Workload, f: f64| {
            w.working_set_bytes = (alloc as f64 * f) as u64;
            fault_rates(w, 300.0, alloc, reserved)
        };
        let (minor_lo, major_lo) = at(&mut w, 0.1);
        let (minor_hi, major_hi) = at(&mut w, 0.95);
        let (_, major_over) = at(&mut w, 1.5);
        assert_eq!(major_lo, 0.0);
        assert!(major_hi > 0.0);
        assert!(major_over > 5.0 * major_hi, "{major_over} vs {major_hi}");
        // 256 minor faults per MiB touched: 300 req/s × 64 KiB = 18.75 MiB/s.
        assert!((minor_lo - 300.0 * 16.0).abs() < 1e-9);
        assert_eq!(minor_lo, minor_hi);
    }

    #[test]
    fn memory_available_and_swap() {
        assert_eq!(
            memory_available_bytes(100 * MIB, 256 * MIB, 32 * MIB),
            124 * MIB
        );
        assert_eq!(memory_available_bytes(300 * MIB, 256 * MIB, 32 * MIB), 0);
        assert_eq!(swap_used_bytes(100 * MIB, 256 * MIB, 32 * MIB), 0);
        assert_eq!(swap_used_bytes(300 * MIB, 256 * MIB, 32 * MIB), 76 * MIB);
    }

    #[test]
    fn migration_duration_grows_with_memory_and_dirty_rate() {
        let p = MigrationParams::default();
        let small = plan_precopy(256 * MIB, 1000.0, GBIT, &p);
        let large = plan_precopy(4096 * MIB, 1000.0, GBIT, &p);
        let dirty = plan_precopy(256 * MIB, 20_000.0, GBIT, &p);
        assert!(large.duration_secs > small.duration_secs);
        assert!(dirty.duration_secs > small.duration_secs);
        assert!(dirty.rounds >= small.rounds);
        assert!(dirty.sent_bytes > small.sent_bytes);
    }

    #[test]
    fn idle_256mib_domain_at_1gbit_has_paper_like_downtime() {
        let p = MigrationParams::default();
        for dirty in [0.0, 50.0, 200.0] {
            let plan = plan_precopy(256 * MIB, dirty, GBIT, &p);
            let ms = plan.downtime_secs * 1000.0;
            assert!((30.0..80.0).contains(&ms), "{dirty} pages/s: {ms} ms");
            assert!(
                (2.0..2.5).contains(&plan.duration_secs),
                "{}",
                plan.duration_secs
            );
        }
    }

    #[test]
    fn non_convergent_dirty_rate_ends_in_bounded_rounds() {
        let p = MigrationParams::default();
        // 40 000 pages/s ≈ 164 MB/s > 125 MB/s.
        let plan = plan_precopy(1024 * MIB, 40_000.0, GBIT, &p);
        assert!(plan.rounds <= p.max_rounds);
        assert!(plan.downtime_secs > 1.0, "the rest is copied while paused");
        // Just below the link rate: converges too slowly, bounded by max_rounds.
        let slow = plan_precopy(1024 * MIB, 30_000.0, GBIT, &p);
        assert!(slow.rounds <= p.max_rounds);
        assert!(slow.duration_secs.is_finite());
    }
}
