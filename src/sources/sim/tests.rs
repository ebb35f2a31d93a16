//! Cluster-level tests: the model stepped in simulated time, seen through
//! [`SimSource`] and driven by [`Scenario`]s.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::snapshot::{Collection, Direction, WarningKind};
use crate::sources::Source;

use super::SimSource;
use crate::sim::formulas::plan_precopy;
use crate::sim::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn collect(c: &Cluster, host: &str) -> Result<Collection, crate::sources::SourceError> {
    let s = SimSource::new(Arc::new(Mutex::new(c.clone())), host);
    let mut out = Collection::default();
    s.fill(&mut out).map(|_| out)
}

/// One host, one domain, no noise: for exact comparisons.
fn single(rate: f64, ws: u64, mem: u64, dirty: f64) -> Cluster {
    let mut s = ClusterSpec::default_demo();
    s.params.noise = 0.0;
    s.domains.retain(|d| d.name == "apache1");
    s.domains[0].workload.request_rate = rate;
    s.domains[0].workload.working_set_bytes = ws;
    s.domains[0].workload.dirty_rate = dirty;
    s.domains[0].memory_bytes = mem;
    Cluster::new(s, 1).unwrap()
}

#[test]
fn cpu_seconds_grow_monotonically_with_request_rate() {
    let mut last = -1.0;
    for rate in [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 2000.0, 20_000.0] {
        let mut c = single(rate, 25 * MIB, 256 * MIB, 100.0);
        c.step(Duration::from_secs(60));
        let cpu = c.domain("apache1").unwrap().cpu_seconds();
        assert!(
            cpu > last || (cpu == last && cpu == 60.0),
            "{rate}: {cpu} <= {last}"
        );
        assert!(cpu <= 60.0 + 1e-9, "capped at one vCPU");
        last = cpu;
    }
}

#[test]
fn major_faults_and_swap_appear_only_near_the_allocation() {
    let run = |ws| {
        let mut c = single(300.0, ws, 256 * MIB, 100.0);
        c.step(Duration::from_secs(60));
        let out = collect(&c, "xen4").unwrap();
        let d = c.domain("apache1").unwrap();
        (out.meta[&d.domid].guest.clone(), d.response_time_ms)
    };
    let (lo, rt_lo) = run(25 * MIB);
    let (hi, rt_hi) = run(243 * MIB);
    let (over, rt_over) = run(425 * MIB);
    assert_eq!(lo.page_faults_major, Some(0));
    assert!(hi.page_faults_major.unwrap() > 0);
    assert!(over.page_faults_major.unwrap() > 5 * hi.page_faults_major.unwrap());
    assert!(rt_hi > 10.0 * rt_lo && rt_over > rt_hi);
    assert_eq!(lo.swap_used_bytes, Some(0));
    assert_eq!(over.swap_used_bytes, Some(425 * MIB - 224 * MIB));
    assert_eq!(lo.memory_available_bytes, Some(224 * MIB - 25 * MIB));
}

