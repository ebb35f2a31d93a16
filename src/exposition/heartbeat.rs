//! The heartbeat mesh's families (see docs/metrics.md), per peer, written
//! after xentinel's own families.

use super::names::*;
use super::writer::{Val, Writer, label};
use crate::snapshot::Snapshot;

/// Writes the heartbeat families, when the mesh runs.
pub fn render_mesh(w: &mut Writer, s: &Snapshot) {
    if let Some(hb) = &s.heartbeat {
        let peers: Vec<String> = hb.peers.iter().map(|p| label("peer", &p.name)).collect();
        let rtt = HEARTBEAT_RTT_SECONDS;
        if !hb.peers.is_empty() {
            w.header(
                rtt,
                "Round-trip time of heartbeats answered within the loss timeout.",
                "histogram",
            );
            for (p, l) in hb.peers.iter().zip(&peers) {
                w.histogram(rtt, l, &p.rtt);
            }
        }
        type Field = fn(&crate::snapshot::PeerStats) -> Val;
        let families: [(&str, &str, &str, Field); 6] = [
            (HEARTBEAT_SENT, "Pings sent to the peer.", "counter", |p| {
                Val::U(p.sent)
            }),
            (
                HEARTBEAT_RECEIVED,
                "Pongs received from the peer within the loss timeout.",
                "counter",
                |p| Val::U(p.received),
            ),
            (
                HEARTBEAT_LOST,
                "Pings without a pong within the loss timeout, max(1s, 10 intervals); late ones included.",
                "counter",
                |p| Val::U(p.lost),
            ),
            (
                HEARTBEAT_LATE,
                "Pongs received after the loss timeout (not in received, not in the RTT).",
                "counter",
                |p| Val::U(p.late),
            ),
            (
                HEARTBEAT_PEER_UP,
                "1 while the peer answered within the last down_after intervals.",
                "gauge",
                |p| Val::U(u64::from(p.up)),
            ),
            (
                HEARTBEAT_LONGEST_GAP_SECONDS,
                "Longest time between two answers of the peer over the gap window, the ongoing gap included.",
                "gauge",
                |p| Val::F(p.longest_gap_seconds),
            ),
        ];
        for (name, help, typ, get) in families {
            if hb.peers.is_empty() {
                break;
            }
            w.header(name, help, typ);
            for (p, l) in hb.peers.iter().zip(&peers) {
                w.sample(name, l, "", get(p));
            }
        }
        let rej = HEARTBEAT_REJECTED;
        w.header(
            rej,
            "Heartbeat datagrams dropped: bad or missing MAC, bad size or header, replayed or unsolicited, unknown sender.",
            "counter",
        );
        for (reason, n) in &hb.rejected {
            w.sample(rej, &label("reason", reason), "", Val::U(*n));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::snapshot::*;

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
        crate::exposition::render(&s, &mut out);
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
        crate::exposition::render(&Snapshot::default(), &mut out);
        assert!(!out.contains("heartbeat") && !out.contains("probe"));
    }
}
