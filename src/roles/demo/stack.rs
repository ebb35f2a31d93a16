//! The demo's local stack: real Prometheus and Alertmanager started as child
//! processes with the shipped rules and Alertmanager routing, rewritten for
//! a temp dir and fast intervals, scraping the demo's simulated hosts.
//!
//! The shipped files are compiled in, so `xentinel demo` works from any
//! directory; only addresses, intervals and the token path are changed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_yaml_ng::Value;
use tokio::process::{Child, Command};

/// The shipped alert rules.
pub const ALERT_RULES: &str = include_str!("../../../prometheus/rules/xentinel-alerts.yml");
/// The shipped recording rules.
pub const RECORDING_RULES: &str = include_str!("../../../prometheus/rules/xentinel-recording.yml");
/// The shipped Alertmanager configuration.
pub const ALERTMANAGER_YML: &str = include_str!("../../../prometheus/alertmanager.yml");

/// Where the stack's parts listen and how fast it runs.
#[derive(Debug, Clone)]
pub struct StackSpec {
    /// `(host name, address)` of every exporter to scrape.
    pub exporters: Vec<(String, String)>,
    /// Address of the migration webhook (`host:port`), when one runs.
    pub webhook: Option<String>,
    /// File holding the webhook's bearer token.
    pub token_file: Option<PathBuf>,
    pub prometheus_addr: String,
    pub alertmanager_addr: String,
    /// Scrape and rule-evaluation interval.
    pub interval: Duration,
}

/// Running Prometheus and Alertmanager; both are killed on drop.
pub struct Stack {
    pub dir: PathBuf,
    pub prometheus_url: String,
    pub alertmanager_url: String,
    _children: Vec<Child>,
}

/// Finds the first of `names` on PATH.
pub fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Prometheus and Alertmanager binaries (upstream or Debian names).
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    Some((
        which(&["prometheus"])?,
        which(&["alertmanager", "prometheus-alertmanager"])?,
    ))
}

