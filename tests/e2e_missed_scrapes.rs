//! A failing host is exactly the host whose scrapes start to fail. End to end, with real
//! Prometheus and Alertmanager (the shipped rules and routing, as the demo runs them) and the
//! demo's simulated cluster with its migration webhook:
//!
//! - xen3 raises a warning failure; once its evacuation has moved one domain, its exporter
//!   stops answering for 30 s (a TCP proxy of this test's own, between Prometheus and that
//!   exporter, holds every connection unanswered). The alert stays firing through the outage
//!   and every one of xen3's domains still moves.
//! - xen4 raises a warning and clears it (an explicit 0 on a good scrape) while its evacuation
//!   runs: the alert resolves (after `keep_firing_for`) and the steps not yet started are
//!   cancelled; the ones that had started finish.
//!
//! Both evacuations run at once, into xen1 and xen2 (one migration per target at a time); each
//! migration takes about 8 s (512 MiB at 64 MiB/s), so both are still running when the outage
//! and the clear happen. The run prints its measured timeline.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::proc::{Running, bin, wait_for_port};
use support::webhook::{free_port, request, temp_dir};

const OUTAGE: Duration = Duration::from_secs(30);
const A_DOMAINS: usize = 8;
const B_DOMAINS: usize = 12;

fn cluster() -> String {
    let mut s = String::from("hosts:\n");
    for (h, mem) in [
        ("xen1", "64GiB"),
        ("xen2", "64GiB"),
        ("xen3", "16GiB"),
        ("xen4", "16GiB"),
    ] {
        s.push_str(&format!(
            "  - {{name: {h}, cpus: 16, memory_bytes: {mem}, migration_bandwidth: 67108864}}\n"
        ));
    }
    s.push_str("domains:\n");
    for (prefix, host, n) in [("a", "xen3", A_DOMAINS), ("b", "xen4", B_DOMAINS)] {
        for i in 1..=n {
            s.push_str(&format!(
                "  - {{name: {prefix}{i}, host: {host}, vcpus: 1, memory_bytes: 512MiB, workload: \
                 {{request_rate: 10, working_set_bytes: 100MiB, dirty_rate: 50, cpu_seconds_per_request: 0.001}}}}\n"
            ));
        }
    }
    s
}

/// Simulated seconds = seconds since the demo started (speed 1). Prometheus scrapes every
/// host well before 12 s.
const SCENARIO: &str = "\
- at: 12s
  action: {warning: {host: xen3, kind: ups_on_battery, on: true}}
- at: 12s
  action: {warning: {host: xen4, kind: maintenance, on: true}}
- at: 22s
  action: {warning: {host: xen4, kind: maintenance, on: false}}
";

/// A TCP proxy for one exporter. While `cut`, nothing goes through: new connections are
/// accepted and left unanswered, requests on open ones are read and dropped (a host that
/// stopped answering). At most 64 connections at once.
struct Proxy {
    addr: String,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn proxy(upstream: String) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cut = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let (c, s) = (cut.clone(), stop.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let client = match listener.accept() {
                Ok((client, _)) => client,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if open.load(Ordering::SeqCst) >= 64 {
                continue; // dropped: closed at once
            }
            open.fetch_add(1, Ordering::SeqCst);
            let (c, s, open, upstream) = (c.clone(), s.clone(), open.clone(), upstream.clone());
            std::thread::spawn(move || {
                pipe(client, &upstream, &c, &s);
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Proxy { addr, cut, stop }
}

/// Forwards one client connection to `upstream`, dropping what the client sends while `cut`.
fn pipe(mut client: TcpStream, upstream: &str, cut: &AtomicBool, stop: &AtomicBool) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut up_r), Ok(mut client_w)) = (up.try_clone(), client.try_clone()) else {
        return;
    };
    // Upstream to client: whatever the exporter answers (only to requests that went through).
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut client_w);
        let _ = client_w.shutdown(std::net::Shutdown::Both);
    });
    let mut buf = [0u8; 16384];
    while !stop.load(Ordering::SeqCst) {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if !cut.load(Ordering::SeqCst) && up.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = up.shutdown(std::net::Shutdown::Both);
    let _ = back.join();
}

