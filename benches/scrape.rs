//! `cargo bench --bench scrape` (or `scripts/bench.sh`): xentinel's real
//! release binary and Debian's node_exporter side by side in one run.
//!
//! Both run as child processes on loopback ports; this process scrapes them
//! over HTTP with a tiny blocking client and reads their RSS and CPU time
//! from `/proc`. It prints a Markdown report and writes `docs/benchmarks.md`.
//! Figures only: nothing here asserts a timing.
//!
//! Environment: `XENTINEL_BIN` (default: the binary cargo built for this
//! bench, `target/release/xentinel`), `NODE_EXPORTER` (default:
//! `/usr/bin/prometheus-node-exporter`), `XENTINEL_BENCH_QUICK=1` (fewer
//! scrapes, 5 s concurrency: a smoke run that does not write the doc),
//! `XENTINEL_BENCH_ONLY=renderers|webhook|heartbeat|netns|light` (only that part;
//! `XENTINEL_BENCH_DOMAINS` sets the renderers' snapshot size, default 1,000),
//! `XENTINEL_BENCH_DOC` (where to write the report).

#[path = "scrape/client.rs"]
mod client;
#[path = "scrape/extra.rs"]
mod extra;
#[path = "scrape/heartbeat_netns.rs"]
mod heartbeat_netns;
#[path = "scrape/light.rs"]
mod light;
#[path = "scrape/renderers.rs"]
mod renderers;

// The tests' harness for two exporters in network namespaces, so that the
// bench measures the very runs `tests/heartbeat_netns.rs` checks.
#[allow(dead_code)]
#[path = "../tests/support/heartbeat_pair.rs"]
mod heartbeat_pair;
#[allow(dead_code)]
#[path = "../tests/support/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../tests/support/netns.rs"]
mod netns;
#[allow(dead_code)]
#[path = "../tests/support/scrape.rs"]
mod scrape;
#[path = "../tests/support/xenstored/mod.rs"]
mod xenstored;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Counts allocations, for the renderer comparison.
#[global_allocator]
static GLOBAL: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

use client::{Conn, Proc, clk_tck, cpu_ticks, free_port, series_count, status_kib};

/// Everything from this line on in `docs/benchmarks.md` is kept across runs.
const NOTES_MARKER: &str = "<!-- notes: kept when the bench rewrites the figures above -->";

/// What one target measured over a series of sequential scrapes.
struct ScrapeRow {
    target: String,
    domains: Option<usize>,
    scrapes: usize,
    min_ms: f64,
    median_ms: f64,
    p99_ms: f64,
    bytes: usize,
    series: usize,
    rss_kib: u64,
    hwm_kib: u64,
    cpu_ms_per_scrape: f64,
    idle_cpu_ms_per_s: f64,
}

/// The concurrent run.
struct ConcRow {
    domains: usize,
    threads: usize,
    secs: f64,
    scrapes: usize,
    errors: usize,
    per_sec: f64,
    median_ms: f64,
    p99_ms: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    hwm_kib: u64,
    cpu_ms_per_scrape: f64,
}

struct Settings {
    quick: bool,
    conc_secs: u64,
}

