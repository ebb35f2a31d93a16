//! SIGKILL mid-migration and restart: the real `xentinel webhook` binary with
//! a command executor whose script sleeps; it is killed while a step runs,
//! restarted on the same job log, and must finish the job without migrating
//! any domain twice (the script appends each domain it migrates to a log).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::webhook::{FakeProm, alert, free_port, payload, request, script, temp_dir, wait_for};

const GIB: u64 = 1 << 30;

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_xentinel"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn get_job(addr: &str, id: i64) -> Option<serde_json::Value> {
    let (code, body) = request(addr, "GET", &format!("/jobs/{id}"), &[], b"");
    (code == 200).then(|| serde_json::from_str(&body).unwrap())
}

fn wait_ready(addr: &str) {
    wait_for("the webhook to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(addr).ok()
    });
}

/// A stand-in for `xl` whose state is files: every domain starts on xen1.
struct FakeXl {
    /// One file per moved domain, holding the host it is on.
    state: std::path::PathBuf,
    /// One line per migration started, naming the domain.
    log: std::path::PathBuf,
    /// `migrate.sh DOMAIN SOURCE TARGET`: logs it, takes 1.5 s, then the domain is on TARGET.
    migrate: std::path::PathBuf,
    /// `locate.sh DOMAIN HOST`: exit 0 when DOMAIN is on HOST.
    locate: std::path::PathBuf,
}

