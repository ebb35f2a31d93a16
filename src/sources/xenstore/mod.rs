//! The `xenstore` source: domain names, UUIDs, memory targets and guest-agent
//! data, read from xenstored with the `xenstore-rs` crate, kept in a table
//! that watch events keep current, so a scrape costs requests in proportion
//! to what changed, not to domains × keys.
//!
//! It connects lazily (honouring `XENSTORED_PATH`, else `/run/xenstored/socket`,
//! else `/dev/xen/xenbus`) with two connections: one for reads, one for a
//! recursive watch on `/local/domain`. A task drains that watch's events into
//! [`table::Dirty`] without ever waiting on a request. Each scrape lists
//! `/local/domain` on the watch connection: xenstored sends a connection's
//! events in order with its replies, so once the listing is back every event
//! of an earlier write has reached the drain task, which the scrape then
//! flushes. The listing says which domains exist; new domids are read in
//! full, marked ones reread only their marked parts, the rest are served from
//! the table. Every `resync` (and after any reconnect) a scrape rereads
//! everything, which bounds the drift of a lost event. After xenstored dies
//! the source is down until it answers again; the table is rebuilt from
//! scratch then. A domain without xentinel's `data/xentinel/mem_available_bytes`
//! gets its available memory from XCP-ng's `data/meminfo_free` when its guest
//! agent writes one.

mod table;

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt, stream};
use tokio::sync::{mpsc, oneshot};
use xenstore_rs::tokio::XsTokio;
use xenstore_rs::{AsyncWatch, AsyncXs};

use super::{BoxFuture, Source, SourceError};
use crate::guest::Rejections;
use crate::snapshot::{Collection, Direction, DomId, Histogram, WarningKind};
use table::{Dirty, Entry, Parts, opt};

pub use table::DOM0_UUID;

/// Requests in flight at once; the client has 32 slots.
const CONCURRENCY: usize = 8;

/// Default interval of the full reread that bounds drift from lost events.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(60);

/// One connection pair and the tasks that serve its watch.
struct Conn {
    xs: XsTokio,
    /// The watch's connection; the scrape's listing goes here to order events.
    watcher: XsTokio,
    dirty: Arc<Mutex<Dirty>>,
    /// Asks the drain task to take in every event already delivered.
    flush: mpsc::UnboundedSender<oneshot::Sender<()>>,
    /// Set when the watch stream ended (the client's connection died).
    broken: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Default)]
struct State {
    conn: Option<Conn>,
    table: HashMap<DomId, Entry>,
    /// When everything was last read; `None`: never on this connection.
    last_full: Option<Instant>,
    /// A collection is under way; still set at the next one if it was cancelled.
    busy: bool,
}

/// Reads domain metadata and guest reports from xenstore.
pub struct XenstoreSource {
    state: Arc<tokio::sync::Mutex<State>>,
    rejections: Arc<Rejections>,
    maintenance_key: Option<String>,
    /// Incoming migrations timed from xenstore renames.
    migrations: Arc<Mutex<MigrationTracker>>,
    /// Longest a whole read of the tree may take before the connection is dropped.
    timeout: Duration,
    /// Interval of the full reread.
    resync: Duration,
}

impl XenstoreSource {
    /// A source that connects at its first collection; a read of the whole
    /// tree that takes longer than `timeout` drops the connection. It rereads
    /// everything every [`DEFAULT_RESYNC`] (see [`Self::with_resync`]).
    pub fn new(
        rejections: Arc<Rejections>,
        maintenance_key: Option<String>,
        timeout: Duration,
    ) -> Self {
        XenstoreSource {
            state: Arc::default(),
            rejections,
            maintenance_key: maintenance_key.filter(|k| !k.is_empty()),
            migrations: Arc::default(),
            timeout,
            resync: DEFAULT_RESYNC,
        }
    }

    /// Rereads every domain at the first scrape `resync` or more after the
    /// last full read (zero: at every scrape, as before watches).
    pub fn with_resync(mut self, resync: Duration) -> Self {
        self.resync = resync;
        self
    }

