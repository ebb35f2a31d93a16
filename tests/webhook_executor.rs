//! The command executor: a migration that fails halfway through a job, one
//! that hangs past its timeout (killed, with its process group), failed
//! migrations handled by where the domain is after them (a fake `xl` over state
//! files: still running → retried with backoff; paused → resumed; crashed or
//! gone → failed and counted), and the `xentinel evacuate` CLI on the sim
//! (JSON lines, dry run).

mod support;

use std::path::Path;
use std::time::Duration;

use support::webhook::{Stepper, Webhook, WebhookSpec, alert, payload, script, temp_dir};
use xentinel::migration::executor::{CommandExecutor, Executor};
use xentinel::migration::runner::Settings;
use xentinel::sim::Cluster;

/// `xl list`'s answer for a domain that runs (blocked) on the source.
const RUNNING_XL_LIST: &str =
    "printf 'Name ID Mem VCPUs\\tState\\tTime(s)\\n%s 3 2048 2 -b---- 1.5\\n' \"$1\"";

fn command_webhook(
    dir: &Path,
    migrate: &Path,
    timeout: Duration,
    settings: Settings,
) -> (Stepper, Webhook) {
    let state = script(&dir.join("state.sh"), RUNNING_XL_LIST);
    let resume = script(&dir.join("resume.sh"), "exit 1");
    command_webhook_with(dir, [migrate, &state, &resume], timeout, settings)
}

/// A webhook whose command executor runs `migrate DOMAIN SOURCE TARGET`,
/// `state DOMAIN`, `resume DOMAIN`, and locates every domain on its source.
fn command_webhook_with(
    dir: &Path,
    [migrate, state, resume]: [&Path; 3],
    timeout: Duration,
    settings: Settings,
) -> (Stepper, Webhook) {
    // The sim only answers "which domains where" here; it is frozen (speed 0).
    let st = Stepper::new(Cluster::default_demo(1), 0.0);
    let mut spec = WebhookSpec::sim(&st.cluster, dir);
    let argv = |p: &Path, args: &[&str]| {
        let mut v = vec![p.display().to_string()];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    };
    spec.executor = Executor::Command(CommandExecutor {
        command: argv(migrate, &["{domain}", "{source}", "{target}"]),
        locate: vec!["true".into()],
        state: argv(state, &["{domain}"]),
        resume: argv(resume, &["{domain}"]),
        timeout,
        state_dir: dir.join("steps"),
    });
    spec.settings = settings;
    (st, Webhook::start(spec))
}

