//! Measures the webhook's reaction time: from sending `POST /alerts` to the
//! job's first migration start (as recorded in the job log), over 200
//! alerts on 200 different hosts of a sim cluster, one after another. It
//! prints p50/p99 and asserts no timing, only that every alert started one.
//!
//! `cargo test --release --test webhook_latency -- --nocapture`

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::webhook::{Stepper, Webhook, WebhookSpec, alert, payload, temp_dir, wait_for};
use xentinel::sim::{Cluster, ClusterSpec};

const ALERTS: usize = 200;

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

fn unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn post_to_first_migration_start_latency() {
    let dir = temp_dir("latency");
    let st = Stepper::new(cluster(), 20.0);
    let wh = Webhook::start(WebhookSpec::sim(&st.cluster, &dir));
    let mut lat = Vec::with_capacity(ALERTS);
    let mut http = Vec::with_capacity(ALERTS);
    for i in 0..ALERTS {
        let body = payload(
            "firing",
            vec![alert(
                &format!("fp{i}"),
                "firing",
                &format!("h{i}"),
                "2024-01-01T00:00:00Z",
            )],
        );
        let t0 = unix();
        let (code, v) = wh.post(&body);
        http.push(unix() - t0);
        assert_eq!(code, 200, "{v}");
        let id = v["accepted"][0]["job"].as_i64().unwrap();
        let first = wait_for("the first migration start", Duration::from_secs(10), || {
            wh.engine
                .db(|l| l.job(id))
                .unwrap()
                .and_then(|j| j.first_start_unix)
        });
        lat.push(first - t0);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() as f64 - 1.0) * p).round() as usize] * 1000.0
    };
    println!(
        "webhook latency over {ALERTS} alerts (sim executor, SQLite synchronous=FULL, {} build):\n  \
         POST sent -> first migration start: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n  \
         POST round trip (200 OK):           p50 {:.2} ms, p99 {:.2} ms",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        pct(&mut http, 0.5),
        pct(&mut http, 0.99),
    );
    assert_eq!(
        wh.metric("xentinel_alert_to_migration_start_seconds_count"),
        ALERTS as f64
    );
}
