//! The whole loop with real Prometheus and real Alertmanager, started by
//! `xentinel demo --stack on` with the shipped rules and routing: a warning
//! failure raised on a host → alert → webhook → every domain of that host
//! moved to healthy hosts, none twice, none onto a warned host. Then the same
//! failure with the webhook disabled: the host's domains go down with it.
//! Also: every dashboard panel query and every rule expression runs against
//! that Prometheus, and every metric they name has data.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::dashboards::{Substitution, load_dashboards, metric_names, rules};
use support::proc::{Running, bin, free_port, wait_for_port};
use support::webhook::{request, wait_for};

/// xen3 holds three small domains; xen2 is warned (maintenance) from the
/// start, so it is evacuated itself and must never receive one; xen1 has room
/// for all.
const CLUSTER: &str = "
hosts:
  - {name: xen1, cpus: 16, memory_bytes: 64GiB, migration_bandwidth: 1250000000}
  - {name: xen2, cpus: 16, memory_bytes: 64GiB, migration_bandwidth: 1250000000}
  - {name: xen3, cpus: 8, memory_bytes: 32GiB, migration_bandwidth: 1250000000}
domains:
  - {name: web1, host: xen1, vcpus: 2, memory_bytes: 1GiB, workload: {request_rate: 100, working_set_bytes: 300MiB, dirty_rate: 500, cpu_seconds_per_request: 0.002}}
  - {name: db2, host: xen2, vcpus: 2, memory_bytes: 1GiB, workload: {request_rate: 50, working_set_bytes: 500MiB, dirty_rate: 800, cpu_seconds_per_request: 0.004}}
  - {name: api3, host: xen3, vcpus: 2, memory_bytes: 512MiB, workload: {request_rate: 200, working_set_bytes: 200MiB, dirty_rate: 300, cpu_seconds_per_request: 0.002}}
  - {name: cache3, host: xen3, vcpus: 1, memory_bytes: 768MiB, workload: {request_rate: 400, working_set_bytes: 700MiB, dirty_rate: 1000, cpu_seconds_per_request: 0.001}}
  - {name: mail3, host: xen3, vcpus: 1, memory_bytes: 256MiB, workload: {request_rate: 10, working_set_bytes: 100MiB, dirty_rate: 50, cpu_seconds_per_request: 0.003}}
";

const ON_XEN3: [&str; 3] = ["api3", "cache3", "mail3"];

