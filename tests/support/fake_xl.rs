//! The real `xentinel webhook` binary over a stand-in for `xl` whose state is
//! files, for the restart, signal and storage-fault tests: every domain
//! starts on xen1, a migration takes the seconds written in a file (changeable
//! while it runs), and a log keeps one line per migration started and one per
//! migration completed, so a test can count double migrations.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::webhook::{FakeProm, alert, free_port, payload, request, script, wait_for};

const GIB: u64 = 1 << 30;

/// The fake `xl` (scripts and their state) in a directory.
pub struct FakeXl {
    pub dir: PathBuf,
    /// One file per moved domain, holding the host it is on.
    pub state: PathBuf,
    /// `start DOMAIN` when a migration starts, `done DOMAIN` when it completes.
    pub log: PathBuf,
    /// Seconds one migration sleeps (read when it starts).
    pub delay: PathBuf,
    /// The migrate script writes its pid here (one line per migration).
    pub pids: PathBuf,
    pub config: PathBuf,
}

impl FakeXl {
    /// Scripts in `dir` and a configuration running them one at a time.
    pub fn new(dir: &Path, delay_s: f64) -> Self {
        let state = dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let log = dir.join("migrated.log");
        let delay = dir.join("delay");
        let pids = dir.join("pids");
        std::fs::write(&delay, format!("{delay_s}")).unwrap();
        let migrate = script(
            &dir.join("migrate.sh"),
            &format!(
                "echo $$ >> {pids}\necho \"start $1\" >> {log}\necho \"migrating $1 to $3\" >&2\n\
                 sleep $(cat {delay})\necho \"$3\" > {state}/$1\necho \"done $1\" >> {log}",
                pids = pids.display(),
                log = log.display(),
                delay = delay.display(),
                state = state.display()
            ),
        );
        let locate = script(
            &dir.join("locate.sh"),
            &format!(
                "at=$(cat {state}/$1 2>/dev/null || echo xen1)\n[ \"$at\" = \"$2\" ]",
                state = state.display()
            ),
        );
        let config = dir.join("xentinel.yml");
        std::fs::write(
            &config,
            format!(
                "webhook:\n  max_parallel_per_source: 1\n  executor:\n    command: [{m}, '{{domain}}', '{{source}}', '{{target}}']\n    locate_command: [{l}, '{{domain}}', '{{host}}']\n    state_command: [sh, -c, 'echo \"$0 1 1024 1 -b---- 0\"', '{{domain}}']\n    timeout: 60s\n",
                m = migrate.display(),
                l = locate.display()
            ),
        )
        .unwrap();
        FakeXl {
            dir: dir.to_path_buf(),
            state,
            log,
            delay,
            pids,
            config,
        }
    }

    /// Changes how long the next migrations take.
    pub fn set_delay(&self, s: f64) {
        std::fs::write(&self.delay, format!("{s}")).unwrap();
    }

    /// Lines of the migration log that start with `what ` (`start` or `done`), their domains.
    pub fn logged(&self, what: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix(what)?.strip_prefix(' ').map(String::from))
            .collect()
    }

    /// The host a domain is on.
    pub fn host_of(&self, domain: &str) -> String {
        std::fs::read_to_string(self.state.join(domain))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "xen1".into())
    }
}

/// A fake Prometheus with xen1 (warned; d1, d2, d3 on it) and xen2, xen3.
pub fn three_domain_prom() -> FakeProm {
    FakeProm::start(
        vec![
            ("xen1".into(), 0),
            ("xen2".into(), 64 * GIB),
            ("xen3".into(), 64 * GIB),
        ],
        vec![
            ("d1".into(), "xen1".into(), 4 * GIB),
            ("d2".into(), "xen1".into(), 2 * GIB),
            ("d3".into(), "xen1".into(), GIB),
        ],
    )
}

/// A `xentinel webhook` process (its own process group, as a shell's job is).
pub struct WebhookProc {
    pub child: Child,
    pub addr: String,
    pub args: Vec<String>,
}

impl WebhookProc {
    /// Starts the webhook on the fake xl with the job log at `db`, plus `extra` flags.
    pub fn start(xl: &FakeXl, prom: &FakeProm, db: &Path, extra: &[&str]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = [
            "webhook",
            "--web.listen-address",
            &addr,
            "--insecure-no-auth",
            "--config.file",
            xl.config.to_str().unwrap(),
            "--prometheus.url",
            &prom.url,
            "--executor",
            "command",
            "--db.path",
            db.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::spawn(addr, args)
    }

    fn spawn(addr: String, args: Vec<String>) -> Self {
        use std::os::unix::process::CommandExt;
        let child = Command::new(env!("CARGO_BIN_EXE_xentinel"))
            .args(&args)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_for("the webhook to listen", Duration::from_secs(30), || {
            super::http::listens(&addr).then_some(())
        });
        WebhookProc { child, addr, args }
    }

    /// The same webhook started again (same flags, same port).
    pub fn restart(&mut self) {
        *self = Self::spawn(self.addr.clone(), self.args.clone());
    }

    /// Sends `sig` to the webhook's whole process group, as a terminal does.
    pub fn signal_group(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), "--", &format!("-{}", self.child.id())])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the process to exit; its exit code (`None`: a signal) and the time it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let t0 = std::time::Instant::now();
        let st = wait_for("the webhook to exit", limit, || {
            self.child.try_wait().unwrap()
        });
        (st.code(), t0.elapsed())
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// POSTs a one-alert firing payload for xen1; (status, body).
    pub fn post_alert(&self, fingerprint: &str) -> (u16, String) {
        let body = payload(
            "firing",
            vec![alert(fingerprint, "firing", "xen1", "2024-01-01T00:00:00Z")],
        );
        request(&self.addr, "POST", "/alerts", &[], body.as_bytes())
    }

    /// `GET path` as JSON (panics unless 200).
    pub fn get(&self, path: &str) -> Value {
        let (code, body) = request(&self.addr, "GET", path, &[], b"");
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// `GET /-/ready`'s status.
    pub fn ready(&self) -> u16 {
        request(&self.addr, "GET", "/-/ready", &[], b"").0
    }

    /// Waits until job `id` ends; returns it with its steps.
    pub fn wait_job(&self, id: i64, limit: Duration) -> Value {
        wait_for(&format!("job {id} to end"), limit, || {
            let j = self.get(&format!("/jobs/{id}"));
            matches!(j["state"].as_str(), Some("done" | "failed" | "cancelled")).then_some(j)
        })
    }

    /// `xentinel_webhook_requests_total{code}` from /metrics.
    pub fn requests(&self, code: u16) -> f64 {
        let (_, body) = request(&self.addr, "GET", "/metrics", &[], b"");
        let want = format!("xentinel_webhook_requests_total{{code=\"{code}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&want)?.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for WebhookProc {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Fails loudly unless the test runs as root (mounts, `chattr`).
pub fn require_root(why: &str) {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|u| u.split_whitespace().next().unwrap().to_string())
        })
        .unwrap();
    assert_eq!(uid, "0", "this test needs root: {why}");
}
