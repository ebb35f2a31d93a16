//! The webhook's HTTP side (axum): `POST /alerts` (Alertmanager webhook,
//! bearer token), `GET /jobs` and `GET /jobs/{id}` (JSON, same token),
//! `/metrics`, `/-/healthy`, `/-/ready`. A request either changes nothing and
//! gets a 4xx/5xx with a JSON `error`, or is acted on and gets 200. While the
//! job log takes no writes (full, read-only, removed) or the webhook stops,
//! alerts get 503 with the reason (Alertmanager retries) and `/-/ready` is 503.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::alert::{self, Intent};
use super::executor;
use super::joblog::NewJob;
use super::planner::{Inventory, InventoryError};
use super::runner::{DbError, Engine};

/// Default largest accepted body.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// Where known host names come from, to refuse alerts naming anything else.
#[derive(Clone)]
pub enum KnownHosts {
    /// A configured list (`webhook.hosts`).
    Static(Vec<String>),
    /// The inventory's hosts (Prometheus' `xen_host_memory_free_bytes`, or the sim cluster).
    Inventory(Inventory),
}

impl KnownHosts {
    /// The known host names; an error means "cannot tell now".
    pub async fn list(&self) -> Result<Vec<String>, InventoryError> {
        match self {
            KnownHosts::Static(v) => Ok(v.clone()),
            KnownHosts::Inventory(i) => i.known_hosts().await,
        }
    }
}

/// The receiver's state.
pub struct Receiver {
    pub engine: Arc<Engine>,
    /// `None` only with `--insecure-no-auth`.
    pub token: Option<Vec<u8>>,
    pub hosts: KnownHosts,
}

/// The webhook's router; serve it with [`crate::http::serve`].
pub fn router(rx: Arc<Receiver>, body_limit: usize) -> Router {
    Router::new()
        .route("/alerts", post(alerts))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(rx)
}

/// Compares two byte strings in time independent of where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Why new work is refused now (503): stopping, or the job log takes no writes.
fn refusal(engine: &Engine) -> Option<String> {
    if engine.stopping() {
        return Some(
            "the webhook is stopping; nothing done (retry: the next start takes it)".into(),
        );
    }
    engine
        .health
        .reason()
        .map(|r| format!("job log unavailable: {r}; nothing done (retry later)"))
}