struct Demo {
    _child: Running,
    prom: String,
    webhook: String,
    token: Option<String>,
    /// `(unix seconds, line)` of everything the demo logged.
    log: Arc<Mutex<Vec<(f64, String)>>>,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn start_demo(dir: &std::path::Path, scenario: &str, webhook: bool) -> Demo {
    std::fs::write(dir.join("cluster.yml"), CLUSTER).unwrap();
    std::fs::write(dir.join("scenario.yml"), scenario).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "e2e-secret\n").unwrap();
    let (prom, am, hook) = (free_port(), free_port(), free_port());
    let base = 30000 + (std::process::id() % 10000) as u16 + if webhook { 0 } else { 10 };
    let mut cmd = Command::new(bin());
    cmd.args([
        "demo",
        "--stack",
        "on",
        "--stack.interval",
        "1s",
        "--speed",
        "1",
    ])
    .args(["--base-port", &base.to_string()])
    .args(["--stack.prometheus-address", &format!("127.0.0.1:{prom}")])
    .args(["--stack.alertmanager-address", &format!("127.0.0.1:{am}")])
    .args(["--webhook.listen-address", &format!("127.0.0.1:{hook}")])
    .arg("--cluster")
    .arg(dir.join("cluster.yml"))
    .arg("--scenario")
    .arg(dir.join("scenario.yml"));
    if webhook {
        cmd.arg("--webhook.token-file").arg(&token);
    } else {
        cmd.arg("--no-webhook");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
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
    let running = Running {
        child,
        addr: String::new(),
    };
    wait_for_port(&format!("127.0.0.1:{prom}"), Duration::from_secs(30));
    Demo {
        _child: running,
        prom: format!("127.0.0.1:{prom}"),
        webhook: format!("127.0.0.1:{hook}"),
        token: webhook.then(|| "e2e-secret".to_string()),
        log,
    }
}

/// An instant query; panics on a PromQL error (a typo'd query fails here).
fn query(prom: &str, q: &str) -> Vec<Value> {
    let path = format!("/api/v1/query?query={}", urlencode(q));
    let (code, body) = request(prom, "GET", &path, &[], b"");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{code}: {body}"));
    assert_eq!(v["status"], "success", "query {q} failed: {body}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// The first sample's value of a query, `None` while Prometheus is not ready or has no data.
fn first_value(prom: &str, q: &str) -> Option<String> {
    let path = format!("/api/v1/query?query={}", urlencode(q));
    let (code, body) = request(prom, "GET", &path, &[], b"");
    if code != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    Some(
        v["data"]["result"].get(0)?["value"][1]
            .as_str()?
            .to_string(),
    )
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

/// Hosts each of `domains` is seen on now, from Prometheus.
fn where_are(prom: &str, domains: &[&str]) -> BTreeMap<String, Vec<String>> {
    let sel = domains.join("|");
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in query(prom, &format!("xen_domain_info{{domain=~\"{sel}\"}}")) {
        let d = s["metric"]["domain"].as_str().unwrap().to_string();
        m.entry(d)
            .or_default()
            .push(s["metric"]["host"].as_str().unwrap().to_string());
    }
    m
}

fn rfc3339_to_unix(s: &str) -> f64 {
    // 2026-11-25T16:20:26.576Z (what the job log writes)
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

#[test]
fn warning_failure_evacuates_the_host_and_without_the_webhook_its_domains_die() {
    support::scrape::promtool_check_metrics(""); // fail loudly now if promtool is missing
    let dir = support::webhook::temp_dir("e2e");

    // --- With the webhook: the warning at 20 s moves xen3's domains before it dies at 60 s.
    let scenario = "\
- at: 10s
  action: {warning: {host: xen2, kind: maintenance, on: true}}
- at: 20s
  action: {warning: {host: xen3, kind: ups_on_battery, on: true}}
- at: 60s
  action: {kill_host: xen3}
";
    let demo = start_demo(&dir, scenario, true);
    let prom = demo.prom.clone();
    wait_for(
        "all three exporters up in Prometheus",
        Duration::from_secs(30),
        || (first_value(&prom, "sum(up{job=\"xentinel\"})")? == "3").then_some(()),
    );
    let auth = format!("Bearer {}", demo.token.as_deref().unwrap());
    // xen2's maintenance (raised at 10 s, once Prometheus has scraped every host: the
    // planner places from what Prometheus has seen) evacuates it too; xen3's job is the one
    // we follow.
    let get = |path: &str| -> Option<Value> {
        let (code, body) = request(&demo.webhook, "GET", path, &[("Authorization", &auth)], b"");
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    };
    let job = wait_for(
        "an evacuation job for xen3 to finish",
        Duration::from_secs(50),
        || {
            let jobs = get("/jobs")?;
            let id = jobs["jobs"]
                .as_array()?
                .iter()
                .find(|j| j["host"] == "xen3")?["id"]
                .as_i64()?;
            let v = get(&format!("/jobs/{id}"))?;
            matches!(v["state"].as_str()?, "done" | "failed" | "cancelled").then_some(v)
        },
    );
    assert_eq!(job["state"], "done", "{job:#}");
    assert_eq!(job["host"], "xen3");
    let steps = job["steps"].as_array().unwrap();
    let moved: BTreeSet<&str> = steps
        .iter()
        .map(|s| s["domain"].as_str().unwrap())
        .collect();
    assert_eq!(
        moved,
        ON_XEN3.into_iter().collect(),
        "every domain of xen3, once each"
    );
    assert_eq!(steps.len(), 3, "no domain twice");
    for s in steps {
        assert_eq!(s["state"], "done", "{s:#}");
        assert_eq!(
            s["target"], "xen1",
            "xen2 is warned: never a target ({s:#})"
        );
    }
    let jobs = get("/jobs").unwrap();
    let xen3_jobs = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["host"] == "xen3")
        .count();
    assert_eq!(
        xen3_jobs, 1,
        "repeated notifications start no second evacuation: {jobs:#}"
    );

    // Times: from the scenario raising the warning (the demo's log line) to the first
    // migration start and to the last migration's end (the job log).
    let raised = demo
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|(_, l)| l.contains("scenario at 20s: warning ups_on_battery raised on xen3"))
        .map(|(t, _)| *t)
        .expect("the demo logged the warning");
    let first_start = steps
        .iter()
        .map(|s| rfc3339_to_unix(s["started"].as_str().unwrap()))
        .fold(f64::MAX, f64::min);
    let last_end = steps
        .iter()
        .map(|s| rfc3339_to_unix(s["ended"].as_str().unwrap()))
        .fold(0.0, f64::max);
    println!(
        "E2E (scrape 1s, evaluation 1s, group_wait 0s, group_interval 1s): warning -> first migration start {:.2} s, -> last migration end {:.2} s",
        first_start - raised,
        last_end - raised
    );
    assert!(first_start > raised, "no migration before the warning");

    // After xen3 dies, its domains live on xen1, each exactly once.
    wait_for(
        "xen3 killed by the scenario",
        Duration::from_secs(60),
        || (first_value(&prom, "up{job=\"xentinel\",host=\"xen3\"}")? == "0").then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let at = where_are(&prom, &ON_XEN3);
    for d in ON_XEN3 {
        assert_eq!(
            at.get(d).map(Vec::as_slice),
            Some(&["xen1".to_string()][..]),
            "{d}: {at:?}"
        );
    }

    // Every dashboard query and every rule expression runs, and every metric it names has data.
    check_queries_against(&prom);
    drop(demo);

    // --- Without the webhook: the same failure, and nothing reacts.
    let dir2 = support::webhook::temp_dir("e2e-nohook");
    let demo = start_demo(&dir2, scenario, false);
    let prom = demo.prom.clone();
    wait_for(
        "the alert to fire with nobody to act on it",
        Duration::from_secs(50),
        || {
            first_value(&prom, "ALERTS{alertname=\"XentinelHostWarningFailure\",host=\"xen3\",alertstate=\"firing\"}").map(|_| ())
        },
    );
    assert_eq!(
        where_are(&prom, &ON_XEN3).len(),
        3,
        "still on xen3 before it dies"
    );
    wait_for(
        "xen3 killed by the scenario",
        Duration::from_secs(60),
        || (first_value(&prom, "up{job=\"xentinel\",host=\"xen3\"}")? == "0").then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let lost = where_are(&prom, &ON_XEN3);
    assert!(
        lost.is_empty(),
        "without the webhook xen3's domains die with it, none elsewhere: {lost:?}"
    );
    println!(
        "E2E without webhook: {} of {} domains of xen3 lost with the host",
        ON_XEN3.len(),
        ON_XEN3.len()
    );
}

/// Runs every panel query and rule expression; each must be valid PromQL and
/// every metric it names must have at least one series.
fn check_queries_against(prom: &str) {
    let mut exprs: Vec<(String, String)> = Vec::new();
    let subst = Substitution::default();
    for d in load_dashboards() {
        for q in d.queries() {
            let expr = subst.apply(&q.expr).unwrap_or_else(|e| panic!("{q}: {e}"));
            exprs.push((q.to_string(), expr));
        }
    }
    for file in rules() {
        for g in file["groups"].as_sequence().into_iter().flatten() {
            for r in g["rules"].as_sequence().into_iter().flatten() {
                let name = r["alert"].as_str().or(r["record"].as_str()).unwrap_or("?");
                exprs.push((
                    format!("rule {name}"),
                    r["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    let mut missing = Vec::new();
    let mut seen = BTreeSet::new();
    for (origin, expr) in &exprs {
        if expr.starts_with("label_values(") {
            continue;
        }
        query(prom, expr);
        for m in metric_names(expr) {
            if seen.insert(m.clone())
                && query(prom, &format!("count({{__name__=\"{m}\"}})")).is_empty()
            {
                missing.push(format!("{m} (first used by {origin})"));
            }
        }
    }
    println!(
        "checked {} queries and rule expressions naming {} metrics",
        exprs.len(),
        seen.len()
    );
    assert!(
        missing.is_empty(),
        "metrics with no data in Prometheus:\n  {}",
        missing.join("\n  ")
    );
}
