//! The heartbeat over real network paths: two `xentinel exporter` processes
//! in network namespaces joined by veth, measured against iputils `ping` on
//! the same path at the same time. Delay comes from a user-space relay (no
//! `tc netem` here), loss and cuts from nftables rules inside a namespace.
//!
//! Prints the figures for the issue: RTT error vs ping per case, loss error,
//! detection time, gap error and CPU cost. Needs root, iproute2, nftables and
//! iputils-ping; fails (does not skip) without them.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use support::netns::{self, Pair, Proc, Relay};
use support::scrape;

const HB_PORT: u16 = 10026;
const WEB_PORT: u16 = 10025;
const INTERVAL: Duration = Duration::from_millis(10);
const KEY: &str = "netns-test-key-0123456789abcdef\n";

/// Held by every test of this file: each measures timing or CPU, and the
/// others' real-time exporters would add to it.
static QUIET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn quiet() -> std::sync::MutexGuard<'static, ()> {
    QUIET.lock().unwrap_or_else(|e| e.into_inner())
}

/// One exporter inside a namespace, scraped from the root namespace.
struct Exporter {
    proc_: Proc,
    web: String,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `xentinel exporter --source none` in `ns` named `name`, serving
/// /metrics on `web_ip` and pinging `peers` every `interval`.
fn exporter(
    ns: &netns::Ns,
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
    let mut cmd = ns.command_rt(env!("CARGO_BIN_EXE_xentinel"));
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
        _dir: TempDir(dir),
    }
}

/// The figures of one peer as one scrape saw them.
#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    sent: f64,
    received: f64,
    lost: f64,
    late: f64,
    rtt_sum: f64,
    rtt_count: f64,
    up: f64,
    gap: f64,
}

