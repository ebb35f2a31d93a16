//! A real Alertmanager for tests (Debian's `prometheus-alertmanager` or
//! upstream's `alertmanager`), clustering off, on a free port, with a
//! webhook receiver authenticated by `credentials_file`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::webhook::{free_port, request, wait_for};

/// A running Alertmanager; killed on drop.
pub struct Alertmanager {
    pub addr: String,
    child: Child,
}

/// The binary, or a loud failure naming the package.
pub fn binary() -> PathBuf {
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "Alertmanager is not installed (neither prometheus-alertmanager nor alertmanager on PATH): \
         apt-get install -y prometheus-alertmanager"
    );
}

impl Alertmanager {
    /// Starts one routing everything to `webhook_url` with the token in `token_file`.
    pub fn start(dir: &Path, webhook_url: &str, token_file: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: xentinel-webhook\n  group_by: [alertname, host]\n  group_wait: 0s\n  \
                 group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: xentinel-webhook\n    \
                 webhook_configs:\n      - url: {webhook_url}\n        send_resolved: true\n        \
                 max_alerts: 0\n        http_config:\n          authorization:\n            \
                 credentials_file: {}\n",
                token_file.display()
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager { addr, child };
        wait_for("alertmanager to be ready", Duration::from_secs(20), || {
            super::http::listens(&am.addr).then_some(())?;
            (request(&am.addr, "GET", "/-/ready", &[], b"").0 == 200).then_some(())
        });
        am
    }

    /// Posts alerts to `/api/v2/alerts` (a JSON array).
    pub fn post_alerts(&self, alerts: &serde_json::Value) {
        let (code, body) = request(
            &self.addr,
            "POST",
            "/api/v2/alerts",
            &[("Content-Type", "application/json")],
            alerts.to_string().as_bytes(),
        );
        assert_eq!(code, 200, "alertmanager refused the alerts: {body}");
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
