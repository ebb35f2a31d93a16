//! SIGTERM mid-migration, through the real binary over a fake `xl` whose
//! migrations sleep: the signal goes to the webhook's whole process group (as
//! a terminal's does), the running step finishes and is recorded, nothing new
//! starts, alerts get 503 meanwhile, the process exits 0, and the restart
//! neither runs the finished step again (attempt 1) nor migrates any domain
//! twice. Past the grace period the migration is killed, recorded as
//! interrupted, and the restart resumes it.

mod support;

use std::time::Duration;

use support::fake_xl::{FakeXl, WebhookProc, three_domain_prom};
use support::webhook::{temp_dir, wait_for};
use xentinel::migration::joblog::JobLog;

fn steps(db: &std::path::Path) -> Vec<(String, String, i64, String)> {
    let l = JobLog::open(db).unwrap();
    l.steps(1)
        .unwrap()
        .into_iter()
        .map(|s| (s.domain, s.state, s.attempts, s.reason))
        .collect()
}

#[test]
fn sigterm_lets_the_running_migration_finish_and_the_restart_does_not_repeat_it() {
    let dir = temp_dir("sigterm");
    let xl = FakeXl::new(&dir, 5.0);
    let prom = three_domain_prom();
    let db = dir.join("jobs.sqlite");
    let mut wh = WebhookProc::start(&xl, &prom, &db, &[]);
    let (code, body) = wh.post_alert("fp-term");
    assert_eq!(code, 200, "{body}");
    wait_for("d1's migration to start", Duration::from_secs(20), || {
        (xl.logged("start").len() == 1).then_some(())
    });

    wh.signal_group("TERM");
    // Stopping: not ready, and a new alert is refused with 503 (Alertmanager retries).
    wait_for("/-/ready to say 503", Duration::from_secs(10), || {
        (wh.ready() == 503).then_some(())
    });
    let (code, body) = wh.post_alert("fp-during-stop");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("stopping"), "{body}");
    let (exit, _) = wh.wait_exit(Duration::from_secs(60));
    assert_eq!(exit, Some(0), "a graceful stop exits 0");

    // d1's migration completed; d2 and d3 were not started.
    assert_eq!(xl.logged("start"), ["d1"]);
    assert_eq!(xl.logged("done"), ["d1"]);
    assert_eq!(xl.host_of("d1"), "xen2");
    let s = steps(&db);
    assert_eq!((s[0].1.as_str(), s[0].2), ("done", 1), "{s:?}");
    assert_eq!((s[1].1.as_str(), s[1].2), ("planned", 0), "{s:?}");
    assert_eq!((s[2].1.as_str(), s[2].2), ("planned", 0), "{s:?}");
    let job = JobLog::open(&db).unwrap().job(1).unwrap().unwrap();
    assert_eq!(job.state, "running");
    assert!(
        job.reason
            .starts_with("stopped by a shutdown (1 step(s) done, 2 not started, 0 interrupted)"),
        "{}",
        job.reason
    );
    // The refused alert made no job.
    assert_eq!(JobLog::open(&db).unwrap().jobs(10).unwrap().len(), 1);

    xl.set_delay(0.1);
    wh.restart();
    let job = wh.wait_job(1, Duration::from_secs(60));
    assert_eq!(job["state"], "done", "{job:#}");
    let st = &job["steps"];
    assert_eq!(st[0]["attempts"], 1, "d1 ran again: {job:#}");
    assert_eq!(st[0]["reason"], "", "{job:#}");
    for i in 0..3 {
        assert_eq!(st[i]["state"], "done", "{job:#}");
    }
    let mut started = xl.logged("start");
    started.sort();
    assert_eq!(started, ["d1", "d2", "d3"], "a domain was migrated twice");
    // The refused alert, sent again after the restart, is accepted now.
    let (code, body) = wh.post_alert("fp-during-stop");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"accepted\":[{"), "{body}");
}

#[test]
fn past_the_grace_period_the_migration_is_killed_and_resumed_at_the_next_start() {
    let dir = temp_dir("grace");
    let xl = FakeXl::new(&dir, 120.0);
    let prom = three_domain_prom();
    let db = dir.join("jobs.sqlite");
    let mut wh = WebhookProc::start(&xl, &prom, &db, &["--shutdown.grace-period", "1s"]);
    let (code, body) = wh.post_alert("fp-grace");
    assert_eq!(code, 200, "{body}");
    wait_for("d1's migration to start", Duration::from_secs(20), || {
        (xl.logged("start").len() == 1).then_some(())
    });
    let pid = std::fs::read_to_string(&xl.pids).unwrap();
    let pid = pid.trim();

    wh.signal_group("TERM");
    let (exit, took) = wh.wait_exit(Duration::from_secs(60));
    assert_eq!(exit, Some(0));
    assert!(
        took < Duration::from_secs(50),
        "the 1 s grace period took {took:?}"
    );
    // The migration (and its group) is gone, not finished.
    wait_for(
        "the killed migration to be gone",
        Duration::from_secs(10),
        || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (stat.is_empty() || stat.contains(") Z ")).then_some(())
        },
    );
    assert!(xl.logged("done").is_empty());
    let s = steps(&db);
    assert_eq!((s[0].1.as_str(), s[0].2), ("running", 1), "{s:?}");
    assert!(s[0].3.starts_with("interrupted during attempt 1"), "{s:?}");

    xl.set_delay(0.1);
    wh.restart();
    let job = wh.wait_job(1, Duration::from_secs(60));
    assert_eq!(job["state"], "done", "{job:#}");
    let st = &job["steps"];
    // d1 was still on xen1 (its migration killed): migrated again, once.
    assert_eq!(st[0]["attempts"], 2, "{job:#}");
    let mut done = xl.logged("done");
    done.sort();
    assert_eq!(done, ["d1", "d2", "d3"], "each domain moved once");
}
