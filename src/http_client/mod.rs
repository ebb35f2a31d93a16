//! The one HTTP client of the product (hyper's HTTP/1.1 client connection):
//! what the planner asks Prometheus and scrapes exporters with, and what the
//! domain probes send. One connection per request (`Connection: close`),
//! everything under one timeout, bodies bounded; `https://` with rustls when
//! the [`ClientOptions`] enable TLS (system roots and/or a CA file), and basic
//! or bearer authentication.
//!
//! A utility at the bottom of the layers: it knows nothing of the rest of
//! the crate.

mod tls;

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONNECTION, HOST, HeaderValue, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub use tls::{TlsError, TlsOptions};

/// How to reach a server: TLS (for `https://` URLs) and credentials.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `None`: plain `http://` only; an `https://` URL is refused.
    pub tls: Option<TlsOptions>,
    /// Sent with every request.
    pub auth: Option<Auth>,
}

/// HTTP authentication.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    /// Never shows the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { username, .. } => write!(f, "Basic({username:?}, <secret>)"),
            Auth::Bearer(_) => f.write_str("Bearer(<secret>)"),
        }
    }
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A server and a path prefix: `http[s]://host[:port][/path]`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    scheme: Scheme,
    host: String,
    port: u16,
    /// The URL's path, without a trailing `/` (may be empty).
    path: String,
    url: String,
}

/// A URL this client cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{what} URL {url:?} must start with http:// or https://")]
    Scheme { what: String, url: String },
    #[error("bad port in {what} URL {url:?}")]
    Port { what: String, url: String },
    #[error("no host in {what} URL {url:?}")]
    NoHost { what: String, url: String },
    #[error("{what} URL {url:?} is https:// but no TLS is configured for it")]
    NoTls { what: String, url: String },
}

/// A request that got no usable answer. The message holds the cause: it is
/// a reason shown as one line (a job's state, a probe's log line).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("cannot connect to {url}: {error}")]
    Connect { url: String, error: std::io::Error },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: TLS: {error}")]
    Tls { url: String, error: std::io::Error },
    #[error("{url}: {error}")]
    Http { url: String, error: hyper::Error },
    #[error("{url}: bad request: {error}")]
    Request {
        url: String,
        error: hyper::http::Error,
    },
    #[error("{url}: the body is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: an https:// URL, and no TLS is configured")]
    NoTls { url: String },
}

/// A response: its status and (unless only the head was asked for) its body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Endpoint {
    /// Parses `http[s]://host[:port][/path]`; `what` names the URL in errors.
    pub fn parse(url: &str, what: &str) -> Result<Self, UrlError> {
        let err = |f: fn(String, String) -> UrlError| f(what.to_string(), url.to_string());
        let (scheme, rest, default_port) = if let Some(r) = url.strip_prefix("http://") {
            (Scheme::Http, r, 80)
        } else if let Some(r) = url.strip_prefix("https://") {
            (Scheme::Https, r, 443)
        } else {
            return Err(err(|what, url| UrlError::Scheme { what, url }));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse()
                    .map_err(|_| err(|what, url| UrlError::Port { what, url }))?,
            ),
            _ => (authority, default_port),
        };
        if host.is_empty() {
            return Err(err(|what, url| UrlError::NoHost { what, url }));
        }
        Ok(Endpoint {
            scheme,
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

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (80 or 443 when the URL has none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL's path without a trailing `/`; empty when it has none.
    pub fn prefix(&self) -> &str {
        &self.path
    }

    /// The URL's path (`/` when it has none).
    pub fn path(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            &self.path
        }
    }

    /// The `Host` header: `host:port`, `[v6]:port`.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The client: TLS configuration and credentials, built once from
/// [`ClientOptions`] and shared by every request.
#[derive(Clone)]
pub struct Client {
    tls: Option<tokio_rustls::TlsConnector>,
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.is_some())
            .finish()
    }
}

impl Default for Client {
    /// Plain HTTP, no credentials.
    fn default() -> Self {
        Client {
            tls: None,
            auth: None,
        }
    }
}

