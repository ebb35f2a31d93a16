//! The heartbeat wire format and its HMAC-SHA256 tag.
//!
//! One UDP datagram, big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `XTHB` |
//! | 1 | version (1) |
//! | 1 | type: 1 ping, 2 pong |
//! | 1 | flags: bit 0 set when a MAC follows |
//! | 1 | length N of the sender's name (1..=64) |
//! | 8 | sequence number (a pong echoes the ping's) |
//! | 8 | send time on the pinger's monotonic clock, ns (a pong echoes it) |
//! | N | sender's name (for a pong, the answering host) |
//! | 32 | HMAC-SHA256 of every byte before it, when flag bit 0 is set |
//!
//! A datagram whose length is not exactly what its header says, or whose
//! header is not one of ours, is rejected as `bad_size`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// First four bytes of every heartbeat.
pub const MAGIC: [u8; 4] = *b"XTHB";
/// Wire format version.
pub const VERSION: u8 = 1;
/// Bytes before the name.
pub const HEADER_LEN: usize = 24;
/// Length of the HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;
/// Longest sender name.
pub const MAX_NAME: usize = 64;
/// Largest valid datagram.
pub const MAX_LEN: usize = HEADER_LEN + MAX_NAME + MAC_LEN;

const FLAG_MAC: u8 = 1;

/// Ping or pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ping = 1,
    Pong = 2,
}

/// Why a datagram was dropped: the `reason` label of `xentinel_heartbeat_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reject {
    BadMac,
    MissingMac,
    BadSize,
    Replay,
    UnknownPeer,
}

impl Reject {
    /// Every reason, in render order.
    pub const ALL: [Reject; 5] = [
        Reject::BadMac,
        Reject::MissingMac,
        Reject::BadSize,
        Reject::Replay,
        Reject::UnknownPeer,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::BadMac => "bad_mac",
            Reject::MissingMac => "missing_mac",
            Reject::BadSize => "bad_size",
            Reject::Replay => "replay",
            Reject::UnknownPeer => "unknown_peer",
        }
    }
}

/// A shared HMAC-SHA256 key, keyed once so each packet costs two compressions.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl Key {
    /// A key from raw bytes (any length; at least 16 bytes is advisable).
    pub fn new(bytes: &[u8]) -> Key {
        // HMAC takes keys of any length; this cannot fail.
        Key(<Hmac<Sha256> as Mac>::new_from_slice(bytes).expect("HMAC accepts any key length"))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A decoded heartbeat; `name` borrows from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub kind: Kind,
    pub name: &'a [u8],
    pub seq: u64,
    pub ts_ns: u64,
}

/// Writes a packet into `out` and returns its length; `name` is cut at
/// [`MAX_NAME`] bytes (config names are validated to fit).
pub fn encode(p: &Packet, key: Option<&Key>, out: &mut [u8; MAX_LEN]) -> usize {
    let name = &p.name[..p.name.len().min(MAX_NAME)];
    out[..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = p.kind as u8;
    out[6] = if key.is_some() { FLAG_MAC } else { 0 };
    out[7] = name.len() as u8;
    out[8..16].copy_from_slice(&p.seq.to_be_bytes());
    out[16..24].copy_from_slice(&p.ts_ns.to_be_bytes());
    let body = HEADER_LEN + name.len();
    out[HEADER_LEN..body].copy_from_slice(name);
    match key {
        Some(k) => {
            let mut m = k.0.clone();
            m.update(&out[..body]);
            out[body..body + MAC_LEN].copy_from_slice(&m.finalize().into_bytes());
            body + MAC_LEN
        }
        None => body,
    }
}

/// Checks and decodes a datagram. With a key, a packet must carry a valid
/// MAC (compared in constant time); without one, a MAC is ignored.
pub fn decode<'a>(buf: &'a [u8], key: Option<&Key>) -> Result<Packet<'a>, Reject> {
    if buf.len() < HEADER_LEN || buf[..4] != MAGIC || buf[4] != VERSION {
        return Err(Reject::BadSize);
    }
    let kind = match buf[5] {
        1 => Kind::Ping,
        2 => Kind::Pong,
        _ => return Err(Reject::BadSize),
    };
    let has_mac = buf[6] & FLAG_MAC != 0;
    let name_len = usize::from(buf[7]);
    let body = HEADER_LEN + name_len;
    let want = body + if has_mac { MAC_LEN } else { 0 };
    if name_len == 0 || name_len > MAX_NAME || buf.len() != want || buf[6] & !FLAG_MAC != 0 {
        return Err(Reject::BadSize);
    }
    if let Some(k) = key {
        if !has_mac {
            return Err(Reject::MissingMac);
        }
        let mut m = k.0.clone();
        m.update(&buf[..body]);
        m.verify_slice(&buf[body..]).map_err(|_| Reject::BadMac)?;
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[at..at + 8]);
        u64::from_be_bytes(b)
    };
    Ok(Packet {
        kind,
        name: &buf[HEADER_LEN..body],
        seq: word(8),
        ts_ns: word(16),
    })
}

