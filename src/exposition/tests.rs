//! The renderer against golden files (every family, hostile names and
//! values), in pieces, and its building blocks.

use super::writer::{push_f64, push_u64};
use super::*;
use crate::snapshot::*;

#[test]
fn label_values_are_escaped() {
    let mut s = String::new();
    escape_label(&mut s, "a\"b\\c\nd é");
    assert_eq!(s, "a\\\"b\\\\c\\nd é");
}

#[test]
fn numbers_render_as_prometheus_reads_them() {
    let mut s = String::new();
    push_f64(&mut s, 3.0);
    s.push(' ');
    push_f64(&mut s, 0.25);
    s.push(' ');
    push_f64(&mut s, f64::INFINITY);
    s.push(' ');
    push_u64(&mut s, u64::MAX);
    assert_eq!(s, "3 0.25 +Inf 18446744073709551615");
}

#[test]
fn domain_families_follow_the_snapshot() {
    let mut c = Collection::default();
    c.stats.insert(
        3,
        DomainStats {
            domid: 3,
            state: Some(DomainState::Paused),
            cpu_seconds: 1.5,
            vcpu_count: 1,
            vcpus: vec![Vcpu {
                id: 0,
                online: true,
                cpu_seconds: 1.5,
            }],
            memory_bytes: 1024,
            ..Default::default()
        },
    );
    c.meta.insert(
        3,
        DomainMeta {
            domid: 3,
            name: Some("web \"1\"".into()),
            uuid: Some("u".into()),
            ..Default::default()
        },
    );
    let s = Snapshot::merge(c, vec![], SelfStats::default());
    let mut out = String::new();
    render(&s, &mut out);
    assert!(out.contains("xen_domain_info{domain=\"web \\\"1\\\"\",uuid=\"u\",domid=\"3\"} 1\n"));
    assert!(
        out.contains("xen_domain_state{domain=\"web \\\"1\\\"\",uuid=\"u\",state=\"paused\"} 1\n")
    );
    assert!(
        out.contains("xen_domain_state{domain=\"web \\\"1\\\"\",uuid=\"u\",state=\"running\"} 0\n")
    );
    assert!(
        out.contains("xen_domain_cpu_seconds_total{domain=\"web \\\"1\\\"\",uuid=\"u\"} 1.5\n")
    );
    // No value, no family: max memory is unknown here.
    assert!(!out.contains("xen_domain_memory_max_bytes"));
    // Warnings are always present, 0 when not raised.
    assert!(out.contains("xentinel_host_warning{kind=\"maintenance\"} 0\n"));

    let empty = Snapshot::merge(Collection::default(), vec![], SelfStats::default());
    let mut out = String::new();
    render(&empty, &mut out);
    assert!(!out.contains("xen_domain_info"));
}

