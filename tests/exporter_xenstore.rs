//! The exporter over a real-protocol xenstored: domains appear, rename and
//! vanish with no stale series; guest data is parsed and garbage rejected;
//! a dead xenstored sets `xentinel_source_up{source="xenstore"}` to 0 and a
//! restarted one brings the series back, with no restart of the exporter.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::scrape::{self, Sample, value};
use support::xenstored::TestXenstored;
use xentinel::collector::Collector;
use xentinel::guest::Rejections;
use xentinel::sources::Source;
use xentinel::sources::xenstore::XenstoreSource;

/// XENSTORED_PATH is process-wide: one test at a time.
static ENV: Mutex<()> = Mutex::new(());

struct Exporter {
    addr: String,
    _rt: tokio::runtime::Runtime,
}

fn exporter(xsd: &TestXenstored) -> Exporter {
    // Tests in this binary hold ENV while they run.
    let rt = xsd.client_runtime();
    let addr = rt.block_on(async {
        let rej = Arc::new(Rejections::default());
        let src: Box<dyn Source> = Box::new(XenstoreSource::new(
            rej.clone(),
            Some("/xentinel/maintenance".into()),
            Duration::from_millis(800),
        ));
        let c = Arc::new(Collector::new(vec![src], Duration::from_secs(2), rej));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let router = xentinel::http::router(c, "/metrics", "test");
        tokio::spawn(xentinel::http::serve(
            l,
            router,
            Default::default(),
            std::future::pending(),
        ));
        addr
    });
    Exporter { addr, _rt: rt }
}

fn scrape(e: &Exporter) -> (String, Vec<Sample>) {
    let (status, body) = scrape::get(&e.addr, "/metrics");
    assert_eq!(status, 200);
    let samples = scrape::parse(&body);
    (body, samples)
}

/// Scrapes until the incoming-migration count satisfies `done` (watches are
/// asynchronous), for at most 10 s; returns the last scrape either way. The
/// bound is a stall, not a speed: a watch event takes milliseconds to handle,
/// and a loaded machine (load 4-7) delays that by tens of them.
fn scrape_until(e: &Exporter, done: impl Fn(Option<f64>) -> bool) -> Vec<Sample> {
    let count = |s: &[Sample]| {
        value(
            s,
            "xen_domain_migration_duration_seconds_count",
            &[("direction", "incoming")],
        )
    };
    let mut s = scrape(e).1;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if done(count(&s)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        s = scrape(e).1;
    }
    s
}

fn names(samples: &[Sample]) -> Vec<String> {
    let mut v: Vec<String> = samples
        .iter()
        .filter(|s| s.name == "xen_domain_info")
        .map(|s| s.labels["domain"].clone())
        .collect();
    v.sort();
    v
}

fn socket(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("xentinel-xsd-{tag}-{}.sock", std::process::id()))
}

const U1: &str = "11111111-1111-4111-8111-111111111111";
const U2: &str = "22222222-2222-4222-8222-222222222222";

