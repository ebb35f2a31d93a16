//! The xen source's mapping, driven through the same `Source` trait, collector
//! and renderer as the live library, from values recorded off a Xen 4.17 host
//! (`tests/fixtures/xenstat-node.json`); the output passes promtool.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::scrape::{self, value};
use xentinel::collector::Collector;
use xentinel::snapshot::Collection;
use xentinel::sources::xen::{map, raw::RawNode};
use xentinel::sources::{BoxFuture, Source, SourceError};

/// Replays a recorded libxenstat node as the `xen` source would map it.
struct Recorded(RawNode);

impl Source for Recorded {
    fn name(&self) -> &'static str {
        "xen"
    }
    fn collect<'a>(&'a self, out: &'a mut Collection) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            map::map(&self.0, out);
            Ok(())
        })
    }
}

#[tokio::test]
async fn recorded_libxenstat_values_render_as_the_contract_says() {
    let text = std::fs::read_to_string("tests/fixtures/xenstat-node.json").unwrap();
    let node: RawNode = serde_json::from_str(&text).unwrap();
    let c = Collector::new(
        vec![Box::new(Recorded(node))],
        Duration::from_secs(1),
        Arc::default(),
    );
    let mut body = String::new();
    xentinel::exposition::render(&c.snapshot().await, &mut body);
    scrape::promtool_check_metrics(&body);
    let s = scrape::parse(&body);
    let d = |n: &str, dom: &str, extra: &[(&str, &str)]| {
        let mut want = vec![("domain", dom)];
        want.extend_from_slice(extra);
        value(&s, n, &want)
    };
    assert_eq!(
        value(&s, "xen_host_memory_total_bytes", &[]),
        Some(137_406_857_216.0)
    );
    assert_eq!(value(&s, "xen_host_cpus", &[]), Some(16.0));
    assert_eq!(
        value(&s, "xen_host_info", &[("xen_version", "4.17.6-pre")]),
        Some(1.0)
    );
    assert_eq!(value(&s, "xen_host_domains", &[]), Some(3.0));
    assert_eq!(
        d("xen_domain_cpu_seconds_total", "web01", &[]),
        Some(52_118.337_004_51)
    );
    assert_eq!(d("xen_domain_vcpus", "web01", &[]), Some(4.0));
    assert_eq!(
        d("xen_domain_vcpu_online", "web01", &[("vcpu", "3")]),
        Some(0.0)
    );
    assert_eq!(
        d("xen_domain_memory_bytes", "web01", &[]),
        Some(8_589_934_592.0)
    );
    assert_eq!(
        d("xen_domain_memory_max_bytes", "Domain-0", &[]),
        None,
        "unlimited is absent, not 2^64"
    );
    assert_eq!(
        d("xen_domain_state", "web01", &[("state", "blocked")]),
        Some(1.0)
    );
    assert_eq!(
        d("xen_domain_state", "db02", &[("state", "paused")]),
        Some(1.0)
    );
    assert!(
        d(
            "xen_domain_block_read_bytes_total",
            "web01",
            &[("device", "xvda")]
        )
        .unwrap()
            > 0.0
    );
    assert!(
        d(
            "xen_domain_network_receive_bytes_total",
            "web01",
            &[("interface", "0")]
        )
        .unwrap()
            > 0.0
    );
    assert_eq!(
        value(&s, "xentinel_source_up", &[("source", "xen")]),
        Some(1.0)
    );
    // Without xenstore there is no UUID: the label is present and empty.
    assert_eq!(
        d("xen_domain_info", "web01", &[("uuid", ""), ("domid", "7")]),
        Some(1.0)
    );
}