fn one_at_a_time(per_source: usize) -> Settings {
    Settings {
        max_per_source: per_source,
        migrate_retries: 0,
        ..Settings::default()
    }
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
    let (_st, wh) = command_webhook(&dir, &migrate, Duration::from_secs(30), one_at_a_time(1));
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
    assert_eq!(
        steps[1]["reason"],
        "attempt 1: exited with status 3; running on xen1 (-b----); no retries left"
    );
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
    let settings = Settings {
        max_per_source: 2,
        ..Settings::default() // retries are on: a timeout is still not retried
    };
    let (_st, wh) = command_webhook(&dir, &migrate, Duration::from_millis(800), settings);
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
        assert_eq!(
            s["reason"],
            "attempt 1: timed out after 800ms; killed; running on xen3 (-b----); \
             not retried after a timeout",
            "{s:#}"
        );
        assert_eq!(s["attempts"], 1, "{s:#}");
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
    // The kill is sent before the step is recorded; the kernel may take a
    // moment to reap them on a loaded machine: poll (10 s bound).
    for p in pids.lines() {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pid {p} still runs: {stat}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(wh.metric("xentinel_migrations_in_flight"), 0.0);
    assert_eq!(wh.metric("xentinel_migration_retries_total"), 0.0);
}

/// A stand-in for `xl` over state files, one per domain: `flags/D` holds its
/// `xl list` state column while it is on the source (no file: not there), and
/// `plan/D` what its migration attempts do, one line each: `ok` (moves it),
/// `fail FLAGS` (exits 1 leaving it with FLAGS), `fail gone` (exits 1, the
/// domain is no longer there). No plan line: `ok`.
struct FakeXl {
    dir: std::path::PathBuf,
    /// `DOMAIN ATTEMPT-TIME` per migration attempt, `resume DOMAIN` per resume.
    log: std::path::PathBuf,
    scripts: [std::path::PathBuf; 3],
}

fn fake_xl(dir: &Path, resume_works: bool) -> FakeXl {
    for d in ["flags", "plan"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let log = dir.join("xl.log");
    let (f, p, l) = (dir.join("flags"), dir.join("plan"), log.display());
    let (f, p) = (f.display(), p.display());
    let migrate = script(
        &dir.join("migrate.sh"),
        &format!(
            "read -r t _ </proc/uptime; echo \"$1 $t\" >> {l}\n\
             what=$(head -n 1 {p}/$1 2>/dev/null); sed -i 1d {p}/$1 2>/dev/null\n\
             case \"$what\" in\n\
             'fail gone') rm -f {f}/$1; echo 'xc: error: domain died' >&2; exit 1 ;;\n\
             fail*) echo \"${{what#fail }}\" > {f}/$1; echo \"migration of $1 failed\" >&2; exit 1 ;;\n\
             *) rm -f {f}/$1; echo \"migrated $1 to $3\" >&2 ;;\n\
             esac"
        ),
    );
    let state = script(
        &dir.join("state.sh"),
        &format!(
            "[ -f {f}/$1 ] || {{ echo \"$1 is an invalid domain identifier (rc=-6)\" >&2; exit 1; }}\n\
             printf 'Name ID Mem VCPUs\\tState\\tTime(s)\\n%s 3 2048 2 %s 1.5\\n' \"$1\" \"$(cat {f}/$1)\""
        ),
    );
    let resume = script(
        &dir.join("resume.sh"),
        &if resume_works {
            format!(
                "echo \"resume $1\" >> {l}\n\
                 [ \"$(cat {f}/$1)\" = --p--- ] || exit 1\necho -b---- > {f}/$1"
            )
        } else {
            // as xl 4.17 does when it cannot unpause: an error, and exit status 0
            format!(
                "echo \"resume $1\" >> {l}\n\
                 echo 'libxl: error: libxl_domain.c:688:domain_unpause_done: Domain 3:Unpausing domain: Invalid argument' >&2"
            )
        },
    );
    FakeXl {
        dir: dir.to_path_buf(),
        log,
        scripts: [migrate, state, resume],
    }
}

impl FakeXl {
    /// DOMAIN runs on its source, and its attempts go as `plan` says.
    fn domain(&self, name: &str, plan: &[&str]) {
        std::fs::write(self.dir.join("flags").join(name), "-b----\n").unwrap();
        let lines: String = plan.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(self.dir.join("plan").join(name), lines).unwrap();
    }

    /// Dom0 uptimes of DOMAIN's attempts, and how often it was resumed.
    fn attempts(&self, name: &str) -> (Vec<f64>, usize) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let times = log
            .lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .collect();
        let resumes = log
            .lines()
            .filter(|l| *l == format!("resume {name}"))
            .count();
        (times, resumes)
    }
}

fn steps_by_domain(
    job: &serde_json::Value,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    job["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["domain"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

#[test]
fn a_failed_migration_is_retried_resumed_or_reported_by_the_domains_state() {
    let dir = temp_dir("faults");
    let xl = fake_xl(&dir, true);
    xl.domain("db1", &["fail -b----", "ok"]); // running -> retry -> success
    xl.domain("web1", &["fail --p---", "ok"]); // paused -> resumed -> success
    xl.domain("idle1", &["fail ---sc-"]); // crashed
    xl.domain("dns1", &["fail r-----", "fail -b----", "fail -b----", "ok"]); // retries used up
    xl.domain("apache1", &["fail gone"]); // gone
    xl.domain("ci1", &["ok"]);
    let settings = Settings {
        max_per_source: 1,
        migrate_retries: 2,
        migrate_backoff: Duration::from_millis(200),
        ..Settings::default()
    };
    let s = &xl.scripts;
    let (_st, wh) = command_webhook_with(
        &dir,
        [&s[0], &s[1], &s[2]],
        Duration::from_secs(30),
        settings,
    );
    for (fp, host) in [("f1", "xen1"), ("f4", "xen4")] {
        let (code, v) = wh.post(&payload(
            "firing",
            vec![alert(fp, "firing", host, "2024-01-01T00:00:00Z")],
        ));
        assert_eq!(code, 200, "{v}");
    }
    let (j1, j4) = (
        wh.wait_job(1, Duration::from_secs(30)),
        wh.wait_job(2, Duration::from_secs(30)),
    );
    assert_eq!((&j1["host"], &j4["host"]), (&"xen1".into(), &"xen4".into()));
    let (s1, s4) = (steps_by_domain(&j1), steps_by_domain(&j4));
    let show = |s: &serde_json::Value| {
        (
            s["state"].as_str().unwrap().to_string(),
            s["attempts"].as_i64().unwrap(),
            s["reason"].as_str().unwrap().to_string(),
        )
    };
    let want = |state: &str, attempts: i64, reason: &str| {
        (state.to_string(), attempts, reason.to_string())
    };
    assert_eq!(
        show(&s1["db1"]),
        want(
            "done",
            2,
            "attempt 1: exited with status 1; running on xen1 (-b----); retrying in 200ms; \
             done on attempt 2"
        )
    );
    assert_eq!(
        show(&s1["web1"]),
        want(
            "done",
            2,
            "attempt 1: exited with status 1; paused on xen1 (--p---): resumed; \
             retrying in 200ms; done on attempt 2"
        )
    );
    assert_eq!(
        show(&s1["idle1"]),
        want(
            "failed",
            1,
            "attempt 1: exited with status 1; crashed on xen1 (---sc-)"
        )
    );
    assert_eq!(
        show(&s4["dns1"]),
        want(
            "failed",
            3,
            "attempt 1: exited with status 1; running on xen4 (r-----); retrying in 200ms; \
             attempt 2: exited with status 1; running on xen4 (-b----); retrying in 400ms; \
             attempt 3: exited with status 1; running on xen4 (-b----); no retries left"
        )
    );
    assert_eq!(
        show(&s4["apache1"]),
        want(
            "failed",
            1,
            "attempt 1: exited with status 1; gone on xen4 (state.sh exited 1: \
             apache1 is an invalid domain identifier (rc=-6))"
        )
    );
    assert_eq!(show(&s4["ci1"]), want("done", 1, ""));
    assert_eq!(
        (j1["state"].as_str(), j4["state"].as_str()),
        (Some("failed"), Some("failed"))
    );
    // Every attempt's stderr is kept, the last attempt's last.
    let tail = s1["web1"]["stderr_tail"].as_str().unwrap();
    assert!(
        tail.starts_with("--- attempt 1\nmigration of web1 failed")
            && tail.ends_with("--- attempt 2\nmigrated web1 to xen2\n"),
        "{tail:?}"
    );

    // The backoff doubles (lower bounds only: a loaded machine may be slower).
    let (dns, resumed) = xl.attempts("dns1");
    assert_eq!((dns.len(), resumed), (3, 0), "{dns:?}");
    assert!(
        dns[1] - dns[0] >= 0.19 && dns[2] - dns[1] >= 0.39,
        "{dns:?}"
    );
    assert_eq!(xl.attempts("web1").1, 1, "web1 resumed once");
    let (idle, resumed) = xl.attempts("idle1");
    assert_eq!(
        (idle.len(), resumed),
        (1, 0),
        "a crashed domain is neither retried nor resumed"
    );

    for (series, want) in [
        ("xentinel_migration_retries_total", 4.0), // db1, web1, dns1 twice
        ("xentinel_migration_domains_resumed_total", 1.0),
        (
            "xentinel_migration_domain_faults_total{state=\"crashed\"}",
            1.0,
        ),
        (
            "xentinel_migration_domain_faults_total{state=\"gone\"}",
            1.0,
        ),
        (
            "xentinel_migration_domain_faults_total{state=\"paused\"}",
            0.0,
        ),
        (
            "xentinel_migration_duration_seconds_count{result=\"success\"}",
            3.0,
        ),
        (
            "xentinel_migration_duration_seconds_count{result=\"error\"}",
            3.0,
        ),
        ("xentinel_evacuations_failed_total", 2.0),
    ] {
        assert_eq!(wh.metric(series), want, "{series}");
    }
}

#[test]
fn a_domain_that_stays_paused_or_was_crashed_before_fails_its_step_and_is_counted() {
    let dir = temp_dir("noresume");
    let xl = fake_xl(&dir, false);
    xl.domain("batch1", &["fail --p---", "ok"]); // xl unpause exits 0 but cannot unpause
    xl.domain("mail1", &["ok"]);
    std::fs::write(dir.join("flags/mail1"), "---sc-\n").unwrap(); // crashed before its step
    let settings = Settings {
        max_per_source: 1,
        migrate_backoff: Duration::from_millis(10),
        ..Settings::default()
    };
    let s = &xl.scripts;
    let (_st, wh) = command_webhook_with(
        &dir,
        [&s[0], &s[1], &s[2]],
        Duration::from_secs(30),
        settings,
    );
    let (code, v) = wh.post(&payload(
        "firing",
        vec![alert("p3", "firing", "xen3", "2024-01-01T00:00:00Z")],
    ));
    assert_eq!(code, 200, "{v}");
    let job = wh.wait_job(1, Duration::from_secs(30));
    let steps = steps_by_domain(&job);
    assert_eq!(
        (&steps["batch1"]["state"], &steps["batch1"]["reason"]),
        (
            &"failed".into(),
            &"attempt 1: exited with status 1; paused on xen3 (--p---): resume failed: \
              still paused after resuming (--p---)"
                .into()
        ),
        "{job:#}"
    );
    assert_eq!(
        (&steps["mail1"]["state"], &steps["mail1"]["reason"]),
        (
            &"failed".into(),
            &"crashed on xen3 (---sc-): not migrated".into()
        ),
        "{job:#}"
    );
    let (attempts, resumes) = xl.attempts("batch1");
    assert_eq!(
        (attempts.len(), resumes),
        (1, 1),
        "one attempt, one resume tried"
    );
    assert_eq!(
        xl.attempts("mail1"),
        (vec![], 0),
        "a crashed domain is never migrated"
    );
    for (series, want) in [
        (
            "xentinel_migration_domain_faults_total{state=\"paused\"}",
            1.0,
        ),
        (
            "xentinel_migration_domain_faults_total{state=\"crashed\"}",
            1.0,
        ),
        ("xentinel_migration_domains_resumed_total", 0.0),
        ("xentinel_migration_retries_total", 0.0),
    ] {
        assert_eq!(wh.metric(series), want, "{series}");
    }
}
