use super::*;

const MIB: u64 = 1 << 20;
const GBIT: f64 = 125_000_000.0;

fn workload(rate: f64, ws: u64) -> Workload {
    Workload {
        request_rate: rate,
        working_set_bytes: ws,
        dirty_rate: 100.0,
        cpu_seconds_per_request: 77e-6,
        idle_cpu: 0.657,
        touched_bytes_per_request: 64 * 1024,
    }
}

#[test]
fn cpu_is_idle_plus_rate_times_cost_and_caps_at_vcpus() {
    let w = workload(0.0, 0);
    let mut last = -1.0;
    for rate in (0..=20_000).step_by(100) {
        let c = cpu_demand_vcpus(&w, f64::from(rate), 1);
        assert!(c >= last, "cpu fell at {rate} req/s");
        assert!(c <= 1.0);
        last = c;
    }
    assert_eq!(cpu_demand_vcpus(&w, 1e9, 4), 4.0);
    // Below the cap each request adds exactly its cost.
    let d = cpu_demand_vcpus(&w, 300.0, 1) - cpu_demand_vcpus(&w, 200.0, 1);
    assert!((d - 100.0 * 77e-6).abs() < 1e-12, "{d}");
}

#[test]
fn response_time_grows_with_the_resident_walk_then_with_swap_faults() {
    let p = MemoryParams::default();
    let usable = 100 * MIB;
    // No faults while the working set fits: only the RAM walk grows.
    assert_eq!(major_faults_per_request(100 * MIB, usable, &p), 0.0);
    let walk = response_time_ms(50 * MIB, usable, &p) - response_time_ms(10 * MIB, usable, &p);
    assert!((walk - 40.0 * p.ram_ms_per_mib).abs() < 1e-9, "{walk}");
    // Past usable memory the walk stops growing and faults take over.
    let f = major_faults_per_request(100 * MIB + 2 * p.fault_bytes, usable, &p);
    assert!((f - 2.0).abs() < 1e-9, "{f}");
    let over = response_time_ms(100 * MIB + 2 * p.fault_bytes, usable, &p);
    let at = response_time_ms(100 * MIB, usable, &p);
    assert!(
        (over - at - 2.0 * p.fault_ms).abs() < 1e-9,
        "{over} vs {at}"
    );
    // And faults are a rate of requests: twice the requests, twice the faults.
    let w = workload(10.0, 150 * MIB);
    let (_, a) = fault_rates(&w, 10.0, usable, &p);
    let (_, b) = fault_rates(&w, 20.0, usable, &p);
    assert!(a > 0.0 && (b - 2.0 * a).abs() < 1e-9);
}

#[test]
fn minor_faults_follow_fresh_pages_at_256_per_mib() {
    let p = MemoryParams::default();
    let w = workload(300.0, 10 * MIB);
    let (minor, major) = fault_rates(&w, 300.0, 100 * MIB, &p);
    assert_eq!(major, 0.0);
    assert!((minor - 300.0 * 16.0).abs() < 1e-9);
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
fn xen_stops_below_fifty_dirty_pages_or_after_five_iterations() {
    let p = MigrationParams::default();
    // Idle: 512 MiB at 1 Gbit/s is 4.3 s; 10 pages/s dirty 43 pages meanwhile,
    // under the threshold: one live iteration, then stop and copy those.
    let idle = plan_precopy(512 * MIB, 10.0, GBIT, &p);
    assert_eq!(idle.rounds, 1);
    let rest = 43.0 * PAGE_SIZE as f64 / GBIT;
    assert!((idle.downtime_secs - p.suspend_overhead_ms / 1000.0 - rest).abs() < 1e-4);
    // 100 pages/s: 430 pages after round 0 (≥ 50), 1.4 after round 1.
    assert_eq!(plan_precopy(512 * MIB, 100.0, GBIT, &p).rounds, 2);
    // A guest dirtying faster than the link: Xen still runs five iterations.
    let hot = plan_precopy(512 * MIB, 40_000.0, GBIT, &p);
    assert_eq!(hot.rounds, p.max_iterations);
    assert!(hot.downtime_secs > 1.0, "the rest is copied while paused");
}

#[test]
fn a_faster_link_shortens_and_a_higher_dirty_rate_lengthens_migrations() {
    let p = MigrationParams::default();
    let base = plan_precopy(512 * MIB, 1_000.0, GBIT, &p);
    let fast = plan_precopy(512 * MIB, 1_000.0, 10.0 * GBIT, &p);
    let dirty = plan_precopy(512 * MIB, 20_000.0, GBIT, &p);
    assert!(fast.duration_secs < base.duration_secs);
    assert!(fast.downtime_secs < base.downtime_secs);
    assert!(dirty.rounds > base.rounds, "{dirty:?} vs {base:?}");
    assert!(dirty.downtime_secs > base.downtime_secs);
    assert!(dirty.sent_bytes > base.sent_bytes);
    assert!(plan_precopy(4096 * MIB, 1_000.0, GBIT, &p).duration_secs > base.duration_secs);
}
