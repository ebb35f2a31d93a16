//! HTTP: serves one collector's snapshot on the telemetry path, a landing
//! page at `/` and `/-/healthy`, with the TLS and basic auth of
//! [`webconfig`]; [`serve`] also serves the webhook's router. This layer only
//! renders; it never collects anything itself beyond asking the collector
//! for a snapshot. Both servers go through one bounded serving loop
//! (`serve.rs`: connection cap and timeouts); `/metrics` is gzip-compressed
//! as it is rendered when the scraper asks for it (`gzip.rs`).

mod gzip;
mod serve;
pub mod webconfig;

pub use serve::{MIN_HEADER_BYTES, ServerLimits};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use futures::StreamExt;

use crate::collector::Collector;
use crate::exposition;
use webconfig::WebSecurity;

struct App {
    collector: Arc<Collector>,
    telemetry_path: String,
    title: String,
}

/// A `--web.telemetry-path` that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryPathError {
    #[error("invalid telemetry path {0:?}: must start with \"/\" (e.g. /metrics)")]
    NoSlash(String),
    #[error(
        "invalid telemetry path {0:?}: it is the landing page or a health path (/, /-/healthy, /-/ready); use e.g. /metrics"
    )]
    Taken(String),
    #[error("invalid telemetry path {0:?}: only letters, digits and - . _ ~ / (at most 256 bytes)")]
    Chars(String),
}

/// Checks a telemetry path before anything is served: it starts with `/`,
/// is not `/`, `/-/healthy` or `/-/ready`, and holds only unreserved URL
/// characters (no route captures such as `{x}` or `*x`).
pub fn check_telemetry_path(p: &str) -> Result<(), TelemetryPathError> {
    if !p.starts_with('/') {
        return Err(TelemetryPathError::NoSlash(p.into()));
    }
    if p.len() > 256
        || !p
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~/".contains(&c))
    {
        return Err(TelemetryPathError::Chars(p.into()));
    }
    if matches!(p.trim_end_matches('/'), "" | "/-/healthy" | "/-/ready") {
        return Err(TelemetryPathError::Taken(p.into()));
    }
    Ok(())
}

/// The exporter's router; `telemetry_path` must pass [`check_telemetry_path`].
pub fn router(collector: Arc<Collector>, telemetry_path: &str, title: &str) -> Router {
    let app = Arc::new(App {
        collector,
        telemetry_path: telemetry_path.to_string(),
        title: title.to_string(),
    });
    Router::new()
        .route("/", get(landing))
        .route(telemetry_path, get(metrics))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(|| async { "OK\n" }))
        .with_state(app)
}

/// Size of one piece of a streamed `/metrics` body.
const CHUNK: usize = 64 * 1024;

/// Collects a snapshot and renders it. A body of more than [`CHUNK`] bytes is
/// streamed: each piece is rendered when hyper asks for it, so a scrape holds
/// the snapshot and one piece, not the whole text (38 MB at 10,000 domains),
/// and concurrent scrapes interleave on the runtime's workers piece by piece.
/// A scraper that accepts gzip (Prometheus does) gets the same pieces through
/// one streaming gzip encoder ([`gzip`]).
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let snap = app.collector.snapshot().await;
    let mut r = exposition::Rendering::new(&snap);
    let vary = (header::VARY, "Accept-Encoding");
    let ctype = (header::CONTENT_TYPE, exposition::CONTENT_TYPE);
    if gzip::accepted(&headers) {
        let body = gzip::body(snap, r, CHUNK);
        return ([ctype, vary, (header::CONTENT_ENCODING, "gzip")], body).into_response();
    }
    let mut first = String::with_capacity(CHUNK + CHUNK / 8);
    let body = if r.fill(&snap, &mut first, CHUNK) {
        Body::from(first)
    } else {
        let rest = futures::stream::unfold(Some((snap, r)), |state| async move {
            let (snap, mut r) = state?;
            let mut out = String::with_capacity(CHUNK + CHUNK / 8);
            let done = r.fill(&snap, &mut out, CHUNK);
            Some((Ok::<_, Infallible>(out), (!done).then_some((snap, r))))
        });
        Body::from_stream(futures::stream::once(async { Ok(first) }).chain(rest))
    };
    ([ctype, vary], body).into_response()
}

async fn landing(State(app): State<Arc<App>>) -> Html<String> {
    let title = html_escape(&app.title);
    let path = html_escape(&app.telemetry_path);
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n<h1>{title}</h1>\n\
         <p>Prometheus exporter for Xen hosts, version {}.</p>\n\
         <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li></ul>\n</body></html>\n",
        exposition::BUILD.version
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A listen address that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("invalid listen address {addr:?}: {error} (use host:port, e.g. 0.0.0.0:10025)")]
    Address {
        addr: String,
        error: std::net::AddrParseError,
    },
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr`, failing with a clear message when the port is taken.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, BindError> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let sock: SocketAddr = full.parse().map_err(|error| BindError::Address {
        addr: addr.to_string(),
        error,
    })?;
    tokio::net::TcpListener::bind(sock)
        .await
        .map_err(|source| BindError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// Serves `router` on `listener` until `shutdown` resolves, with the TLS,
/// basic auth and connection limits of `sec` (the `--web.config.file`);
/// every connection is bounded (see [`ServerLimits`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    sec: WebSecurity,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = match sec.basic_auth {
        Some(auth) => router.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let auth = auth.clone();
                async move {
                    let hdr = req
                        .headers()
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if auth.check(hdr.as_deref()).await {
                        next.run(req).await
                    } else {
                        (
                            StatusCode::UNAUTHORIZED,
                            [(header::WWW_AUTHENTICATE, "Basic realm=\"xentinel\"")],
                            "unauthorized\n",
                        )
                            .into_response()
                    }
                }
            },
        )),
        None => router,
    };
    serve::serve_bounded(listener, router, sec.tls, sec.limits, shutdown).await
}
