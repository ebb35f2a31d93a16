//! Scraping for tests: a plain HTTP/1.1 GET over a real socket, and a small
//! parser of the text exposition format (names, labels, values).

use std::collections::BTreeMap;
use std::io::Write;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// GETs `path` from `addr` and returns (status, body).
pub fn get(addr: &str, path: &str) -> (u16, String) {
    super::http::request(addr, "GET", path, &[], b"")
}

/// Parses exposition text into samples (comments skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Sample {
    let b = line.as_bytes();
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("bad sample line {line:?}"));
    let mut labels = BTreeMap::new();
    let mut i = name_end;
    if b[i] == b'{' {
        i += 1;
        while b[i] != b'}' {
            let eq = i + line[i..].find('=').expect("label =");
            let lname = line[i..eq].to_string();
            i = eq + 2; // skip `="`
            let mut val = String::new();
            let mut chars = line[i..].char_indices();
            loop {
                let (off, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("unterminated label in {line:?}"));
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => val.push('\n'),
                        Some(c) => val.push(c),
                        None => panic!("bad escape in {line:?}"),
                    },
                    '"' => {
                        i += off + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            labels.insert(lname, val);
            if b[i] == b',' {
                i += 1;
            }
        }
        i += 1;
    }
    let value = line[i..].split_whitespace().next().expect("value");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}")),
    };
    Sample {
        name: line[..name_end].to_string(),
        labels,
        value,
    }
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