#[test]
fn domains_appear_rename_and_vanish_without_stale_series() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let xsd = TestXenstored::start(&socket("churn"));
    xsd.introduce_domain(
        0,
        "Domain-0",
        "00000000-0000-0000-0000-000000000000",
        1 << 20,
    );
    xsd.introduce_domain(1, "web", U1, 512 * 1024);
    let e = exporter(&xsd);
    let (_, s) = scrape(&e);
    assert_eq!(names(&s), ["Domain-0", "web"]);
    assert_eq!(
        value(
            &s,
            "xen_domain_info",
            &[("domain", "web"), ("uuid", U1), ("domid", "1")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "xen_domain_memory_target_bytes", &[("domain", "web")]),
        Some(512.0 * 1024.0 * 1024.0)
    );

    // A new domain shows on the very next scrape.
    xsd.introduce_domain(2, "db", U2, 256 * 1024);
    let (_, s) = scrape(&e);
    assert_eq!(names(&s), ["Domain-0", "db", "web"]);

    // A rename replaces the label; the old name leaves no series behind.
    xsd.write("/local/domain/1/name", "web-renamed");
    let (body, s) = scrape(&e);
    assert_eq!(names(&s), ["Domain-0", "db", "web-renamed"]);
    assert!(
        !body.contains("domain=\"web\""),
        "stale series for the old name:\n{body}"
    );

    // A destroyed domain's series are all gone on the next scrape.
    xsd.release_domain(2);
    let (body, s) = scrape(&e);
    assert_eq!(names(&s), ["Domain-0", "web-renamed"]);
    assert!(
        !body.contains(U2),
        "stale series of a released domain:\n{body}"
    );

    // A migration as libxl does it: the domain arrives as `<name>--incoming`
    // under a new domid and is renamed when done; the old domid goes away.
    // The exporter stamps each name when its watch handler reads it, so the
    // "migration" lasts 1 s: on a loaded machine the handler may get to the
    // arrival late (it must before the rename, or it reads the new name), and
    // every ms it is late shortens the measured time.
    xsd.introduce_domain(3, "web-renamed--incoming", U1, 512 * 1024);
    std::thread::sleep(Duration::from_secs(1));
    xsd.write("/local/domain/1/name", "web-renamed--migratedaway");
    xsd.release_domain(1);
    xsd.write("/local/domain/3/name", "web-renamed");
    // The rename is seen by a watch, asynchronously: wait for it to be timed.
    let s = scrape_until(&e, |c| c.is_some());
    assert_eq!(
        value(
            &s,
            "xen_domain_migration_duration_seconds_count",
            &[("direction", "incoming")]
        ),
        Some(1.0)
    );
    let took = value(
        &s,
        "xen_domain_migration_duration_seconds_sum",
        &[("direction", "incoming")],
    )
    .unwrap();
    // 1 s between the writes; up to 0.5 s of it may go to a late handler.
    assert!(
        (0.5..10.0).contains(&took),
        "incoming migration took {took} s"
    );
    assert_eq!(names(&s), ["Domain-0", "web-renamed"]);
    assert_eq!(
        value(
            &s,
            "xen_domain_info",
            &[("domain", "web-renamed"), ("uuid", U1), ("domid", "3")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "xentinel_source_up", &[("source", "xenstore")]),
        Some(1.0)
    );
}

#[test]
fn guest_reports_are_parsed_and_garbage_is_rejected() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let xsd = TestXenstored::start(&socket("guest"));
    xsd.introduce_domain(1, "good", U1, 256 * 1024);
    xsd.write(
        "/local/domain/1/memory/static-max",
        &(256 * 1024).to_string(),
    );
    xsd.introduce_domain(2, "evil", U2, 256 * 1024);
    xsd.write(
        "/local/domain/2/memory/static-max",
        &(256 * 1024).to_string(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = [
        ("pgfault", "5000".to_string()),
        ("pgmajfault", "7".to_string()),
        ("mem_available_bytes", (100u64 << 20).to_string()),
        ("swap_used_bytes", "4096".to_string()),
        ("timestamp", (now - 3).to_string()),
    ];
    for (k, v) in &good {
        xsd.write(&format!("/local/domain/1/data/xentinel/{k}"), v);
    }
    let evil = [
        ("pgfault", "lots"),
        ("pgmajfault", "-1"),
        ("mem_available_bytes", "999999999999999999999999"),
        ("swap_used_bytes", "1e9"),
        ("timestamp", "99999999999"),
    ];
    for (k, v) in evil {
        xsd.write(&format!("/local/domain/2/data/xentinel/{k}"), v);
    }
    let e = exporter(&xsd);
    for _ in 0..2 {
        let (body, s) = scrape(&e);
        let g = |n: &str, extra: &[(&str, &str)]| {
            let mut want = vec![("domain", "good")];
            want.extend_from_slice(extra);
            value(&s, n, &want)
        };
        assert_eq!(
            g("xen_domain_guest_page_faults_total", &[("kind", "minor")]),
            Some(4993.0)
        );
        assert_eq!(
            g("xen_domain_guest_page_faults_total", &[("kind", "major")]),
            Some(7.0)
        );
        assert_eq!(
            g("xen_domain_guest_memory_available_bytes", &[]),
            Some((100u64 << 20) as f64)
        );
        assert_eq!(g("xen_domain_guest_swap_used_bytes", &[]), Some(4096.0));
        let age = g("xen_domain_guest_report_age_seconds", &[]).unwrap();
        assert!((3.0..60.0).contains(&age), "age {age}");
        // Every value of the evil domain is absent, never a wrong number.
        for fam in [
            "xen_domain_guest_page_faults_total",
            "xen_domain_guest_memory_available_bytes",
            "xen_domain_guest_swap_used_bytes",
            "xen_domain_guest_report_age_seconds",
        ] {
            assert!(
                !s.iter()
                    .any(|x| x.name == fam && x.labels["domain"] == "evil"),
                "{fam} for evil:\n{body}"
            );
        }
        // Counted once each, however often scraped.
        let rej = |r| {
            value(
                &s,
                "xentinel_guest_reports_rejected_total",
                &[("reason", r)],
            )
        };
        assert_eq!(rej("garbage"), Some(2.0), "pgfault=lots, swap=1e9");
        assert_eq!(rej("negative"), Some(1.0));
        assert_eq!(rej("oversized"), Some(1.0));
        assert_eq!(rej("implausible"), Some(1.0), "timestamp in the year 5138");
    }
}

#[test]
fn a_dead_xenstored_sets_up_to_zero_and_a_restarted_one_comes_back() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let mut xsd = TestXenstored::start(&socket("kill"));
    xsd.introduce_domain(1, "web", U1, 1024);
    let e = exporter(&xsd);
    let (_, s) = scrape(&e);
    assert_eq!(
        value(&s, "xentinel_source_up", &[("source", "xenstore")]),
        Some(1.0)
    );

    xsd.kill();
    for _ in 0..2 {
        let (_, s) = scrape(&e);
        assert_eq!(
            value(&s, "xentinel_source_up", &[("source", "xenstore")]),
            Some(0.0)
        );
        assert!(names(&s).is_empty(), "no domains without a source");
        // The exporter still serves its own families.
        assert_eq!(
            value(&s, "xentinel_host_warning", &[("kind", "maintenance")]),
            Some(0.0)
        );
    }

    xsd.restart();
    xsd.write("/xentinel/maintenance", "1");
    let (_, s) = scrape(&e);
    assert_eq!(
        value(&s, "xentinel_source_up", &[("source", "xenstore")]),
        Some(1.0)
    );
    assert_eq!(names(&s), ["web"]);
    assert_eq!(
        value(&s, "xentinel_host_warning", &[("kind", "maintenance")]),
        Some(1.0)
    );
}

#[test]
fn hostile_domain_names_pass_promtool_and_round_trip() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let xsd = TestXenstored::start(&socket("names"));
    let hostile = [
        "quote\"d".to_string(),
        "back\\slash\\".to_string(),
        "new\nline".to_string(),
        "ünïcødé-домен-域名-🚀".to_string(),
        "x".repeat(256),
        "a}b{c=\"d\",e".to_string(),
        "# HELP not a comment".to_string(),
    ];
    for (i, n) in hostile.iter().enumerate() {
        let id = i as u32 + 1;
        let uuid = format!("{id:08x}-0000-4000-8000-000000000000");
        xsd.introduce_domain(id, n, &uuid, 1024);
        xsd.write(&format!("/local/domain/{id}/data/xentinel/pgfault"), "10");
        xsd.write(&format!("/local/domain/{id}/data/xentinel/pgmajfault"), "1");
    }
    let e = exporter(&xsd);
    let (body, s) = scrape(&e);
    scrape::promtool_check_metrics(&body);
    let mut want: Vec<String> = hostile.to_vec();
    want.sort();
    assert_eq!(names(&s), want);
    for n in &hostile {
        assert_eq!(
            value(
                &s,
                "xen_domain_guest_page_faults_total",
                &[("domain", n), ("kind", "minor")]
            ),
            Some(9.0)
        );
    }
}