/// Four consecutive free ports on 127.0.0.1 (the demo's hosts listen on base..base+3).
fn free_base_port() -> u16 {
    for _ in 0..200 {
        let base = 20000 + (free_port() % 40000);
        let held: Vec<_> = (0..4)
            .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == 4 {
            return base;
        }
    }
    panic!("no four consecutive free ports on 127.0.0.1");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query's result, or `None` while Prometheus cannot answer.
fn query(prom: &str, q: &str) -> Option<Vec<Value>> {
    let path = format!("/api/v1/query?query={}", urlencode(q));
    let (code, body) = request(prom, "GET", &path, &[], b"");
    let v: Value = serde_json::from_str(&body).ok()?;
    (code == 200 && v["status"] == "success").then(|| v["data"]["result"].as_array().cloned())?
}

fn firing(prom: &str, host: &str) -> Option<bool> {
    let q = format!(
        "ALERTS{{alertname=\"XentinelHostWarningFailure\",host=\"{host}\",alertstate=\"firing\"}}"
    );
    query(prom, &q).map(|r| !r.is_empty())
}

fn rfc3339_to_unix(s: &str) -> f64 {
    let (date, time) = s.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t: Vec<f64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    days as f64 * 86400.0 + t[0] * 3600.0 + t[1] * 60.0 + t[2]
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One job of the webhook with its steps, by host.
fn job_of(hook: &str, auth: &str, host: &str) -> Option<Value> {
    let (code, body) = request(hook, "GET", "/jobs", &[("Authorization", auth)], b"");
    if code != 200 {
        return None;
    }
    let jobs: Value = serde_json::from_str(&body).ok()?;
    let id = jobs["jobs"]
        .as_array()?
        .iter()
        .filter(|j| j["host"] == host)
        .map(|j| j["id"].as_i64())
        .min()??;
    let (code, body) = request(
        hook,
        "GET",
        &format!("/jobs/{id}"),
        &[("Authorization", auth)],
        b"",
    );
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

fn steps(job: &Value) -> Vec<Value> {
    job["steps"].as_array().cloned().unwrap_or_default()
}

fn final_state(job: &Option<Value>) -> bool {
    job.as_ref()
        .and_then(|j| j["state"].as_str())
        .is_some_and(|s| matches!(s, "done" | "failed" | "cancelled"))
}

#[test]
fn a_warned_host_that_stops_answering_is_still_evacuated_and_only_a_clear_cancels() {
    support::scrape::promtool_check_metrics(""); // fail loudly now if Prometheus is missing
    let dir = temp_dir("e2e-missed");
    std::fs::write(dir.join("cluster.yml"), cluster()).unwrap();
    std::fs::write(dir.join("scenario.yml"), SCENARIO).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "missed-scrapes-secret\n").unwrap();
    let auth = "Bearer missed-scrapes-secret";
    let (prom_port, am_port, hook_port) = (free_port(), free_port(), free_port());
    let prom = format!("127.0.0.1:{prom_port}");
    let hook = format!("127.0.0.1:{hook_port}");
    let base = free_base_port();

    // The demo: four simulated hosts' exporters and the webhook (sim executor) planning from
    // the Prometheus below; no stack of its own.
    let t0 = unix_now();
    let mut child = Command::new(bin())
        .args(["demo", "--stack", "off", "--webhook", "--speed", "1"])
        .args(["--base-port", &base.to_string()])
        .args(["--webhook.listen-address", &hook])
        .arg("--webhook.token-file")
        .arg(&token)
        .args(["--webhook.prometheus-url", &format!("http://{prom}")])
        .arg("--cluster")
        .arg(dir.join("cluster.yml"))
        .arg("--scenario")
        .arg(dir.join("scenario.yml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log: Arc<Mutex<Vec<(f64, String)>>> = Arc::default();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                println!("demo| {line}");
                log.lock().unwrap().push((unix_now(), line));
            }
        });
    }
    let _demo = Running {
        child,
        addr: hook.clone(),
    };
    let hosts = ["xen1", "xen2", "xen3", "xen4"];
    for i in 0..4 {
        wait_for_port(&format!("127.0.0.1:{}", base + i), Duration::from_secs(30));
    }
    wait_for_port(&hook, Duration::from_secs(30));

    // Prometheus scrapes every host through a proxy; only xen3's is ever cut.
    let proxies: BTreeMap<&str, Proxy> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (*h, proxy(format!("127.0.0.1:{}", base + i as u16))))
        .collect();
    let spec = xentinel::roles::demo::stack::StackSpec {
        exporters: hosts
            .iter()
            .map(|h| (h.to_string(), proxies[h].addr.clone()))
            .collect(),
        webhook: Some(hook.clone()),
        token_file: Some(token.clone()),
        prometheus_addr: prom.clone(),
        alertmanager_addr: format!("127.0.0.1:{am_port}"),
        interval: Duration::from_secs(1),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _stack = rt
        .block_on(xentinel::roles::demo::stack::start(
            &spec,
            &dir.join("stack"),
        ))
        .unwrap_or_else(|e| panic!("cannot start Prometheus and Alertmanager: {e}"));

    // Everything below is sampled every 250 ms until both jobs have ended.
    let mut cut_at: Option<f64> = None;
    let mut restored_at: Option<f64> = None;
    let mut not_firing_during_outage = Vec::new();
    let mut saw_xen3_down = false;
    let mut first_firing: BTreeMap<&str, f64> = BTreeMap::new();
    let mut xen4_resolved_at: Option<f64> = None;
    let mut xen4_zero_at: Option<f64> = None;
    let (mut a, mut b): (Option<Value>, Option<Value>);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(
            Instant::now() < deadline,
            "the evacuations did not end within 180 s"
        );
        let now = unix_now();
        a = job_of(&hook, auth, "xen3");
        b = job_of(&hook, auth, "xen4");
        for host in ["xen3", "xen4"] {
            if firing(&prom, host) == Some(true) {
                first_firing.entry(host).or_insert(now);
            }
        }
        // The outage: once xen3's evacuation has moved a domain, for 30 s.
        let a_done = a.as_ref().map_or(0, |j| {
            steps(j).iter().filter(|s| s["state"] == "done").count()
        });
        if cut_at.is_none() && a_done >= 1 {
            proxies["xen3"].cut.store(true, Ordering::SeqCst);
            cut_at = Some(now);
            println!("t+{:.1}s: xen3's exporter stops answering", now - t0);
        }
        if let (Some(c), None) = (cut_at, restored_at) {
            if now - c >= OUTAGE.as_secs_f64() {
                proxies["xen3"].cut.store(false, Ordering::SeqCst);
                restored_at = Some(now);
                println!("t+{:.1}s: xen3's exporter answers again", now - t0);
            } else if now - c > 1.0 {
                match firing(&prom, "xen3") {
                    Some(true) => {}
                    other => {
                        not_firing_during_outage.push(format!("t+{:.1}s: {other:?}", now - t0))
                    }
                }
                if query(&prom, "up{job=\"xentinel\",host=\"xen3\"} == 0")
                    .is_some_and(|r| !r.is_empty())
                {
                    saw_xen3_down = true;
                }
            }
        }
        // xen4: its clear scraped, then the resolve.
        if xen4_zero_at.is_none()
            && query(
                &prom,
                "xentinel_host_warning{host=\"xen4\",kind=\"maintenance\"} == 0",
            )
            .is_some_and(|r| !r.is_empty())
            && first_firing.contains_key("xen4")
        {
            xen4_zero_at = Some(now);
        }
        if xen4_resolved_at.is_none()
            && xen4_zero_at.is_some()
            && firing(&prom, "xen4") == Some(false)
        {
            xen4_resolved_at = Some(now);
        }
        if final_state(&a) && final_state(&b) && restored_at.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (a, b) = (a.unwrap(), b.unwrap());
    let logged = |needle: &str| -> f64 {
        log.lock()
            .unwrap()
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(t, _)| *t)
            .unwrap_or_else(|| panic!("the demo did not log {needle:?}"))
    };
    let raised = logged("warning ups_on_battery raised on xen3");
    let cleared = logged("warning maintenance cleared on xen4");
    let (cut_at, restored_at) = (cut_at.unwrap(), restored_at.unwrap());

    // --- xen3: every domain moved, once, while its exporter did not answer for 30 s.
    let a_steps = steps(&a);
    let started = |s: &Value| s["started"].as_str().map(rfc3339_to_unix);
    let ended = |s: &Value| s["ended"].as_str().map(rfc3339_to_unix);
    println!("\nxen3's job: {}", a["state"]);
    for s in &a_steps {
        println!(
            "  {:<4} -> {:<5} {:<9} t+{:>5.1}s .. t+{:>5.1}s",
            s["domain"].as_str().unwrap_or("?"),
            s["target"].as_str().unwrap_or("-"),
            s["state"].as_str().unwrap_or("?"),
            started(s).map_or(f64::NAN, |t| t - t0),
            ended(s).map_or(f64::NAN, |t| t - t0),
        );
    }
    assert_eq!(a["state"], "done", "{a:#}");
    let moved: BTreeSet<&str> = a_steps
        .iter()
        .filter_map(|s| s["domain"].as_str())
        .collect();
    let expected: BTreeSet<String> = (1..=A_DOMAINS).map(|i| format!("a{i}")).collect();
    assert_eq!(
        moved,
        expected.iter().map(String::as_str).collect(),
        "every domain of xen3, once"
    );
    assert_eq!(a_steps.len(), A_DOMAINS);
    for s in &a_steps {
        assert_eq!(s["state"], "done", "{s:#}");
        assert!(
            matches!(s["target"].as_str(), Some("xen1" | "xen2")),
            "{s:#}"
        );
    }
    assert!(
        saw_xen3_down,
        "Prometheus never saw xen3 down: the outage did not reach it"
    );
    assert!(
        not_firing_during_outage.is_empty(),
        "XentinelHostWarningFailure{{host=xen3}} stopped firing while its exporter did not answer: {not_firing_during_outage:?}"
    );
    let started_in_outage = a_steps
        .iter()
        .filter(|s| started(s).is_some_and(|t| t > cut_at && t < restored_at))
        .count();
    assert!(
        started_in_outage >= 1,
        "no step of xen3's evacuation started during the outage: it was not in the middle"
    );

    // --- xen4: the explicit clear resolved the alert; the steps not started were cancelled.
    let b_steps = steps(&b);
    println!("\nxen4's job: {}", b["state"]);
    for s in &b_steps {
        println!(
            "  {:<4} -> {:<5} {:<9} t+{:>5.1}s",
            s["domain"].as_str().unwrap_or("?"),
            s["target"].as_str().unwrap_or("-"),
            s["state"].as_str().unwrap_or("?"),
            started(s).map_or(f64::NAN, |t| t - t0),
        );
    }
    let resolved = xen4_resolved_at.expect("XentinelHostWarningFailure{host=xen4} never resolved");
    assert_eq!(b["state"], "cancelled", "{b:#}");
    let done: Vec<&Value> = b_steps.iter().filter(|s| s["state"] == "done").collect();
    let cancelled: Vec<&Value> = b_steps
        .iter()
        .filter(|s| s["state"] == "cancelled")
        .collect();
    assert!(
        !done.is_empty(),
        "no step of xen4 finished before the clear took effect"
    );
    assert!(!cancelled.is_empty(), "no step of xen4 was left to cancel");
    assert_eq!(done.len() + cancelled.len(), B_DOMAINS, "{b:#}");
    // keep_firing_for: the clear holds 30 s before the alert resolves, never less.
    assert!(
        resolved - cleared >= 29.0,
        "the alert resolved {:.1} s after the clear, inside keep_firing_for",
        resolved - cleared
    );
    // The resolve travels Prometheus -> Alertmanager (group_interval 1 s) -> webhook: a step
    // may still start in that second or two, none later.
    for s in &done {
        let t = started(s).unwrap();
        assert!(
            t < resolved + 5.0,
            "{} started {:.1} s after the alert resolved",
            s["domain"],
            t - resolved
        );
    }
    // The cancelled domains stayed on xen4.
    std::thread::sleep(Duration::from_secs(2));
    let names: Vec<&str> = cancelled
        .iter()
        .filter_map(|s| s["domain"].as_str())
        .collect();
    let on = query(
        &prom,
        &format!("xen_domain_info{{domain=~\"{}\"}}", names.join("|")),
    )
    .unwrap();
    for r in &on {
        assert_eq!(r["metric"]["host"], "xen4", "{r}");
    }
    assert_eq!(on.len(), names.len(), "{on:?}");

    let first_a = a_steps.iter().filter_map(started).fold(f64::MAX, f64::min);
    let last_a = a_steps.iter().filter_map(ended).fold(0.0, f64::max);
    println!(
        "\nTimeline (t = seconds since the demo started; scrape and evaluation 1 s, keep_firing_for 30 s):\n\
         xen3: warning raised t+{:.1}, alert firing t+{:.1}, first migration t+{:.1}, exporter silent t+{:.1} .. t+{:.1} \
         ({} of {} migrations started in that window), last migration ended t+{:.1}: {} of {} domains moved\n\
         xen4: warning raised t+{:.1}, alert firing t+{:.1}, cleared t+{:.1}, 0 scraped t+{:.1}, alert resolved t+{:.1} \
         ({:.1} s after the clear): {} migrations done, {} cancelled",
        raised - t0,
        first_firing.get("xen3").copied().unwrap_or(f64::NAN) - t0,
        first_a - t0,
        cut_at - t0,
        restored_at - t0,
        started_in_outage,
        A_DOMAINS,
        last_a - t0,
        a_steps.len(),
        A_DOMAINS,
        logged("warning maintenance raised on xen4") - t0,
        first_firing.get("xen4").copied().unwrap_or(f64::NAN) - t0,
        cleared - t0,
        xen4_zero_at.unwrap_or(f64::NAN) - t0,
        resolved - t0,
        resolved - cleared,
        done.len(),
        cancelled.len(),
    );
    drop(proxies);
    drop(_stack);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
