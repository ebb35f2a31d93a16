//! Storage faults under the real binary (root: a real tmpfs, `chattr`, a
//! read-only bind mount): a full disk mid-job, the job log removed or
//! replaced, the job log made immutable or read-only. Each time: new alerts
//! get 503 with the reason, nothing crashes, nothing recorded is lost, the
//! stalled job resumes when the storage does (no restart), and no domain is
//! migrated twice.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::fake_xl::{FakeXl, WebhookProc, require_root, three_domain_prom};
use support::webhook::{temp_dir, wait_for};
use xentinel::migration::joblog::JobLog;

/// Runs a command that must succeed.
fn run(argv: &[&str]) {
    let st = Command::new(argv[0]).args(&argv[1..]).status().unwrap();
    assert!(st.success(), "{argv:?} failed");
}

/// Unmounts (lazily) on drop, even when the test panics.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Clears the immutable flag on drop, so the temp dir can be removed.
struct Immutable(Vec<PathBuf>);

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(p).status();
        }
    }
}

/// Writes zeros into `path` until the filesystem is full.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let buf = vec![0u8; 64 * 1024];
    loop {
        match f.write(&buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "not ENOSPC: {e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn a_full_disk_mid_job_gets_503_and_the_job_resumes_when_space_returns() {
    require_root("it mounts a small tmpfs to fill");
    let dir = temp_dir("diskfull");
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    run(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=4m",
        "tmpfs",
        mnt.to_str().unwrap(),
    ]);
    let _m = Mounted(mnt.clone());
    let xl = FakeXl::new(&dir, 4.0);
    let prom = three_domain_prom();
    let db = mnt.join("jobs.sqlite");
    let mut wh = WebhookProc::start(&xl, &prom, &db, &[]);
    let (code, body) = wh.post_alert("fp-a");
    assert_eq!(code, 200, "{body}");
    wait_for("d1's migration to start", Duration::from_secs(20), || {
        (xl.logged("start").len() == 1).then_some(())
    });

    let filler = mnt.join("fill");
    fill(&filler);
    // d1's migration ends while the disk is full: its end cannot be written.
    wait_for("d1's migration to end", Duration::from_secs(20), || {
        (xl.logged("done").len() == 1).then_some(())
    });
    let (code, body) = wh.post_alert("fp-b");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("the disk is full"), "{body}");
    assert_eq!(wh.ready(), 503);
    // While full, no further step starts (a claim is a write) and nothing crashes.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(xl.logged("start"), ["d1"]);
    assert!(wh.alive());
    // What was recorded before the disk filled is still served.
    let j = wh.get("/jobs/1");
    assert_eq!(j["steps"].as_array().unwrap().len(), 3, "{j:#}");

    std::fs::remove_file(&filler).unwrap();
    xl.set_delay(0.1);
    let job = wh.wait_job(1, Duration::from_secs(60));
    assert_eq!(job["state"], "done", "{job:#}");
    for s in job["steps"].as_array().unwrap() {
        assert_eq!(s["state"], "done", "{s:#}");
        assert_eq!(s["attempts"], 1, "{s:#}");
    }
    // d1's outcome was kept in memory and recorded when space returned.
    assert!(
        job["steps"][0]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("migrating d1 to xen2"),
        "{job:#}"
    );
    assert_eq!(sorted(xl.logged("start")), ["d1", "d2", "d3"]);
    assert_eq!(sorted(xl.logged("done")), ["d1", "d2", "d3"]);
    wait_for("/-/ready to say 200", Duration::from_secs(10), || {
        (wh.ready() == 200).then_some(())
    });
    let (code, body) = wh.post_alert("fp-b");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"accepted\":[{"), "{body}");
    assert!(wh.requests(503) >= 1.0);
    assert_eq!(wh.requests(500), 0.0);
}