#[test]
fn a_burst_of_watch_events_does_not_stall_the_source() {
    // Regression: a watch handler that read on the watch's own connection
    // deadlocked xenstore-rs once more than 8 events were queued.
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let xsd = TestXenstored::start(&socket("burst"));
    xsd.introduce_domain(0, "Domain-0", "00000000-0000-0000-0000-000000000000", 1024);
    let e = exporter(&xsd);
    let (_, s) = scrape(&e);
    assert_eq!(
        value(&s, "xentinel_source_up", &[("source", "xenstore")]),
        Some(1.0)
    );
    for id in 1..=20u32 {
        xsd.introduce_domain(
            id,
            &format!("d{id}--incoming"),
            &format!("{id:08x}-0000-4000-8000-000000000000"),
            1024,
        );
    }
    // A watch event names a path, not a value: the handler reads the name
    // when it gets to the event. Real migrations take seconds to rename; 1 s
    // lets the handler read all 20 arrivals on a loaded machine too.
    std::thread::sleep(Duration::from_secs(1));
    for round in 0..5 {
        for id in 1..=20u32 {
            xsd.write(
                &format!("/local/domain/{id}/data/xentinel/pgfault"),
                &(round * 100 + id).to_string(),
            );
            xsd.write(&format!("/local/domain/{id}/name"), &format!("d{id}"));
        }
        // A stalled source is down: the exporter drops a read of the tree
        // that takes longer than the source's timeout (800 ms here, against
        // milliseconds for 20 domains), and the old deadlock never ended.
        // How long the read took is not asserted: that is a speed.
        let (_, s) = scrape(&e);
        assert_eq!(
            value(&s, "xentinel_source_up", &[("source", "xenstore")]),
            Some(1.0),
            "round {round}"
        );
    }
    let s = scrape_until(&e, |c| c == Some(20.0));
    assert_eq!(
        value(
            &s,
            "xen_domain_migration_duration_seconds_count",
            &[("direction", "incoming")]
        ),
        Some(20.0)
    );
}