/// A snapshot exercising every family and every escape: names with quotes,
/// backslashes, newlines, braces and non-ASCII; domains with stats only,
/// meta only, partial guest reports; odd floats; several NICs and disks.
pub(crate) fn hostile_snapshot() -> Snapshot {
    let mut c = Collection::default();
    let names = [
        "web \"1\"",
        "back\\slash",
        "new\nline",
        "}{,=\"",
        "é中\u{1F600}",
        "",
        "domid-9",
        "trailing\\",
    ];
    for (i, name) in names.iter().enumerate() {
        let domid = i as u32 * 3;
        let floats = [
            0.0,
            1.5,
            1e15,
            1e-7,
            f64::NAN,
            f64::INFINITY,
            -2.25,
            123456.789,
        ];
        let f = floats[i % floats.len()];
        if i != 5 {
            c.stats.insert(
                domid,
                DomainStats {
                    domid,
                    name: Some(format!("lib-{name}")),
                    state: (i != 2).then_some(DomainState::ALL[i % 6]),
                    cpu_seconds: f,
                    vcpu_count: (i % 3) as u32,
                    vcpus: (0..(i % 3) as u32)
                        .map(|id| Vcpu {
                            id,
                            online: id % 2 == 0,
                            cpu_seconds: f * f64::from(id + 1),
                        })
                        .collect(),
                    memory_bytes: u64::MAX - i as u64,
                    memory_max_bytes: (i % 2 == 0).then_some(1 << 30),
                    ssid: None,
                    networks: (0..(i % 3) as u32)
                        .map(|id| NetIf {
                            id,
                            rx_bytes: 1 << (i + 10),
                            rx_packets: 7,
                            rx_errors: 1,
                            rx_drops: 2,
                            tx_bytes: 3,
                            tx_packets: 4,
                            tx_errors: 5,
                            tx_drops: 6,
                        })
                        .collect(),
                    vbds: (0..(i % 3))
                        .map(|k| Vbd {
                            device: format!("xvd{k}\"\\\n{name}"),
                            read_requests: 1,
                            write_requests: 2,
                            read_bytes: 3,
                            write_bytes: 4,
                            oo_requests: 5,
                        })
                        .collect(),
                },
            );
        }
        if i != 6 {
            c.meta.insert(
                domid,
                DomainMeta {
                    domid,
                    name: (i != 7).then(|| name.to_string()),
                    uuid: (i % 4 != 1).then(|| format!("uuid-{i}\"\\\n")),
                    memory_target_bytes: (i % 2 == 1).then_some(42),
                    guest: GuestReport {
                        page_faults_minor: (i % 2 == 0).then_some(10),
                        page_faults_major: (i % 3 == 0).then_some(0),
                        memory_available_bytes: (i != 3).then_some(1 << 20),
                        swap_used_bytes: (i == 4).then_some(5),
                        age_seconds: (i != 0).then_some(f),
                    },
                    probe_target: None,
                },
            );
        }
    }
    c.host = Some(HostStats {
        memory_total_bytes: 1 << 36,
        memory_free_bytes: 12345,
        cpus: 16,
        cpu_hz: 2_400_000_000,
        xen_version: Some("4.17 \"x\"\\\n".into()),
    });
    c.dom0 = Some(Dom0Health {
        load: [0.5, f64::NAN, 1e20],
        memory_available_bytes: 1,
        memory_total_bytes: 2,
        temperatures: vec![("cpu \"0\"\n".into(), 45.5), ("b\\".into(), -1.0)],
    });
    c.warn(WarningKind::UpsOnBattery, true);
    c.hardware_errors = Some((3, 4));
    // The heartbeat mesh: a peer with a hostile name, one never answered.
    let mut rtt = Histogram::new(&[25e-6, 1e-3, 0.5]);
    rtt.observe(60e-6);
    rtt.observe(2.0);
    c.heartbeat = Some(HeartbeatStats {
        peers: vec![
            PeerStats {
                name: "h\"2\\\n".into(),
                rtt,
                sent: 10,
                received: 9,
                lost: 1,
                late: 0,
                up: true,
                longest_gap_seconds: 0.25,
            },
            PeerStats {
                name: "silent".into(),
                rtt: Histogram::new(&[25e-6, 1e-3, 0.5]),
                sent: 7,
                received: 0,
                lost: 7,
                late: 2,
                up: false,
                longest_gap_seconds: f64::INFINITY,
            },
        ],
        rejected: [("bad_mac", 2), ("replay", 0), ("unknown_peer", 5)]
            .into_iter()
            .collect(),
    });
    // Probes: one with durations, one never run, one on a meta-only domain.
    let mut ph = Histogram::new(&[0.005, 0.25, 1e-4]);
    ph.observe(0.1);
    ph.observe(f64::INFINITY);
    for (domid, h, success) in [
        (0, ph, true),
        (3, Histogram::new(&[0.5]), false),
        (15, Histogram::new(&[]), true),
    ] {
        c.probes.insert(
            domid,
            ProbeStats {
                target: "tcp://x:1".into(),
                duration: h,
                success,
            },
        );
    }
    let mut h = Histogram::new(&[0.5, 1.0, 2.5, 10.0, 1e-3]);
    h.observe(0.7);
    h.observe(100.0);
    c.migrations.insert(Direction::Incoming, h);
    c.migrations
        .insert(Direction::Outgoing, Histogram::new(&[0.25]));
    let sources = vec![
        SourceStatus {
            name: "sim",
            up: true,
            duration_seconds: 0.000123,
        },
        SourceStatus {
            name: "x\"s",
            up: false,
            duration_seconds: 5.0,
        },
    ];
    let mut rej = std::collections::BTreeMap::new();
    rej.insert("garbage", 3);
    Snapshot::merge(
        c,
        sources,
        SelfStats {
            guest_rejections: rej,
        },
    )
}

