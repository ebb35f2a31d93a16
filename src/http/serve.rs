//! The one bounded serving loop of the exporter and the webhook: at most
//! [`ServerLimits::max_connections`] connections at once (more wait in the
//! kernel's accept queue), and every connection closed when it overstays one
//! of its timeouts: the TLS handshake, a new connection's first request head
//! and any request head from its first byte
//! ([`ServerLimits::read_header_timeout`]), a request's body
//! ([`ServerLimits::read_timeout`]), the wait for the next request on a
//! kept-alive connection, or a response the client stops reading
//! ([`ServerLimits::idle_timeout`]). A request head larger than
//! [`ServerLimits::max_header_bytes`] gets 431.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;

/// Bounds of every connection; the defaults are those of a Prometheus
/// exporter behind one Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// TLS handshake; a new connection's first request head (from the
    /// accept, or the handshake); every later head from its first byte.
    pub read_header_timeout: Duration,
    /// Each request body, from the end of its head.
    pub read_timeout: Duration,
    /// A kept-alive connection without a request, or a response without
    /// progress (the client stopped reading).
    pub idle_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Largest request head (at least 8192, hyper's floor).
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            read_header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_header_bytes: 32 * 1024,
        }
    }
}

/// Smallest `max_header_bytes` (hyper refuses a smaller read buffer).
pub const MIN_HEADER_BYTES: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request (a new or a kept-alive connection).
    Idle,
    /// Reading a request head.
    Head,
    /// Reading a request body.
    Body,
    /// Handling and answering.
    Busy,
}

/// What one connection is doing, and since when.
struct Conn {
    state: Mutex<(Phase, Instant)>,
}

impl Conn {
    fn new() -> Arc<Conn> {
        Arc::new(Conn {
            // As Go's `http.Server`: a new connection's first request head
            // is due within the head timeout from the accept.
            state: Mutex::new((Phase::Head, Instant::now())),
        })
    }

    fn set(&self, from: &[Phase], to: Phase) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if from.is_empty() || from.contains(&s.0) {
            *s = (to, Instant::now());
        }
    }

    /// When the connection has overstayed, and which timeout that is.
    fn deadline(&self, l: &ServerLimits) -> (Instant, &'static str) {
        let (phase, since) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        match phase {
            Phase::Idle => (since + l.idle_timeout, "idle"),
            Phase::Head => (since + l.read_header_timeout, "request head"),
            Phase::Body => (since + l.read_timeout, "request body"),
            Phase::Busy => (since + l.idle_timeout, "response without progress"),
        }
    }
}

/// The connection's stream, noting reads (a request head begins) and writes
/// (a response makes progress).
struct Tracked<S> {
    io: S,
    conn: Arc<Conn>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.set(&[Phase::Idle], Phase::Head);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.set(&[Phase::Busy], Phase::Busy);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request body that marks the connection busy once it has all arrived.
struct TimedBody {
    inner: Incoming,
    conn: Arc<Conn>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &r {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            self.conn.set(&[Phase::Body], Phase::Busy);
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks the connection idle once it is sent (or dropped).
struct IdleAfter {
    inner: axum::body::Body,
    conn: Arc<Conn>,
}

impl Drop for IdleAfter {
    fn drop(&mut self) {
        self.conn.set(&[], Phase::Idle);
    }
}

impl HttpBody for IdleAfter {
    type Data = Bytes;
    type Error = axum::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one accepted connection (`io`: TCP, or TLS after its handshake)
/// until it ends, overstays a timeout, or `stop` asks for a graceful end.
async fn connection<S>(
    io: S,
    conn: Arc<Conn>,
    router: Router,
    limits: ServerLimits,
    peer: std::net::SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let inner = hyper_util::service::TowerToHyperService::new(router);
    let c = conn.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let phase = if req.body().is_end_stream() {
            Phase::Busy
        } else {
            Phase::Body
        };
        c.set(&[], phase);
        let req = req.map(|inner| TimedBody {
            inner,
            conn: c.clone(),
        });
        let fut = hyper::service::Service::call(&inner, req);
        let c = c.clone();
        async move {
            let resp = fut.await?;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| IdleAfter { inner, conn: c }))
        }
    });
    let io = hyper_util::rt::TokioIo::new(Tracked {
        io,
        conn: conn.clone(),
    });
    let served = hyper::server::conn::http1::Builder::new()
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
        .serve_connection(io, svc);
    tokio::pin!(served);
    let tick = [
        limits.read_header_timeout,
        limits.read_timeout,
        limits.idle_timeout,
    ]
    .into_iter()
    .min()
    .unwrap_or_default()
    .div_f64(4.0)
    .clamp(Duration::from_millis(5), Duration::from_secs(1));
    let mut stopping = false;
    loop {
        tokio::select! {
            r = &mut served => {
                if let Err(e) = r {
                    log::debug!("connection from {peer}: {e}");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => {
                let (deadline, what) = conn.deadline(&limits);
                if Instant::now() >= deadline {
                    log::debug!("closing the connection from {peer}: {what} timed out");
                    return;
                }
            }
        }
    }
}

/// Accepts and serves until `shutdown` resolves, then lets the connections
/// finish (each bounded by its timeouts) and returns.
pub(super) async fn serve_bounded(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, 1 << 20);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Without TCP_NODELAY a response's last small segment waits for the client's delayed
        // ACK: the bench saw /metrics at 100 domains go from 0.7 to 44 ms median.
        if let Err(e) = tcp.set_nodelay(true) {
            log::debug!("TCP_NODELAY on the connection from {peer}: {e}");
        }
        let (router, tls, stop) = (router.clone(), tls.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _slot = permit;
            let conn = Conn::new();
            match tls {
                None => connection(tcp, conn, router, limits, peer, stop).await,
                Some(tls) => {
                    let hs = tokio::time::timeout(limits.read_header_timeout, tls.accept(tcp));
                    match hs.await {
                        Ok(Ok(s)) => {
                            conn.set(&[], Phase::Head);
                            connection(s, conn, router, limits, peer, stop).await
                        }
                        Ok(Err(e)) => log::debug!("TLS handshake with {peer} failed: {e}"),
                        Err(_) => log::debug!("TLS handshake with {peer} timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all back means all done.
    let _ = slots.acquire_many(max as u32).await;
    Ok(())
}