    /// Opens two connections: one for reads, one only for the watch.
    /// xenstore-rs delivers watch events and replies from one task that
    /// blocks while a watch's 8-event queue is full, so the events are
    /// drained by a task that never waits on a request; the names that time
    /// migrations are read by another task, on the read connection.
    async fn connect(&self) -> io::Result<Conn> {
        let open = || async {
            XsTokio::new().await.map_err(|e| {
                let path = std::env::var("XENSTORED_PATH")
                    .unwrap_or_else(|_| "/run/xenstored/socket".into());
                io::Error::new(
                    e.kind(),
                    format!("cannot reach xenstored at {path} or /dev/xen/xenbus: {e}"),
                )
            })
        };
        let xs = open().await?;
        let watcher = open().await?;
        let w = watcher.watch("/local/domain").await?;
        let dirty = Arc::new(Mutex::new(Dirty::default()));
        let broken = Arc::new(AtomicBool::new(false));
        let (flush, flush_rx) = mpsc::unbounded_channel();
        // Renames time the migrations libxl makes: a domain arrives named
        // `<name>--incoming` and is renamed to `<name>` when it is done.
        // Only the toolstack writes `name`, so this queue grows with its writes.
        let (names, mut names_rx) = mpsc::unbounded_channel::<DomId>();
        let tracker = self.migrations.clone();
        let xs2 = xs.clone();
        let timer = tokio::spawn(async move {
            while let Some(id) = names_rx.recv().await {
                let name = xs2.read(&format!("/local/domain/{id}/name")).await.ok();
                let mut t = tracker.lock().unwrap_or_else(|e| e.into_inner());
                t.observe(id, name.as_deref(), Instant::now());
            }
        });
        let drain = tokio::spawn(drain(w, dirty.clone(), names, flush_rx, broken.clone()));
        Ok(Conn {
            xs,
            watcher,
            dirty,
            flush,
            broken,
            tasks: vec![drain, timer],
        })
    }

