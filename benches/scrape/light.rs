//! The weight xentinel puts on the host it watches (`XENTINEL_BENCH_ONLY=light`):
//! scrape bytes plain and gzip at 1,000 domains; xenstored requests per
//! scrape of the xenstore source against the tests' real-protocol xenstored
//! (which counts what it serves); the guest agent's xenstore writes per
//! minute, idle and busy; and its RSS and CPU beside node_exporter's RSS.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::{Conn, Proc, clk_tck, cpu_ticks, series_count, status_kib};
use crate::xenstored::{TestXenstored, ty};

/// The whole part, as Markdown.
pub fn bench(bin: &Path, logs: &Path, node_exporter: Option<&Path>) -> String {
    let mut md = String::new();
    md.push_str(&gzip(bin, logs));
    md.push('\n');
    md.push_str(&xenstore_requests(logs));
    md.push('\n');
    md.push_str(&guest_agent(bin, logs, node_exporter));
    md
}

/// Plain and gzip scrapes of `--sim.domains 1000`, alternated.
fn gzip(bin: &Path, logs: &Path) -> String {
    let (p, port) = super::start_xentinel(bin, 1000, &[], logs);
    let tck = clk_tck();
    let mut c = Conn::new(port);
    for _ in 0..3 {
        c.get("/metrics").expect("scrape");
        c.get_gzip("/metrics").expect("scrape");
    }
    let n = 20;
    let (mut plain_ms, mut gz_ms) = (Vec::new(), Vec::new());
    let (mut plain_cpu, mut gz_cpu) = (0u64, 0u64);
    let (mut plain_bytes, mut gz_bytes, mut series) = (0, 0, (0, 0));
    for _ in 0..n {
        let (t, cpu) = (Instant::now(), cpu_ticks(p.pid()));
        assert_eq!(c.get("/metrics").expect("scrape"), 200);
        plain_ms.push(t.elapsed().as_secs_f64() * 1e3);
        plain_cpu += cpu_ticks(p.pid()) - cpu;
        plain_bytes = c.body().len();
        series.0 = series_count(c.body());
        let (t, cpu) = (Instant::now(), cpu_ticks(p.pid()));
        assert_eq!(c.get_gzip("/metrics").expect("scrape"), 200);
        gz_ms.push(t.elapsed().as_secs_f64() * 1e3);
        gz_cpu += cpu_ticks(p.pid()) - cpu;
        gz_bytes = c.body().len();
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(c.body()), &mut text)
            .expect("the gzip body decompresses");
        series.1 = series_count(&text);
    }
    drop(p);
    assert_eq!(
        series.0, series.1,
        "gzip and plain scrapes differ in series"
    );
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let cpu_ms = |t: u64| t as f64 * 1e3 / tck as f64 / n as f64;
    let mut md = String::from(
        "### Scrape bytes, plain and gzip, at 1,000 domains\n\n\
         `xentinel exporter --source sim --sim.domains 1000`, scraped 20 times each way, \
         alternated, on one keep-alive connection (gzip: `Accept-Encoding: gzip`, as Prometheus \
         sends it; level 1).\n\n\
         | body | bytes | series | median ms | CPU ms per scrape |\n|---|---:|---:|---:|---:|\n",
    );
    let _ = writeln!(
        md,
        "| plain | {plain_bytes} | {} | {:.1} | {:.1} |",
        series.0,
        med(&mut plain_ms),
        cpu_ms(plain_cpu)
    );
    let _ = writeln!(
        md,
        "| gzip | {gz_bytes} | {} | {:.1} | {:.1} |",
        series.1,
        med(&mut gz_ms),
        cpu_ms(gz_cpu)
    );
    let _ = writeln!(
        md,
        "\ngzip is {:.1}% of the plain body ({:.0}× smaller).",
        gz_bytes as f64 * 100.0 / plain_bytes as f64,
        plain_bytes as f64 / gz_bytes as f64
    );
    md
}

