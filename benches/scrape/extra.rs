//! Rows for the roles other branches are building: the migration webhook and
//! the heartbeat mesh. Each says "not measured" while the binary lacks them.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use xentinel::migration::joblog::JobLog;
use xentinel::sim::ClusterSpec;

use crate::client::{Conn, Proc, clk_tck, cpu_ticks, free_port, status_kib};

/// True when `xentinel <args>` succeeds and its output contains `needle`.
fn binary_has(bin: &Path, args: &[&str], needle: &str) -> bool {
    Command::new(bin).args(args).output().is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .to_lowercase()
                .contains(needle)
    })
}

/// Alerts sent one at a time for the latency figures.
const LATENCY_ALERTS: usize = 100;
/// Distinct alerts of the burst, each sent twice.
const BURST_ALERTS: usize = 24;
/// Big hosts: migration targets, and where the latency domain moves about.
const TARGETS: usize = 4;

/// The cluster for the webhook runs, kept small because the demo runs a full
/// heartbeat mesh between its hosts (hosts² × 10 packets/s). One small host
/// per burst alert with one 256 MiB domain: too small to ever be a target
/// (its free memory stays under the default 512 MiB headroom), so every
/// burst alert moves exactly one domain and each domain moves once. Big
/// target hosts, the first also holding `lat`, the domain the latency alerts
/// chase from host to host.
fn webhook_cluster() -> ClusterSpec {
    let demo = ClusterSpec::default_demo();
    let big = demo.hosts[0].clone();
    let dom = demo
        .domains
        .iter()
        .find(|d| d.name == "dns1")
        .expect("the demo has dns1")
        .clone();
    let mut spec = demo.clone();
    spec.hosts.clear();
    spec.domains.clear();
    for i in 0..BURST_ALERTS {
        let mut h = big.clone();
        h.name = format!("s{i}");
        h.memory_bytes = h.dom0_memory_bytes + 2 * dom.memory_bytes;
        spec.hosts.push(h);
        let mut d = dom.clone();
        d.name = format!("vm{i}");
        d.host = format!("s{i}");
        spec.domains.push(d);
    }
    for i in 0..TARGETS {
        let mut h = big.clone();
        h.name = format!("t{i}");
        spec.hosts.push(h);
    }
    let mut d = dom;
    d.name = "lat".into();
    d.host = "t0".into();
    spec.domains.push(d);
    spec
}

/// `n` consecutive loopback ports free right now.
fn free_range(n: u16) -> u16 {
    for k in 0..200u32 {
        let base = 20_000 + ((std::process::id() * 7919 + k * 4099) % 30_000) as u16;
        let ok = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no {n} consecutive free loopback ports");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An Alertmanager (version 4) payload with one firing evacuation alert.
fn payload(fp: &str, host: &str) -> Vec<u8> {
    serde_json::json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"XentinelHostWarningFailure\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "xentinel-webhook",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am.invalid",
        "alerts": [{
            "status": "firing",
            "labels": {
                "alertname": "XentinelHostWarningFailure",
                "xentinel_action": "evacuate",
                "host": host,
                "severity": "warning",
                "kind": "ups_on_battery"
            },
            "annotations": {},
            "startsAt": "2024-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": fp
        }]
    })
    .to_string()
    .into_bytes()
}

/// POSTs one alert; returns (accepted job id, or the duplicate's).
fn post_alert(c: &mut Conn, fp: &str, host: &str) -> (Option<i64>, bool) {
    let st = c
        .post_json("/alerts", &payload(fp, host))
        .expect("POST /alerts");
    let v: serde_json::Value = serde_json::from_slice(c.body()).unwrap_or_default();
    assert_eq!(st, 200, "POST /alerts: {v}");
    if let Some(id) = v["accepted"][0]["job"].as_i64() {
        (Some(id), true)
    } else {
        (v["duplicates"][0]["job"].as_i64(), false)
    }
}