impl Settings {
    fn scrapes(&self, domains: usize) -> (usize, usize) {
        match (self.quick, domains > 1000) {
            (false, false) => (200, 10),
            (false, true) => (50, 3),
            (true, false) => (30, 3),
            (true, true) => (8, 1),
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A running exporter to scrape.
struct Target<'a> {
    name: &'a str,
    domains: Option<usize>,
    pid: u32,
    port: u16,
}

/// `n` sequential scrapes of `/metrics` per target after `warm` unmeasured
/// ones. With several targets the scrapes alternate (a, b, a, b, ...), so
/// every target sees the same load from whatever else runs on the machine.
fn measure(ts: &[Target], n: usize, warm: usize, tck: u64) -> Vec<ScrapeRow> {
    let path = "/metrics";
    let mut conns: Vec<Conn> = ts.iter().map(|t| Conn::new(t.port)).collect();
    let mut bytes = vec![0; ts.len()];
    let mut series = vec![0; ts.len()];
    for _ in 0..warm {
        for (i, (t, c)) in ts.iter().zip(&mut conns).enumerate() {
            let st = c.get(path).expect("warm-up scrape");
            assert_eq!(st, 200, "{}: warm-up scrape status", t.name);
            bytes[i] = c.body().len();
            series[i] = series_count(c.body());
        }
    }
    // Background cost (the simulator's stepper, node_exporter's idle) over 1 s.
    let t0: Vec<u64> = ts.iter().map(|t| cpu_ticks(t.pid)).collect();
    std::thread::sleep(Duration::from_secs(1));
    let idle: Vec<f64> = ts
        .iter()
        .zip(&t0)
        .map(|(t, c)| (cpu_ticks(t.pid) - c) as f64 * 1e3 / tck as f64)
        .collect();
    let mut times = vec![Vec::with_capacity(n); ts.len()];
    let c0: Vec<u64> = ts.iter().map(|t| cpu_ticks(t.pid)).collect();
    for _ in 0..n {
        for (i, (t, c)) in ts.iter().zip(&mut conns).enumerate() {
            let start = Instant::now();
            let st = c.get(path).expect("scrape");
            times[i].push(ms(start.elapsed()));
            assert_eq!(st, 200, "{}: scrape status", t.name);
            bytes[i] = c.body().len();
        }
    }
    let cpu: Vec<f64> = ts
        .iter()
        .zip(&c0)
        .map(|(t, c)| (cpu_ticks(t.pid) - c) as f64 * 1e3 / tck as f64 / n as f64)
        .collect();
    ts.iter()
        .enumerate()
        .map(|(i, t)| {
            let times = &mut times[i];
            times.sort_by(f64::total_cmp);
            ScrapeRow {
                target: t.name.into(),
                domains: t.domains,
                scrapes: n,
                min_ms: times[0],
                median_ms: percentile(times, 0.5),
                p99_ms: percentile(times, 0.99),
                bytes: bytes[i],
                series: series[i],
                rss_kib: status_kib(t.pid, "VmRSS"),
                hwm_kib: status_kib(t.pid, "VmHWM"),
                cpu_ms_per_scrape: cpu[i],
                idle_cpu_ms_per_s: idle[i],
            }
        })
        .collect()
}

/// `threads` scrapers hammering `path` for `secs`.
fn concurrent(domains: usize, pid: u32, port: u16, threads: usize, secs: u64, tck: u64) -> ConcRow {
    let rss_before = status_kib(pid, "VmRSS");
    let stop = Arc::new(AtomicBool::new(false));
    let c0 = cpu_ticks(pid);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Conn::new(port);
                let mut times = Vec::new();
                let mut errors = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match c.get("/metrics") {
                        Ok(200) => times.push(ms(t.elapsed())),
                        _ => errors += 1,
                    }
                }
                (times, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut times = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (t, e) = h.join().expect("scraper thread");
        times.extend(t);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - c0) as f64 * 1e3 / tck as f64;
    // Let in-flight work settle before reading RSS again.
    std::thread::sleep(Duration::from_millis(500));
    times.sort_by(f64::total_cmp);
    ConcRow {
        domains,
        threads,
        secs: elapsed,
        scrapes: times.len(),
        errors,
        per_sec: times.len() as f64 / elapsed,
        median_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        rss_before_kib: rss_before,
        rss_after_kib: status_kib(pid, "VmRSS"),
        hwm_kib: status_kib(pid, "VmHWM"),
        cpu_ms_per_scrape: cpu / times.len().max(1) as f64,
    }
}

fn xentinel_bin() -> PathBuf {
    std::env::var_os("XENTINEL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_xentinel")))
}