fn peer(e: &Exporter, name: &str) -> Option<Peer> {
    let (status, body) = scrape::get(&e.web, "/metrics");
    assert_eq!(status, 200);
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

/// Scrapes until the exporter answers and `name` is up.
fn wait_up(e: &Exporter, name: &str, within: Duration) -> Peer {
    let t0 = Instant::now();
    loop {
        let listening = std::net::TcpStream::connect(&e.web).is_ok();
        if listening && let Some(p) = peer(e, name).filter(|p| p.up == 1.0) {
            return p;
        }
        assert!(
            t0.elapsed() < within,
            "peer {name} not up on {} within {within:?}",
            e.web
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A direct pair, A pinging B through `relay_hold` (if any), B pinging A directly.
struct Setup {
    pair: Pair,
    a: Exporter,
    b: Exporter,
    relay: Option<Relay>,
}

fn setup(case: u32, relay: Option<(Duration, Duration)>) -> Setup {
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
        &pair.a,
        "a",
        pair.a_up,
        any,
        &[("b".into(), to_b)],
        INTERVAL,
    );
    let b = exporter(
        &pair.b,
        "b",
        pair.b_up,
        any,
        &[("a".into(), a_hb)],
        INTERVAL,
    );
    wait_up(&a, "b", Duration::from_secs(10));
    wait_up(&b, "a", Duration::from_secs(10));
    Setup { pair, a, b, relay }
}

struct RttCase {
    label: &'static str,
    /// Hold per direction and its jitter (uniform ±).
    relay: Option<(Duration, Duration)>,
}

/// One measurement window of an RTT case.
struct Window {
    pongs: f64,
    mean: f64,
    ping: netns::PingResult,
    /// Round-trip hold the relay actually applied (mean), and the set one.
    held: f64,
    set: f64,
    /// The relay's own receive latency, both directions (from its self-probes).
    rx_latency: f64,
    /// Mean wake-up latency of one user-space receive on this machine now.
    wake: f64,
}

impl Window {
    fn reference(&self) -> f64 {
        self.ping.avg + self.held + self.rx_latency
    }
    fn error(&self) -> f64 {
        self.mean - self.reference()
    }
    /// The spec's max(10%, 100 us), plus the two user-space receives a pong
    /// costs (B's of the ping, A's of the pong) that ping's in-kernel echo and
    /// kernel timestamp do not: each measured as [`Window::wake`].
    fn tolerance(&self) -> f64 {
        (0.10 * self.reference()).max(100e-6) + 2.0 * self.wake
    }
}

fn measure(s: &Setup, set: f64) -> Window {
    let probe = netns::WakeProbe::start();
    let before = peer(&s.a, "b").unwrap();
    let holds0 = s.relay.as_ref().map(|r| r.holds());
    let ping = netns::ping_finish(netns::ping_start(&s.pair.a, s.pair.b_ip, INTERVAL, 300));
    let after = peer(&s.a, "b").unwrap();
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
        set,
        rx_latency,
        wake: probe.get().mean(),
    }
}

/// Mean heartbeat RTT vs `ping` on the same path at the same time: directly,
/// and through the relay at 1 ms, 5 ms and 20 ms ± 5 ms round trip. Through
/// the relay the reference is ping's base RTT plus the holds the relay really
/// applied (its timer overshoot is the relay's, not the heartbeat's; the set
/// value is printed too) and its own receive latency (self-probes). The
/// tolerance is the spec's max(10%, 100 us) plus two user-space wake-ups
/// measured at the same time (ping's echo never leaves the kernel). The exporters and the relay run at real-time
/// priority so the other work of a shared machine adds less of its
/// scheduling delays; a case passes when one of up to 3 windows of 3 s is
/// within tolerance, and every window is printed.
#[test]
fn rtt_matches_ping_with_and_without_added_delay() {
    let ms = Duration::from_millis;
    let us = Duration::from_micros;
    let cases = [
        RttCase {
            label: "no added delay",
            relay: None,
        },
        RttCase {
            label: "1 ms",
            relay: Some((us(500), Duration::ZERO)),
        },
        RttCase {
            label: "5 ms",
            relay: Some((us(2500), Duration::ZERO)),
        },
        RttCase {
            label: "20 ms, jitter +-5 ms",
            relay: Some((ms(10), us(2500))),
        },
    ];
    let _q = quiet();
    let mut failures = vec![];
    for (i, c) in cases.iter().enumerate() {
        let s = setup(i as u32, c.relay);
        let set = c.relay.map_or(0.0, |(h, _)| 2.0 * h.as_secs_f64());
        let mut ok = false;
        for attempt in 1..=3 {
            let w = measure(&s, set);
            println!(
                "RTT {:<21} window {attempt}: heartbeat mean {:>8.1} us over {} pongs | ping {:>5.1} us over {} + relay holds {:>8.1} us (set {:>7.1}) + relay receive latency {:>5.1} us = reference {:>8.1} us | error {:+7.1} us ({:+.2}%), tolerance {:.1} us (incl. 2 x {:.1} us wake-up)",
                c.label,
                w.mean * 1e6,
                w.pongs,
                w.ping.avg * 1e6,
                w.ping.received,
                w.held * 1e6,
                w.set * 1e6,
                w.rx_latency * 1e6,
                w.reference() * 1e6,
                w.error() * 1e6,
                100.0 * w.error() / w.reference(),
                w.tolerance() * 1e6,
                w.wake * 1e6,
            );
            assert!(
                w.pongs >= 200.0,
                "{}: only {} pongs in 3 s",
                c.label,
                w.pongs
            );
            assert!(w.ping.received >= 290, "{}: ping lost packets", c.label);
            if w.error().abs() <= w.tolerance() {
                ok = true;
                break;
            }
        }
        if !ok {
            failures.push(c.label);
        }
    }
    assert!(
        failures.is_empty(),
        "mean RTT off in every window: {failures:?}"
    );
}

/// Loss from an nft rule in A's namespace dropping a share of A's heartbeat
/// datagrams (A's pings to B and A's pongs to B): both A and B must see that
/// share as lost. 1% and 5% run at once in two namespace pairs.
///
/// Sample size: 21 s at 10 ms gives ~2100 pings per side, ~4200 per case.
/// The standard error of the loss estimate is sqrt(p(1-p)/n): 0.15 points at
/// 1% and 0.34 at 5%, so the 2-point tolerance is > 5 standard errors.
#[test]
fn loss_matches_the_injected_loss() {
    let _q = quiet();
    let run_for = Duration::from_secs(21);
    let results: Vec<(u32, f64, f64, f64)> = std::thread::scope(|sc| {
        let hs: Vec<_> = [(8u32, 1u32), (9, 5)]
            .into_iter()
            .map(|(case, pct)| {
                sc.spawn(move || {
                    let s = setup(case, None);
                    s.pair.a.nft_table();
                    s.pair.a.nft(&format!(
                        "add rule inet xentest out udp dport {HB_PORT} numgen random mod 100 < {pct} drop\n"
                    ));
                    // Let the rule's losses reach the counters (loss timeout 1 s).
                    std::thread::sleep(Duration::from_millis(1100));
                    let a0 = peer(&s.a, "b").unwrap();
                    let b0 = peer(&s.b, "a").unwrap();
                    std::thread::sleep(run_for);
                    let a1 = peer(&s.a, "b").unwrap();
                    let b1 = peer(&s.b, "a").unwrap();
                    let lost = (a1.lost - a0.lost) + (b1.lost - b0.lost);
                    let answered = (a1.received - a0.received) + (b1.received - b0.received);
                    let late = (a1.late - a0.late) + (b1.late - b0.late);
                    let n = lost + answered;
                    (pct, n, 100.0 * lost / n, late)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (pct, n, measured, late) in &results {
        println!(
            "LOSS injected {pct}%: measured {measured:.2}% over {n} pings (both sides), error {:+.2} points, late {late}",
            measured - f64::from(*pct)
        );
    }
    for (pct, n, measured, _) in results {
        assert!(n >= 4000.0, "only {n} pings at {pct}%");
        assert!(
            (measured - f64::from(pct)).abs() <= 2.0,
            "loss {measured:.2}% for {pct}% injected"
        );
    }
}

/// A cut link (nft drops everything on the A-B veth, in and out, in A's
/// namespace), then restored: `peer_up` goes to 0 within 3 intervals plus one
/// scrape, and the longest gap reports the cut's length within 2 intervals.
#[test]
fn a_cut_is_detected_and_its_length_reported() {
    let _q = quiet();
    let s = setup(10, None);
    s.pair.a.nft_table();
    // Let the startup gap (first answer after start) be short and in the past.
    std::thread::sleep(Duration::from_millis(300));
    let before = peer(&s.a, "b").unwrap();
    assert!(before.gap < 0.5, "startup gap {} s", before.gap);

    let t = Instant::now();
    s.pair.a.nft(
        "add rule inet xentest out oifname \"hb0\" drop\nadd rule inet xentest in iifname \"hb0\" drop\n",
    );
    let cut_done = Instant::now();
    let cut_at = t + (cut_done - t) / 2;
    // Scrape as fast as possible until A sees B down.
    let (detected, scrape_took) = loop {
        let t0 = Instant::now();
        let p = peer(&s.a, "b").unwrap();
        let took = t0.elapsed();
        if p.up == 0.0 {
            break (t0.saturating_duration_since(cut_done), took);
        }
        assert!(
            t0 - cut_done < Duration::from_secs(2),
            "peer still up 2 s after the cut"
        );
    };
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(cut_at.elapsed()));
    let t = Instant::now();
    s.pair
        .a
        .nft("flush chain inet xentest out\nflush chain inet xentest in\n");
    let restore_done = Instant::now();
    let restore_at = t + (restore_done - t) / 2;
    let cut_len = (restore_at - cut_at).as_secs_f64();
    let nft_uncertainty = ((cut_done - cut_at) + (restore_done - restore_at)).as_secs_f64();
    wait_up(&s.a, "b", Duration::from_secs(2));
    let after = peer(&s.a, "b").unwrap();
    let b_view = peer(&s.b, "a").unwrap();
    let gap_err = after.gap - cut_len;
    let limit = 3 * INTERVAL + scrape_took;
    println!(
        "CUT detection: peer_up 0 seen by a scrape starting {:.1} ms after the nft rule was in (limit 3 intervals + one scrape = {:.1} ms; that scrape took {:.1} ms)",
        detected.as_secs_f64() * 1e3,
        limit.as_secs_f64() * 1e3,
        scrape_took.as_secs_f64() * 1e3
    );
    println!(
        "CUT gap: longest_gap {:.1} ms (B's view {:.1} ms) for a cut of {:.1} ms (+-{:.1} ms from nft's own run time): error {:+.1} ms, limit 2 intervals = {:.0} ms",
        after.gap * 1e3,
        b_view.gap * 1e3,
        cut_len * 1e3,
        nft_uncertainty * 1e3,
        gap_err * 1e3,
        2.0 * INTERVAL.as_secs_f64() * 1e3
    );
    assert!(detected <= limit, "detected after {detected:?} > {limit:?}");
    assert!(
        gap_err.abs() <= 2.0 * INTERVAL.as_secs_f64() + nft_uncertainty,
        "gap {} s for a cut of {cut_len} s",
        after.gap
    );
    // Every ping of the cut is counted lost once the loss timeout (1 s) is past.
    std::thread::sleep(Duration::from_millis(1100));
    let later = peer(&s.a, "b").unwrap();
    let cut_pings = cut_len / INTERVAL.as_secs_f64();
    let lost = later.lost - before.lost;
    println!("CUT lost: {lost} pings counted lost for ~{cut_pings:.0} sent during the cut");
    // Within 3 pings, plus what nft's own run time leaves unknown of the cut.
    let slack = 3.0 + nft_uncertainty / INTERVAL.as_secs_f64();
    assert!(
        (lost - cut_pings).abs() <= slack,
        "{lost} lost for {cut_pings:.0} pings in the cut"
    );
}

/// CPU of one exporter pinging 16 peers every 10 ms (HMAC on), over 10 s, on
/// loopback; the 16 peers are meshes of this test process.
#[test]
fn cpu_cost_at_10ms_with_16_peers() {
    use tokio::sync::watch;
    use xentinel::sources::heartbeat::{Heartbeat, MeshConfig, PeerSpec, packet::Key};
    let free_udp = || {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let _q = quiet();
    let main_hb = free_udp();
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (meshes, addrs, _txs): (
        Vec<Heartbeat>,
        Vec<SocketAddr>,
        Vec<watch::Sender<Vec<PeerSpec>>>,
    ) = rt.block_on(async {
        let mut m = vec![];
        let mut a = vec![];
        let mut t = vec![];
        for i in 0..16 {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            a.push(sock.local_addr().unwrap());
            let (tx, rx) = watch::channel(vec![PeerSpec {
                name: "main".into(),
                addr: main_hb,
            }]);
            let cfg = MeshConfig {
                name: format!("p{i}"),
                interval: INTERVAL,
                down_after: 3,
                gap_window: Duration::from_secs(300),
                key: Some(Key::new(KEY.trim().as_bytes())),
            };
            m.push(Heartbeat::start(sock, cfg, rx).unwrap());
            t.push(tx);
        }
        (m, a, t)
    });
    let dir = std::env::temp_dir().join(format!("xt-hb-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _d = TempDir(dir.clone());
    let key = dir.join("key");
    std::fs::write(&key, KEY).unwrap();
    let mut cfg = format!(
        "heartbeat:\n  interval: 10ms\n  key_file: {}\n  peers:\n",
        key.display()
    );
    for (i, a) in addrs.iter().enumerate() {
        cfg.push_str(&format!("    - {{name: p{i}, address: \"{a}\"}}\n"));
    }
    std::fs::write(dir.join("c.yml"), cfg).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_xentinel"));
    cmd.args([
        "exporter",
        "--source",
        "none",
        "--config.file",
        dir.join("c.yml").to_str().unwrap(),
        "--web.listen-address",
        &web.to_string(),
        "--heartbeat.listen-address",
        &main_hb.to_string(),
        "--heartbeat.name",
        "main",
    ]);
    let p = Proc::spawn(cmd, "xt-hb-cpu");
    let e = Exporter {
        proc_: p,
        web: web.to_string(),
        _dir: TempDir(dir.join("none")),
    };
    for i in 0..16 {
        wait_up(&e, &format!("p{i}"), Duration::from_secs(10));
    }
    let c0 = e.proc_.cpu_seconds();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let c1 = e.proc_.cpu_seconds();
    let wall = t0.elapsed().as_secs_f64();
    let share = (c1 - c0) / wall;
    let profile = if cfg!(debug_assertions) {
        "test profile"
    } else {
        "release"
    };
    println!(
        "CPU ({profile} build): {:.3} s of CPU in {wall:.1} s = {:.2}% of one core for 16 peers at 10 ms (1600 pings + 1600 pongs sent per second, HMAC on)",
        c1 - c0,
        100.0 * share
    );
    // The heartbeat families of 16 peers pass promtool's lint.
    let (_, body) = scrape::get(&e.web, "/metrics");
    assert!(body.contains("xentinel_heartbeat_rejected_total{reason=\"bad_mac\"} 0"));
    scrape::promtool_check_metrics(&body);
    let mut total_sent = 0.0;
    for i in 0..16 {
        let p = peer(&e, &format!("p{i}")).unwrap();
        assert!(p.received >= 0.95 * (p.sent - 100.0), "p{i}: {p:?}");
        total_sent += p.sent;
    }
    assert!(total_sent >= 16.0 * 900.0, "{total_sent} pings in > 10 s");
    for m in &meshes {
        let p = &m.stats().peers[0];
        assert!(p.received as f64 >= 0.95 * (p.sent as f64 - 100.0), "{p:?}");
    }
    // Generous: the point is the printed figure; this catches a busy loop.
    assert!(
        share < 0.5,
        "the heartbeat takes {:.0}% of a core",
        100.0 * share
    );
    drop(rt);
}
