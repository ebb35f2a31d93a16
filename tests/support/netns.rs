//! Real network paths for tests: network namespaces joined by veth pairs,
//! nftables rules inside them, iputils `ping` as the reference, a UDP relay
//! that holds packets (the only way to add delay here: no `tc netem`), and
//! exporter processes run inside the namespaces.
//!
//! Everything is removed on drop, failed test or not. Missing tools or a
//! kernel that refuses namespaces fail the test loudly, naming the package.
//! Addresses come from 198.18.0.0/15 (the benchmarking range) and exist only
//! inside the namespaces made here and on their root-side veth ends.

use std::collections::BinaryHeap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// SCHED_FIFO priority of the measured processes and the relay's threads.
pub const RT_PRIORITY: &str = "10";

/// Puts the calling thread at real-time priority (via `chrt -p` on its tid).
pub fn this_thread_rt() {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = link.file_name().unwrap().to_string_lossy().into_owned();
    run(&["chrt", "-f", "-p", RT_PRIORITY, &tid]);
}

/// Fails loudly, naming the Debian package, when a tool is missing.
pub fn require_tools() {
    for (tool, args, pkg) in [
        ("ip", &["-V"][..], "iproute2"),
        ("nft", &["--version"][..], "nftables"),
        ("ping", &["-V"][..], "iputils-ping"),
        ("chrt", &["--version"][..], "util-linux"),
    ] {
        let ok = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "`{tool}` is missing: apt-get install -y {pkg} (these tests need iproute2, nftables and iputils-ping, and root)"
        );
    }
}

/// Runs a command and returns its stdout; panics with its stderr on failure.
pub fn run(args: &[&str]) -> String {
    run_in(args, None)
}

