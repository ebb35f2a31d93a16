//! The command executor: a migration that fails halfway through a job, one
//! that hangs past its timeout (killed, with its process group), and the
//! `xentinel evacuate` CLI on the sim (JSON lines, dry run).

mod support;

use std::path::Path;
use std::time::Duration;

use support::webhook::{Stepper, Webhook, WebhookSpec, alert, payload, script, temp_dir};
use xentinel::migration::executor::{CommandExecutor, Executor};
use xentinel::migration::runner::Settings;
use xentinel::sim::Cluster;

fn command_webhook(
    dir: &Path,
    migrate: &Path,
    timeout: Duration,
    per_source: usize,
) -> (Stepper, Webhook) {
    // The sim only answers "which domains where" here; it is frozen (speed 0).
    let st = Stepper::new(Cluster::default_demo(1), 0.0);
    let mut spec = WebhookSpec::sim(&st.cluster, dir);
    spec.executor = Executor::Command(CommandExecutor {
        command: vec![
            migrate.display().to_string(),
            "{domain}".into(),
            "{source}".into(),
            "{target}".into(),
        ],
        locate: vec!["true".into()],
        timeout,
        state_dir: dir.join("steps"),
    });
    spec.settings = Settings {
        max_per_source: per_source,
        ..Settings::default()
    };
    (st, Webhook::start(spec))
}

#[test]
fn a_migration_failing_halfway_fails_its_step_and_the_others_go_on() {
    let dir = temp_dir("halfway");
    let log = dir.join("migrated.log");
    let count = dir.join("count");
    let migrate = script(
        &dir.join("migrate.sh"),
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\n\
             echo \"$1 $2 $3\" >> {l}\n\
             if [ $n -eq 2 ]; then echo \"migration of $1 to $3: connection reset by peer\" >&2; exit 3; fi\n\
             echo \"migrated $1\" >&2",
            c = count.display(),
            l = log.display()
        ),
    );
    let (_st, wh) = command_webhook(&dir, &migrate, Duration::from_secs(30), 1);
    let (code, v) = wh.post(&payload(
        "firing",
        vec![alert("half", "firing", "xen1", "2024-01-01T00:00:00Z")],
    ));
    assert_eq!(code, 200, "{v}");
    let job = wh.wait_job(1, Duration::from_secs(20));
    assert_eq!(job["state"], "failed", "{job:#}");
    let steps = job["steps"].as_array().unwrap();
    // Largest first: db1 (8 GiB), web1 (2 GiB), idle1 (512 MiB); one at a time.
    let got: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["domain"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [("db1", "done"), ("web1", "failed"), ("idle1", "done")]
    );
    assert_eq!(steps[1]["reason"], "exited with status 3");
    assert!(
        steps[1]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("connection reset by peer"),
        "{:#}",
        steps[1]
    );
    assert!(
        steps[0]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("migrated db1")
    );
    // Each argv element arrived whole.
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    assert!(
        lines
            .lines()
            .all(|l| l.split(' ').count() == 3 && l.contains(" xen1 ")),
        "{lines}"
    );
    assert_eq!(wh.metric("xentinel_evacuations_failed_total"), 1.0);
    assert_eq!(
        wh.metric("xentinel_migration_duration_seconds_count{result=\"error\"}"),
        1.0
    );
    assert_eq!(
        wh.metric("xentinel_migration_duration_seconds_count{result=\"success\"}"),
        2.0
    );
}