/// Anti-replay window for one peer's pings: the highest sequence accepted
/// and a bitmap of the 64 below it (as IPsec does), which no single datagram
/// can move far.
///
/// A ping is taken when it is new and in the window: at most
/// [`Self::WIDTH`] − 1 below the highest, or at most [`Self::MAX_JUMP`]
/// above it. Anything else (a far jump either way: a forged sequence, or the
/// peer's sender restarted) is counted as a replay but followed as a
/// *candidate* stream; when [`Self::RESYNC`] pings in a row extend that
/// stream (each above the one before by at most `MAX_JUMP`), the window
/// moves there. So one forged datagram with sequence 2^64−1 cannot lock out
/// the genuine pings (they resynchronise within `RESYNC` pings), and a
/// restarted peer loses at most `RESYNC − 1` pings. With a key, pings are
/// authenticated before they get here, and a forward jump of any size is
/// taken at once (only the peer could have sent it).
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: Option<u64>,
    bits: u64,
    /// The last sequence of a stream outside the window, and its length.
    candidate: Option<(u64, u32)>,
}

impl ReplayWindow {
    /// Width of the window below the highest sequence.
    pub const WIDTH: u64 = 64;
    /// Largest step forward taken from an unauthenticated ping.
    pub const MAX_JUMP: u64 = 1024;
    /// Consecutive pings of a stream outside the window that move it there.
    pub const RESYNC: u32 = 3;

    /// Accepts `seq` once; a repeat, or one outside the window, is a replay.
    /// `authenticated`: the ping carried a valid MAC of our key.
    pub fn accept(&mut self, seq: u64, authenticated: bool) -> bool {
        let Some(h) = self.highest else {
            self.restart(seq);
            return true;
        };
        if seq > h && (authenticated || seq - h <= Self::MAX_JUMP) {
            let shift = seq - h;
            self.bits = if shift >= Self::WIDTH {
                0
            } else {
                self.bits << shift
            };
            self.bits |= 1;
            self.highest = Some(seq);
            self.candidate = None;
            return true;
        }
        if seq <= h && h - seq < Self::WIDTH {
            let back = h - seq;
            if self.bits & (1 << back) != 0 {
                return false;
            }
            self.bits |= 1 << back;
            return true;
        }
        // Far outside the window: follow it as a candidate stream.
        let n = match self.candidate {
            Some((last, n)) if seq > last && seq - last <= Self::MAX_JUMP => n + 1,
            _ => 1,
        };
        if n >= Self::RESYNC {
            self.restart(seq);
            return true;
        }
        self.candidate = Some((seq, n));
        false
    }

    fn restart(&mut self, seq: u64) {
        self.highest = Some(seq);
        self.bits = 1;
        self.candidate = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(name: &[u8]) -> Packet<'_> {
        Packet {
            kind: Kind::Ping,
            name,
            seq: 42,
            ts_ns: 123_456_789,
        }
    }

    #[test]
    fn round_trip_with_and_without_key() {
        let key = Key::new(b"0123456789abcdef");
        let mut buf = [0u8; MAX_LEN];
        for k in [None, Some(&key)] {
            let n = encode(&ping(b"h1"), k, &mut buf);
            assert_eq!(n, HEADER_LEN + 2 + if k.is_some() { MAC_LEN } else { 0 });
            assert_eq!(decode(&buf[..n], k), Ok(ping(b"h1")));
        }
    }