/// XCP-ng's agents (xe-guest-utilities, xen-guest-agent) publish
/// `data/meminfo_free` (MemAvailable) and `data/meminfo_total` in KiB: a
/// domain with only those gets `xen_domain_guest_memory_available_bytes`
/// from them; a domain that also runs xentinel's agent keeps xentinel's
/// value; a value above MemTotal is rejected and counted.
#[test]
fn xcp_ng_meminfo_keys_fill_in_for_domains_without_xentinel() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let xsd = TestXenstored::start(&socket("xapi"));
    const U3: &str = "33333333-3333-4333-8333-333333333333";
    for (id, name, uuid) in [(1, "xcp", U1), (2, "both", U2), (3, "liar", U3)] {
        xsd.introduce_domain(id, name, uuid, 1024 * 1024);
        xsd.write(
            &format!("/local/domain/{id}/memory/static-max"),
            &(1024 * 1024).to_string(),
        );
        xsd.write(&format!("/local/domain/{id}/data/meminfo_total"), "1000000");
    }
    xsd.write("/local/domain/1/data/meminfo_free", "400000");
    xsd.write("/local/domain/2/data/meminfo_free", "400000");
    xsd.write(
        "/local/domain/2/data/xentinel/mem_available_bytes",
        &(123u64 << 20).to_string(),
    );
    xsd.write("/local/domain/3/data/meminfo_free", "1000001");
    let e = exporter(&xsd);
    let (body, s) = scrape(&e);
    let avail = |d: &str| {
        value(
            &s,
            "xen_domain_guest_memory_available_bytes",
            &[("domain", d)],
        )
    };
    assert_eq!(avail("xcp"), Some(400_000.0 * 1024.0), "{body}");
    assert_eq!(avail("both"), Some((123u64 << 20) as f64), "{body}");
    assert_eq!(avail("liar"), None, "{body}");
    assert_eq!(
        value(
            &s,
            "xentinel_guest_reports_rejected_total",
            &[("reason", "implausible")]
        ),
        Some(1.0)
    );
    // Only the memory: XCP-ng's agents publish no page faults.
    assert_eq!(
        value(
            &s,
            "xen_domain_guest_page_faults_total",
            &[("domain", "xcp"), ("kind", "minor")]
        ),
        None
    );
    scrape::promtool_check_metrics(&body);
}