/// Requests the xenstore source sends per scrape at steady state and when
/// one domain's guest report changed, with `n` domains each reporting.
fn requests_at(logs: &Path, n: u32) -> (u64, u64, u64, u64) {
    use xentinel::snapshot::Collection;
    use xentinel::sources::Source;
    let xsd = TestXenstored::start(&logs.join(format!("xsd-{n}.sock")));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for id in 1..=n {
        let uuid = format!("{id:08x}-0000-4000-8000-000000000000");
        xsd.add_reporting_domain(id, &uuid, now);
    }
    // The bench is single-threaded here; nothing changes the environment concurrently.
    let rt = xsd.client_runtime();
    let src = xentinel::sources::xenstore::XenstoreSource::new(
        Arc::default(),
        None,
        Duration::from_secs(30),
    );
    let scrape = || {
        let mut out = Collection::default();
        rt.block_on(src.collect(&mut out))
            .expect("xenstore collection");
        assert_eq!(out.meta.len(), n as usize);
    };
    scrape();
    let first = xsd.served().total();
    // Let the watches' first events settle, then count one steady scrape.
    std::thread::sleep(Duration::from_millis(200));
    xsd.reset_served();
    scrape();
    let steady = xsd.served().total();
    xsd.write("/local/domain/1/data/xentinel/pgfault", "2000");
    std::thread::sleep(Duration::from_millis(200));
    xsd.reset_served();
    scrape();
    let changed = xsd.served().total();
    // The periodic full reread, forced at every scrape of a second source.
    let resyncing = xentinel::sources::xenstore::XenstoreSource::new(
        Arc::default(),
        None,
        Duration::from_secs(30),
    )
    .with_resync(Duration::ZERO);
    let mut out = Collection::default();
    rt.block_on(resyncing.collect(&mut out))
        .expect("xenstore collection");
    xsd.reset_served();
    let mut out = Collection::default();
    rt.block_on(resyncing.collect(&mut out))
        .expect("xenstore collection");
    assert_eq!(out.meta.len(), n as usize);
    let resync = xsd.served().total();
    (first, steady, changed, resync)
}

fn xenstore_requests(logs: &Path) -> String {
    let mut md = String::from(
        "### xenstored requests per scrape (xenstore source)\n\n\
         In-process `XenstoreSource` against the tests' real-protocol xenstored \
         (tests/support/xenstored, which counts every request it serves); every domain has \
         `name`, `vm`, `memory/target`, `memory/static-max` and a five-key xentinel guest report. \
         First scrape (connects, sets its watch, reads every domain into its table), then one \
         scrape with nothing changed, then one after one domain's `pgfault` changed (the table \
         is kept by a watch on `/local/domain`; a full reread every 60 s is not in these \
         scrapes).\n\n\
         | domains | first scrape | steady scrape | one domain changed | per domain (steady) | full reread (every 60 s) |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    for n in [100, 1000] {
        let (first, steady, changed, resync) = requests_at(logs, n);
        let _ = writeln!(
            md,
            "| {n} | {first} | {steady} | {changed} | {:.1} | {resync} |",
            steady as f64 / n as f64
        );
    }
    md
}