fn fake_xl(dir: &std::path::Path) -> FakeXl {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let log = dir.join("migrated.log");
    let migrate = script(
        &dir.join("migrate.sh"),
        &format!(
            "echo \"$1\" >> {log}\nsleep 1.5\necho \"$3\" > {state}/$1\necho \"moved $1 to $3\" >&2",
            log = log.display(),
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
    FakeXl {
        state,
        log,
        migrate,
        locate,
    }
}

#[test]
fn sigkill_mid_step_then_restart_migrates_each_domain_once() {
    let dir = temp_dir("restart");
    let FakeXl {
        state,
        log,
        migrate,
        locate,
    } = fake_xl(&dir);
    let config = dir.join("xentinel.yml");
    std::fs::write(
        &config,
        format!(
            "webhook:\n  max_parallel_per_source: 1\n  executor:\n    command: [{m}, '{{domain}}', '{{source}}', '{{target}}']\n    locate_command: [{l}, '{{domain}}', '{{host}}']\n    state_command: [sh, -c, 'echo \"$0 1 1024 1 -b---- 0\"', '{{domain}}']\n    timeout: 30s\n",
            m = migrate.display(),
            l = locate.display()
        ),
    )
    .unwrap();
    let prom = FakeProm::start(
        vec![
            ("xen1".into(), 0),
            ("xen2".into(), 64 * GIB),
            ("xen3".into(), 64 * GIB),
        ],
        vec![
            ("d1".into(), "xen1".into(), 4 * GIB),
            ("d2".into(), "xen1".into(), 2 * GIB),
            ("d3".into(), "xen1".into(), GIB),
            ("other".into(), "xen2".into(), GIB),
        ],
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "webhook",
        "--web.listen-address",
        &addr,
        "--insecure-no-auth",
        "--config.file",
        config.to_str().unwrap(),
        "--prometheus.url",
        &prom.url,
        "--executor",
        "command",
        "--db.path",
        dir.join("jobs.sqlite").to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();

    let mut first = spawn(&args);
    wait_ready(&addr);
    let body = payload(
        "firing",
        vec![alert(
            "fp-restart",
            "firing",
            "xen1",
            "2024-01-01T00:00:00Z",
        )],
    );
    let (code, resp) = request(&addr, "POST", "/alerts", &[], body.as_bytes());
    assert_eq!(code, 200, "{resp}");
    // Kill it while the second domain's migration is running.
    wait_for(
        "the second migration to start",
        Duration::from_secs(20),
        || {
            let l = std::fs::read_to_string(&log).unwrap_or_default();
            (l.lines().count() == 2).then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let mut second = spawn(&args);
    wait_ready(&addr);
    // A duplicate delivery after the restart changes nothing.
    let (code, resp) = request(&addr, "POST", "/alerts", &[], body.as_bytes());
    assert_eq!(code, 200, "{resp}");
    assert!(resp.contains("\"duplicates\":[{"), "{resp}");
    let job = wait_for(
        "the job to finish after the restart",
        Duration::from_secs(30),
        || get_job(&addr, 1).filter(|j| j["state"] == "done" || j["state"] == "failed"),
    );
    second.kill().unwrap();
    second.wait().unwrap();

    assert_eq!(job["state"], "done", "{job:#}");
    let steps = job["steps"].as_array().unwrap();
    let states: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["domain"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("d1", "done"), ("d2", "done"), ("d3", "done")],
        "{job:#}"
    );
    // d2 was in flight at the kill: recovery waited for it and found it on its target.
    assert!(
        steps[1]["reason"]
            .as_str()
            .unwrap()
            .contains("after a restart"),
        "{:#}",
        steps[1]
    );
    assert_eq!(steps[1]["attempts"], 1, "{:#}", steps[1]);
    let migrated = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = migrated.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        ["d1", "d2", "d3"],
        "a domain was migrated twice: {migrated}"
    );
    for d in ["d1", "d2", "d3"] {
        let at = std::fs::read_to_string(state.join(d)).unwrap();
        assert_ne!(at.trim(), "xen1", "{d} still on xen1");
    }
}

/// The narrowest window: xentinel died after spawning the child but before
/// recording its pid (the step is `claimed`, no pid). Recovery finds the child
/// by the step's stderr file, waits for it, and does not migrate again.
#[test]
fn a_child_whose_pid_was_never_recorded_is_still_awaited() {
    use xentinel::migration::executor::{CommandExecutor, Executor, stderr_path};
    use xentinel::migration::joblog::{Claim, JobLog, NewJob, NewStep};

    let dir = temp_dir("nopid");
    let FakeXl {
        log,
        migrate,
        locate,
        ..
    } = fake_xl(&dir);
    let db = dir.join("jobs.sqlite");
    let steps_dir = dir.join("steps");
    // The previous run: job planned, d1's step claimed, its child spawned, then death.
    let step_id = {
        let mut l = JobLog::open(&db).unwrap();
        let job = l
            .insert_job(&NewJob {
                fingerprint: "nopid".into(),
                starts_at: "2024-01-01T00:00:00Z".into(),
                starts_at_unix: 1_704_067_200.0,
                host: "xen1".into(),
                origin: "alert".into(),
                dry_run: false,
            })
            .unwrap()
            .unwrap();
        l.add_steps(
            job,
            &[NewStep {
                domain: "d1".into(),
                source: "xen1".into(),
                memory_bytes: GIB,
                target: Ok("xen2".into()),
            }],
        )
        .unwrap();
        l.set_job_state(job, "running", "planned").unwrap();
        let step = l.steps(job).unwrap()[0].id;
        assert_eq!(l.claim(step).unwrap(), Claim::Claimed);
        step
    };
    std::fs::create_dir_all(&steps_dir).unwrap();
    let err = std::fs::File::create(stderr_path(&steps_dir, step_id)).unwrap();
    let mut orphan = Command::new(&migrate)
        .args(["d1", "xen1", "xen2"])
        .stderr(err)
        .spawn()
        .unwrap();
    wait_for("the orphan to start", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).ok().filter(|l| !l.is_empty())
    });

    let st = support::webhook::Stepper::new(xentinel::sim::Cluster::default_demo(1), 0.0);
    let mut spec = support::webhook::WebhookSpec::sim(&st.cluster, &dir);
    spec.db = db;
    spec.executor = Executor::Command(CommandExecutor {
        command: vec![
            migrate.display().to_string(),
            "{domain}".into(),
            "{source}".into(),
            "{target}".into(),
        ],
        locate: vec![
            locate.display().to_string(),
            "{domain}".into(),
            "{host}".into(),
        ],
        state: ["sh", "-c", "echo d1 1 1024 1 -b---- 0"]
            .map(String::from)
            .to_vec(),
        resume: vec!["true".into()],
        timeout: Duration::from_secs(30),
        state_dir: steps_dir,
    });
    let wh = support::webhook::Webhook::start(spec);
    let job = wh.wait_job(1, Duration::from_secs(20));
    orphan.wait().unwrap();
    assert_eq!(job["state"], "done", "{job:#}");
    let step = &job["steps"][0];
    assert_eq!(step["state"], "done", "{step:#}");
    assert_eq!(step["reason"], "found on xen2 after a restart", "{step:#}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "d1\n",
        "d1 was migrated twice"
    );
}