fn run_in(args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        stdin.map(|s| format!("\ninput:\n{s}")).unwrap_or_default()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted (with its links and nft tables) on drop.
pub struct Ns {
    pub name: String,
}

impl Ns {
    /// Makes a namespace with loopback up.
    pub fn new(name: String) -> Ns {
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("cannot run ip: apt-get install -y iproute2");
        assert!(
            out.status.success(),
            "cannot make network namespace {name} (these tests need root and a kernel with netns): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Ns { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; panics on failure.
    pub fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all)
    }

    /// A command that will run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// A command that will run inside the namespace at real-time priority
    /// (`chrt -f`), so that other work on the machine does not add its
    /// scheduling delays to what is measured.
    pub fn command_rt(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            &self.name,
            "chrt",
            "-f",
            RT_PRIORITY,
            program,
        ]);
        c
    }

    /// Applies an nft script atomically inside the namespace.
    pub fn nft(&self, script: &str) {
        run_in(
            &["ip", "netns", "exec", &self.name, "nft", "-f", "-"],
            Some(script),
        );
    }

    /// Makes table `inet xt` with filter chains `out` and `in`.
    pub fn nft_table(&self) {
        self.nft(
            "add table inet xentest\n\
             add chain inet xentest out { type filter hook output priority 0; }\n\
             add chain inet xentest in { type filter hook input priority 0; }\n",
        );
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The k-th /30 of 198.18.0.0/15: (network + 1, network + 2).
fn subnet(k: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 4 * (k % 32768);
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

/// Two namespaces `a` and `b` joined directly by veth `hb0` (a_ip <-> b_ip),
/// each also linked to the root namespace (for scrapes and the relay):
/// root_a <-> a_up on `up0` in a, root_b <-> b_up on `up0` in b.
pub struct Pair {
    pub a: Ns,
    pub b: Ns,
    pub a_ip: Ipv4Addr,
    pub b_ip: Ipv4Addr,
    pub root_a: Ipv4Addr,
    pub a_up: Ipv4Addr,
    pub root_b: Ipv4Addr,
    pub b_up: Ipv4Addr,
}

impl Pair {
    /// Builds the topology for case number `case` (0..16) of this process.
    pub fn new(case: u32) -> Pair {
        require_tools();
        let pid = std::process::id();
        let tag = format!("xt-{pid}-{case}");
        let a = Ns::new(format!("{tag}-a"));
        let b = Ns::new(format!("{tag}-b"));
        let k = ((pid % 600) * 16 + case) * 3;
        let (a_ip, b_ip) = subnet(k);
        let (root_a, a_up) = subnet(k + 1);
        let (root_b, b_up) = subnet(k + 2);
        // Root-side names must be unique in the root namespace and <= 15 bytes.
        let short = format!("xt{}c{case}", pid % 100_000);
        run(&[
            "ip", "link", "add", "hb0", "netns", &a.name, "type", "veth", "peer", "name", "hb0",
            "netns", &b.name,
        ]);
        for (ns, root_if, root_ip, ns_ip) in [
            (&a, format!("{short}a"), root_a, a_up),
            (&b, format!("{short}b"), root_b, b_up),
        ] {
            run(&[
                "ip", "link", "add", &root_if, "type", "veth", "peer", "name", "up0", "netns",
                &ns.name,
            ]);
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{root_ip}/30"),
                "dev",
                &root_if,
            ]);
            run(&["ip", "link", "set", &root_if, "up"]);
            ns.run(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", "up0"]);
            ns.run(&["ip", "link", "set", "up0", "up"]);
        }
        a.run(&["ip", "addr", "add", &format!("{a_ip}/30"), "dev", "hb0"]);
        b.run(&["ip", "addr", "add", &format!("{b_ip}/30"), "dev", "hb0"]);
        a.run(&["ip", "link", "set", "hb0", "up"]);
        b.run(&["ip", "link", "set", "hb0", "up"]);
        Pair {
            a,
            b,
            a_ip,
            b_ip,
            root_a,
            a_up,
            root_b,
            b_up,
        }
    }
}

/// A child process killed (by its pid) and reaped on drop; its stderr goes to
/// a log file, printed when the test is failing.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stderr to a log file named after `tag`.
    pub fn spawn(mut cmd: Command, tag: &str) -> Proc {
        let log = std::env::temp_dir().join(format!("{tag}-{}.log", std::process::id()));
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc { child, log }
    }

    /// User + system CPU seconds the process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the `(comm)`, which may hold spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        ticks / clk_tck()
    }
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            eprintln!(
                "--- last lines of {} ---\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// What `ping -q` reported.
#[derive(Debug, Clone, Copy)]
pub struct PingResult {
    pub sent: u64,
    pub received: u64,
    /// Mean RTT, seconds.
    pub avg: f64,
}

/// Starts `ping -q -i interval -c count target` inside `ns`.
pub fn ping_start(ns: &Ns, target: Ipv4Addr, interval: Duration, count: u32) -> Child {
    ping_with(ns, target, interval, &["-c", &count.to_string()])
}

/// Starts `ping -q -i interval -w secs target` inside `ns`: it stops after
/// `secs` however many echoes a loaded machine let it send.
pub fn ping_start_for(ns: &Ns, target: Ipv4Addr, interval: Duration, secs: u32) -> Child {
    ping_with(ns, target, interval, &["-w", &secs.to_string()])
}

fn ping_with(ns: &Ns, target: Ipv4Addr, interval: Duration, stop: &[&str]) -> Child {
    ns.command("ping")
        .args(["-q", "-n", "-i", &format!("{}", interval.as_secs_f64())])
        .args(stop)
        .arg(target.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ping: apt-get install -y iputils-ping")
}

/// Waits for a `ping_start` and parses its summary.
pub fn ping_finish(child: Child) -> PingResult {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let rtt = text
        .lines()
        .find(|l| l.starts_with("rtt") || l.starts_with("round-trip"))
        .unwrap_or_else(|| panic!("no ping rtt line: {text}"));
    let avg_ms: f64 = rtt
        .split(" = ")
        .nth(1)
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    PingResult {
        sent: nums[0],
        received: nums[1],
        avg: avg_ms / 1000.0,
    }
}

/// Hold times one direction of the relay applied, seconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct Holds {
    pub count: u64,
    pub sum: f64,
}

impl Holds {
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// First bytes of the relay's self-probes.
const PROBE_MAGIC: &[u8; 8] = b"XTRELAY!";

struct Held {
    due: Instant,
    got: Instant,
    to_target: bool,
    len: usize,
    buf: [u8; 256],
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        self.due == o.due
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.due.cmp(&self.due)
    }
}

/// A user-space UDP relay in the root namespace: datagrams sent to `front`
/// go to `target` from a back socket, and the answers come back to the
/// sender, each held `hold` ± `jitter` (uniform) in each direction. The
/// hold actually applied (from the relay's receive to its send) is recorded
/// per direction, so a reference RTT can add what really happened.
pub struct Relay {
    pub front: SocketAddr,
    stop: Arc<AtomicBool>,
    /// [towards the target, back to the sender, receive latency of self-probes].
    holds: Arc<Mutex<[Holds; 3]>>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Binds `front_ip:0` and `back_ip:0` and starts the relay's threads.
    pub fn start(
        front_ip: Ipv4Addr,
        back_ip: Ipv4Addr,
        target: SocketAddr,
        hold: Duration,
        jitter: Duration,
    ) -> Relay {
        let front = UdpSocket::bind((front_ip, 0)).unwrap();
        let back = UdpSocket::bind((back_ip, 0)).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let front_addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let holds: Arc<Mutex<[Holds; 3]>> = Arc::default();
        let epoch = Instant::now();
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let (tx, rx) = mpsc::channel::<Held>();
        let mut threads = vec![];
        let mut seed = (std::process::id() as u64) << 32 | 0x9e37_79b9;
        let back_addr = back.local_addr().unwrap();
        for (sock, to_target) in [
            (front.try_clone().unwrap(), true),
            (back.try_clone().unwrap(), false),
        ] {
            let (stop, tx, client) = (stop.clone(), tx.clone(), client.clone());
            let lat = holds.clone();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut rng = seed;
            threads.push(std::thread::spawn(move || {
                this_thread_rt();
                let mut buf = [0u8; 256];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let got = Instant::now();
                    // A self-probe: how late this thread saw a datagram sent
                    // to it at a known time. Not forwarded.
                    if n == 16 && buf[..8] == *PROBE_MAGIC {
                        let sent = u64::from_be_bytes(buf[8..16].try_into().unwrap());
                        let late =
                            got.duration_since(epoch).as_nanos() as f64 / 1e9 - sent as f64 / 1e9;
                        let mut l = lat.lock().unwrap();
                        l[2].count += 1;
                        l[2].sum += late;
                        continue;
                    }
                    if to_target {
                        *client.lock().unwrap() = Some(from);
                    }
                    rng = rng
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let u = (rng >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
                    let d = hold.as_secs_f64() + jitter.as_secs_f64() * (2.0 * u - 1.0);
                    let mut h = Held {
                        due: got + Duration::from_secs_f64(d.max(0.0)),
                        got,
                        to_target,
                        len: n.min(256),
                        buf: [0; 256],
                    };
                    h.buf[..h.len].copy_from_slice(&buf[..h.len]);
                    if tx.send(h).is_err() {
                        break;
                    }
                }
            }));
        }
        drop(tx);
        let holds2 = holds.clone();
        threads.push(std::thread::spawn(move || {
            this_thread_rt();
            let mut heap: BinaryHeap<Held> = BinaryHeap::new();
            // Timer wake-ups are late by tens of microseconds: sleep until
            // SPIN before the due time, then spin, so holds are what was set.
            const SPIN: Duration = Duration::from_micros(300);
            loop {
                let wait = heap
                    .peek()
                    .map(|h| h.due.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_millis(50));
                let got = if wait > SPIN {
                    rx.recv_timeout(wait - SPIN)
                } else {
                    rx.try_recv().map_err(|e| match e {
                        mpsc::TryRecvError::Empty => mpsc::RecvTimeoutError::Timeout,
                        mpsc::TryRecvError::Disconnected => mpsc::RecvTimeoutError::Disconnected,
                    })
                };
                match got {
                    Ok(h) => heap.push(h),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                let now = Instant::now();
                while heap.peek().is_some_and(|h| h.due <= now) {
                    let h = heap.pop().unwrap();
                    let dest = if h.to_target {
                        Some(target)
                    } else {
                        *client.lock().unwrap()
                    };
                    let Some(dest) = dest else { continue };
                    let sock = if h.to_target { &back } else { &front };
                    let _ = sock.send_to(&h.buf[..h.len], dest);
                    let took = h.got.elapsed().as_secs_f64();
                    let mut s = holds2.lock().unwrap();
                    let d = &mut s[usize::from(!h.to_target)];
                    d.count += 1;
                    d.sum += took;
                }
            }
        }));
        // Self-probes every 5 ms, alternately to each receiving socket.
        let stop3 = stop.clone();
        threads.push(std::thread::spawn(move || {
            this_thread_rt();
            let sock = UdpSocket::bind((front_ip, 0)).unwrap();
            let mut i = 0u64;
            while !stop3.load(Ordering::Relaxed) {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(PROBE_MAGIC);
                let to = if i % 2 == 0 { front_addr } else { back_addr };
                b[8..].copy_from_slice(&(epoch.elapsed().as_nanos() as u64).to_be_bytes());
                let _ = sock.send_to(&b, to);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
        Relay {
            front: front_addr,
            stop,
            holds,
            threads,
        }
    }

    /// Hold times so far: [towards the target, back to the sender], and the
    /// relay's receive latency (datagram sent to it -> its thread has it).
    pub fn holds(&self) -> [Holds; 3] {
        *self.holds.lock().unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Measures how late a real-time thread of this process sees a UDP datagram
/// sent to it at a known time (a wake-up from `recv`), every 5 ms, on
/// loopback: the scheduling cost of one user-space receive on this machine
/// right now, which a kernel-answered, kernel-timestamped `ping` never pays.
pub struct WakeProbe {
    stop: Arc<AtomicBool>,
    lat: Arc<Mutex<Holds>>,
    threads: Vec<JoinHandle<()>>,
}

impl WakeProbe {
    pub fn start() -> WakeProbe {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let to = rx.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let lat: Arc<Mutex<Holds>> = Arc::default();
        let epoch = Instant::now();
        let (s1, s2, l) = (stop.clone(), stop.clone(), lat.clone());
        let recv = std::thread::spawn(move || {
            this_thread_rt();
            let mut b = [0u8; 8];
            while !s1.load(Ordering::Relaxed) {
                if let Ok((8, _)) = rx.recv_from(&mut b) {
                    let late = epoch.elapsed().as_nanos() as u64 - u64::from_be_bytes(b);
                    let mut l = l.lock().unwrap();
                    l.count += 1;
                    l.sum += late as f64 / 1e9;
                }
            }
        });
        let send = std::thread::spawn(move || {
            this_thread_rt();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            while !s2.load(Ordering::Relaxed) {
                let now = epoch.elapsed().as_nanos() as u64;
                let _ = tx.send_to(&now.to_be_bytes(), to);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        WakeProbe {
            stop,
            lat,
            threads: vec![recv, send],
        }
    }

    /// Latencies so far.
    pub fn get(&self) -> Holds {
        *self.lat.lock().unwrap()
    }
}

impl Drop for WakeProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