impl Client {
    /// A client with these options; fails when a CA file cannot be read or
    /// no root certificate is found.
    pub fn new(o: &ClientOptions) -> Result<Self, TlsError> {
        let tls = o
            .tls
            .as_ref()
            .map(|t| t.connector())
            .transpose()?
            .map(tokio_rustls::TlsConnector::from);
        let auth = o.auth.as_ref().map(|a| {
            use base64::Engine;
            let v = match a {
                Auth::Basic { username, password } => format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                ),
                Auth::Bearer(t) => format!("Bearer {t}"),
            };
            let mut v = HeaderValue::from_str(&v)
                .unwrap_or_else(|_| HeaderValue::from_static("invalid-credentials"));
            v.set_sensitive(true);
            v
        });
        Ok(Client { tls, auth })
    }

    /// Whether `https://` URLs can be used.
    pub fn speaks_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Checks that this client can reach `e` (an `https://` endpoint needs TLS).
    pub fn check(&self, e: &Endpoint, what: &str) -> Result<(), UrlError> {
        if e.scheme == Scheme::Https && self.tls.is_none() {
            return Err(UrlError::NoTls {
                what: what.to_string(),
                url: e.url.clone(),
            });
        }
        Ok(())
    }

    /// `GET path_and_query` on `e`; returns the status and the body (at most
    /// `max_body` bytes), whatever the status. Errors: no connection, no
    /// whole answer within `timeout`, not HTTP, a larger body.
    pub async fn get(
        &self,
        e: &Endpoint,
        path_and_query: &str,
        accept: &str,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Response, RequestError> {
        self.with_timeout(
            e,
            timeout,
            self.exchange(e, path_and_query, accept, Some(max_body)),
        )
        .await
    }

    /// `GET path` on `e` reading only the response head: the status code.
    pub async fn get_status(
        &self,
        e: &Endpoint,
        path: &str,
        timeout: Duration,
    ) -> Result<u16, RequestError> {
        self.with_timeout(e, timeout, self.exchange(e, path, "*/*", None))
            .await
            .map(|r| r.status)
    }

    async fn with_timeout(
        &self,
        e: &Endpoint,
        timeout: Duration,
        f: impl Future<Output = Result<Response, RequestError>>,
    ) -> Result<Response, RequestError> {
        tokio::time::timeout(timeout, f)
            .await
            .map_err(|_| RequestError::Timeout {
                url: e.url.clone(),
                timeout,
            })?
    }

    async fn exchange(
        &self,
        e: &Endpoint,
        target: &str,
        accept: &str,
        max_body: Option<usize>,
    ) -> Result<Response, RequestError> {
        let url = || e.url.clone();
        if e.scheme == Scheme::Https && self.tls.is_none() {
            return Err(RequestError::NoTls { url: url() });
        }
        let tcp = TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|error| RequestError::Connect { url: url(), error })?;
        let _ = tcp.set_nodelay(true);
        let req = {
            let mut b = Request::get(target)
                .header(HOST, e.authority())
                .header(ACCEPT, accept)
                .header(USER_AGENT, concat!("xentinel/", env!("CARGO_PKG_VERSION")))
                .header(CONNECTION, "close");
            if let Some(a) = &self.auth {
                b = b.header(AUTHORIZATION, a.clone());
            }
            b.body(Empty::<Bytes>::new())
                .map_err(|error| RequestError::Request { url: url(), error })?
        };
        match (e.scheme, &self.tls) {
            (Scheme::Http, _) => exchange_on(tcp, req, max_body, &e.url).await,
            (Scheme::Https, None) => Err(RequestError::NoTls { url: url() }),
            (Scheme::Https, Some(tls)) => {
                let name =
                    rustls_pki_types::ServerName::try_from(e.host.clone()).map_err(|err| {
                        RequestError::Tls {
                            url: url(),
                            error: std::io::Error::new(std::io::ErrorKind::InvalidInput, err),
                        }
                    })?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|error| RequestError::Tls { url: url(), error })?;
                exchange_on(stream, req, max_body, &e.url).await
            }
        }
    }
}

/// One request over `io`, the connection driven in the same task (dropped,
/// and closed, with the returned future).
async fn exchange_on<T>(
    io: T,
    req: Request<Empty<Bytes>>,
    max_body: Option<usize>,
    url: &str,
) -> Result<Response, RequestError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |error| RequestError::Http {
        url: url.to_string(),
        error,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(http)?;
    let work = async {
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let Some(limit) = max_body else {
            return Ok(Response {
                status,
                body: Bytes::new(),
            });
        };
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(h) => http(*h),
                Err(_) => RequestError::TooLarge {
                    url: url.to_string(),
                    limit,
                },
            })?
            .to_bytes();
        Ok(Response { status, body })
    };
    let mut work = std::pin::pin!(work);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        biased;
        r = &mut work => r,
        c = &mut conn => {
            // The connection ended (the server closed it after its answer):
            // what was read is still delivered.
            c.map_err(http)?;
            work.await
        }
    }
}

#[cfg(test)]
mod tests;