fn node_exporter_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NODE_EXPORTER") {
        return Some(PathBuf::from(p));
    }
    [
        "/usr/bin/prometheus-node-exporter",
        "/usr/bin/node_exporter",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Starts `xentinel exporter --source sim --sim.domains n` on a free port.
fn start_xentinel(bin: &Path, n: usize, env: &[(&str, &str)], logs: &Path) -> (Proc, u16) {
    let port = free_port();
    let log = logs.join(format!("xentinel-{n}-{}.log", env.len()));
    let args: Vec<String> = [
        "--log.level",
        "warn",
        "exporter",
        "--source",
        "sim",
        "--sim.domains",
        &n.to_string(),
        "--web.listen-address",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut p = Proc::spawn(&format!("xentinel ({n} domains)"), bin, &args, env, &log);
    p.wait_ready(port, "/-/healthy", Duration::from_secs(60), &log);
    (p, port)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn cmd_out(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).to_string();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|x| x.1.trim())
        })
        .unwrap_or("unknown")
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = status_like("/proc/meminfo", "MemTotal");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    format!(
        "- CPU: {model}, {cores} cores available\n- Memory: {:.1} GiB\n- OS: {os}, kernel {kernel}\n- {}\n",
        mem as f64 / 1024.0 / 1024.0,
        cmd_out("rustc", &["--version"]),
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn status_like(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn scrape_table(rows: &[ScrapeRow]) -> String {
    let mut t = String::from(
        "| target | domains | series | bytes | scrapes | min ms | median ms | p99 ms | CPU ms/scrape | idle CPU ms/s | RSS MiB | peak RSS MiB |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            r.target,
            r.domains.map_or("–".into(), |d| format!("{d}")),
            r.series,
            r.bytes,
            r.scrapes,
            r.min_ms,
            r.median_ms,
            r.p99_ms,
            r.cpu_ms_per_scrape,
            r.idle_cpu_ms_per_s,
            mib(r.rss_kib),
            mib(r.hwm_kib),
        );
    }
    t
}

fn conc_table(rows: &[ConcRow]) -> String {
    let mut t = String::from(
        "| round | domains | scrapers | seconds | scrapes | errors | scrapes/s | median ms | p99 ms | CPU ms/scrape | RSS before MiB | RSS after MiB | peak RSS MiB |\n\
         |--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for (i, c) in rows.iter().enumerate() {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.1} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            i + 1,
            c.domains,
            c.threads,
            c.secs,
            c.scrapes,
            c.errors,
            c.per_sec,
            c.median_ms,
            c.p99_ms,
            c.cpu_ms_per_scrape,
            mib(c.rss_before_kib),
            mib(c.rss_after_kib),
            mib(c.hwm_kib),
        );
    }
    t
}