#[test]
fn a_hanging_migration_is_killed_at_its_timeout() {
    let dir = temp_dir("hang");
    let pids = dir.join("pids");
    let migrate = script(
        &dir.join("migrate.sh"),
        &format!(
            "echo $$ >> {p}\necho \"starting $1\" >&2\nsleep 30 &\necho $! >> {p}\nwait",
            p = pids.display()
        ),
    );
    let (_st, wh) = command_webhook(&dir, &migrate, Duration::from_millis(800), 2);
    let (code, _) = wh.post(&payload(
        "firing",
        vec![alert("hang", "firing", "xen3", "2024-01-01T00:00:00Z")],
    ));
    assert_eq!(code, 200);
    let job = wh.wait_job(1, Duration::from_secs(20));
    assert_eq!(job["state"], "failed", "{job:#}");
    let steps = job["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for s in steps {
        assert_eq!(s["state"], "failed", "{s:#}");
        assert!(
            s["reason"]
                .as_str()
                .unwrap()
                .starts_with("timed out after 800ms; killed"),
            "{s:#}"
        );
        assert!(
            s["stderr_tail"].as_str().unwrap().contains("starting"),
            "{s:#}"
        );
        let d = s["duration_seconds"].as_f64().unwrap();
        assert!((0.7..10.0).contains(&d), "{d}");
    }
    // The script and its `sleep` child (same process group) are gone.
    let pids = std::fs::read_to_string(&pids).unwrap();
    assert_eq!(pids.lines().count(), 4, "{pids}");
    std::thread::sleep(Duration::from_millis(300));
    for p in pids.lines() {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {p} still runs: {stat}"
        );
    }
    assert_eq!(wh.metric("xentinel_migrations_in_flight"), 0.0);
}

fn xentinel(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xentinel"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn evacuate_cli_prints_json_lines_and_moves_every_domain() {
    let dir = temp_dir("cli");
    let db = dir.join("jobs.sqlite");
    let db = db.to_str().unwrap();
    let (ok, out, err) = xentinel(&[
        "evacuate",
        "--host",
        "xen4",
        "--executor",
        "sim",
        "--db.path",
        db,
        "--dry-run",
    ]);
    assert!(ok, "{out}\n{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "planned", "{out}");
    assert_eq!(events[0]["steps"].as_array().unwrap().len(), 3, "{out}");
    assert_eq!(events.last().unwrap()["state"], "planned");
    assert!(
        !out.contains("\"running\""),
        "a dry run ran something: {out}"
    );

    let (ok, out, err) = xentinel(&[
        "evacuate",
        "--host",
        "xen2",
        "--executor",
        "sim",
        "--db.path",
        db,
        "--to",
        "xen1",
    ]);
    assert!(ok, "{out}\n{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["state"], "done", "{out}");
    let done: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "step" && e["state"] == "done")
        .collect();
    assert_eq!(done.len(), 2, "{out}");
    assert!(done.iter().all(|e| e["target"] == "xen1"), "{out}");

    let (ok, _, err) = xentinel(&[
        "evacuate",
        "--host",
        "h1; touch /tmp/x",
        "--executor",
        "sim",
        "--db.path",
        db,
    ]);
    assert!(!ok);
    assert!(err.contains("refusing the host name"), "{err}");
    let (ok, _, err) = xentinel(&[
        "evacuate",
        "--host",
        "xen7",
        "--executor",
        "sim",
        "--db.path",
        db,
    ]);
    assert!(!ok);
    assert!(err.contains("unknown host \"xen7\""), "{err}");
}

#[test]
fn systemd_unit_evacuates_on_stop_before_xen_stops() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/systemd/xentinel-evacuate.service"
    ))
    .unwrap();
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(String::from)
            .collect()
    };
    assert_eq!(value("Type"), ["oneshot"]);
    assert_eq!(value("RemainAfterExit"), ["yes"]);
    let stop = value("ExecStop");
    assert_eq!(stop.len(), 1);
    assert!(
        stop[0].starts_with("/usr/local/bin/xentinel evacuate --host %H"),
        "{stop:?}"
    );
    // Stop order is the reverse of start order: After= xen units means stopping before them.
    let after = value("After").join(" ");
    for u in ["xen.service", "xendomains.service"] {
        assert!(
            after.split_whitespace().any(|a| a == u),
            "After= lacks {u}: {after}"
        );
    }
    assert!(
        value("Before").is_empty(),
        "Before= would reverse the stop order"
    );
    let timeout = value("TimeoutStopSec");
    assert_eq!(timeout.len(), 1);
    let t = xentinel::config::parse_duration(&timeout[0].replace("min", "m")).unwrap();
    assert!(
        t >= Duration::from_secs(600),
        "TimeoutStopSec too short: {t:?}"
    );
    // The flags the unit relies on exist.
    let (ok, out, _) = xentinel(&["evacuate", "--help"]);
    assert!(
        ok && out.contains("--host") && out.contains("--prometheus.url"),
        "{out}"
    );
}