    #[test]
    fn mac_is_required_and_checked() {
        let key = Key::new(b"0123456789abcdef");
        let other = Key::new(b"fedcba9876543210");
        let mut buf = [0u8; MAX_LEN];
        let n = encode(&ping(b"h1"), None, &mut buf);
        assert_eq!(decode(&buf[..n], Some(&key)), Err(Reject::MissingMac));
        let n = encode(&ping(b"h1"), Some(&other), &mut buf);
        assert_eq!(decode(&buf[..n], Some(&key)), Err(Reject::BadMac));
        let n = encode(&ping(b"h1"), Some(&key), &mut buf);
        buf[10] ^= 1; // tamper with the sequence
        assert_eq!(decode(&buf[..n], Some(&key)), Err(Reject::BadMac));
        // Without a key of our own, a tagged packet is accepted unverified.
        assert!(decode(&buf[..n], None).is_ok());
    }

    #[test]
    fn wrong_sizes_and_headers_are_bad_size() {
        let key = Key::new(b"k");
        let mut buf = [0u8; MAX_LEN];
        let n = encode(&ping(b"h1"), Some(&key), &mut buf);
        assert_eq!(decode(&buf[..n - 1], Some(&key)), Err(Reject::BadSize));
        assert_eq!(decode(&buf[..10], None), Err(Reject::BadSize));
        let mut long = buf.to_vec();
        long.truncate(n);
        long.push(0);
        assert_eq!(decode(&long, Some(&key)), Err(Reject::BadSize));
        let mut bad = buf;
        bad[0] = b'Y';
        assert_eq!(decode(&bad[..n], Some(&key)), Err(Reject::BadSize));
        let mut bad = buf;
        bad[5] = 9;
        assert_eq!(decode(&bad[..n], Some(&key)), Err(Reject::BadSize));
        let n = encode(&ping(b""), None, &mut buf);
        assert_eq!(decode(&buf[..n], None), Err(Reject::BadSize));
    }

    #[test]
    fn replay_window_accepts_each_sequence_once() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(100, false));
        assert!(!w.accept(100, false));
        assert!(w.accept(102, false));
        assert!(w.accept(101, false), "late but inside the window");
        assert!(!w.accept(101, false));
        assert!(w.accept(300, false));
        assert!(!w.accept(300 - 64, false), "older than the window");
        assert!(w.accept(300 - 63, false));
        assert!(!w.accept(102, false));
    }

    #[test]
    fn one_far_future_sequence_cannot_lock_out_the_genuine_stream() {
        // Issue 15, finding 8: seq 2^64-1 made every later genuine ping a replay.
        for authenticated in [false, true] {
            let mut w = ReplayWindow::default();
            assert!(w.accept(1_000, authenticated));
            let forged = w.accept(u64::MAX, authenticated);
            assert_eq!(
                forged, authenticated,
                "only an authenticated jump is taken at once"
            );
            // The genuine stream is back within RESYNC pings and stays.
            let taken: Vec<bool> = (1_001..1_011).map(|s| w.accept(s, authenticated)).collect();
            let lost = taken.iter().take_while(|t| !**t).count();
            assert!(lost < ReplayWindow::RESYNC as usize, "{taken:?}");
            assert!(taken[lost..].iter().all(|t| *t), "{taken:?}");
            // And the replays of the stream are still refused.
            assert!(!w.accept(1_010, authenticated));
        }
    }

    #[test]
    fn a_restarted_sender_resynchronises_and_scattered_forgeries_do_not() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(5_000, false));
        // Restart: a far higher start, then consecutive pings.
        assert!(!w.accept(9_000_000, false));
        assert!(!w.accept(9_000_001, false));
        assert!(w.accept(9_000_002, false));
        assert!(w.accept(9_000_003, false));
        // Far jumps that do not form a stream never move the window.
        for (i, s) in [u64::MAX, 1, u64::MAX / 2, 7, u64::MAX - 5_000]
            .into_iter()
            .enumerate()
        {
            assert!(!w.accept(s, false), "forgery {i}");
        }
        assert!(w.accept(9_000_004, false));
    }
}
