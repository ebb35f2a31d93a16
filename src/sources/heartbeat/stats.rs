//! Per-peer heartbeat state: sequence numbers, pings awaiting their pong,
//! counters, the RTT histogram and the longest gap between answers.
//!
//! Pure bookkeeping with times passed in, so it is tested without sockets.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::packet::{Reject, ReplayWindow};
use crate::snapshot::{Histogram, PeerStats};

/// RTT bucket bounds (seconds): fine enough to tell 50 µs from 100 µs, up to 1 s.
pub const RTT_BUCKETS: [f64; 22] = [
    25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 2e-3, 3e-3, 5e-3,
    7.5e-3, 10e-3, 20e-3, 30e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,
];

/// Lost pings remembered so that their pong, if it still comes, is counted late.
pub const LATE_MEMORY: usize = 4096;

/// Slots the gap window is cut into; the window is kept to 1/`GAP_SLOTS` of its length.
pub const GAP_SLOTS: u32 = 30;

/// The longest gap between consecutive answers over a sliding window, kept
/// as the maximum per slot of the window, so memory is constant.
#[derive(Debug, Clone)]
pub struct GapTracker {
    epoch: Instant,
    slot: Duration,
    last: Instant,
    /// (slot index, longest gap that ended in that slot), oldest first.
    slots: VecDeque<(u64, f64)>,
}

impl GapTracker {
    /// A tracker whose first gap starts at `now` (when the peer was added).
    pub fn new(window: Duration, now: Instant) -> Self {
        GapTracker {
            epoch: now,
            slot: (window / GAP_SLOTS).max(Duration::from_millis(1)),
            last: now,
            slots: VecDeque::with_capacity(GAP_SLOTS as usize + 1),
        }
    }

    fn index(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.epoch).as_nanos() / self.slot.as_nanos()) as u64
    }

    /// Records an answer at `now`, which closes the gap since the previous one.
    pub fn answer(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let i = self.index(now);
        match self.slots.back_mut() {
            Some((j, g)) if *j == i => *g = g.max(gap),
            _ => self.slots.push_back((i, gap)),
        }
        while self
            .slots
            .front()
            .is_some_and(|(j, _)| j + u64::from(GAP_SLOTS) <= i)
        {
            self.slots.pop_front();
        }
    }

    /// The longest gap that ended within the window, or the ongoing one if longer.
    pub fn longest(&self, now: Instant) -> f64 {
        let i = self.index(now);
        let ongoing = now.saturating_duration_since(self.last).as_secs_f64();
        self.slots
            .iter()
            .filter(|(j, _)| j + u64::from(GAP_SLOTS) > i)
            .map(|(_, g)| *g)
            .fold(ongoing, f64::max)
    }
}

/// Everything kept about one peer.
#[derive(Debug, Clone)]
pub struct PeerState {
    pub name: String,
    pub addr: SocketAddr,
    next_seq: u64,
    /// Pings awaiting a pong, (seq, send time ns), in sequence order.
    outstanding: VecDeque<(u64, u64)>,
    /// Pings counted lost whose pong would be late, (seq, send time ns).
    lost_recent: VecDeque<(u64, u64)>,
    /// Sequence numbers of this peer's pings already answered.
    pub replay: ReplayWindow,
    rtt: Histogram,
    sent: u64,
    received: u64,
    lost: u64,
    late: u64,
    last_answer: Option<Instant>,
    gaps: GapTracker,
}

impl PeerState {
    /// A new peer; its first ping carries `first_seq`.
    pub fn new(
        name: String,
        addr: SocketAddr,
        first_seq: u64,
        gap_window: Duration,
        now: Instant,
    ) -> Self {
        PeerState {
            name,
            addr,
            next_seq: first_seq,
            outstanding: VecDeque::new(),
            lost_recent: VecDeque::new(),
            replay: ReplayWindow::default(),
            rtt: Histogram::new(&RTT_BUCKETS),
            sent: 0,
            received: 0,
            lost: 0,
            late: 0,
            last_answer: None,
            gaps: GapTracker::new(gap_window, now),
        }
    }

    /// Registers a ping sent at `ts_ns` and returns its sequence number.
    pub fn on_send(&mut self, ts_ns: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent += 1;
        self.outstanding.push_back((seq, ts_ns));
        seq
    }

    /// Pings awaiting their pong.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Counts as lost every ping sent more than `timeout_ns` before `now_ns`.
    pub fn expire(&mut self, now_ns: u64, timeout_ns: u64) {
        while let Some(&(seq, ts)) = self.outstanding.front() {
            if now_ns.saturating_sub(ts) <= timeout_ns {
                break;
            }
            self.outstanding.pop_front();
            self.lost += 1;
            if self.lost_recent.len() == LATE_MEMORY {
                self.lost_recent.pop_front();
            }
            self.lost_recent.push_back((seq, ts));
        }
    }

