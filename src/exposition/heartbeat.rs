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