/// Polls the job log until `f` gives a value (at most `limit`).
fn poll<T>(log: &JobLog, limit: Duration, mut f: impl FnMut(&JobLog) -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f(log) {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// `n` one-row transactions on a fresh SQLite database at `path` in the job
/// log's mode (rollback journal, `synchronous=FULL`: each commit waits for the disk);
/// milliseconds each. The database is removed afterwards.
fn durable_writes(path: &Path, n: usize) -> Vec<f64> {
    let conn = rusqlite::Connection::open(path).expect("open the baseline database");
    let _: String = conn
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .expect("journal mode");
    conn.execute_batch("PRAGMA synchronous=FULL; CREATE TABLE t (i INTEGER, at REAL);")
        .expect("baseline table");
    let times = (0..n)
        .map(|i| {
            let t0 = Instant::now();
            conn.execute("INSERT INTO t VALUES (?1, ?2)", (i as i64, unix_now()))
                .expect("baseline insert");
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    drop(conn);
    for suffix in ["", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    times
}

/// Webhook: POST-to-first-migration-start latency and alerts/s.
///
/// Runs `xentinel demo --cluster F --webhook` (the webhook in the demo's
/// process, sim executor on the demo's modelled cluster: the standalone
/// `xentinel webhook --executor sim` only knows the 4-host demo cluster),
/// reads the first migration start of each job from its SQLite job log,
/// and counts the migrations started after a burst of alerts each sent twice.
pub fn bench_webhook(bin: &Path, logs: &Path) -> String {
    if !binary_has(bin, &["webhook", "--help"], "webhook") {
        return "not measured: the binary has no `webhook` subcommand yet \
                (`xentinel webhook --help` fails; it is being written on branch `webhook`).\n"
            .into();
    }
    if !binary_has(bin, &["demo", "--help"], "--webhook") {
        return "not measured: `xentinel demo` has no `--webhook` flag to run the webhook on a \
                modelled cluster.\n"
            .into();
    }
    let spec = webhook_cluster();
    let hosts = spec.hosts.len() as u16;
    let file = logs.join("webhook-cluster.yaml");
    std::fs::write(
        &file,
        serde_yaml_ng::to_string(&spec).expect("cluster spec as YAML"),
    )
    .expect("write the cluster file");
    let base = free_range(hosts);
    let port = free_port();
    let args: Vec<String> = [
        "--log.level",
        "warn",
        "demo",
        "--cluster",
        &file.display().to_string(),
        "--no-scenario",
        "--speed",
        "50",
        "--listen-host",
        "127.0.0.1",
        "--base-port",
        &base.to_string(),
        "--webhook",
        "--webhook.insecure-no-auth",
        "--webhook.listen-address",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut args = args;
    // Newer binaries start Prometheus and Alertmanager beside the demo when
    // they are on PATH: this run wants the webhook alone.
    if binary_has(bin, &["demo", "--help"], "--stack") {
        args.extend(["--stack".to_string(), "off".to_string()]);
    }
    let log = logs.join("webhook-demo.log");
    let tmp = logs.display().to_string();
    let mut p = Proc::spawn(
        "xentinel demo --webhook",
        bin,
        &args,
        &[("TMPDIR", tmp.as_str())],
        &log,
    );
    p.wait_ready(port, "/-/healthy", Duration::from_secs(30), &log);
    let db = logs
        .join(format!("xentinel-demo-{}", p.pid()))
        .join("jobs.sqlite");
    let jl = JobLog::open(&db).expect("open the webhook's job log");

    // 1. Latency: one alert at a time on the host where `lat` is now; once
    // its migration is done, the next alert chases it to its new host.
    let mut c = Conn::new(port);
    let mut lat = Vec::with_capacity(LATENCY_ALERTS);
    let mut rtt = Vec::with_capacity(LATENCY_ALERTS);
    let mut missing = 0;
    let mut host = "t0".to_string();
    for i in 0..LATENCY_ALERTS {
        let t0 = unix_now();
        let (id, _) = post_alert(&mut c, &format!("lat{i}"), &host);
        rtt.push((unix_now() - t0) * 1e3);
        let id = id.expect("a new alert is accepted");
        match poll(&jl, Duration::from_secs(10), |l| {
            l.job(id).ok().flatten().and_then(|j| j.first_start_unix)
        }) {
            Some(first) => lat.push((first - t0) * 1e3),
            None => missing += 1,
        }
        let moved = poll(&jl, Duration::from_secs(30), |l| {
            let steps = l.steps(id).ok()?;
            let s = steps.iter().find(|s| s.domain == "lat")?;
            (s.state == "done").then(|| s.target.clone()).flatten()
        });
        match moved {
            Some(t) => host = t,
            None => break,
        }
    }

    // Baselines in the same run, beside the same demo: an HTTP round trip the
    // webhook answers without work, and one durable SQLite write (rollback
    // journal, synchronous=FULL, like the job log) in the job log's directory.
    let mut healthy = Vec::with_capacity(LATENCY_ALERTS);
    for _ in 0..LATENCY_ALERTS {
        let t0 = Instant::now();
        let st = c.get("/-/healthy").expect("GET /-/healthy");
        assert_eq!(st, 200, "GET /-/healthy");
        healthy.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let commits = durable_writes(&db.with_file_name("baseline.sqlite"), LATENCY_ALERTS);

    // 2. Burst: two senders (an HA pair of Alertmanagers) each post every
    // alert once, as fast as the webhook answers.
    let started = Instant::now();
    let senders: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Conn::new(port);
                let mut ids = Vec::new();
                let mut accepted = 0;
                for i in 0..BURST_ALERTS {
                    let (id, new) = post_alert(&mut c, &format!("burst{i}"), &format!("s{i}"));
                    accepted += usize::from(new);
                    ids.extend(id.filter(|_| new));
                }
                (ids, accepted)
            })
        })
        .collect();
    let mut jobs = Vec::new();
    let mut accepted = 0;
    for s in senders {
        let (ids, a) = s.join().expect("sender thread");
        jobs.extend(ids);
        accepted += a;
    }
    let secs = started.elapsed().as_secs_f64();
    let posts = 2 * BURST_ALERTS;
    // Every job's migrations started (or the wait gave up).
    let count_started = |l: &JobLog| -> usize {
        jobs.iter()
            .map(|id| {
                l.steps(*id)
                    .map(|s| s.iter().filter(|s| s.started.is_some()).count())
                    .unwrap_or(0)
            })
            .sum()
    };
    let migrations = poll(&jl, Duration::from_secs(30), |l| {
        let n = count_started(l);
        (n >= BURST_ALERTS).then_some(n)
    })
    .unwrap_or_else(|| count_started(&jl));
    // Anything started later would be a second migration of a domain.
    std::thread::sleep(Duration::from_millis(500));
    let migrations_after = count_started(&jl);
    drop(p);

    let mut out = String::new();
    if lat.is_empty() {
        out.push_str("no migration started within 10 s of any alert.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "`xentinel demo --cluster <{BURST_ALERTS} small hosts with one 256 MiB domain each, \
         {TARGETS} big hosts> --speed 50 --webhook --webhook.insecure-no-auth --stack off` (sim \
         executor, SQLite job log with synchronous=FULL; the demo also runs its heartbeat mesh \
         between the {} hosts), driven over loopback HTTP. The latency alerts chase one domain \
         from big host to big host, each sent once its previous migration is done.\n",
        BURST_ALERTS + TARGETS
    );
    out.push_str("| measure | value |\n|---|--:|\n");
    let _ = writeln!(
        out,
        "| POST sent → first migration start, p50 ({} alerts one at a time) | {:.2} ms |",
        lat.len(),
        pct(&mut lat, 0.5)
    );
    let _ = writeln!(out, "| … p99 | {:.2} ms |", pct(&mut lat, 0.99));
    let _ = writeln!(out, "| … max | {:.2} ms |", pct(&mut lat, 1.0));
    let _ = writeln!(
        out,
        "| POST round trip (200 OK), p50 | {:.2} ms |",
        pct(&mut rtt, 0.5)
    );
    let _ = writeln!(
        out,
        "| baseline: `GET /-/healthy` round trip on the same connection, p50 / p99 | {:.2} / {:.2} ms |",
        pct(&mut healthy, 0.5),
        pct(&mut healthy, 0.99)
    );
    let _ = writeln!(
        out,
        "| baseline: one durable SQLite write (rollback journal, synchronous=FULL) beside the job log, p50 / p99 | {:.2} / {:.2} ms |",
        pct(&mut commits.clone(), 0.5),
        pct(&mut commits.clone(), 0.99)
    );
    let _ = writeln!(
        out,
        "| alerts without a migration start within 10 s | {missing} |"
    );
    let _ = writeln!(
        out,
        "| burst: alerts accepted per second ({posts} POSTs: {BURST_ALERTS} distinct alerts, each sent by two senders at once) | {:.0} /s |",
        posts as f64 / secs
    );
    let _ = writeln!(
        out,
        "| burst: jobs started / duplicates | {accepted} / {} |",
        posts - accepted
    );
    let _ = writeln!(
        out,
        "| burst: migrations started / distinct alerts' domains | {migrations_after} / {BURST_ALERTS} ({}) |",
        if migrations_after == BURST_ALERTS && migrations == BURST_ALERTS {
            "equal"
        } else {
            "**differ**"
        }
    );
    out
}

/// Peers of the measured heartbeat node.
const HB_PEERS: usize = 16;
/// Seconds of the heartbeat CPU measurement.
const HB_SECS: u64 = 10;

/// A free loopback UDP port.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback UDP port")
}

/// Sum of the samples of `family` (any labels) in a text exposition body.
fn metric_sum(body: &[u8], family: &str) -> f64 {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Heartbeat: CPU per second at a 10 ms interval with 16 peers on loopback.
///
/// Starts 18 exporters with `--source none` (no domain data): the measured
/// node with 16 peers, the 16 peers (each with the measured node as its one
/// peer, so it also answers 1,600 pings/s), and a baseline node with no
/// heartbeat; all HMAC-authenticated. Measures both nodes' CPU over the
/// same seconds.
pub fn bench_heartbeat(bin: &Path, logs: &Path) -> String {
    if !binary_has(bin, &["exporter", "--help"], "heartbeat") {
        return "not measured: `xentinel exporter --help` has no heartbeat flags yet \
                (the mesh is being written on branch `heartbeat`).\n"
            .into();
    }
    match heartbeat_run(bin, logs) {
        Ok(s) => s,
        Err(e) => format!("not measured: {e}\n"),
    }
}

fn heartbeat_run(bin: &Path, logs: &Path) -> Result<String, String> {
    let key = logs.join("heartbeat.key");
    std::fs::write(&key, "bench-key-0123456789abcdef0123456789\n").map_err(|e| e.to_string())?;
    let cfg = logs.join("heartbeat.yml");
    std::fs::write(
        &cfg,
        format!(
            "heartbeat:\n  interval: 10ms\n  key_file: {}\n",
            key.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let udp: Vec<u16> = (0..=HB_PEERS).map(|_| free_udp_port()).collect();
    let node = |name: &str, http: u16, udp_port: Option<u16>, peers: &[(String, u16)]| {
        let mut a: Vec<String> = [
            "--log.level",
            "warn",
            "exporter",
            "--source",
            "none",
            "--config.file",
            &cfg.display().to_string(),
            "--web.listen-address",
            &format!("127.0.0.1:{http}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(u) = udp_port {
            a.push("--heartbeat.name".into());
            a.push(name.into());
            a.push("--heartbeat.listen-address".into());
            a.push(format!("127.0.0.1:{u}"));
        }
        for (n, p) in peers {
            a.push("--heartbeat.peer".into());
            a.push(format!("{n}=127.0.0.1:{p}"));
        }
        a
    };
    let names: Vec<String> = (1..=HB_PEERS).map(|i| format!("p{i}")).collect();
    let peers: Vec<(String, u16)> = names
        .iter()
        .cloned()
        .zip(udp[1..].iter().copied())
        .collect();
    let mut procs = Vec::new();
    for (i, (n, u)) in peers.iter().enumerate() {
        let http = free_port();
        let log = logs.join(format!("heartbeat-{n}.log"));
        let args = node(n, http, Some(*u), &[("n0".into(), udp[0])]);
        let mut p = Proc::spawn(&format!("heartbeat peer {i}"), bin, &args, &[], &log);
        p.try_ready(http, "/-/healthy", Duration::from_secs(20), &log)?;
        procs.push(p);
    }
    let http0 = free_port();
    let log0 = logs.join("heartbeat-n0.log");
    let mut n0 = Proc::spawn(
        "heartbeat node",
        bin,
        &node("n0", http0, Some(udp[0]), &peers),
        &[],
        &log0,
    );
    n0.try_ready(http0, "/-/healthy", Duration::from_secs(20), &log0)?;
    let httpb = free_port();
    let logb = logs.join("heartbeat-baseline.log");
    let mut base = Proc::spawn(
        "baseline node",
        bin,
        &node("b", httpb, None, &[]),
        &[],
        &logb,
    );
    base.try_ready(httpb, "/-/healthy", Duration::from_secs(20), &logb)?;

    // Every peer up before measuring.
    let mut c = Conn::new(http0);
    let start = Instant::now();
    loop {
        let _ = c.get("/metrics");
        let up = metric_sum(c.body(), "xentinel_heartbeat_peer_up");
        if up >= HB_PEERS as f64 {
            break;
        }
        if start.elapsed() > Duration::from_secs(15) {
            return Err(format!(
                "only {up} of {HB_PEERS} heartbeat peers up after 15 s (logs in {})",
                logs.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.get("/metrics");
    let sent0 = metric_sum(c.body(), "xentinel_heartbeat_sent_total");
    let recv0 = metric_sum(c.body(), "xentinel_heartbeat_received_total");
    let lost0 = metric_sum(c.body(), "xentinel_heartbeat_lost_total");
    let tck = clk_tck();
    let (c0, b0) = (cpu_ticks(n0.pid()), cpu_ticks(base.pid()));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(HB_SECS));
    let secs = t0.elapsed().as_secs_f64();
    let (c1, b1) = (cpu_ticks(n0.pid()), cpu_ticks(base.pid()));
    let _ = c.get("/metrics");
    let sent = metric_sum(c.body(), "xentinel_heartbeat_sent_total") - sent0;
    let recv = metric_sum(c.body(), "xentinel_heartbeat_received_total") - recv0;
    let lost = metric_sum(c.body(), "xentinel_heartbeat_lost_total") - lost0;
    let rss = status_kib(n0.pid(), "VmRSS");
    drop((n0, base, procs));

    let ms_per_s = |a: u64, b: u64| (b - a) as f64 * 1e3 / tck as f64 / secs;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "One exporter (`--source none`) pinging {HB_PEERS} peers every 10 ms over loopback UDP \
         with HMAC-SHA256, its peers pinging it back, for {secs:.0} s.\n"
    );
    out.push_str("| measure | value |\n|---|--:|\n");
    let _ = writeln!(
        out,
        "| CPU of the heartbeat node | {:.1} ms/s |",
        ms_per_s(c0, c1)
    );
    let _ = writeln!(
        out,
        "| CPU of the same exporter without heartbeat | {:.1} ms/s |",
        ms_per_s(b0, b1)
    );
    let _ = writeln!(out, "| pings sent by the node | {:.0} /s |", sent / secs);
    let _ = writeln!(
        out,
        "| answers received by the node | {:.0} /s |",
        recv / secs
    );
    let _ = writeln!(out, "| counted lost | {lost:.0} |");
    let _ = writeln!(
        out,
        "| RSS of the heartbeat node | {:.1} MiB |",
        rss as f64 / 1024.0
    );
    Ok(out)
}
