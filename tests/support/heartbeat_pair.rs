//! Two `xentinel exporter` processes heartbeating each other across network
//! namespaces (see `netns.rs`), and the runs made on them: an RTT window
//! beside `ping`, a loss run beside nftables' own drop counter, a cut link.
//!
//! Shared by `tests/heartbeat_netns.rs` (correctness, with margins that hold
//! on a loaded machine) and the bench (`benches/scrape/heartbeat_netns.rs`:
//! the same runs, their figures printed against the targets of the issue).
//! Nothing here asserts a timing; the runs return what they saw.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::netns::{self, Ns, Pair, PingResult, Proc, Relay, WakeProbe};
use super::scrape;

/// The heartbeat's UDP port and the exporters' HTTP port inside the namespaces.
pub const HB_PORT: u16 = 10026;
pub const WEB_PORT: u16 = 10025;
/// The heartbeat interval of every run here (the smallest the product allows).
pub const INTERVAL: Duration = Duration::from_millis(10);
/// The shared HMAC key (every run authenticates its packets).
pub const KEY: &str = "netns-test-key-0123456789abcdef\n";

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One exporter, scraped over HTTP at `web`.
pub struct Exporter {
    pub proc_: Proc,
    pub web: String,
    pub dir: TempDir,
}

/// The figures of one peer as one scrape saw them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    pub sent: f64,
    pub received: f64,
    pub lost: f64,
    pub late: f64,
    pub rtt_sum: f64,
    pub rtt_count: f64,
    pub up: f64,
    pub gap: f64,
}

impl Exporter {
    /// Scrapes `/metrics`; `None` when a heartbeat family of `name` is missing.
    pub fn peer(&self, name: &str) -> Option<Peer> {
        let (status, body) = scrape::get(&self.web, "/metrics");
        assert_eq!(status, 200, "GET {}/metrics", self.web);
        let s = scrape::parse(&body);
        let v = |metric: &str| scrape::value(&s, metric, &[("peer", name)]);
        Some(Peer {
            sent: v("xentinel_heartbeat_sent_total")?,
            received: v("xentinel_heartbeat_received_total")?,
            lost: v("xentinel_heartbeat_lost_total")?,
            late: v("xentinel_heartbeat_late_total")?,
            rtt_sum: v("xentinel_heartbeat_rtt_seconds_sum")?,
            rtt_count: v("xentinel_heartbeat_rtt_seconds_count")?,
            up: v("xentinel_heartbeat_peer_up")?,
            gap: v("xentinel_heartbeat_longest_gap_seconds")?,
        })
    }