/// Writes a fixed procfs (an idle guest: no counter moves).
fn fixed_proc(dir: &Path) {
    std::fs::create_dir_all(dir).expect("procfs dir");
    std::fs::write(dir.join("vmstat"), "pgfault 123456\npgmajfault 78\n").expect("vmstat");
    std::fs::write(
        dir.join("meminfo"),
        "MemTotal: 1048576 kB\nMemAvailable: 524288 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    )
    .expect("meminfo");
}

struct AgentRun {
    writes: u64,
    requests: u64,
    transactions: u64,
    cpu_ticks: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

/// Interval and refresh scaled down 50× from the defaults (5 s, 60 s), so
/// one real second stands for 50 of a guest running the defaults.
const SCALE: f64 = 50.0;
const RUN_SECS: u64 = 24;

fn agent_run(bin: &Path, logs: &Path, procfs: &Path, tag: &str) -> AgentRun {
    let xsd = TestXenstored::start(&logs.join(format!("xsd-agent-{tag}.sock")));
    let interval = format!("{}ms", (5000.0 / SCALE) as u64);
    let refresh = format!("{}ms", (60_000.0 / SCALE) as u64);
    let args: Vec<String> = [
        "--log.level",
        "warn",
        "guest-agent",
        "--interval",
        &interval,
        "--refresh",
        &refresh,
        "--path.procfs",
        &procfs.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let path = xsd.path().display().to_string();
    let log = logs.join(format!("guest-agent-{tag}.log"));
    let p = Proc::spawn(
        "guest-agent",
        bin,
        &args,
        &[("XENSTORED_PATH", path.as_str())],
        &log,
    );
    let t0 = Instant::now();
    while xsd
        .read("/local/domain/0/data/xentinel/timestamp")
        .is_none()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the guest agent never reported: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    xsd.reset_served();
    let cpu0 = cpu_ticks(p.pid());
    std::thread::sleep(Duration::from_secs(RUN_SECS));
    let s = xsd.served();
    let run = AgentRun {
        writes: s.of(ty::WRITE),
        requests: s.total(),
        transactions: s.of(ty::TRANSACTION_END),
        cpu_ticks: cpu_ticks(p.pid()) - cpu0,
        rss_kib: status_kib(p.pid(), "VmRSS"),
        hwm_kib: status_kib(p.pid(), "VmHWM"),
    };
    assert_eq!(s.outside_tx(ty::WRITE), 0, "a write outside a transaction");
    drop(p);
    run
}

fn guest_agent(bin: &Path, logs: &Path, node_exporter: Option<&Path>) -> String {
    let idle_proc = logs.join("idle-proc");
    fixed_proc(&idle_proc);
    let idle = agent_run(bin, logs, &idle_proc, "idle");
    let busy = agent_run(bin, logs, Path::new("/proc"), "busy");
    let minutes = RUN_SECS as f64 * SCALE / 60.0;
    let cycles = RUN_SECS as f64 * SCALE / 5.0;
    let tck = clk_tck() as f64;
    let node_rss = node_exporter.map(|b| {
        let port = crate::client::free_port();
        let log = logs.join("node_exporter-light.log");
        let args = vec![
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--no-collector.systemd".to_string(),
        ];
        let mut p = Proc::spawn("node_exporter", b, &args, &[], &log);
        p.wait_ready(port, "/metrics", Duration::from_secs(30), &log);
        let mut c = Conn::new(port);
        for _ in 0..3 {
            c.get("/metrics").expect("scrape node_exporter");
        }
        (status_kib(p.pid(), "VmRSS"), status_kib(p.pid(), "VmHWM"))
    });
    let mut md = format!(
        "### Guest agent: xenstore writes, RSS and CPU\n\n\
         The release binary's `xentinel guest-agent` against the tests' xenstored, with its \
         interval and refresh scaled down {SCALE:.0}× from the defaults (5 s, 60 s: \
         `--interval 100ms --refresh 1200ms`) for {RUN_SECS} s, i.e. {minutes:.0} minutes \
         ({cycles:.0} readings of /proc) of a guest running the defaults. Idle: a fixed procfs \
         (`--path.procfs`, nothing moves). Busy: this machine's own /proc, where page faults and \
         MemAvailable move between any two readings. Before: the previous agent wrote its five \
         keys one by one at every interval, no transaction, idle or busy: 5 × 12 = 60 writes \
         (60 requests) per minute, 72 with `--probe`.\n\n\
         | guest | writes per minute | requests per minute | transactions per minute | \
         before: writes (requests) per minute |\n|---|---:|---:|---:|---:|\n"
    );
    for (name, r) in [("idle", &idle), ("busy", &busy)] {
        let _ = writeln!(
            md,
            "| {name} | {:.1} | {:.1} | {:.1} | 60 (60) |",
            r.writes as f64 / minutes,
            r.requests as f64 / minutes,
            r.transactions as f64 / minutes,
        );
    }
    let _ = writeln!(
        md,
        "\n| process | RSS MiB | peak RSS MiB | CPU per reading of /proc (ms) |\n|---|---:|---:|---:|"
    );
    for (name, r) in [("guest agent, idle", &idle), ("guest agent, busy", &busy)] {
        let _ = writeln!(
            md,
            "| {name} | {:.1} | {:.1} | {:.3} |",
            r.rss_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0,
            r.cpu_ticks as f64 * 1e3 / tck / cycles,
        );
    }
    match node_rss {
        Some((rss, hwm)) => {
            let _ = writeln!(
                md,
                "| node_exporter (after 3 scrapes) | {:.1} | {:.1} | — |",
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0
            );
            let _ = writeln!(
                md,
                "\nguest agent (busy) RSS ÷ node_exporter RSS: {:.2}.",
                busy.rss_kib as f64 / rss as f64
            );
        }
        None => md.push_str("| node_exporter | not installed | | |\n"),
    }
    let _ = writeln!(
        md,
        "\nCPU is utime+stime over the run ({} ms ticks) divided by the readings.",
        1000.0 / tck
    );
    md
}
