//! The job log's unit tests.

use super::*;

/// A job for host xen1 with fingerprint `fp` (also used by the store's tests).
pub(crate) fn job(fp: &str) -> NewJob {
    NewJob {
        fingerprint: fp.into(),
        starts_at: "2024-01-01T00:00:00Z".into(),
        starts_at_unix: 1_704_067_200.0,
        host: "xen1".into(),
        origin: "alert".into(),
        dry_run: false,
    }
}

fn step(d: &str) -> NewStep {
    NewStep {
        domain: d.into(),
        source: "xen1".into(),
        memory_bytes: 1,
        target: Ok("xen2".into()),
    }
}

#[test]
fn the_log_maps_no_file_into_memory() {
    let dir = std::env::temp_dir().join(format!("xentinel-joblog-mode-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let p = dir.join("jobs.sqlite");
    // A log a previous version left in WAL mode is converted.
    {
        let c = Connection::open({
            std::fs::create_dir_all(&dir).unwrap();
            &p
        })
        .unwrap();
        let m: String = c
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(m, "wal");
    }
    let mut l = JobLog::open(&p).unwrap();
    let q = |sql: &str| -> String {
        l.conn
            .query_row(sql, [], |r| r.get::<_, rusqlite::types::Value>(0))
            .map(|v| format!("{v:?}"))
            .unwrap()
    };
    assert_eq!(q("PRAGMA journal_mode"), "Text(\"delete\")");
    assert_eq!(q("PRAGMA mmap_size"), "Integer(0)");
    l.insert_job(&job("f")).unwrap();
    l.probe().unwrap();
    assert!(!std::path::Path::new(&format!("{}-shm", p.display())).exists());
    assert!(!std::path::Path::new(&format!("{}-wal", p.display())).exists());
    assert_eq!(l.file().unwrap().1, file_id(&p).unwrap().unwrap());
    let copy = dir.join("copy.sqlite");
    l.copy_to(&copy).unwrap();
    assert_eq!(JobLog::open(&copy).unwrap().jobs(10).unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_alert_is_one_job() {
    let mut l = JobLog::in_memory().unwrap();
    let a = l.insert_job(&job("f1")).unwrap();
    assert!(a.is_some());
    assert_eq!(l.insert_job(&job("f1")).unwrap(), None);
    assert!(l.insert_job(&job("f2")).unwrap().is_some());
}

#[test]
fn a_domain_is_claimed_by_one_job_at_a_time() {
    let mut l = JobLog::in_memory().unwrap();
    let a = l.insert_job(&job("a")).unwrap().unwrap();
    let b = l.insert_job(&job("b")).unwrap().unwrap();
    l.add_steps(a, &[step("web1")]).unwrap();
    l.add_steps(a, &[step("web1")]).unwrap(); // a re-plan adds nothing
    l.add_steps(b, &[step("web1")]).unwrap();
    let sa = l.steps(a).unwrap();
    assert_eq!(sa.len(), 1);
    let sb = l.steps(b).unwrap()[0].id;
    assert_eq!(l.claim(sa[0].id).unwrap(), Claim::Claimed);
    assert_eq!(l.claim(sb).unwrap(), Claim::HeldBy(a));
    assert_eq!(
        l.claim(sa[0].id).unwrap(),
        Claim::NotPlanned("claimed".into())
    );
    l.finish_step(
        sa[0].id,
        &StepEnd {
            state: "done",
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(l.claim(sb).unwrap(), Claim::Claimed);
}

#[test]
fn resolve_cancels_only_planned_steps() {
    let mut l = JobLog::in_memory().unwrap();
    let a = l.insert_job(&job("a")).unwrap().unwrap();
    l.add_steps(a, &[step("d1"), step("d2")]).unwrap();
    let s = l.steps(a).unwrap();
    l.claim(s[0].id).unwrap();
    l.mark_running(s[0].id, None).unwrap();
    assert_eq!(
        l.resolve("a", "2024-01-01T00:00:00Z").unwrap(),
        Some((a, 1))
    );
    let s = l.steps(a).unwrap();
    assert_eq!(s[0].state, "running");
    assert_eq!(s[1].state, "cancelled");
    assert!(l.is_resolved(a).unwrap());
}
