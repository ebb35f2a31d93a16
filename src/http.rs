//! HTTP: serves one collector's snapshot on the telemetry path, a landing
//! page at `/` and `/-/healthy`. This layer only renders; it never collects
//! anything itself beyond asking the collector for a snapshot.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::collector::Collector;
use crate::render;

struct App {
    collector: Arc<Collector>,
    telemetry_path: String,
    title: String,
}

/// The exporter's router.
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

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let snap = app.collector.snapshot().await;
    let mut body = String::with_capacity(64 * 1024);
    render::render(&snap, &mut body);
    ([(header::CONTENT_TYPE, render::CONTENT_TYPE)], body).into_response()
}

async fn landing(State(app): State<Arc<App>>) -> Html<String> {
    let title = html_escape(&app.title);
    let path = html_escape(&app.telemetry_path);
    Html(format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head><body>\n<h1>{title}</h1>\n\
         <p>Prometheus exporter for Xen hosts, version {}.</p>\n\
         <ul><li><a href=\"{path}\">Metrics</a></li><li><a href=\"/-/healthy\">Health</a></li></ul>\n</body></html>\n",
        render::BUILD.version
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Binds `addr`, failing with a clear message when the port is taken.
pub async fn bind(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let sock: SocketAddr = full.parse().map_err(|e| {
        anyhow::anyhow!("invalid listen address {addr:?}: {e} (use host:port, e.g. 0.0.0.0:10025)")
    })?;
    tokio::net::TcpListener::bind(sock)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
