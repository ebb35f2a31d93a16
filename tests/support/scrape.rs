//! Scraping for tests: a plain HTTP/1.1 GET over a real socket, the
//! product's parser of the text exposition format, and `promtool`.

use std::io::Write;

pub use xentinel::exposition::parse::Sample;

/// GETs `path` from `addr` and returns (status, body).
pub fn get(addr: &str, path: &str) -> (u16, String) {
    super::http::request(addr, "GET", path, &[], b"")
}

/// Parses exposition text into samples (comments skipped) with the
/// product's parser; panics on a line that is not an exposition.
pub fn parse(text: &str) -> Vec<Sample> {
    xentinel::exposition::parse::parse(text).unwrap_or_else(|e| panic!("not an exposition: {e}"))
}

/// The value of the one sample of `name` whose labels include `want`.
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<_> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        hits.len() <= 1,
        "{name} {want:?} matches {} samples",
        hits.len()
    );
    hits.first().map(|s| s.value)
}

/// Runs `promtool check metrics` on `text`; panics with its findings. Fails
/// loudly when promtool is missing.
pub fn promtool_check_metrics(text: &str) {
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run promtool ({e}): apt-get install prometheus"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics: {findings}"
    );
}
