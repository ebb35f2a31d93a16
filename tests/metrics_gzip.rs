//! `/metrics` with `Accept-Encoding: gzip` (as Prometheus sends it): the real
//! binary on loopback answers gzip that decompresses to the same series as a
//! plain scrape and passes `promtool check metrics`; without the header, or
//! with `gzip;q=0`, it answers plain text. Both say `Vary: Accept-Encoding`.

mod support;

use std::collections::BTreeSet;
use std::io::Read;

use support::http::{RawResponse, get_raw};
use support::proc::spawn_listening;
use support::scrape::{self, promtool_check_metrics};

/// The identity (name and labels) of every sample of an exposition.
fn series(text: &str) -> BTreeSet<String> {
    scrape::parse(text)
        .iter()
        .map(|s| format!("{}{:?}", s.name, s.labels))
        .collect()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("a valid gzip stream of UTF-8 text");
    out
}

fn plain(r: &RawResponse) -> String {
    assert_eq!(r.status, 200);
    assert!(r.header("content-encoding").is_empty(), "{:?}", r.headers);
    assert_eq!(r.header("vary"), ["Accept-Encoding"]);
    String::from_utf8(r.body.clone()).expect("plain UTF-8 text")
}

#[test]
fn gzip_when_asked_plain_otherwise_same_series() {
    // 300 simulated domains: well over one 64 KiB piece of text, so the
    // compressed body is streamed through the encoder in several pieces.
    let x = spawn_listening(&["exporter", "--source", "sim", "--sim.domains", "300"]);
    let text = plain(&get_raw(&x.addr, "/metrics", &[]));
    assert!(text.len() > 4 * 64 * 1024, "only {} bytes", text.len());

    let gz = get_raw(&x.addr, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), ["gzip"]);
    assert_eq!(gz.header("vary"), ["Accept-Encoding"]);
    assert!(
        gz.header("content-type")[0].starts_with("text/plain; version=0.0.4"),
        "{:?}",
        gz.headers
    );
    assert!(
        gz.body.len() * 4 < text.len(),
        "gzip {} bytes against {} plain",
        gz.body.len(),
        text.len()
    );
    let unzipped = gunzip(&gz.body);
    // The simulator moves values between scrapes; the series are the same.
    assert_eq!(series(&unzipped), series(&text));
    promtool_check_metrics(&unzipped);

    // Prometheus's own header, and a refusal.
    let prom = get_raw(
        &x.addr,
        "/metrics",
        &[
            ("Accept-Encoding", "gzip, deflate"),
            ("User-Agent", "Prometheus/2.45.3"),
        ],
    );
    assert_eq!(prom.header("content-encoding"), ["gzip"]);
    assert_eq!(series(&gunzip(&prom.body)), series(&text));
    let refused = plain(&get_raw(
        &x.addr,
        "/metrics",
        &[("Accept-Encoding", "gzip;q=0")],
    ));
    assert_eq!(series(&refused), series(&text));
}

#[test]
fn a_small_body_is_gzip_too() {
    let x = spawn_listening(&["exporter", "--source", "sim", "--sim.domains", "1"]);
    let text = plain(&get_raw(&x.addr, "/metrics", &[]));
    assert!(text.len() < 64 * 1024);
    let gz = get_raw(&x.addr, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), ["gzip"]);
    let unzipped = gunzip(&gz.body);
    assert_eq!(series(&unzipped), series(&text));
    promtool_check_metrics(&unzipped);
}
