//! Alerts one after another, each on its own host of a sim cluster: every
//! alert starts exactly one job, and that job its one migration; a repeated
//! delivery starts nothing. How fast (POST sent -> first migration start, in
//! ms, beside an HTTP round trip and a durable SQLite write on the same
//! machine in the same run) is measured by the bench: `scripts/bench.sh`,
//! docs/benchmarks.md ("Webhook"). The only time bounds here are a stall's,
//! not a speed's: 10 s for one alert to start its migration and 60 s for all
//! jobs to finish, against milliseconds and a few seconds on a loaded machine.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use support::webhook::{Stepper, Webhook, WebhookSpec, alert, payload, temp_dir, wait_for};
use xentinel::sim::{Cluster, ClusterSpec};

const ALERTS: usize = 200;

/// `ALERTS + 1` hosts `h0..`, each with one small domain `vm<i>`.
fn cluster() -> Cluster {
    let demo = ClusterSpec::default_demo();
    let mut spec = demo.clone();
    spec.hosts.clear();
    spec.domains.clear();
    for i in 0..=ALERTS {
        let mut h = demo.hosts[0].clone();
        h.name = format!("h{i}");
        spec.hosts.push(h);
        let mut d = demo
            .domains
            .iter()
            .find(|d| d.name == "dns1")
            .unwrap()
            .clone();
        d.name = format!("vm{i}");
        d.host = format!("h{i}");
        spec.domains.push(d);
    }
    Cluster::new(spec, 1).unwrap()
}

fn firing(i: usize) -> String {
    payload(
        "firing",
        vec![alert(
            &format!("fp{i}"),
            "firing",
            &format!("h{i}"),
            "2024-01-01T00:00:00Z",
        )],
    )
}

#[test]
fn every_alert_starts_exactly_one_job_and_its_migration() {
    let dir = temp_dir("latency");
    let st = Stepper::new(cluster(), 20.0);
    let wh = Webhook::start(WebhookSpec::sim(&st.cluster, &dir));
    let mut ids = BTreeSet::new();
    for i in 0..ALERTS {
        let (code, v) = wh.post(&firing(i));
        assert_eq!(code, 200, "{v}");
        let id = v["accepted"][0]["job"]
            .as_i64()
            .unwrap_or_else(|| panic!("alert {i} not accepted: {v}"));
        assert!(ids.insert(id), "alert {i} got job {id} again: {v}");
        let first = wait_for("the first migration start", Duration::from_secs(10), || {
            wh.engine
                .db(|l| l.job(id))
                .unwrap()
                .and_then(|j| j.first_start_unix)
        });
        assert!(first > 0.0, "job {id}: first start {first}");
        // The same alert again (an HA pair's second Alertmanager): the
        // job it already has, nothing new.
        let (code, v) = wh.post(&firing(i));
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["duplicates"][0]["job"].as_i64(), Some(id), "{v}");
        assert!(v["accepted"].as_array().is_none_or(Vec::is_empty), "{v}");
    }
    // One job per alert, on the alerted host. Each job moves what is on its
    // host when it runs: the host's own domain, and any an earlier job
    // placed there (unless that job is still moving it). Every migration
    // the cluster made is one done step of a job.
    wait_for("every job to finish", Duration::from_secs(60), || {
        let jobs = wh.engine.db(|l| l.jobs(10 * ALERTS)).unwrap();
        jobs.iter()
            .all(|j| matches!(j.state.as_str(), "done" | "failed" | "cancelled"))
            .then_some(())
    });
    let jobs = wh.engine.db(|l| l.jobs(10 * ALERTS)).unwrap();
    assert_eq!(jobs.len(), ALERTS);
    let hosts: BTreeSet<&str> = jobs.iter().map(|j| j.host.as_str()).collect();
    let alerted: Vec<String> = (0..ALERTS).map(|i| format!("h{i}")).collect();
    assert_eq!(hosts, alerted.iter().map(String::as_str).collect());
    let mut per_domain: BTreeMap<String, usize> = BTreeMap::new();
    for j in &jobs {
        assert_eq!(j.state, "done", "job {} on {}: {}", j.id, j.host, j.reason);
        let steps = wh.engine.db(|l| l.steps(j.id)).unwrap();
        let own = format!("vm{}", &j.host[1..]);
        assert!(
            steps.iter().any(|s| s.domain == own && s.state == "done"),
            "job {} on {} did not move {own}: {steps:?}",
            j.id,
            j.host
        );
        for s in &steps {
            assert_eq!(s.source, j.host, "{s:?}");
            match s.state.as_str() {
                "done" => *per_domain.entry(s.domain.clone()).or_default() += 1,
                // A domain an earlier job was still moving onto this host:
                // the per-domain claim leaves it to that job.
                "cancelled" if s.reason.contains("being migrated by job") => {}
                _ => panic!("job {} on {}: {s:?}", j.id, j.host),
            }
        }
    }
    assert_eq!(st.migrations_per_domain(), per_domain);
    assert_eq!(
        wh.metric("xentinel_alert_to_migration_start_seconds_count"),
        ALERTS as f64
    );
}