/// `xentinel_build_info`'s labels depend on the build: the golden files
/// hold placeholders instead.
fn without_build(text: &str) -> String {
    text.replace(
        &format!(
            "{},{},{}",
            label("version", BUILD.version),
            label("revision", BUILD.revision),
            label("rustversion", BUILD.rustversion)
        ),
        "version=\"VERSION\",revision=\"REVISION\",rustversion=\"RUSTVERSION\"",
    )
}

/// Compares a rendering with `tests/golden/<name>`; `XENTINEL_BLESS=1`
/// rewrites the file instead (after an intended change of the output).
fn assert_golden(name: &str, s: &Snapshot) {
    let mut got = String::new();
    render(s, &mut got);
    let got = without_build(&got);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("XENTINEL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): XENTINEL_BLESS=1 cargo test --lib golden writes it",
            path.display()
        )
    });
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
        let around = |t: &str| -> Vec<String> {
            t.lines()
                .enumerate()
                .skip(line.saturating_sub(2))
                .take(5)
                .map(|(i, l)| format!("{:>6}: {l}", i + 1))
                .collect()
        };
        panic!(
            "the rendering differs from {} from line {} on (XENTINEL_BLESS=1 rewrites it \
             after an intended change)\nwant:\n{}\ngot:\n{}",
            path.display(),
            line + 1,
            around(&want).join("\n"),
            around(&got).join("\n")
        );
    }
}

#[test]
fn golden_hostile_snapshot() {
    let s = hostile_snapshot();
    assert_golden("hostile.prom", &s);
    let mut out = String::new();
    render(&s, &mut out);
    // The snapshot does reach every kind of family: domain, host, self, heartbeat.
    for fam in [
        "xen_domain_block_oo_requests_total{",
        "xen_domain_guest_report_age_seconds{",
        "xen_domain_migration_duration_seconds_bucket{",
        "xen_host_memory_free_bytes ",
        "xentinel_dom0_temperature_celsius{",
        "xentinel_host_hardware_errors_total{",
        "xentinel_build_info{",
        "xentinel_source_up{",
        "xentinel_guest_reports_rejected_total{",
        "xentinel_heartbeat_rtt_seconds_bucket{",
        "xentinel_heartbeat_longest_gap_seconds{",
        "xentinel_heartbeat_rejected_total{",
        "xen_domain_probe_duration_seconds_bucket{",
        "xen_domain_probe_success{",
    ] {
        assert!(out.contains(fam), "{fam}");
    }
    // Rendering into a buffer that already holds something appends.
    let mut out = String::from("x");
    render(&s, &mut out);
    assert!(out.starts_with('x'));
    assert_golden(
        "empty.prom",
        &Snapshot::merge(Collection::default(), vec![], SelfStats::default()),
    );
}

/// The golden files are valid exposition text by Prometheus' own checker.
#[test]
fn golden_files_pass_promtool() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for name in ["hostile.prom", "empty.prom", "sim-host.prom"] {
        let path = dir.join(name);
        let text =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run promtool ({e}): apt-get install prometheus"));
        child.stdin.take().unwrap().write_all(&text).unwrap();
        let out = child.wait_with_output().unwrap();
        let findings = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && findings.trim().is_empty(),
            "promtool check metrics {name}: {findings}"
        );
    }
}

#[test]
fn rendering_in_chunks_gives_the_same_bytes() {
    let s = hostile_snapshot();
    let mut whole = String::new();
    render(&s, &mut whole);
    for limit in [0, 1, 100, 1000, 1 << 20] {
        let mut r = Rendering::new(&s);
        let mut joined = String::new();
        let mut chunks = 0;
        loop {
            let mut chunk = String::new();
            let done = r.fill(&s, &mut chunk, limit);
            joined.push_str(&chunk);
            chunks += 1;
            assert!(chunks < 10_000, "no progress at limit {limit}");
            if done {
                break;
            }
        }
        assert_eq!(joined, whole, "limit {limit}");
        assert!(r.done());
        if limit == 100 {
            assert!(chunks > 10);
        }
    }
}