    /// A pong for `seq` echoing `ts_ns`, received at `now_ns` (same clock) / `now`.
    /// Only a pong answering an outstanding or recently lost ping is taken.
    pub fn on_pong(
        &mut self,
        seq: u64,
        ts_ns: u64,
        now_ns: u64,
        now: Instant,
    ) -> Result<(), Reject> {
        if let Some(i) = find(&self.outstanding, seq, ts_ns) {
            self.outstanding.remove(i);
            self.received += 1;
            self.rtt.observe(now_ns.saturating_sub(ts_ns) as f64 / 1e9);
        } else if let Some(i) = find(&self.lost_recent, seq, ts_ns) {
            self.lost_recent.remove(i);
            self.late += 1;
        } else {
            return Err(Reject::Replay);
        }
        self.last_answer = Some(now);
        self.gaps.answer(now);
        Ok(())
    }

    /// The peer's figures at `now`; it is up when an answer came within `down_after`.
    pub fn snapshot(&self, now: Instant, down_after: Duration) -> PeerStats {
        PeerStats {
            name: self.name.clone(),
            rtt: self.rtt.clone(),
            sent: self.sent,
            received: self.received,
            lost: self.lost,
            late: self.late,
            up: self
                .last_answer
                .is_some_and(|t| now.saturating_duration_since(t) <= down_after),
            longest_gap_seconds: self.gaps.longest(now),
        }
    }
}

/// Index of `(seq, ts)` in a deque sorted by sequence.
fn find(q: &VecDeque<(u64, u64)>, seq: u64, ts: u64) -> Option<usize> {
    let i = q.binary_search_by_key(&seq, |&(s, _)| s).ok()?;
    (q[i].1 == ts).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn peer(now: Instant) -> PeerState {
        PeerState::new(
            "h2".into(),
            "127.0.0.1:1".parse().unwrap(),
            1000,
            Duration::from_secs(300),
            now,
        )
    }

    #[test]
    fn pong_gives_rtt_and_counts_once() {
        let t0 = Instant::now();
        let mut p = peer(t0);
        let seq = p.on_send(5 * MS);
        assert_eq!(seq, 1000);
        p.on_pong(seq, 5 * MS, 5 * MS + 80_000, t0).unwrap();
        assert_eq!(p.on_pong(seq, 5 * MS, 6 * MS, t0), Err(Reject::Replay));
        let s = p.snapshot(t0, Duration::from_millis(300));
        assert_eq!((s.sent, s.received, s.lost, s.late), (1, 1, 0, 0));
        assert!((s.rtt.sum - 80e-6).abs() < 1e-12);
        // 80 µs is above 75 µs and within 100 µs.
        assert_eq!(s.rtt.counts[2], 0);
        assert_eq!(s.rtt.counts[3], 1);
    }

    #[test]
    fn pong_with_a_forged_timestamp_or_unknown_seq_is_replay() {
        let t0 = Instant::now();
        let mut p = peer(t0);
        let seq = p.on_send(MS);
        assert_eq!(p.on_pong(seq, 2 * MS, 3 * MS, t0), Err(Reject::Replay));
        assert_eq!(p.on_pong(seq + 1, MS, 3 * MS, t0), Err(Reject::Replay));
        assert!(p.on_pong(seq, MS, 3 * MS, t0).is_ok());
    }

    #[test]
    fn late_pong_is_late_not_received_and_adds_no_rtt() {
        let t0 = Instant::now();
        let mut p = peer(t0);
        let a = p.on_send(0);
        let b = p.on_send(10 * MS);
        p.expire(1005 * MS, 1000 * MS);
        assert_eq!(
            p.outstanding(),
            1,
            "only the first ping is past the timeout"
        );
        p.on_pong(a, 0, 1200 * MS, t0).unwrap();
        p.on_pong(b, 10 * MS, 1200 * MS, t0).unwrap();
        let s = p.snapshot(t0, Duration::from_millis(300));
        assert_eq!((s.sent, s.received, s.lost, s.late), (2, 1, 1, 1));
        assert_eq!(s.rtt.count, 1);
        assert!((s.rtt.sum - 1.19).abs() < 1e-9);
    }

    #[test]
    fn peer_is_up_only_while_answers_come() {
        let t0 = Instant::now();
        let mut p = peer(t0);
        let down = Duration::from_millis(30);
        assert!(!p.snapshot(t0, down).up, "never answered");
        let s = p.on_send(0);
        p.on_pong(s, 0, MS, t0).unwrap();
        assert!(p.snapshot(t0 + Duration::from_millis(30), down).up);
        assert!(!p.snapshot(t0 + Duration::from_millis(31), down).up);
    }

    #[test]
    fn longest_gap_covers_the_window_and_the_ongoing_gap() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut g = GapTracker::new(Duration::from_secs(30), t0);
        for i in 1..=10 {
            g.answer(t0 + ms(10 * i));
        }
        assert!((g.longest(t0 + ms(100)) - 0.010).abs() < 1e-9);
        // A 2.5 s outage, then answers again.
        g.answer(t0 + ms(2600));
        g.answer(t0 + ms(2610));
        assert!((g.longest(t0 + ms(2610)) - 2.5).abs() < 1e-9);
        // An ongoing gap longer than any closed one counts.
        assert!((g.longest(t0 + ms(6610)) - 4.0).abs() < 1e-9);
        // 30 s later the outage has left the window.
        let mut t = t0 + ms(2610);
        for _ in 0..40 {
            t += Duration::from_secs(1);
            g.answer(t);
        }
        assert!((g.longest(t) - 1.0).abs() < 1e-9);
    }
}