#[test]
fn a_removed_job_log_is_restored_and_a_replaced_one_is_refused() {
    let dir = temp_dir("removed");
    let xl = FakeXl::new(&dir, 0.1);
    let prom = three_domain_prom();
    let logdir = dir.join("log");
    let db = logdir.join("jobs.sqlite");
    let mut wh = WebhookProc::start(&xl, &prom, &db, &[]);
    let (code, body) = wh.post_alert("fp-a");
    assert_eq!(code, 200, "{body}");
    assert_eq!(wh.wait_job(1, Duration::from_secs(60))["state"], "done");

    // Unlinked under the running webhook: the next write restores it first.
    std::fs::remove_file(&db).unwrap();
    let (code, body) = wh.post_alert("fp-b");
    assert_eq!(code, 200, "{body}");
    wh.wait_job(2, Duration::from_secs(60));
    // Its directory replaced by an empty one: the watch restores it there.
    std::fs::rename(&logdir, dir.join("log.old")).unwrap();
    std::fs::create_dir_all(&logdir).unwrap();
    wait_for(
        "the job log to be restored",
        Duration::from_secs(10),
        || db.exists().then_some(()),
    );
    let (code, body) = wh.post_alert("fp-c");
    assert_eq!(code, 200, "{body}");
    wh.wait_job(3, Duration::from_secs(60));

    wh.signal_group("TERM");
    assert_eq!(wh.wait_exit(Duration::from_secs(60)).0, Some(0));
    wh.restart();
    // Nothing lost: all three jobs, and each re-sent alert is a duplicate.
    let jobs = wh.get("/jobs")["jobs"].as_array().unwrap().len();
    assert_eq!(jobs, 3);
    for fp in ["fp-a", "fp-b", "fp-c"] {
        let (code, body) = wh.post_alert(fp);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"duplicates\":[{"), "{fp}: {body}");
    }
    assert_eq!(sorted(xl.logged("start")), ["d1", "d2", "d3"]);

    // Replaced by another file: neither is written; ours is saved beside it.
    let other = logdir.join("other.sqlite");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE unrelated (x); INSERT INTO unrelated VALUES (1);")
        .unwrap();
    std::fs::rename(&other, &db).unwrap();
    let (code, body) = wh.post_alert("fp-d");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("was replaced by another file"), "{body}");
    assert!(wh.alive());
    let n: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM unrelated", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "the replacing file was changed");
    let saved: Vec<PathBuf> = std::fs::read_dir(&logdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("jobs.sqlite.detached-"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert_eq!(JobLog::open(&saved[0]).unwrap().jobs(10).unwrap().len(), 3);
    assert_eq!(wh.ready(), 503);
}

#[test]
fn an_immutable_or_read_only_job_log_gets_503_not_a_crash_and_recovers() {
    require_root("chattr +i and read-only bind mounts need root");
    let dir = temp_dir("immutable");
    let xl = FakeXl::new(&dir, 0.1);
    let prom = three_domain_prom();
    let logdir = dir.join("log");
    std::fs::create_dir_all(&logdir).unwrap();
    let db = logdir.join("jobs.sqlite");
    let mut wh = WebhookProc::start(&xl, &prom, &db, &[]);
    let (code, body) = wh.post_alert("fp-a");
    assert_eq!(code, 200, "{body}");
    assert_eq!(wh.wait_job(1, Duration::from_secs(60))["state"], "done");
    // No WAL index mapped into memory: a write into that mapping is a SIGBUS
    // (exit 135) when its file cannot take it.
    for f in ["jobs.sqlite-shm", "jobs.sqlite-wal"] {
        assert!(!logdir.join(f).exists(), "{f} exists");
    }

    // Every file of the log immutable.
    let files: Vec<PathBuf> = std::fs::read_dir(&logdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    let _guard = Immutable(files.clone());
    for f in &files {
        run(&["chattr", "+i", f.to_str().unwrap()]);
    }
    let (code, body) = wh.post_alert("fp-b");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("job log unavailable"), "{body}");
    assert!(wh.alive(), "the webhook died");
    assert_eq!(wh.ready(), 503);
    for f in &files {
        run(&["chattr", "-i", f.to_str().unwrap()]);
    }
    wait_for("/-/ready to say 200", Duration::from_secs(10), || {
        (wh.ready() == 200).then_some(())
    });
    let (code, body) = wh.post_alert("fp-b");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"accepted\":[{"), "{body}");
    wh.wait_job(2, Duration::from_secs(60));

    // The log's directory remounted read-only (a bind mount onto itself).
    let d = logdir.to_str().unwrap();
    run(&["mount", "--bind", d, d]);
    let _m = Mounted(logdir.clone());
    run(&["mount", "-o", "remount,bind,ro", d]);
    let (code, body) = wh.post_alert("fp-c");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("job log unavailable"), "{body}");
    assert!(wh.alive(), "the webhook died");
    run(&["umount", d]);
    wait_for("/-/ready to say 200", Duration::from_secs(10), || {
        (wh.ready() == 200).then_some(())
    });
    let (code, body) = wh.post_alert("fp-c");
    assert_eq!(code, 200, "{body}");
    wh.wait_job(3, Duration::from_secs(60));
    assert_eq!(sorted(xl.logged("start")), ["d1", "d2", "d3"]);
    assert_eq!(wh.requests(500), 0.0);
}
