//! Bad input to `POST /alerts`: every case gets a 4xx with a JSON reason and
//! changes nothing (no job, no migration, no file created by a hostile host
//! name); ignored alerts get 200 and are counted by reason.

mod support;

use std::time::Duration;

use serde_json::json;
use support::webhook::{Stepper, Webhook, WebhookSpec, alert, payload, request, temp_dir};
use xentinel::sim::Cluster;

fn setup(name: &str) -> (Stepper, Webhook) {
    let dir = temp_dir(name);
    let st = Stepper::new(Cluster::default_demo(1), 50.0);
    let mut spec = WebhookSpec::sim(&st.cluster, &dir);
    spec.body_limit = 64 * 1024;
    (st, Webhook::start(spec))
}

fn assert_nothing_changed(st: &Stepper, wh: &Webhook) {
    assert!(wh.jobs().is_empty(), "a job was created: {:?}", wh.jobs());
    assert!(st.migrations_per_domain().is_empty());
}

fn error_of(v: &serde_json::Value) -> String {
    v["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn malformed_json_wrong_version_and_missing_labels_are_400() {
    let (st, wh) = setup("badjson");
    let (code, v) = wh.post("{\"version\": \"4\", \"alerts\": [");
    assert_eq!(code, 400, "{v}");
    assert!(error_of(&v).contains("malformed JSON"), "{v}");

    let mut p: serde_json::Value = serde_json::from_str(&payload(
        "firing",
        vec![alert("f", "firing", "xen1", "2024-01-01T00:00:00Z")],
    ))
    .unwrap();
    p["version"] = json!("3");
    let (code, v) = wh.post(&p.to_string());
    assert_eq!(code, 400);
    assert!(error_of(&v).contains("version"), "{v}");

    let mut a = alert("f", "firing", "xen1", "2024-01-01T00:00:00Z");
    a["labels"].as_object_mut().unwrap().remove("host");
    let (code, v) = wh.post(&payload("firing", vec![a]));
    assert_eq!(code, 400);
    assert!(error_of(&v).contains("no \"host\" label"), "{v}");

    let a = alert("f", "firing", "xen1", "last tuesday");
    let (code, v) = wh.post(&payload("firing", vec![a]));
    assert_eq!(code, 400);
    assert!(error_of(&v).contains("startsAt"), "{v}");

    std::thread::sleep(Duration::from_millis(200));
    assert_nothing_changed(&st, &wh);
    assert_eq!(
        wh.metric("xentinel_webhook_requests_total{code=\"400\"}"),
        4.0
    );
}

#[test]
fn missing_or_wrong_token_is_401() {
    let (st, wh) = setup("token");
    let body = payload(
        "firing",
        vec![alert("f", "firing", "xen1", "2024-01-01T00:00:00Z")],
    );
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", "Bearer s3cret-tokenX")],
        vec![("Authorization", "Basic czNjcmV0LXRva2Vu")],
    ] {
        let (code, b) = request(&wh.addr, "POST", "/alerts", &headers, body.as_bytes());
        assert_eq!(code, 401, "{headers:?}: {b}");
        assert!(b.contains("bearer token"), "{b}");
    }
    let (code, _) = request(&wh.addr, "GET", "/jobs", &[], b"");
    assert_eq!(code, 401);
    std::thread::sleep(Duration::from_millis(200));
    assert_nothing_changed(&st, &wh);
    assert_eq!(
        wh.metric("xentinel_webhook_requests_total{code=\"401\"}"),
        4.0
    );
}

#[test]
fn oversized_body_is_413() {
    let (st, wh) = setup("big");
    let mut alerts = Vec::new();
    for i in 0..2000 {
        alerts.push(alert(
            &format!("f{i}"),
            "firing",
            "xen1",
            "2024-01-01T00:00:00Z",
        ));
    }
    let body = payload("firing", alerts);
    assert!(body.len() > 64 * 1024);
    let (code, v) = wh.post(&body);
    assert_eq!(code, 413, "{v}");
    assert!(error_of(&v).contains("cannot read the body"), "{v}");
    std::thread::sleep(Duration::from_millis(200));
    assert_nothing_changed(&st, &wh);
}