    async fn collect_inner(&self, out: &mut Collection) -> io::Result<()> {
        let mut st = self.state.lock().await;
        if std::mem::replace(&mut st.busy, true) {
            // The last collection was cancelled midway: its marks may be lost.
            st.conn = None;
        }
        if st
            .conn
            .as_ref()
            .is_some_and(|c| c.broken.load(Ordering::SeqCst))
        {
            st.conn = None;
        }
        if st.conn.is_none() {
            st.table.clear();
            st.last_full = None;
            let conn = tokio::time::timeout(self.timeout, self.connect())
                .await
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "xenstored did not answer the connection",
                    )
                });
            match conn {
                Ok(Ok(c)) => st.conn = Some(c),
                Ok(Err(e)) | Err(e) => {
                    st.busy = false;
                    return Err(e);
                }
            }
        }
        // xenstore-rs never answers the request in flight when xenstored dies,
        // so a dead daemon shows up as a timeout here, not as an error.
        let res = match tokio::time::timeout(self.timeout, self.read(&mut st, out)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("xenstored did not answer within {:?}", self.timeout),
            )),
        };
        if res.is_err() {
            // Reconnect and reread everything next time.
            st.conn = None;
        }
        st.busy = false;
        res
    }

    async fn read(&self, st: &mut State, out: &mut Collection) -> io::Result<()> {
        let conn = st.conn.as_ref().expect("connected");
        let (xs, watcher) = (conn.xs.clone(), conn.watcher.clone());
        let ids: Vec<DomId> = watcher
            .directory("/local/domain")
            .await?
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        // Every event sent before that reply is now in the watch's queue.
        let (ack, acked) = oneshot::channel();
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "xenstore watch task ended");
        conn.flush.send(ack).map_err(|_| gone())?;
        acked.await.map_err(|_| gone())?;
        let dirty = std::mem::take(&mut *conn.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        let full = dirty.all || st.last_full.is_none_or(|t| t.elapsed() >= self.resync);
        let alive: HashSet<DomId> = ids.iter().copied().collect();
        st.table.retain(|id, _| alive.contains(id));
        let mut marks = dirty.domains;
        let work: Vec<(DomId, Option<(Entry, Parts)>)> = ids
            .iter()
            .filter_map(|&id| match (full, st.table.get(&id)) {
                (false, Some(e)) => marks.remove(&id).map(|p| (id, Some((e.clone(), p)))),
                _ => Some((id, None)),
            })
            .collect();
        let xs = &xs;
        let results: Vec<(DomId, io::Result<Entry>)> = stream::iter(work)
            .map(|(id, old)| async move {
                let r = match old {
                    Some((e, p)) => e.refresh(xs, id, &p).await,
                    None => Entry::read(xs, id).await,
                };
                (id, r)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (id, r) in results {
            st.table.insert(id, r?);
        }
        if full {
            st.last_full = Some(Instant::now());
        }
        let now = unix_now();
        for &id in &ids {
            if let Some(e) = st.table.get(&id) {
                out.meta.insert(id, e.meta(id, now, &self.rejections));
            }
        }
        self.rejections.retain_domains(|d| alive.contains(&d));
        {
            let mut t = self.migrations.lock().unwrap_or_else(|e| e.into_inner());
            t.retain(|d| alive.contains(&d));
            if let Some(h) = t.histogram() {
                out.migrations.insert(Direction::Incoming, h.clone());
            }
        }
        if let Some(key) = &self.maintenance_key {
            let on = opt(xs.read(key).await)?.is_some_and(|v| v.trim() == "1");
            out.warn(WarningKind::Maintenance, on);
        }
        Ok(())
    }
}

/// Moves watch events into `dirty` (and name changes to the migration
/// timer) as they come; on a flush request, first takes in every event
/// already queued. Never waits on a xenstore request, so the client's
/// dispatcher never blocks on a full watch queue.
async fn drain(
    mut w: impl Stream<Item = Box<str>> + Unpin,
    dirty: Arc<Mutex<Dirty>>,
    names: mpsc::UnboundedSender<DomId>,
    mut flush: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    broken: Arc<AtomicBool>,
) {
    let take = |path: &str| {
        dirty.lock().unwrap_or_else(|e| e.into_inner()).mark(path);
        if let Some(id) = name_path_domid(path) {
            let _ = names.send(id);
        }
    };
    loop {
        tokio::select! {
            ev = w.next() => match ev {
                Some(path) => take(&path),
                None => break,
            },
            Some(ack) = flush.recv() => {
                // Unconstrained: tokio's budget must not fake an empty queue.
                loop {
                    match tokio::task::unconstrained(w.next()).now_or_never() {
                        Some(Some(path)) => take(&path),
                        Some(None) => {
                            broken.store(true, Ordering::SeqCst);
                            return;
                        }
                        None => break,
                    }
                }
                let _ = ack.send(());
            }
        }
    }
    broken.store(true, Ordering::SeqCst);
}

/// Bucket bounds of `xen_domain_migration_duration_seconds`.
pub const MIGRATION_BUCKETS: [f64; 12] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Suffix libxl gives a domain while it is being received.
const INCOMING: &str = "--incoming";

/// Times incoming migrations from the names libxl writes.
#[derive(Debug, Default)]
pub struct MigrationTracker {
    arriving: HashMap<DomId, std::time::Instant>,
    done: Option<Histogram>,
}

impl MigrationTracker {
    /// Notes a domain's (new) name at `now`: `<x>--incoming` starts a timer,
    /// any other name for a timed domid ends it.
    pub fn observe(&mut self, id: DomId, name: Option<&str>, now: std::time::Instant) {
        match name {
            Some(n) if n.ends_with(INCOMING) => {
                self.arriving.entry(id).or_insert(now);
            }
            Some(_) => {
                if let Some(start) = self.arriving.remove(&id) {
                    let h = self
                        .done
                        .get_or_insert_with(|| Histogram::new(&MIGRATION_BUCKETS));
                    h.observe(now.duration_since(start).as_secs_f64());
                }
            }
            // Gone before it was renamed: a failed migration, not timed.
            None => {
                self.arriving.remove(&id);
            }
        }
    }

    /// Forgets arrivals of domains that no longer exist.
    pub fn retain(&mut self, alive: impl Fn(DomId) -> bool) {
        self.arriving.retain(|d, _| alive(*d));
    }

    /// Completed incoming migrations, once there has been one.
    pub fn histogram(&self) -> Option<&Histogram> {
        self.done.as_ref()
    }
}

/// The domid of a `/local/domain/<id>/name` path.
fn name_path_domid(path: &str) -> Option<DomId> {
    path.strip_prefix("/local/domain/")?
        .strip_suffix("/name")?
        .parse()
        .ok()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Source for XenstoreSource {
    fn name(&self) -> &'static str {
        "xenstore"
    }

    fn collect<'a>(&'a self, out: &'a mut Collection) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move { self.collect_inner(out).await.map_err(SourceError::from) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_time_incoming_migrations() {
        let t0 = std::time::Instant::now();
        let mut t = MigrationTracker::default();
        t.observe(4, Some("web--incoming"), t0);
        t.observe(4, Some("web--incoming"), t0 + Duration::from_secs(1));
        t.observe(4, Some("web"), t0 + Duration::from_secs(7));
        t.observe(5, Some("db"), t0);
        t.observe(6, Some("x--incoming"), t0);
        t.observe(6, None, t0 + Duration::from_secs(3));
        let h = t.histogram().unwrap();
        assert_eq!(h.count, 1);
        assert_eq!(h.sum, 7.0);
        assert_eq!(name_path_domid("/local/domain/12/name"), Some(12));
        assert_eq!(name_path_domid("/local/domain/12/data/name"), None);
    }
}
