//! Helpers for the webhook tests: an in-process webhook over a stepped sim
//! cluster (or a command executor), a raw HTTP/1.1 client, Alertmanager-style
//! payloads, a fake Prometheus API, temp dirs, free ports and waiting.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use xentinel::migration::executor::Executor;
use xentinel::migration::joblog::JobLog;
use xentinel::migration::metrics::Metrics;
use xentinel::migration::planner::Inventory;
use xentinel::migration::receiver::{self, KnownHosts, Receiver};
use xentinel::migration::runner::{Engine, Settings};
use xentinel::sim::SharedCluster;

pub use super::http::{free_port, request};
use xentinel::sim::Cluster;

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "xentinel-test-{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Polls `f` every 20 ms until it returns `Some`, or panics naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One alert of a payload: (fingerprint, status, labels).
pub fn alert(fp: &str, status: &str, host: &str, starts_at: &str) -> Value {
    json!({
        "status": status,
        "labels": {
            "alertname": "XentinelHostWarningFailure",
            "xentinel_action": "evacuate",
            "host": host,
            "severity": "warning",
            "kind": "ups_on_battery"
        },
        "annotations": {},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fp
    })
}

/// A version-4 webhook payload around `alerts`.
pub fn payload(status: &str, alerts: Vec<Value>) -> String {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"XentinelHostWarningFailure\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "xentinel-webhook",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am.invalid",
        "alerts": alerts
    })
    .to_string()
}

/// The sim cluster, stepped by a thread at `speed` simulated seconds per real
/// second (0 freezes it), changeable while it runs.
pub struct Stepper {
    pub cluster: SharedCluster,
    speed: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Stepper {
    /// Starts stepping `cluster` every 10 ms.
    pub fn new(cluster: Cluster, speed: f64) -> Self {
        let cluster = Arc::new(Mutex::new(cluster));
        let sp = Arc::new(AtomicU64::new(speed.to_bits()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, s, st) = (cluster.clone(), sp.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
                let speed = f64::from_bits(s.load(Ordering::Relaxed));
                if speed > 0.0 {
                    c.lock()
                        .unwrap()
                        .step(Duration::from_millis(10).mul_f64(speed));
                }
            }
        });
        Stepper {
            cluster,
            speed: sp,
            stop,
        }
    }

    /// Changes the speed (0 freezes every migration in flight).
    pub fn set_speed(&self, speed: f64) {
        self.speed.store(speed.to_bits(), Ordering::Relaxed);
    }

    /// Names of the domains on `host` now.
    pub fn domains_on(&self, host: &str) -> Vec<String> {
        let c = self.cluster.lock().unwrap();
        c.domains_on(host).map(|d| d.name.clone()).collect()
    }

    /// How many migrations the cluster has started, per domain.
    pub fn migrations_per_domain(&self) -> BTreeMap<String, usize> {
        let c = self.cluster.lock().unwrap();
        let mut m = BTreeMap::new();
        for s in c.migrations() {
            *m.entry(s.domain.clone()).or_insert(0) += 1;
        }
        m
    }
}

impl Drop for Stepper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// An in-process webhook on 127.0.0.1.
pub struct Webhook {
    pub addr: String,
    pub engine: Arc<Engine>,
    pub token: Option<String>,
    pub db: PathBuf,
    pub rt: tokio::runtime::Runtime,
}

/// What an in-process webhook is built from.
pub struct WebhookSpec {
    pub executor: Executor,
    pub inventory: Inventory,
    pub token: Option<String>,
    pub settings: Settings,
    pub db: PathBuf,
    pub body_limit: usize,
    /// A static known-hosts list instead of the inventory's.
    pub hosts: Option<Vec<String>>,
}

impl WebhookSpec {
    /// The sim executor and inventory over `cluster`, a token, default settings.
    pub fn sim(cluster: &SharedCluster, dir: &Path) -> Self {
        WebhookSpec {
            executor: Executor::Sim {
                cluster: cluster.clone(),
                timeout: Duration::from_secs(60),
            },
            inventory: Inventory::Sim(cluster.clone()),
            token: Some("s3cret-token".into()),
            settings: Settings::default(),
            db: dir.join("jobs.sqlite"),
            body_limit: receiver::DEFAULT_BODY_LIMIT,
            hosts: None,
        }
    }
}

