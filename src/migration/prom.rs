//! A minimal Prometheus HTTP API client: `GET /api/v1/query` over a plain
//! HTTP/1.1 connection (tokio `TcpStream`, `Connection: close`), JSON decoded
//! with serde_json. Instant vectors only: that is all the planner asks.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read (a vector of every domain of a big cluster fits easily).
const MAX_RESPONSE: usize = 32 << 20;

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A plain-HTTP endpoint (`http://host[:port][/path]`) and a tiny HTTP/1.1
/// GET over it: what the Prometheus client and the exporters inventory share.
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    host: String,
    port: u16,
    /// The URL's path, without a trailing `/` (may be empty).
    path: String,
    url: String,
}

impl HttpEndpoint {
    /// Parses `http://host[:port][/path]`; `what` names the URL in errors
    /// (no TLS: keep these endpoints on localhost or a trusted net).
    pub fn parse(url: &str, what: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{what} URL {url:?} must start with http:// (https is not supported)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse()
                    .map_err(|_| format!("bad port in {what} URL {url:?}"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("no host in {what} URL {url:?}"));
        }
        Ok(HttpEndpoint {
            host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
            port,
            path: path.to_string(),
            url: url.to_string(),
        })
    }

    /// The URL it was built from.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL's path (`/` when it has none).
    pub fn path(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }

    /// `GET path` with `Connection: close`; returns the status code and the
    /// (de-chunked) body, whatever the status. Errors: no connection, no answer
    /// within `timeout`, not HTTP.
    pub async fn get(
        &self,
        path: &str,
        accept: &str,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), String> {
        tokio::time::timeout(timeout, self.get_inner(path, accept))
            .await
            .map_err(|_| format!("no answer from {} within {timeout:?}", self.url))?
    }

    async fn get_inner(&self, path: &str, accept: &str) -> Result<(u16, Vec<u8>), String> {
        let mut s = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.url))?;
        let host_hdr = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host_hdr}\r\nAccept: {accept}\r\n\
             User-Agent: xentinel/{}\r\nConnection: close\r\n\r\n",
            env!("CARGO_PKG_VERSION")
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let mut raw = Vec::new();
        (&mut s)
            .take(MAX_RESPONSE as u64)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("{}: not an HTTP response", self.url))?;
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let mut body = raw[split + 4..].to_vec();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if head.contains("transfer-encoding: chunked") {
            body = dechunk(&body).ok_or_else(|| format!("{}: bad chunked body", self.url))?;
        }
        Ok((status, body))
    }
}

/// Where Prometheus is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct PromClient {
    endpoint: HttpEndpoint,
    timeout: Duration,
}

impl PromClient {
    /// Parses `http://host[:port][/prefix]` (no TLS: put Prometheus on localhost or a trusted net).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(PromClient {
            endpoint: HttpEndpoint::parse(url, "prometheus")?,
            timeout,
        })
    }

    /// The URL it was built from.
    pub fn url(&self) -> &str {
        self.endpoint.url()
    }

    /// Runs an instant query; errors say whether Prometheus was unreachable or refused.
    pub async fn query(&self, q: &str) -> Result<Vec<Sample>, String> {
        let path = format!("{}/api/v1/query?query={}", self.endpoint.path, urlencode(q));
        let (status, body) = self
            .endpoint
            .get(&path, "application/json", self.timeout)
            .await?;
        // Prometheus answers API errors (bad query: 400, 422, 503) with a JSON error body.
        if status != 200 && !(400..600).contains(&status) {
            return Err(format!("{}: HTTP status {status}", self.url()));
        }
        decode(&body).map_err(|e| format!("query {q:?}: {e}"))
    }
}

fn decode(body: &[u8]) -> Result<Vec<Sample>, String> {
    #[derive(serde::Deserialize)]
    struct Resp {
        status: String,
        #[serde(default)]
        data: Option<Data>,
        #[serde(default)]
        error: String,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        result_type: String,
        result: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        metric: BTreeMap<String, String>,
        value: (f64, String),
    }
    let r: Resp =
        serde_json::from_slice(body).map_err(|e| format!("not a Prometheus API answer: {e}"))?;
    if r.status != "success" {
        return Err(format!("Prometheus answered {}: {}", r.status, r.error));
    }
    let d = r.data.ok_or("Prometheus answered no data")?;
    if d.result_type != "vector" {
        return Err(format!("expected a vector, got {}", d.result_type));
    }
    d.result
        .into_iter()
        .map(|i| {
            let value = match i.value.1.as_str() {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().map_err(|_| format!("bad sample value {v:?}"))?,
            };
            Ok(Sample {
                labels: i.metric,
                value,
            })
        })
        .collect()
}

/// Parses the text exposition format (what exporters serve on /metrics) into
/// `(metric name, sample)` pairs. Comments and blank lines are skipped; label
/// values may use the `\\`, `\"` and `\n` escapes; a timestamp is ignored.
pub fn parse_exposition(text: &str) -> Result<Vec<(String, Sample)>, String> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| parse_series(l).map_err(|e| format!("line {}: {e}: {l:?}", i + 1)))
        .collect()
}

/// One series line: `name{label="value",...} value [timestamp]`.
fn parse_series(line: &str) -> Result<(String, Sample), String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("bad metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (key, r) = rest.split_once('=').ok_or("label without '='")?;
            let mut chars = r
                .trim_start()
                .strip_prefix('"')
                .ok_or("label value without quotes")?
                .chars();
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")? {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")? {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key.trim().to_string(), value);
            rest = chars.as_str();
            if !rest.trim_start().starts_with([',', '}']) {
                return Err("expected ',' or '}' after a label value".into());
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next().ok_or("missing value")? {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad sample value {v:?}"))?,
    };
    if fields.nth(1).is_some() {
        return Err("trailing fields".into());
    }
    Ok((name.to_string(), Sample { labels, value }))
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size_txt = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_txt.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let c = PromClient::new("http://127.0.0.1:9090/prom/", Duration::from_secs(1)).unwrap();
        let e = &c.endpoint;
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 9090, "/prom")
        );
        let c = PromClient::new("http://prom", Duration::from_secs(1)).unwrap();
        assert_eq!((c.endpoint.host.as_str(), c.endpoint.port), ("prom", 80));
        assert_eq!(c.endpoint.path(), "/");
        assert!(PromClient::new("https://x", Duration::from_secs(1)).is_err());
    }

    #[test]
    fn vectors_and_errors_decode() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"host":"xen1"},"value":[1.5,"42"]}]}}"#;
        let v = decode(ok).unwrap();
        assert_eq!(v[0].labels["host"], "xen1");
        assert_eq!(v[0].value, 42.0);
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert!(decode(err).unwrap_err().contains("parse error"));
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
        let t = "# HELP x y\n\nx{a=\"q\\\"\\\\\\n\",b=\"}\"} 1.5 123\nup 1\nbad{a=\"x\" 1\n";
        assert!(parse_exposition(t).unwrap_err().starts_with("line 5:"));
        let v = parse_exposition(&t[..t.rfind("bad").unwrap()]).unwrap();
        assert_eq!(v[0].0, "x");
        assert_eq!(v[0].1.labels["a"], "q\"\\\n");
        assert_eq!(v[0].1.labels["b"], "}");
        assert_eq!(
            (v[0].1.value, v[1].0.as_str(), v[1].1.value),
            (1.5, "up", 1.0)
        );
        assert_eq!(
            urlencode("max by (host) (x{a=\"b\"})"),
            "max%20by%20%28host%29%20%28x%7Ba%3D%22b%22%7D%29"
        );
    }
}