/// The targets, each with the figure it was judged on (printed, never asserted).
fn targets(rows: &[ScrapeRow], conc: &[ConcRow]) -> String {
    let x = |n| {
        rows.iter()
            .find(|r| r.target == "xentinel" && r.domains == Some(n))
    };
    let ne = rows.iter().find(|r| r.target == "node_exporter");
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let mut t = String::from("\nTargets:\n\n");
    if let (Some(x), Some(n)) = (x(1000), ne) {
        let _ = writeln!(
            t,
            "- 1,000 domains no slower than node_exporter: median {:.2} vs {:.2} ms, CPU {:.2} vs {:.2} ms/scrape: {}",
            x.median_ms,
            n.median_ms,
            x.cpu_ms_per_scrape,
            n.cpu_ms_per_scrape,
            verdict(x.median_ms <= n.median_ms)
        );
    }
    if let Some(x) = x(10_000) {
        let _ = writeln!(
            t,
            "- 10,000 domains under 100 ms: median {:.2} ms (min {:.2}, CPU {:.2} ms/scrape): {}",
            x.median_ms,
            x.min_ms,
            x.cpu_ms_per_scrape,
            verdict(x.median_ms < 100.0)
        );
        let _ = writeln!(
            t,
            "- RSS under 64 MiB at 10,000 domains: {:.1} MiB after, {:.1} MiB peak: {}",
            mib(x.rss_kib),
            mib(x.hwm_kib),
            verdict(x.hwm_kib < 64 * 1024)
        );
    }
    if let Some(x) = x(1000) {
        let _ = writeln!(
            t,
            "- RSS under 20 MiB at 1,000 domains: {:.1} MiB after, {:.1} MiB peak: {}",
            mib(x.rss_kib),
            mib(x.hwm_kib),
            verdict(x.hwm_kib < 20 * 1024)
        );
    }
    if let (Some(a), Some(b)) = (conc.first(), conc.last()) {
        // Growth in the second round is what a leak would show; 1 MiB of slack.
        let _ = writeln!(
            t,
            "- No RSS growth under 20 concurrent scrapers: {:.1} → {:.1} MiB (round 1), {:.1} → {:.1} MiB (round 2): {}",
            mib(a.rss_before_kib),
            mib(a.rss_after_kib),
            mib(b.rss_before_kib),
            mib(b.rss_after_kib),
            verdict(b.rss_after_kib <= b.rss_before_kib + 1024)
        );
    }
    t
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let quick = std::env::var("XENTINEL_BENCH_QUICK").is_ok_and(|v| v == "1");
    let set = Settings {
        quick,
        conc_secs: if quick { 5 } else { 30 },
    };
    if std::env::var("XENTINEL_BENCH_ONLY").is_ok_and(|v| v == "renderers") {
        let n = std::env::var("XENTINEL_BENCH_DOMAINS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        println!("{}", renderers::compare(n, 30));
        return;
    }
    let tck = clk_tck();
    let bin = xentinel_bin();
    let logs = std::env::temp_dir().join(format!("xentinel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("create the log directory");
    let only = match std::env::var("XENTINEL_BENCH_ONLY").as_deref() {
        Ok("webhook") => Some(extra::bench_webhook(&bin, &logs)),
        Ok("heartbeat") => Some(extra::bench_heartbeat(&bin, &logs)),
        Ok("netns") => Some(heartbeat_netns::bench(&bin, quick)),
        Ok("light") => Some(light::bench(&bin, &logs, node_exporter_bin().as_deref())),
        _ => None,
    };
    if let Some(part) = only {
        let _ = std::fs::remove_dir_all(&logs);
        return println!("{part}");
    }
    let started = Instant::now();
    let load_start = loadavg();
    eprintln!(
        "bench: binary {}, logs in {}",
        bin.display(),
        logs.display()
    );

    // node_exporter runs from the start; it is scraped alternately with
    // xentinel at 1,000 domains.
    let node_bin = node_exporter_bin();
    let node = node_bin.as_ref().map(|b| {
        let port = free_port();
        let log = logs.join("node_exporter.log");
        let args = vec![
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--no-collector.systemd".to_string(),
        ];
        let mut p = Proc::spawn("node_exporter", b, &args, &[], &log);
        p.wait_ready(port, "/metrics", Duration::from_secs(30), &log);
        (p, port)
    });
    let node_note = match &node_bin {
        Some(b) => cmd_out(&b.display().to_string(), &["--version"]),
        None => "not measured: node_exporter is not installed \
                 (apt-get install -y prometheus-node-exporter)"
            .into(),
    };
    let mut node_row = None;

    let mut rows = Vec::new();
    let mut conc = Vec::new();
    // The last run repeats 10,000 domains with glibc malloc limited to one
    // arena, to show what the allocator's per-thread arenas cost in RSS.
    let arena1: &[(&str, &str)] = &[("MALLOC_ARENA_MAX", "1")];
    for (n, env) in [
        (10usize, &[][..]),
        (100, &[]),
        (1000, &[]),
        (10_000, &[]),
        (10_000, arena1),
    ] {
        let (p, port) = start_xentinel(&bin, n, env, &logs);
        let (k, warm) = set.scrapes(n);
        eprintln!("bench: xentinel at {n} domains, {k} scrapes");
        let t = Target {
            name: if env.is_empty() {
                "xentinel"
            } else {
                "xentinel, MALLOC_ARENA_MAX=1"
            },
            domains: Some(n),
            pid: p.pid(),
            port,
        };
        match (&node, n == 1000 && env.is_empty()) {
            (Some((np, nport)), true) => {
                eprintln!("bench: ... alternating with node_exporter");
                let nt = Target {
                    name: "node_exporter",
                    domains: None,
                    pid: np.pid(),
                    port: *nport,
                };
                let mut r = measure(&[t, nt], k, warm, tck);
                node_row = r.pop();
                rows.extend(r);
            }
            _ => rows.extend(measure(&[t], k, warm, tck)),
        }
        if n == 1000 && env.is_empty() {
            eprintln!(
                "bench: 20 concurrent scrapers for {} s at {n} domains",
                set.conc_secs
            );
            // Two rounds back to back: memory that grows round after round
            // is a leak; memory that settles after the first is the allocator.
            for _ in 0..2 {
                conc.push(concurrent(n, p.pid(), port, 20, set.conc_secs / 2, tck));
            }
        }
        drop(p);
    }

    eprintln!("bench: renderers in-process");
    drop(node);
    rows.extend(node_row);
    let rend = renderers::compare(1000, if quick { 5 } else { 30 });
    let webhook = extra::bench_webhook(&bin, &logs);
    let heartbeat = extra::bench_heartbeat(&bin, &logs);
    let netns = heartbeat_netns::bench(&bin, quick);
    let light = light::bench(&bin, &logs, node_bin.as_deref());

    // The report.
    let mut md = String::new();
    md.push_str("## Scrapes (sequential, one keep-alive connection)\n\n");
    md.push_str(&scrape_table(&rows));
    let x1k = rows
        .iter()
        .find(|r| r.target == "xentinel" && r.domains == Some(1000));
    let ne = rows.iter().find(|r| r.target == "node_exporter");
    if let (Some(x), Some(n)) = (x1k, ne) {
        let _ = write!(
            md,
            "\nxentinel at 1,000 domains ÷ node_exporter: min scrape time {:.2}×, median {:.2}×, \
             p99 {:.2}×, CPU per scrape {:.2}×, RSS {:.2}×; series {:.0}×, bytes {:.0}×.\n",
            x.min_ms / n.min_ms,
            x.median_ms / n.median_ms,
            x.p99_ms / n.p99_ms,
            x.cpu_ms_per_scrape / n.cpu_ms_per_scrape,
            x.rss_kib as f64 / n.rss_kib as f64,
            x.series as f64 / n.series as f64,
            x.bytes as f64 / n.bytes as f64,
        );
    }
    let _ = writeln!(md, "\nnode_exporter: {node_note}.");
    md.push_str(&targets(&rows, &conc));
    if !conc.is_empty() {
        md.push_str(
            "\n## Concurrent scrapes (one connection per scraper, two rounds back to back)\n\n",
        );
        md.push_str(&conc_table(&conc));
    }
    md.push_str("\n## Renderers on the same 1,000-domain snapshot (in-process)\n\n");
    md.push_str(&rend);
    md.push_str("\n## Webhook\n\n");
    md.push_str(&webhook);
    md.push_str("\n## Heartbeat\n\n");
    md.push_str(&heartbeat);
    md.push_str("\n## Heartbeat over network namespaces, against ping\n\n");
    md.push_str(&netns);
    md.push_str("\n## Light on the host: gzip, xenstored requests, the guest agent\n\n");
    md.push_str(&light);
    let _ = writeln!(
        md,
        "\nWhole run: {:.0} s. Load average (1, 5, 15 min) at the start: {load_start}; at the end: {} \
         (on {} cores; anything above ~0.5 is other work on the machine competing with the bench).",
        started.elapsed().as_secs_f64(),
        loadavg(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!("{md}");

    // The children's logs are only needed when something failed (a panic
    // skips this and leaves them for reading).
    let _ = std::fs::remove_dir_all(&logs);
    if quick {
        eprintln!("bench: quick run, docs/benchmarks.md left alone");
        return;
    }
    let doc = std::env::var_os("XENTINEL_BENCH_DOC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.md"),
        PathBuf::from,
    );
    let date = cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let full = format!(
        "# Benchmarks\n\n\
         Produced by `scripts/bench.sh` (which runs `cargo bench --bench scrape`) on {date}.\n\
         The bench starts the release binary (`xentinel exporter --source sim --sim.domains N \
         --web.listen-address 127.0.0.1:PORT`) and Debian's node_exporter \
         (`--no-collector.systemd`) as child processes and scrapes them over loopback HTTP/1.1 \
         from the bench process; at 1,000 domains the two are scraped alternately (x, n, x, n, …) \
         so both see the same load from whatever else runs on the machine. Times are wall-clock from request to last body byte; CPU is \
         the exporter's utime+stime delta (from `/proc/PID/stat`, 10 ms ticks) divided by the \
         scrapes; RSS is `VmRSS` after the run and peak RSS `VmHWM`; idle CPU is what the \
         exporter burns with nobody scraping (the simulator's 100 ms stepper), measured for 1 s \
         before the scrapes. Times vary by about ±30% from run to run on this machine kind.\n\n\
         Machine:\n\n{}\n{md}",
        machine()
    );
    // Hand-written notes after the marker survive a new run.
    let notes = std::fs::read_to_string(&doc)
        .ok()
        .and_then(|old| old.find(NOTES_MARKER).map(|i| old[i..].to_string()))
        .unwrap_or_else(|| format!("{NOTES_MARKER}\n"));
    std::fs::write(&doc, format!("{full}\n{notes}")).expect("write docs/benchmarks.md");
    eprintln!("bench: wrote {}", doc.display());
}