impl Webhook {
    /// Starts serving `spec` (resuming unfinished jobs of its job log).
    pub fn start(spec: WebhookSpec) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let log = JobLog::open(&spec.db).unwrap();
        let engine = Arc::new(Engine::new(
            log,
            spec.executor,
            spec.inventory.clone(),
            Metrics::new(),
            spec.settings,
            None,
        ));
        let token = spec.token.clone();
        let addr = rt.block_on(async {
            engine.watch_store();
            engine.recover().unwrap();
            let rx = Arc::new(Receiver {
                engine: engine.clone(),
                token: spec.token.map(String::into_bytes),
                hosts: match spec.hosts {
                    Some(h) => KnownHosts::Static(h),
                    None => KnownHosts::Inventory(spec.inventory),
                },
            });
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap().to_string();
            let router = receiver::router(rx, spec.body_limit);
            tokio::spawn(xentinel::http::serve(
                l,
                router,
                xentinel::http::webconfig::WebSecurity::default(),
                std::future::pending(),
            ));
            addr
        });
        Webhook {
            addr,
            engine,
            token,
            db: spec.db,
            rt,
        }
    }

    fn auth(&self) -> Vec<(&str, String)> {
        self.token
            .iter()
            .map(|t| ("Authorization", format!("Bearer {t}")))
            .collect()
    }

    /// POSTs a body to /alerts with the right token.
    pub fn post(&self, body: &str) -> (u16, Value) {
        let a = self.auth();
        let h: Vec<(&str, &str)> = a.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (st, b) = request(&self.addr, "POST", "/alerts", &h, body.as_bytes());
        (st, serde_json::from_str(&b).unwrap_or(Value::String(b)))
    }

    /// GETs a JSON path with the right token.
    pub fn get(&self, path: &str) -> Value {
        let a = self.auth();
        let h: Vec<(&str, &str)> = a.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (st, b) = request(&self.addr, "GET", path, &h, b"");
        assert_eq!(st, 200, "GET {path}: {b}");
        serde_json::from_str(&b).unwrap()
    }

    /// Every job (newest first).
    pub fn jobs(&self) -> Vec<Value> {
        self.get("/jobs")["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until job `id` reaches a final state; returns it with its steps.
    pub fn wait_job(&self, id: i64, timeout: Duration) -> Value {
        wait_for(&format!("job {id} to finish"), timeout, || {
            let j = self.get(&format!("/jobs/{id}"));
            matches!(
                j["state"].as_str(),
                Some("done" | "failed" | "cancelled" | "planned")
            )
            .then_some(j)
        })
    }

    /// A metric's value from /metrics (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = request(&self.addr, "GET", "/metrics", &[], b"");
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

/// A fake Prometheus answering `/api/v1/query` for a fixed cluster: host free
/// memory, `up`, warnings, and domain memory (with `host` labels).
pub struct FakeProm {
    pub url: String,
}

impl FakeProm {
    /// Serves `hosts` (name, free bytes) and `domains` (name, host, bytes) until the process ends.
    pub fn start(hosts: Vec<(String, u64)>, domains: Vec<(String, String, u64)>) -> Self {
        Self::start_on(0, hosts, domains, vec![])
    }

    /// The same on a given port (0: any).
    pub fn start_on(
        port: u16,
        hosts: Vec<(String, u64)>,
        domains: Vec<(String, String, u64)>,
        warned: Vec<String>,
    ) -> Self {
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let mut buf = vec![0u8; 16384];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let q = req
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.split_once("query=").map(|x| x.1.to_string()))
                    .unwrap_or_default();
                let q = percent_decode(&q);
                let sample =
                    |labels: Value, v: f64| json!({"metric": labels, "value": [0, v.to_string()]});
                let result: Vec<Value> = if q == "xen_host_memory_free_bytes" {
                    hosts
                        .iter()
                        .map(|(h, f)| sample(json!({"host": h}), *f as f64))
                        .collect()
                } else if q.starts_with("up{") {
                    hosts
                        .iter()
                        .map(|(h, _)| sample(json!({"host": h, "job": "xentinel"}), 1.0))
                        .collect()
                } else if q.contains("xentinel_host_warning") {
                    hosts
                        .iter()
                        .map(|(h, _)| {
                            let on = warned.contains(h);
                            sample(json!({"host": h}), if on { 1.0 } else { 0.0 })
                        })
                        .collect()
                } else if q == "xen_domain_memory_bytes" {
                    domains
                        .iter()
                        .map(|(d, h, m)| {
                            sample(json!({"domain": d, "host": h, "uuid": "u"}), *m as f64)
                        })
                        .collect()
                } else {
                    vec![]
                };
                let body = json!({"status": "success", "data": {"resultType": "vector", "result": result}}).to_string();
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeProm { url }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes an executable shell script (test fixtures only; the webhook never uses a shell).
pub fn script(path: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// RFC 3339 of now.
pub fn now_rfc3339() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    xentinel::migration::alert::format_rfc3339(t)
}