#[test]
fn same_seed_same_collections_different_seed_different() {
    let run = |seed| {
        let mut c = Cluster::default_demo(seed);
        c.step(Duration::from_secs(90));
        format!("{:?}", collect(&c, "xen1").unwrap())
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn collection_has_dom0_host_totals_and_every_warning() {
    let mut c = Cluster::default_demo(1);
    c.set_warning("xen2", WarningKind::Temperature, true)
        .unwrap();
    c.step(Duration::from_secs(10));
    let out = collect(&c, "xen2").unwrap();
    assert_eq!(out.stats[&0].name.as_deref(), Some("Domain-0"));
    assert_eq!(out.stats.len(), 1 + c.domains_on("xen2").count());
    let host = out.host.unwrap();
    let domu: u64 = c.domains_on("xen2").map(|d| d.memory_bytes).sum();
    assert_eq!(host.memory_free_bytes, 64 * GIB - GIB - domu);
    assert_eq!(out.warnings.len(), WarningKind::ALL.len());
    assert!(out.warnings[&WarningKind::Temperature]);
    assert!(!out.warnings[&WarningKind::Shutdown]);
    for s in out.stats.values() {
        let per_vcpu: f64 = s.vcpus.iter().map(|v| v.cpu_seconds).sum();
        assert!((per_vcpu - s.cpu_seconds).abs() < 1e-9);
    }
}

#[test]
fn migrated_domain_moves_with_its_uuid_and_a_new_domid() {
    let mut c = Cluster::default_demo(3);
    c.step(Duration::from_secs(5));
    let before = c.domain("mail1").unwrap().clone();
    let id = c.start_migration("mail1", "xen4").unwrap();
    assert!(matches!(
        c.start_migration("mail1", "xen4"),
        Err(SimError::AlreadyMigrating(_))
    ));
    c.step(Duration::from_secs(1));
    assert!(matches!(
        c.migration(id).unwrap().state,
        MigrationState::Running { round: 0, .. }
    ));
    c.step(Duration::from_secs(60));
    let MigrationState::Done { duration, downtime } = c.migration(id).unwrap().state else {
        panic!("not done: {:?}", c.migration(id));
    };
    // 1 GiB over 1 Gbit/s is ~8.6 s; the stepped run matches the plan.
    let plan = plan_precopy(GIB, 200.0, 125e6, &c.params().migration);
    assert!(
        (duration.as_secs_f64() - plan.duration_secs).abs() < 0.01,
        "{duration:?} {plan:?}"
    );
    assert!((downtime.as_secs_f64() - plan.downtime_secs).abs() < 1e-6);

    let src = collect(&c, "xen3").unwrap();
    let dst = collect(&c, "xen4").unwrap();
    assert!(
        src.meta
            .values()
            .all(|m| m.name.as_deref() != Some("mail1"))
    );
    let moved = dst
        .meta
        .values()
        .find(|m| m.name.as_deref() == Some("mail1"))
        .expect("on the target");
    assert_eq!(moved.uuid.as_deref(), Some(before.uuid.as_str()));
    assert!(
        c.domains_on("xen4")
            .all(|d| d.name == "mail1" || d.domid != moved.domid)
    );
    assert_ne!((moved.domid, "xen4"), (before.domid, before.host.as_str()));
    assert!(moved.domid > 3, "xen4's domids 1-3 are taken");
    // Guest counters survive, hypervisor counters restart.
    assert!(moved.guest.page_faults_minor.unwrap() as f64 >= before.minor_faults);
    assert!(dst.stats[&moved.domid].cpu_seconds < before.cpu_seconds() + 60.0);
    assert_eq!(src.migrations[&Direction::Outgoing].count, 1);
    assert_eq!(dst.migrations[&Direction::Incoming].count, 1);
    assert_eq!(src.migrations[&Direction::Incoming].count, 0);
    let h = c.host("xen4").unwrap();
    assert_eq!(h.downtimes[&Direction::Incoming].count, 1);
    assert_eq!(h.incoming_bytes, 0);
}

#[test]
fn migration_duration_grows_with_memory_and_dirty_rate_in_the_cluster() {
    let run = |mem, dirty| {
        let mut c = single(0.0, 10 * MIB, mem, dirty);
        let id = c.start_migration("apache1", "xen3").unwrap();
        c.step(Duration::from_secs(600));
        match c.migration(id).unwrap().state {
            MigrationState::Done { duration, downtime } => (duration, downtime),
            s => panic!("{s:?}"),
        }
    };
    let (small, small_down) = run(256 * MIB, 0.0);
    let (big, _) = run(GIB, 0.0);
    let (dirty, _) = run(256 * MIB, 20_000.0);
    assert!(big > small && dirty > small, "{small:?} {big:?} {dirty:?}");
    let ms = small_down.as_secs_f64() * 1000.0;
    assert!(
        (30.0..80.0).contains(&ms),
        "idle 256 MiB at 1 Gbit/s: {ms} ms"
    );
}

#[test]
fn non_convergent_migration_finishes_with_a_long_pause() {
    let mut c = Cluster::default_demo(1);
    // batch1 dirties ~246 MB/s; xen3 ↔ xen4 is 1 Gbit/s: every round resends
    // all 12 GiB (103 s), and Xen stops after its fifth iteration.
    let id = c.start_migration("batch1", "xen4").unwrap();
    let mut saw_paused = false;
    c.step(Duration::from_secs(5 * 103 - 10));
    assert!(matches!(
        c.migration(id).unwrap().state,
        MigrationState::Running {
            round: 4,
            stop_and_copy: false,
            ..
        }
    ));
    for _ in 0..200 {
        c.step(Duration::from_secs(1));
        if let Some(d) = c.domain("batch1") {
            saw_paused |= d.state == crate::snapshot::DomainState::Paused;
        }
    }
    let st = c.migration(id).unwrap().state;
    let MigrationState::Done { downtime, .. } = st else {
        panic!("{st:?}")
    };
    assert!(saw_paused);
    assert!(downtime > Duration::from_secs(10));
    assert_eq!(c.domain("batch1").unwrap().host, "xen4");
}

#[test]
fn killing_a_host_loses_its_domains_and_fails_its_migrations() {
    let mut c = Cluster::default_demo(1);
    let out = c.start_migration("mail1", "xen4").unwrap();
    let inc = c.start_migration("dns1", "xen3").unwrap();
    c.step(Duration::from_millis(500));
    let on_xen3 = c.domains_on("xen3").count();
    assert_eq!(c.kill_host("xen3").unwrap(), on_xen3);
    assert_eq!(c.lost().len(), on_xen3);
    assert!(c.domain("mail1").is_none());
    assert!(matches!(
        c.migration(out).unwrap().state,
        MigrationState::Failed(_)
    ));
    assert!(matches!(
        c.migration(inc).unwrap().state,
        MigrationState::Failed(_)
    ));
    let dns = c.domain("dns1").unwrap();
    assert_eq!((dns.host.as_str(), dns.migration), ("xen4", None));
    assert_eq!(c.host("xen4").unwrap().incoming_bytes, 0);
    let err = collect(&c, "xen3").unwrap_err();
    assert!(err.to_string().contains("host xen3 is down"), "{err}");
    assert!(matches!(
        c.start_migration("dns1", "xen3"),
        Err(SimError::HostDown(_))
    ));
    c.step(Duration::from_secs(30));
    assert_eq!(
        collect(&c, "xen4").unwrap().migrations[&Direction::Incoming].count,
        0
    );
}

#[test]
fn migration_refuses_a_full_target() {
    let mut spec = ClusterSpec::default_demo();
    spec.domains
        .iter_mut()
        .find(|d| d.name == "db1")
        .unwrap()
        .memory_bytes = 12 * GIB;
    let mut c = Cluster::new(spec, 1).unwrap();
    // xen4 has 32 − 1 − 8.5 = 22.5 GiB free; batch1's 12 GiB leave 10.5.
    c.start_migration("batch1", "xen4").unwrap();
    let r = c.start_migration("db1", "xen4");
    assert!(matches!(r, Err(SimError::NoRoom { .. })), "{r:?}");
}

#[tokio::test]
async fn source_collect_reports_the_host() {
    let c = Arc::new(Mutex::new(Cluster::default_demo(1)));
    let s = SimSource::new(c.clone(), "xen1");
    assert_eq!(s.name(), "sim");
    let mut out = Collection::default();
    s.collect(&mut out).await.unwrap();
    assert_eq!(out.stats.len(), 4);
    c.lock().unwrap().kill_host("xen1").unwrap();
    assert!(s.collect(&mut Collection::default()).await.is_err());
}

#[test]
fn scenario_with_an_unknown_field_names_line_column_and_field() {
    let yaml = "- at: 30s\n  action:\n    warning: {host: xen1, kind: maintenance, on: true, colour: red}\n";
    let e = Scenario::from_yaml_str(yaml, "storm.yaml").unwrap_err();
    assert_eq!(e.origin, "storm.yaml");
    assert_eq!(e.line, 3, "{e}");
    assert!(e.column > 1, "{e}");
    assert!(e.message.contains("colour"), "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with("storm.yaml: line 3 column "), "{shown}");

    let e =
        Scenario::from_yaml_str("- at: 1m\n  actoin: {kill_host: xen1}\n", "s.yaml").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.contains("actoin"), "{e}");

    let e = Scenario::from_yaml_str(
        "- at: 1m\n  action: {warning: {host: a, kind: fire, on: true}}\n",
        "s.yaml",
    )
    .unwrap_err();
    assert!(
        e.message.contains("fire") && e.message.contains("ups_on_battery"),
        "{e}"
    );
}

#[test]
fn scenario_applies_due_events_in_order() {
    let yaml = "
- at: 1m
  action: {kill_host: xen3}
- at: 30s
  action: {warning: {host: xen3, kind: ups_on_battery, on: true}}
- at: 30s
  action: {workload: {domain: web1, request_rate: 900, working_set_bytes: 1GiB}}
- at: 40s
  action: {migrate: {domain: mail1, to: xen4}}
- at: 45s
  action: {migrate: {domain: nosuch, to: xen4}}
";
    let mut s = Scenario::from_yaml_str(yaml, "t.yaml").unwrap();
    let mut c = Cluster::default_demo(1);
    assert!(matches!(s.check(&c), Err(SimError::UnknownDomain(d)) if d == "nosuch"));
    assert!(s.apply_due(&mut c, Duration::from_secs(29)).is_empty());
    let a = s.apply_due(&mut c, Duration::from_secs(30));
    assert_eq!(a.len(), 2);
    assert!(a.iter().all(|a| a.result.is_ok()));
    assert!(c.host("xen3").unwrap().warnings[&WarningKind::UpsOnBattery]);
    let w = &c.domain("web1").unwrap().workload;
    assert_eq!((w.request_rate, w.working_set_bytes), (900.0, GIB));
    let a = s.apply_due(&mut c, Duration::from_secs(50));
    assert_eq!(a.len(), 2);
    assert!(a[0].result.is_ok());
    assert!(matches!(a[1].result, Err(SimError::UnknownDomain(_))));
    c.step(Duration::from_secs(20));
    assert_eq!(c.domain("mail1").unwrap().host, "xen4");
    s.apply_due(&mut c, Duration::from_secs(60));
    assert!(s.is_done());
    assert!(!c.host("xen3").unwrap().alive);
    assert_eq!(c.lost().len(), 1, "batch1 was still on xen3");
}

#[test]
fn demo_scenario_runs_against_the_demo_cluster() {
    let mut s = Scenario::default_demo();
    let mut c = Cluster::default_demo(42);
    s.check(&c).unwrap();
    let before = c.domain("cache1").unwrap().response_time_ms;
    while !s.is_done() {
        c.step(Duration::from_secs(15));
        let now = c.now();
        for a in s.apply_due(&mut c, now) {
            assert!(a.result.is_ok(), "{a:?}");
        }
    }
    assert!(!c.host("xen3").unwrap().alive);
    // cache1 grew 336 MiB past its usable memory: each request walks that
    // part back from swap, ~27 faults of 12.5 MiB.
    let cache = c.domain("cache1").unwrap();
    let fault_ms = c.params().memory.fault_ms;
    assert!(cache.major_faults > 0.0);
    assert!(
        cache.response_time_ms - before > 25.0 * fault_ms,
        "{} vs {before}",
        cache.response_time_ms
    );
}

/// Steps `c` by `dt` in 10 ms ticks, pinging after each.
fn ping_for(c: &mut Cluster, p: &mut super::Pinger, dt: Duration) {
    let tick = Duration::from_millis(10);
    let mut left = dt;
    while !left.is_zero() {
        c.step(tick.min(left));
        p.tick(c);
        left = left.saturating_sub(tick);
    }
}

#[test]
fn the_pinger_sees_the_stop_and_copy_as_its_longest_gap() {
    let mut c = single(100.0, 25 * MIB, 256 * MIB, 100.0);
    let mut p = super::Pinger::new("apache1", Duration::from_millis(10), 3);
    ping_for(&mut c, &mut p, Duration::from_secs(1));
    assert!((p.stats().longest_gap_seconds - 0.01).abs() < 1e-9);
    let id = c.start_migration("apache1", "xen3").unwrap();
    ping_for(&mut c, &mut p, Duration::from_secs(5));
    let MigrationState::Done { downtime, .. } = c.migration(id).unwrap().state else {
        panic!("not done")
    };
    let s = p.stats();
    // The pause hides whole pings: the gap is the downtime rounded up to the
    // 10 ms grid, plus one interval at most.
    let gap = s.longest_gap_seconds;
    let down = downtime.as_secs_f64();
    assert!(gap >= down && gap <= down + 0.02 + 1e-9, "{gap} vs {down}");
    assert!(s.up && s.lost >= 4 && s.lost <= 6, "{s:?}");
}

#[test]
fn a_restarted_domain_answers_only_once_booted() {
    let mut c = single(100.0, 25 * MIB, 256 * MIB, 100.0);
    let mut p = super::Pinger::new("apache1", Duration::from_millis(10), 3);
    ping_for(&mut c, &mut p, Duration::from_secs(1));
    c.kill_host("xen4").unwrap();
    let boot = Duration::from_secs(1);
    assert_eq!(
        c.restart("apache1", "xen4", boot),
        Err(SimError::HostDown("xen4".into()))
    );
    assert!(matches!(
        c.restart("nosuch", "xen3", boot),
        Err(SimError::UnknownDomain(_))
    ));
    ping_for(&mut c, &mut p, Duration::from_millis(300));
    assert!(!p.stats().up, "down after 3 unanswered intervals");
    c.restart("apache1", "xen3", boot).unwrap();
    let d = c.domain("apache1").unwrap();
    assert_eq!(d.host, "xen3");
    assert_eq!(d.cpu_seconds(), 0.0);
    assert_eq!(d.state, crate::snapshot::DomainState::Blocked);
    // Once only: the corpse is gone.
    assert!(c.restart("apache1", "xen2", boot).is_err());
    ping_for(&mut c, &mut p, Duration::from_millis(990));
    assert!(!p.stats().up, "still booting");
    assert_eq!(
        c.domain("apache1").unwrap().cpu_seconds(),
        0.0,
        "serves nothing yet"
    );
    ping_for(&mut c, &mut p, Duration::from_millis(500));
    let s = p.stats();
    assert!(s.up);
    // Dead at 1.0 s, detected at 1.3 s, booted at 2.3 s.
    assert!((s.longest_gap_seconds - 1.3).abs() < 0.011, "{s:?}");
    assert!(c.domain("apache1").unwrap().cpu_seconds() > 0.0);
}