    /// Scrapes until the exporter answers and `name` is up; panics after `within`.
    pub fn wait_up(&self, name: &str, within: Duration) -> Peer {
        let t0 = Instant::now();
        loop {
            let listening = super::http::listens(&self.web);
            if listening && let Some(p) = self.peer(name).filter(|p| p.up == 1.0) {
                return p;
            }
            assert!(
                t0.elapsed() < within,
                "peer {name} not up on {} within {within:?}",
                self.web
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Starts `bin exporter --source none` in `ns` at real-time priority, named
/// `name`, serving /metrics on `web_ip` and pinging `peers` every `interval`.
pub fn exporter(
    bin: &Path,
    ns: &Ns,
    name: &str,
    web_ip: Ipv4Addr,
    listen: SocketAddr,
    peers: &[(String, SocketAddr)],
    interval: Duration,
) -> Exporter {
    let dir = std::env::temp_dir().join(format!("xt-hb-{}-{}-{name}", std::process::id(), ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    std::fs::write(&key, KEY).unwrap();
    let mut cfg = format!(
        "heartbeat:\n  interval: {}ms\n  down_after: 3\n  key_file: {}\n  peers:\n",
        interval.as_millis(),
        key.display()
    );
    for (n, a) in peers {
        cfg.push_str(&format!("    - name: {n}\n      address: \"{a}\"\n"));
    }
    let cfg_path = dir.join("config.yml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let web = format!("{web_ip}:{WEB_PORT}");
    let mut cmd = ns.command_rt(bin.to_str().expect("a UTF-8 binary path"));
    cmd.args([
        "exporter",
        "--source",
        "none",
        "--config.file",
        cfg_path.to_str().unwrap(),
        "--web.listen-address",
        &web,
        "--heartbeat.listen-address",
        &listen.to_string(),
        "--heartbeat.name",
        name,
    ]);
    Exporter {
        proc_: Proc::spawn(cmd, &format!("xt-hb-{}-{name}", ns.name)),
        web,
        dir: TempDir(dir),
    }
}

/// A direct pair: A pings B through the relay (if any), B pings A directly.
pub struct Setup {
    pub pair: Pair,
    pub a: Exporter,
    pub b: Exporter,
    pub relay: Option<Relay>,
}

/// Builds pair number `case` (unique within the process) with both peers up.
/// `relay`: hold per direction and its jitter (uniform ±) on A's pings.
pub fn setup(bin: &Path, case: u32, relay: Option<(Duration, Duration)>) -> Setup {
    let pair = Pair::new(case);
    let b_hb = SocketAddr::from((pair.b_ip, HB_PORT));
    let a_hb = SocketAddr::from((pair.a_ip, HB_PORT));
    let relay = relay.map(|(hold, jitter)| {
        // A's pings enter the relay on A's root link and leave on B's.
        Relay::start(
            pair.root_a,
            pair.root_b,
            SocketAddr::from((pair.b_up, HB_PORT)),
            hold,
            jitter,
        )
    });
    let to_b = relay.as_ref().map_or(b_hb, |r| r.front);
    let any = SocketAddr::from(([0, 0, 0, 0], HB_PORT));
    let a = exporter(
        bin,
        &pair.a,
        "a",
        pair.a_up,
        any,
        &[("b".into(), to_b)],
        INTERVAL,
    );
    let b = exporter(
        bin,
        &pair.b,
        "b",
        pair.b_up,
        any,
        &[("a".into(), a_hb)],
        INTERVAL,
    );
    // Startup, not a measurement: a process start and a first answer.
    a.wait_up("b", Duration::from_secs(20));
    b.wait_up("a", Duration::from_secs(20));
    Setup { pair, a, b, relay }
}

/// One RTT window: A's mean heartbeat RTT to B, and `ping` from A to B at
/// the same time over the same path.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Pongs A received in the window, and their mean RTT (s).
    pub pongs: f64,
    pub mean: f64,
    pub ping: PingResult,
    /// Round-trip hold the relay actually applied (mean, s).
    pub held: f64,
    /// The relay's own receive latency, both directions (from its self-probes).
    pub rx_latency: f64,
    /// Mean wake-up latency of one real-time user-space UDP receive on this
    /// machine during the window: what a pong pays twice and ping's in-kernel
    /// echo never does.
    pub wake: f64,
}

impl Window {
    /// What the heartbeat should report: ping's RTT on the base path plus
    /// what the relay added (its holds and its receive latency).
    pub fn reference(&self) -> f64 {
        self.ping.avg + self.held + self.rx_latency
    }
    pub fn error(&self) -> f64 {
        self.mean - self.reference()
    }
}

/// Runs `ping -c pings -i 10ms` from A to B and reads A's RTT figures
/// before and after it.
pub fn rtt_window(s: &Setup, pings: u32) -> Window {
    let probe = WakeProbe::start();
    let before = s.a.peer("b").expect("A's heartbeat families");
    let holds0 = s.relay.as_ref().map(|r| r.holds());
    let ping = netns::ping_finish(netns::ping_start(&s.pair.a, s.pair.b_ip, INTERVAL, pings));
    let after = s.a.peer("b").expect("A's heartbeat families");
    // What the relay added per round trip: the holds it applied in both
    // directions, plus its receive latency once per direction.
    let (held, rx_latency) = match (&s.relay, holds0) {
        (Some(r), Some(h0)) => {
            let h1 = r.holds();
            let d = |i: usize| (h1[i].sum - h0[i].sum) / (h1[i].count - h0[i].count).max(1) as f64;
            (d(0) + d(1), 2.0 * d(2))
        }
        _ => (0.0, 0.0),
    };
    let pongs = after.rtt_count - before.rtt_count;
    Window {
        pongs,
        mean: (after.rtt_sum - before.rtt_sum) / pongs,
        ping,
        held,
        rx_latency,
        wake: probe.get().mean(),
    }
}

/// The packets named counter `name` of table `inet xentest` in `ns` has
/// counted. Named counters outlive the rules that feed them, so a rule can be
/// lifted first and its count read after.
pub fn nft_counter(ns: &Ns, name: &str) -> u64 {
    let listing = ns.run(&["nft", "list", "counter", "inet", "xentest", name]);
    listing
        .split("packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no packet count for counter {name} in:\n{listing}"))
}

/// What a loss run saw.
#[derive(Debug, Clone, Copy)]
pub struct LossRun {
    pub pct: u32,
    /// Heartbeat pings of both sides that ended in the run: answered + lost.
    pub pings: f64,
    pub lost: f64,
    pub late: f64,
    /// Heartbeat datagrams (pings and pongs) the rule really dropped: each
    /// one is one lost ping, A's (its ping) or B's (A's pong to it).
    pub dropped: u64,
    /// `ping` from A to B over the run, its echo requests dropped by a rule
    /// with the same share, and how many that rule dropped.
    pub ping: PingResult,
    pub ping_dropped: u64,
}

/// Drops `pct`% of A's outgoing heartbeat datagrams (its pings to B and its
/// pongs to B's pings) and of its ICMP echo requests for `secs` (while
/// `ping` runs), nftables counting what it dropped; then lifts the
/// rules and waits out the loss timeout (1 s), so that every drop has been
/// counted lost (or answered late) when the counters are read.
pub fn loss_run(bin: &Path, case: u32, pct: u32, secs: u32) -> LossRun {
    let s = setup(bin, case, None);
    s.pair.a.nft_table();
    s.pair
        .a
        .nft("add counter inet xentest hbdrop\nadd counter inet xentest icmpdrop\n");
    let a0 = s.a.peer("b").unwrap();
    let b0 = s.b.peer("a").unwrap();
    s.pair.a.nft(&format!(
        "add rule inet xentest out udp dport {HB_PORT} numgen random mod 100 < {pct} counter name \"hbdrop\" drop\n\
         add rule inet xentest out icmp type echo-request numgen random mod 100 < {pct} counter name \"icmpdrop\" drop\n"
    ));
    let ping = netns::ping_finish(netns::ping_start_for(
        &s.pair.a,
        s.pair.b_ip,
        INTERVAL,
        secs,
    ));
    s.pair.a.nft("flush chain inet xentest out\n");
    std::thread::sleep(Duration::from_millis(1500));
    let a1 = s.a.peer("b").unwrap();
    let b1 = s.b.peer("a").unwrap();
    let lost = (a1.lost - a0.lost) + (b1.lost - b0.lost);
    let answered = (a1.received - a0.received) + (b1.received - b0.received);
    let late = (a1.late - a0.late) + (b1.late - b0.late);
    LossRun {
        pct,
        pings: lost + answered,
        lost,
        late,
        dropped: nft_counter(&s.pair.a, "hbdrop"),
        ping,
        ping_dropped: nft_counter(&s.pair.a, "icmpdrop"),
    }
}

/// What a cut run saw. Times are from the moment the cut's nft command returned.
#[derive(Debug, Clone)]
pub struct CutRun {
    /// Start of the first scrape of A that showed B down (`None`: not within 5 s).
    pub detected: Option<Duration>,
    /// Start of the latest scrape of A that still showed B up (`None`: none after the cut).
    pub last_up: Option<Duration>,
    /// How long that first "down" scrape took.
    pub scrape_took: Duration,
    /// The cut's length between the midpoints of the two nft commands, and
    /// how much nft's own run time leaves unknown (sum of both half-widths).
    pub cut_len: f64,
    pub nft_uncertainty: f64,
    /// `longest_gap_seconds` as A and B report it once the link is back.
    pub gap_a: f64,
    pub gap_b: f64,
    /// A's pings counted lost over the cut, and how many A sent in it.
    pub lost: f64,
    pub cut_pings: f64,
}

/// Cuts the A-B link for about `cut` (nft drops everything on A's `hb0`, in
/// and out), scraping A back to back until it shows B down, then restores it.
pub fn cut_run(bin: &Path, case: u32, cut: Duration) -> CutRun {
    let s = setup(bin, case, None);
    s.pair.a.nft_table();
    // Let the startup gap (first answer after start) be short and in the past.
    std::thread::sleep(Duration::from_millis(300));
    let before = s.a.peer("b").unwrap();

    let t = Instant::now();
    s.pair.a.nft(
        "add rule inet xentest out oifname \"hb0\" drop\nadd rule inet xentest in iifname \"hb0\" drop\n",
    );
    let cut_done = Instant::now();
    let cut_at = t + (cut_done - t) / 2;
    let mut last_up = None;
    let mut detected = None;
    let mut scrape_took = Duration::ZERO;
    while cut_done.elapsed() < Duration::from_secs(5) {
        let t0 = Instant::now();
        let p = s.a.peer("b").unwrap();
        let since = t0.saturating_duration_since(cut_done);
        if p.up == 0.0 {
            detected = Some(since);
            scrape_took = t0.elapsed();
            break;
        }
        last_up = Some(since);
    }
    std::thread::sleep(cut.saturating_sub(cut_at.elapsed()));
    let t = Instant::now();
    s.pair
        .a
        .nft("flush chain inet xentest out\nflush chain inet xentest in\n");
    let restore_done = Instant::now();
    let restore_at = t + (restore_done - t) / 2;
    let cut_len = (restore_at - cut_at).as_secs_f64();
    let nft_uncertainty = ((cut_done - cut_at) + (restore_done - restore_at)).as_secs_f64();
    let after = s.a.wait_up("b", Duration::from_secs(10));
    let b_view = s.b.wait_up("a", Duration::from_secs(10));
    // Every ping of the cut is counted lost once the loss timeout (1 s) is past.
    std::thread::sleep(Duration::from_millis(1500));
    let later = s.a.peer("b").unwrap();
    CutRun {
        detected,
        last_up,
        scrape_took,
        cut_len,
        nft_uncertainty,
        gap_a: after.gap,
        gap_b: b_view.gap,
        lost: later.lost - before.lost,
        cut_pings: cut_len / INTERVAL.as_secs_f64(),
    }
}
