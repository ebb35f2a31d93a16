//! A prober of a modelled domain's service at a fixed interval (the paper's
//! `ping -i 0.01` from the storage host), reported as heartbeat peers: the
//! longest gap between two answers is the outage a user of the domain saw.
//!
//! The owner steps the cluster and calls [`Pinger::tick`] once per interval
//! of simulated time; [`Pinger::fill`] puts what it saw into a collection.

use std::time::Duration;

use crate::sim::{Cluster, SimDomain};
use crate::snapshot::{Collection, DomainState, HeartbeatStats, Histogram, PeerStats};

/// RTT buckets of the prober's peers (seconds), the heartbeat's own.
const RTT_BUCKETS: [f64; 8] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025];

/// Pings one domain (by name) of a cluster every `interval`.
#[derive(Debug, Clone)]
pub struct Pinger {
    domain: String,
    interval: Duration,
    down_after: u32,
    sent: u64,
    received: u64,
    last_answer: Option<Duration>,
    last_ping: Duration,
    longest_gap: f64,
    rtt: Histogram,
}

impl Pinger {
    /// A prober of `domain` every `interval`, down after `down_after` intervals unanswered.
    pub fn new(domain: impl Into<String>, interval: Duration, down_after: u32) -> Self {
        Pinger {
            domain: domain.into(),
            interval,
            down_after,
            sent: 0,
            received: 0,
            last_answer: None,
            last_ping: Duration::ZERO,
            longest_gap: 0.0,
            rtt: Histogram::new(&RTT_BUCKETS),
        }
    }

    /// The probing interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the domain answers now: it lives on a live host, has booted,
    /// and is not paused (a stop-and-copy pauses it).
    pub fn answers(c: &Cluster, domain: &str) -> bool {
        c.domain(domain).is_some_and(|d| Self::answers_for(c, d))
    }

    /// [`Pinger::answers`] for a domain already in hand (no lookup by name:
    /// a probe of every domain stays linear in the domains).
    pub fn answers_for(c: &Cluster, d: &SimDomain) -> bool {
        d.state != DomainState::Paused
            && d.state != DomainState::Crashed
            && c.now() >= d.booted_at
            && c.host(&d.host).is_some_and(|h| h.alive)
    }

    /// One ping at the cluster's current time; the answer's round trip is
    /// the domain's response time.
    pub fn tick(&mut self, c: &Cluster) {
        let now = c.now();
        self.sent += 1;
        self.last_ping = now;
        if !Self::answers(c, &self.domain) {
            return;
        }
        self.received += 1;
        if let Some(last) = self.last_answer {
            self.longest_gap = self.longest_gap.max((now - last).as_secs_f64());
        }
        self.last_answer = Some(now);
        let rt = c.domain(&self.domain).map_or(0.0, |d| d.response_time_ms);
        self.rtt.observe(rt / 1000.0);
    }

    /// The prober as one heartbeat peer named after the domain.
    pub fn stats(&self) -> PeerStats {
        let ongoing = self
            .last_answer
            .map_or(0.0, |l| (self.last_ping - l).as_secs_f64());
        PeerStats {
            name: self.domain.clone(),
            rtt: self.rtt.clone(),
            sent: self.sent,
            received: self.received,
            lost: self.sent - self.received,
            late: 0,
            up: ongoing < (self.interval * self.down_after).as_secs_f64(),
            longest_gap_seconds: self.longest_gap.max(ongoing),
        }
    }

    /// Adds this prober to `out`'s heartbeat peers.
    pub fn fill(&self, out: &mut Collection) {
        out.heartbeat
            .get_or_insert_with(HeartbeatStats::default)
            .peers
            .push(self.stats());
    }
}
