//! End to end with a real Alertmanager: alerts injected with its API reach
//! the webhook (bearer token from `credentials_file`), the sim executor
//! evacuates the host moving each domain once; a second Alertmanager sending
//! the same alert (an HA pair) starts nothing new; resolving an alert cancels
//! the steps that had not started while the running one finishes.

mod support;

use std::time::Duration;

use serde_json::json;
use support::alertmanager::Alertmanager;
use support::webhook::{Stepper, Webhook, WebhookSpec, now_rfc3339, temp_dir, wait_for};
use xentinel::migration::runner::Settings;
use xentinel::sim::Cluster;

fn am_alert(host: &str, starts_at: &str, ends_at: Option<&str>) -> serde_json::Value {
    let mut a = json!({
        "labels": {
            "alertname": "XentinelHostWarningFailure",
            "xentinel_action": "evacuate",
            "host": host,
            "severity": "warning",
            "kind": "ups_on_battery"
        },
        "annotations": {"summary": "test"},
        "startsAt": starts_at
    });
    if let Some(e) = ends_at {
        a["endsAt"] = json!(e);
    }
    json!([a])
}

#[test]
fn alertmanager_to_webhook_exactly_once_and_resolve_cancels() {
    let _ = support::alertmanager::binary(); // fails loudly, naming the package
    let dir = temp_dir("am");
    let st = Stepper::new(Cluster::default_demo(1), 100.0);
    let mut spec = WebhookSpec::sim(&st.cluster, &dir);
    spec.settings = Settings {
        max_per_source: 1,
        ..Settings::default()
    };
    let wh = Webhook::start(spec);
    let token_file = dir.join("webhook.token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let url = format!("http://{}/alerts", wh.addr);
    let am1 = Alertmanager::start(&dir.join("am1"), &url, &token_file);

    // 1. A warning on xen1: every domain moves, once.
    let on_xen1 = st.domains_on("xen1");
    assert_eq!(on_xen1.len(), 3);
    let starts = now_rfc3339();
    am1.post_alerts(&am_alert("xen1", &starts, None));
    let id = wait_for(
        "the webhook to get the alert",
        Duration::from_secs(15),
        || wh.jobs().first().and_then(|j| j["id"].as_i64()),
    );
    let job = wh.wait_job(id, Duration::from_secs(60));
    assert_eq!(job["state"], "done", "{job:#}");
    assert_eq!(job["host"], "xen1");
    assert!(st.domains_on("xen1").is_empty());
    let per_domain = st.migrations_per_domain();
    for d in &on_xen1 {
        assert_eq!(per_domain.get(d), Some(&1), "{d}: {per_domain:?}");
    }
    assert_eq!(
        wh.metric("xentinel_webhook_requests_total{code=\"200\"}"),
        1.0
    );
    assert_eq!(wh.metric("xentinel_evacuations_succeeded_total"), 1.0);
    assert_eq!(
        wh.metric("xentinel_alert_to_migration_start_seconds_count"),
        1.0
    );

    // 2. HA: a second Alertmanager delivers the same alert; nothing new happens.
    let am2 = Alertmanager::start(&dir.join("am2"), &url, &token_file);
    am2.post_alerts(&am_alert("xen1", &starts, None));
    wait_for("the duplicate delivery", Duration::from_secs(15), || {
        (wh.metric("xentinel_alerts_ignored_total{reason=\"duplicate\"}") >= 1.0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(wh.jobs().len(), 1);
    assert_eq!(st.migrations_per_domain(), per_domain);
    drop(am2);

    // 3. Resolve while a job is under way: xen4's first migration is frozen
    //    mid-flight, the two others are still planned.
    st.set_speed(0.0);
    let on_xen4 = st.domains_on("xen4");
    let starts4 = now_rfc3339();
    am1.post_alerts(&am_alert("xen4", &starts4, None));
    let id4 = wait_for(
        "the xen4 job to start a migration",
        Duration::from_secs(15),
        || {
            let j = wh.jobs().into_iter().find(|j| j["host"] == "xen4")?;
            let job = wh.get(&format!("/jobs/{}", j["id"]));
            let steps = job["steps"].as_array()?;
            steps
                .iter()
                .any(|s| s["state"] == "running")
                .then(|| job["id"].as_i64())?
        },
    );
    am1.post_alerts(&am_alert("xen4", &starts4, Some(&now_rfc3339())));
    wait_for("the resolved notification", Duration::from_secs(15), || {
        let job = wh.get(&format!("/jobs/{id4}"));
        job["resolved"].is_string().then_some(())
    });
    st.set_speed(100.0);
    let job = wh.wait_job(id4, Duration::from_secs(60));
    assert_eq!(job["state"], "cancelled", "{job:#}");
    let steps = job["steps"].as_array().unwrap();
    let done: Vec<&str> = steps
        .iter()
        .filter(|s| s["state"] == "done")
        .map(|s| s["domain"].as_str().unwrap())
        .collect();
    let cancelled: Vec<&serde_json::Value> =
        steps.iter().filter(|s| s["state"] == "cancelled").collect();
    assert_eq!(done.len(), 1, "the running migration finishes: {job:#}");
    assert_eq!(cancelled.len(), 2, "{job:#}");
    assert!(cancelled.iter().all(|s| s["reason"] == "alert resolved"));
    let now_on_xen4 = st.domains_on("xen4");
    assert_eq!(now_on_xen4.len(), on_xen4.len() - 1);
    assert!(!now_on_xen4.contains(&done[0].to_string()));
    let per_domain = st.migrations_per_domain();
    assert_eq!(per_domain.get(done[0]), Some(&1));
    for s in cancelled {
        assert_eq!(per_domain.get(s["domain"].as_str().unwrap()), None);
    }
}