fn secs(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The Prometheus configuration for `spec`.
pub fn prometheus_config(spec: &StackSpec) -> String {
    let iv = secs(spec.interval);
    let mut out = format!(
        "global:\n  scrape_interval: {iv}\n  evaluation_interval: {iv}\n\
         rule_files: [rules/*.yml]\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n\
         scrape_configs:\n  - job_name: xentinel\n    static_configs:\n",
        spec.alertmanager_addr
    );
    for (host, addr) in &spec.exporters {
        out.push_str(&format!(
            "      - targets: ['{addr}']\n        labels: {{host: '{host}'}}\n"
        ));
    }
    if let Some(w) = &spec.webhook {
        out.push_str(&format!(
            "  - job_name: xentinel-webhook\n    static_configs:\n      - targets: ['{w}']\n"
        ));
    }
    out.push_str(&format!(
        "  - job_name: prometheus\n    static_configs:\n      - targets: ['{}']\n",
        spec.prometheus_addr
    ));
    out
}

/// The shipped Alertmanager configuration with the webhook's address and
/// token file replaced and the evacuation route's timers shortened.
pub fn alertmanager_config(spec: &StackSpec) -> anyhow::Result<String> {
    let mut v: Value = serde_yaml_ng::from_str(ALERTMANAGER_YML)?;
    let iv = secs(spec.interval.max(Duration::from_secs(1)));
    if let Some(routes) = v["route"]["routes"].as_sequence_mut() {
        for r in routes {
            r["group_wait"] = Value::from("0s");
            r["group_interval"] = Value::from(iv.clone());
        }
    }
    let receivers = v["receivers"]
        .as_sequence_mut()
        .ok_or_else(|| anyhow::anyhow!("shipped alertmanager.yml has no receivers"))?;
    for r in receivers {
        if r["name"].as_str() != Some("xentinel-webhook") {
            continue;
        }
        let Some(cfgs) = r["webhook_configs"].as_sequence_mut() else {
            continue;
        };
        for c in cfgs {
            let url = match &spec.webhook {
                Some(w) => format!("http://{w}/alerts"),
                // No webhook: a closed port, so the alert is visible but acts on nothing.
                None => "http://127.0.0.1:1/alerts".to_string(),
            };
            c["url"] = Value::from(url);
            match &spec.token_file {
                Some(t) => {
                    c["http_config"]["authorization"]["credentials_file"] =
                        Value::from(t.display().to_string());
                }
                None => {
                    if let Some(m) = c.as_mapping_mut() {
                        m.remove("http_config");
                    }
                }
            }
        }
    }
    Ok(serde_yaml_ng::to_string(&v)?)
}

/// Writes the configuration into `dir` and starts both programs.
pub async fn start(spec: &StackSpec, dir: &Path) -> anyhow::Result<Stack> {
    let (prom_bin, am_bin) = binaries().ok_or_else(|| {
        anyhow::anyhow!("prometheus and alertmanager are not on PATH (Debian: apt-get install prometheus prometheus-alertmanager)")
    })?;
    std::fs::create_dir_all(dir.join("rules"))?;
    std::fs::write(dir.join("rules/xentinel-alerts.yml"), ALERT_RULES)?;
    std::fs::write(dir.join("rules/xentinel-recording.yml"), RECORDING_RULES)?;
    std::fs::write(dir.join("prometheus.yml"), prometheus_config(spec))?;
    std::fs::write(dir.join("alertmanager.yml"), alertmanager_config(spec)?)?;
    let log =
        |name: &str| -> anyhow::Result<Stdio> { Ok(std::fs::File::create(dir.join(name))?.into()) };
    let am = Command::new(&am_bin)
        .current_dir(dir)
        .arg("--config.file=alertmanager.yml")
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address={}", spec.alertmanager_addr))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(log("alertmanager.log")?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", am_bin.display()))?;
    let prom = Command::new(&prom_bin)
        .current_dir(dir)
        .arg("--config.file=prometheus.yml")
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address={}", spec.prometheus_addr))
        .stdout(Stdio::null())
        .stderr(log("prometheus.log")?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", prom_bin.display()))?;
    let stack = Stack {
        dir: dir.to_path_buf(),
        prometheus_url: format!("http://{}", spec.prometheus_addr),
        alertmanager_url: format!("http://{}", spec.alertmanager_addr),
        _children: vec![am, prom],
    };
    for (what, addr) in [
        ("alertmanager", &spec.alertmanager_addr),
        ("prometheus", &spec.prometheus_addr),
    ] {
        let start = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                anyhow::bail!(
                    "{what} did not listen on {addr} within 20 s; see {}/{what}.log",
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StackSpec {
        StackSpec {
            exporters: vec![("xen1".into(), "127.0.0.1:10031".into())],
            webhook: Some("127.0.0.1:10027".into()),
            token_file: Some("/tmp/t".into()),
            prometheus_addr: "127.0.0.1:10091".into(),
            alertmanager_addr: "127.0.0.1:10093".into(),
            interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn alertmanager_config_points_at_the_local_webhook_with_fast_timers() {
        let text = alertmanager_config(&spec()).unwrap();
        let v: Value = serde_yaml_ng::from_str(&text).unwrap();
        let hook = v["receivers"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "xentinel-webhook")
            .unwrap();
        assert_eq!(
            hook["webhook_configs"][0]["url"],
            "http://127.0.0.1:10027/alerts"
        );
        assert_eq!(
            hook["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"],
            "/tmp/t"
        );
        assert_eq!(v["route"]["routes"][0]["group_wait"], "0s");
        assert_eq!(v["route"]["routes"][0]["group_interval"], "1000ms");
    }

    #[test]
    fn prometheus_config_labels_each_exporter_with_its_host() {
        let text = prometheus_config(&spec());
        let v: Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(v["global"]["scrape_interval"], "1000ms");
        let sc = &v["scrape_configs"][0]["static_configs"][0];
        assert_eq!(sc["labels"]["host"], "xen1");
        assert_eq!(
            v["scrape_configs"][1]["static_configs"][0]["targets"][0],
            "127.0.0.1:10027"
        );
    }
}
