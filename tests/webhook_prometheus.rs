//! Planning from Prometheus' HTTP API: while Prometheus is unreachable the
//! job waits with a clear status (and an alert whose host cannot be checked
//! gets 503); once it answers, the job plans from its series, a domain with
//! no room fails its step with the reason while the others go on.

mod support;

use std::time::Duration;

use support::webhook::{
    FakeProm, Stepper, Webhook, WebhookSpec, alert, free_port, payload, temp_dir, wait_for,
};
use xentinel::migration::planner::Inventory;
use xentinel::migration::prom::PromClient;
use xentinel::sim::Cluster;

const GIB: u64 = 1 << 30;

fn prom_webhook(
    dir: &std::path::Path,
    port: u16,
    hosts: Option<Vec<String>>,
) -> (Stepper, Webhook) {
    let st = Stepper::new(Cluster::default_demo(1), 100.0);
    let mut spec = WebhookSpec::sim(&st.cluster, dir);
    spec.inventory = Inventory::Prometheus {
        client: PromClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2))
            .unwrap(),
        job: "xentinel".into(),
    };
    spec.hosts = hosts;
    spec.settings.backoff_max = Duration::from_millis(500);
    (st, Webhook::start(spec))
}

#[test]
fn unreachable_prometheus_means_waiting_then_planning_from_its_series() {
    let dir = temp_dir("prom");
    let port = free_port();
    let hosts = ["xen1", "xen2", "xen3", "xen4"].map(String::from).to_vec();
    let (st, wh) = prom_webhook(&dir, port, Some(hosts));
    let (code, v) = wh.post(&payload(
        "firing",
        vec![alert("p1", "firing", "xen1", "2024-01-01T00:00:00Z")],
    ));
    assert_eq!(code, 200, "{v}");
    let job = wait_for("the job to wait", Duration::from_secs(10), || {
        let j = wh.get("/jobs/1");
        (j["state"] == "waiting").then_some(j)
    });
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .starts_with("prometheus unreachable: cannot connect"),
        "{job:#}"
    );
    assert!(st.migrations_per_domain().is_empty());

    // Prometheus comes up: xen2 has room for web1 and idle1 but not db1 (8 GiB);
    // xen3 is bigger but warned, so it is never a target.
    let _prom = FakeProm::start_on(
        port,
        vec![("xen1".into(), 0), ("xen2".into(), 4 * GIB)],
        vec![
            ("db1".into(), "xen1".into(), 8 * GIB),
            ("web1".into(), "xen1".into(), 2 * GIB),
            ("idle1".into(), "xen1".into(), GIB / 2),
            ("web2".into(), "xen2".into(), 2 * GIB),
        ],
        vec!["xen3".into()],
    );
    let job = wh.wait_job(1, Duration::from_secs(30));
    assert_eq!(job["state"], "failed", "{job:#}");
    let steps = job["steps"].as_array().unwrap();
    let got: Vec<(&str, &str, Option<&str>)> = steps
        .iter()
        .map(|s| {
            (
                s["domain"].as_str().unwrap(),
                s["state"].as_str().unwrap(),
                s["target"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("db1", "failed", None),
            ("web1", "done", Some("xen2")),
            ("idle1", "done", Some("xen2"))
        ],
        "{job:#}"
    );
    assert!(
        steps[0]["reason"].as_str().unwrap().contains("no room"),
        "{job:#}"
    );
    assert!(job["reason"].as_str().unwrap().contains("2 done, 1 failed"));
    assert_eq!(wh.metric("xentinel_migrations_unplaced_total"), 1.0);
    assert_eq!(st.domains_on("xen1"), ["db1"]);
}

#[test]
fn unknown_host_check_needs_prometheus_and_says_so() {
    let dir = temp_dir("prom503");
    let (st, wh) = prom_webhook(&dir, free_port(), None);
    let (code, v) = wh.post(&payload(
        "firing",
        vec![alert("p2", "firing", "xen1", "2024-01-01T00:00:00Z")],
    ));
    assert_eq!(code, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("prometheus unreachable"),
        "{v}"
    );
    assert!(wh.jobs().is_empty());
    assert!(st.migrations_per_domain().is_empty());
}