#[test]
fn simulated_host_matches_its_golden_file() {
    use crate::sim::{Cluster, ClusterSpec};
    use crate::sources::sim::SimSource;
    use std::sync::{Arc, Mutex};
    let mut cl = Cluster::new(ClusterSpec::one_host("xen1", 40), 3).unwrap();
    cl.step(std::time::Duration::from_secs(7));
    let src = SimSource::new(Arc::new(Mutex::new(cl)), "xen1");
    let mut c = Collection::default();
    src.fill(&mut c).unwrap();
    let s = Snapshot::merge(c, vec![], SelfStats::default());
    assert_eq!(s.domains.len(), 41);
    assert_golden("sim-host.prom", &s);
}

#[test]
fn probe_series_names_follow_their_family() {
    use super::domain::{PROBE_BUCKET, PROBE_COUNT, PROBE_SUM};
    let fam = names::DOMAIN_PROBE_DURATION_SECONDS;
    assert_eq!(PROBE_BUCKET, format!("{fam}_bucket"));
    assert_eq!(PROBE_SUM, format!("{fam}_sum"));
    assert_eq!(PROBE_COUNT, format!("{fam}_count"));
}

#[test]
fn heartbeat_and_probe_families_follow_the_snapshot() {
    let mut c = Collection::default();
    let mut rtt = Histogram::new(&crate::sources::heartbeat::stats::RTT_BUCKETS);
    rtt.observe(60e-6);
    c.heartbeat = Some(HeartbeatStats {
        peers: vec![PeerStats {
            name: "h\"2".into(),
            rtt,
            sent: 10,
            received: 9,
            lost: 1,
            late: 0,
            up: true,
            longest_gap_seconds: 0.25,
        }],
        rejected: [("bad_mac", 2), ("replay", 0)].into_iter().collect(),
    });
    c.meta.insert(
        5,
        DomainMeta {
            domid: 5,
            name: Some("web".into()),
            uuid: Some("u5".into()),
            ..Default::default()
        },
    );
    c.meta.insert(
        6,
        DomainMeta {
            domid: 6,
            name: Some("db".into()),
            uuid: Some("u6".into()),
            ..Default::default()
        },
    );
    c.probes.insert(
        5,
        ProbeStats {
            target: "tcp://x:1".into(),
            duration: {
                let mut h = Histogram::new(&[0.1]);
                h.observe(0.01);
                h
            },
            success: true,
        },
    );
    c.probes.insert(
        6,
        ProbeStats {
            target: "junk".into(),
            duration: Histogram::new(&[0.1]),
            success: false,
        },
    );
    // A result for a domain that is no longer on the host is not rendered.
    c.probes.insert(7, ProbeStats::default());
    let s = Snapshot::merge(c, vec![], SelfStats::default());
    let mut out = String::new();
    render(&s, &mut out);
    for want in [
        "xentinel_heartbeat_rtt_seconds_bucket{peer=\"h\\\"2\",le=\"0.00005\"} 0\n",
        "xentinel_heartbeat_rtt_seconds_bucket{peer=\"h\\\"2\",le=\"0.000075\"} 1\n",
        "xentinel_heartbeat_rtt_seconds_count{peer=\"h\\\"2\"} 1\n",
        "xentinel_heartbeat_sent_total{peer=\"h\\\"2\"} 10\n",
        "xentinel_heartbeat_received_total{peer=\"h\\\"2\"} 9\n",
        "xentinel_heartbeat_lost_total{peer=\"h\\\"2\"} 1\n",
        "xentinel_heartbeat_late_total{peer=\"h\\\"2\"} 0\n",
        "xentinel_heartbeat_peer_up{peer=\"h\\\"2\"} 1\n",
        "xentinel_heartbeat_longest_gap_seconds{peer=\"h\\\"2\"} 0.25\n",
        "xentinel_heartbeat_rejected_total{reason=\"bad_mac\"} 2\n",
        "xen_domain_probe_duration_seconds_count{domain=\"web\",uuid=\"u5\"} 1\n",
        "xen_domain_probe_success{domain=\"web\",uuid=\"u5\"} 1\n",
        "xen_domain_probe_success{domain=\"db\",uuid=\"u6\"} 0\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert!(!out.contains("xen_domain_probe_duration_seconds_count{domain=\"db\""));
    assert_eq!(out.matches("xen_domain_probe_success{").count(), 2);

    let mut out = String::new();
    render(&Snapshot::default(), &mut out);
    assert!(!out.contains("heartbeat") && !out.contains("probe"));
}