/// A job log failure: 503 when the storage failed (retry), else 500.
fn db_error(e: DbError) -> Response {
    match e {
        DbError::Unavailable(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e}; nothing more done (retry later)"),
        ),
        DbError::Sql(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn ready(State(rx): State<Arc<Receiver>>) -> Response {
    match refusal(&rx.engine) {
        None => "OK\n".into_response(),
        Some(r) => (StatusCode::SERVICE_UNAVAILABLE, format!("{r}\n")).into_response(),
    }
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (
        code,
        axum::Json(json!({ "status": "error", "error": msg.into() })),
    )
        .into_response()
}

/// `Some(401 response)` unless the request carries the token.
fn unauthorized(rx: &Receiver, headers: &HeaderMap) -> Option<Response> {
    let Some(want) = &rx.token else {
        return None;
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if ct_eq(got.as_bytes(), want) {
        None
    } else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        Some(r)
    }
}

async fn alerts(
    State(rx): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let resp = handle_alerts(&rx, &headers, body).await;
    rx.engine
        .metrics
        .requests
        .with_label_values(&[resp.status().as_str()])
        .inc();
    resp
}

async fn handle_alerts(
    rx: &Receiver,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Some(r) = unauthorized(rx, headers) {
        return r;
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                e.status(),
                format!("cannot read the body: {}", e.body_text()),
            );
        }
    };
    let payload = match alert::parse(&body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut intents = Vec::with_capacity(payload.alerts.len());
    let mut bad = Vec::new();
    for a in &payload.alerts {
        match alert::classify(a) {
            Ok(i) => intents.push(i),
            Err(e) => bad.push(e.to_string()),
        }
    }
    if !bad.is_empty() {
        return error(StatusCode::BAD_REQUEST, bad.join("; "));
    }
    // Every host to evacuate must be known, and safe to pass on, before anything changes.
    if intents.iter().any(|i| matches!(i, Intent::Evacuate(_))) {
        let known = match rx.hosts.list().await {
            Ok(k) => k,
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot check the host against the known hosts: {e}"),
                );
            }
        };
        for i in &intents {
            if let Intent::Evacuate(k) = i
                && (!known.contains(&k.host) || !executor::safe_name(&k.host))
            {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "unknown host {:?} (known hosts: {}); nothing done",
                        k.host,
                        known.join(", ")
                    ),
                );
            }
        }
    }
    let engine = &rx.engine;
    let writes = intents
        .iter()
        .any(|i| matches!(i, Intent::Evacuate(_) | Intent::Resolve(_)));
    if writes && let Some(why) = refusal(engine) {
        return error(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    let mut cancelled = 0usize;
    let mut ignored = 0usize;
    for i in intents {
        match i {
            Intent::Ignored(reason) => {
                engine.metrics.ignored.with_label_values(&[reason]).inc();
                ignored += 1;
            }
            Intent::Evacuate(k) => {
                let new = NewJob {
                    fingerprint: k.fingerprint.clone(),
                    starts_at: k.starts_at.clone(),
                    starts_at_unix: k.starts_at_unix,
                    host: k.host.clone(),
                    origin: "alert".into(),
                    dry_run: engine.settings.dry_run,
                };
                match engine.try_write(|l| l.insert_job(&new)) {
                    Ok(Some(id)) => {
                        let e = engine.clone();
                        tokio::spawn(async move { e.run_job(id, None).await });
                        accepted.push(json!({ "job": id, "host": k.host }));
                    }
                    Ok(None) => {
                        engine
                            .metrics
                            .ignored
                            .with_label_values(&["duplicate"])
                            .inc();
                        let id = engine
                            .db(|l| l.find_job(&k.fingerprint, &k.starts_at))
                            .ok()
                            .flatten();
                        duplicates.push(json!({ "job": id, "host": k.host }));
                    }
                    Err(e) => return db_error(e),
                }
            }
            Intent::Resolve(k) => {
                match engine.try_write(|l| l.resolve(&k.fingerprint, &k.starts_at)) {
                    Ok(Some((_, n))) => cancelled += n,
                    Ok(None) => {
                        engine
                            .metrics
                            .ignored
                            .with_label_values(&["resolved_without_job"])
                            .inc();
                        ignored += 1;
                    }
                    Err(e) => return db_error(e),
                }
            }
        }
    }
    axum::Json(json!({
        "status": "ok",
        "accepted": accepted,
        "duplicates": duplicates,
        "cancelled_steps": cancelled,
        "ignored": ignored,
    }))
    .into_response()
}

async fn jobs(State(rx): State<Arc<Receiver>>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&rx, &headers) {
        return r;
    }
    match rx.engine.db(|l| l.jobs(200)) {
        Ok(j) => axum::Json(json!({ "jobs": j })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn job(
    State(rx): State<Arc<Receiver>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&rx, &headers) {
        return r;
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("job id {id:?} is not a number"),
        );
    };
    match rx.engine.db(|l| l.job(id)) {
        Ok(Some(j)) => axum::Json(j).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no job {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn metrics(State(rx): State<Arc<Receiver>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        rx.engine.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn constant_time_compare_is_equality() {
        assert!(ct_eq(b"secret", b"secret"));
        assert!(!ct_eq(b"secret", b"secreT"));
        assert!(!ct_eq(b"secret", b"secret2"));
        assert!(!ct_eq(b"", b"x"));
        assert!(ct_eq(b"", b""));
    }
}
