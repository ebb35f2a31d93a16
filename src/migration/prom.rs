//! A minimal Prometheus HTTP API client: `GET /api/v1/query` with the
//! crate's HTTP client ([`crate::http_client`]), JSON decoded with
//! serde_json. Instant vectors only: that is all the planner asks.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::exposition::parse::{LineError, Sample, parse_value};
use crate::http_client::{Client, ClientOptions, Endpoint, RequestError, TlsError, UrlError};

/// Largest response read (a vector of every domain of a big cluster fits easily).
pub const MAX_RESPONSE: usize = 32 << 20;

/// Where Prometheus is, how to reach it and how long to wait for it.
#[derive(Debug, Clone)]
pub struct PromClient {
    endpoint: Endpoint,
    client: Client,
    timeout: Duration,
}

/// Why a [`PromClient`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Prometheus could not be reached or did not answer in time.
    #[error(transparent)]
    Unreachable(#[from] RequestError),
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("query {query:?}: {problem}")]
    Answer { query: String, problem: AnswerError },
}

/// What is wrong with an API answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    #[error("not a Prometheus API answer: {0}")]
    Json(String),
    #[error("Prometheus answered {status}: {error}")]
    Failed { status: String, error: String },
    #[error("Prometheus answered no data")]
    NoData,
    #[error("expected a vector, got {0}")]
    NotVector(String),
    #[error("bad sample value {0:?}")]
    Value(String),
}

impl PromClient {
    /// Parses `http://host[:port][/prefix]`: plain HTTP (put Prometheus on
    /// localhost or a trusted net, or use [`PromClient::with_options`]).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::with_options(url, timeout, &ClientOptions::default())
    }

    /// `http[s]://host[:port][/prefix]`, with TLS and credentials.
    pub fn with_options(
        url: &str,
        timeout: Duration,
        options: &ClientOptions,
    ) -> Result<Self, ClientError> {
        let endpoint = Endpoint::parse(url, "prometheus")?;
        let client = Client::new(options)?;
        client.check(&endpoint, "prometheus")?;
        Ok(PromClient {
            endpoint,
            client,
            timeout,
        })
    }

    /// The URL it was built from.
    pub fn url(&self) -> &str {
        self.endpoint.url()
    }

    /// Runs an instant query; errors say whether Prometheus was unreachable or refused.
    pub async fn query(&self, q: &str) -> Result<Vec<Sample>, QueryError> {
        let path = format!(
            "{}/api/v1/query?query={}",
            self.endpoint.prefix(),
            urlencode(q)
        );
        let r = self
            .client
            .get(
                &self.endpoint,
                &path,
                "application/json",
                self.timeout,
                MAX_RESPONSE,
            )
            .await?;
        // Prometheus answers API errors (bad query: 400, 422, 503) with a JSON error body.
        if r.status != 200 && !(400..600).contains(&r.status) {
            return Err(QueryError::Status {
                url: self.url().to_string(),
                status: r.status,
            });
        }
        decode(&r.body).map_err(|problem| QueryError::Answer {
            query: q.to_string(),
            problem,
        })
    }
}

fn decode(body: &[u8]) -> Result<Vec<Sample>, AnswerError> {
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
    let r: Resp = serde_json::from_slice(body).map_err(|e| AnswerError::Json(e.to_string()))?;
    if r.status != "success" {
        return Err(AnswerError::Failed {
            status: r.status,
            error: r.error,
        });
    }
    let d = r.data.ok_or(AnswerError::NoData)?;
    if d.result_type != "vector" {
        return Err(AnswerError::NotVector(d.result_type));
    }
    d.result
        .into_iter()
        .map(|i| {
            let value = parse_value(&i.value.1).map_err(|e| match e {
                LineError::Value(v) => AnswerError::Value(v),
                other => AnswerError::Value(other.to_string()),
            })?;
            Ok(Sample {
                name: i.metric.get("__name__").cloned().unwrap_or_default(),
                labels: i.metric,
                value,
            })
        })
        .collect()
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
            (e.host(), e.port(), e.prefix()),
            ("127.0.0.1", 9090, "/prom")
        );
        let c = PromClient::new("http://prom", Duration::from_secs(1)).unwrap();
        assert_eq!((c.endpoint.host(), c.endpoint.port()), ("prom", 80));
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
        assert!(decode(err).unwrap_err().to_string().contains("parse error"));
        assert_eq!(
            urlencode("max by (host) (x{a=\"b\"})"),
            "max%20by%20%28host%29%20%28x%7Ba%3D%22b%22%7D%29"
        );
    }
}