#[test]
fn unknown_and_hostile_hosts_are_422_and_run_nothing() {
    let (st, wh) = setup("hostile");
    let dir = temp_dir("hostile-marker");
    let marker = dir.join("pwned");
    let hostile = format!("h1; touch {}", marker.display());
    for host in [hostile.as_str(), "xen9", "$(touch /tmp/x)", "-rf"] {
        let (code, v) = wh.post(&payload(
            "firing",
            vec![alert("f", "firing", host, "2024-01-01T00:00:00Z")],
        ));
        assert_eq!(code, 422, "{host}: {v}");
        assert!(error_of(&v).contains("unknown host"), "{v}");
        assert!(error_of(&v).contains("nothing done"), "{v}");
    }
    // One bad alert in a batch: the good one is not acted on either.
    let (code, _) = wh.post(&payload(
        "firing",
        vec![
            alert("g", "firing", "xen1", "2024-01-01T00:00:00Z"),
            alert("h", "firing", &hostile, "2024-01-01T00:00:00Z"),
        ],
    ));
    assert_eq!(code, 422);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!marker.exists(), "the hostile host name ran a command");
    assert_nothing_changed(&st, &wh);
}

#[test]
fn other_alerts_are_200_and_counted_as_ignored() {
    let (st, wh) = setup("ignored");
    let mut a = alert("f", "firing", "xen1", "2024-01-01T00:00:00Z");
    a["labels"] = json!({"alertname": "XentinelExporterDown", "host": "xen1"});
    let resolved_unknown = alert("zz", "resolved", "xen2", "2024-01-01T00:00:00Z");
    let (code, v) = wh.post(&payload("firing", vec![a, resolved_unknown]));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["ignored"], 2);
    assert_eq!(
        wh.metric("xentinel_alerts_ignored_total{reason=\"not_evacuate\"}"),
        1.0
    );
    assert_eq!(
        wh.metric("xentinel_alerts_ignored_total{reason=\"resolved_without_job\"}"),
        1.0
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_nothing_changed(&st, &wh);
    let (code, _) = request(&wh.addr, "GET", "/-/healthy", &[], b"");
    assert_eq!(code, 200);
    let (code, _) = request(
        &wh.addr,
        "GET",
        "/jobs/77",
        &[("Authorization", "Bearer s3cret-token")],
        b"",
    );
    assert_eq!(code, 404);
}

#[test]
fn multi_byte_starts_at_offset_is_400_and_counted() {
    // Issue 15, finding 1: these offsets panicked the handler (empty reply, not counted).
    let (st, wh) = setup("multibyte");
    for starts in ["2024-01-01T00:00:00+0é00", "2024-01-01T00:00:00+€00"] {
        let a = alert("f", "firing", "xen1", starts);
        let (code, v) = wh.post(&payload("firing", vec![a]));
        assert_eq!(code, 400, "{starts}: {v}");
        assert!(error_of(&v).contains("is not an RFC 3339 time"), "{v}");
    }
    assert_nothing_changed(&st, &wh);
    assert_eq!(
        wh.metric("xentinel_webhook_requests_total{code=\"400\"}"),
        2.0
    );
}

#[test]
fn one_instant_written_four_ways_is_one_job() {
    // Issue 15, finding 2: the same instant spelled four ways made four jobs.
    let (_st, wh) = setup("oneinstant");
    let spellings = [
        "2024-01-01T00:00:00Z",
        "2024-01-01T01:00:00+01:00",
        "2023-12-31T19:30:00.000-04:30",
        "2024-01-01t00:00:00.0z",
    ];
    let mut ids = vec![];
    for (i, starts) in spellings.iter().enumerate() {
        let a = alert("same-fp", "firing", "xen1", starts);
        let (code, v) = wh.post(&payload("firing", vec![a]));
        assert_eq!(code, 200, "{starts}: {v}");
        let key = if i == 0 { "accepted" } else { "duplicates" };
        ids.push(v[key][0]["job"].as_i64().unwrap_or_else(|| panic!("{v}")));
    }
    assert!(ids.iter().all(|&id| id == ids[0]), "{ids:?}");
    assert_eq!(wh.jobs().len(), 1, "{:?}", wh.jobs());
}
