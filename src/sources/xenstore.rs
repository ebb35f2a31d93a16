//! The `xenstore` source: domain names, UUIDs, memory targets and guest-agent
//! data, read from xenstored with the `xenstore-rs` crate.
//!
//! It connects lazily (honouring `XENSTORED_PATH`, else `/run/xenstored/socket`,
//! else `/dev/xen/xenbus`) and reconnects at the next scrape after xenstored
//! dies. Names and guest data are read at every scrape, so a rename or a new
//! or gone domain shows on the next scrape; UUIDs and memory limits are cached
//! per domid, and watches on `@introduceDomain`/`@releaseDomain` drop the cache
//! entries of domains that come and go (domids are reused). A domain without
//! xentinel's `data/xentinel/mem_available_bytes` gets its available memory
//! from XCP-ng's `data/meminfo_free` when its guest agent writes one.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, stream};
use xenstore_rs::tokio::XsTokio;
use xenstore_rs::{AsyncWatch, AsyncXs};

use super::{BoxFuture, Source, SourceError};
use crate::guest::{self, Rejections};
use crate::snapshot::{Collection, Direction, DomId, DomainMeta, Histogram, WarningKind};

/// The UUID Xen gives dom0.
pub const DOM0_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Requests in flight at once; the client has 32 slots.
const CONCURRENCY: usize = 8;

/// Per-domain values that do not change while a domid lives.
#[derive(Debug, Clone, Default)]
struct Static {
    uuid: Option<String>,
    memory_limit: Option<u64>,
}

#[derive(Default)]
struct State {
    conn: Option<XsTokio>,
    /// The watch handlers of `conn`; aborted (dropping their watches) on reconnect.
    watch_tasks: Vec<tokio::task::JoinHandle<()>>,
    cache: HashMap<DomId, Static>,
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
}

impl XenstoreSource {
    /// A source that connects at its first collection; a read of the whole
    /// tree that takes longer than `timeout` drops the connection.
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
        }
    }

    /// Opens two connections: one for reads, one only for watches. xenstore-rs
    /// delivers watch events and read replies from one task that blocks when a
    /// watch's 8-event queue is full, so a watch handler that reads on the same
    /// connection can deadlock it; handlers here read on the other one.
    async fn connect(&self) -> io::Result<(XsTokio, Vec<tokio::task::JoinHandle<()>>)> {
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
        let mut tasks = Vec::new();
        for special in ["@introduceDomain", "@releaseDomain"] {
            let mut w = watcher.watch(special).await?;
            let state = Arc::downgrade(&self.state);
            let xs2 = xs.clone();
            tasks.push(tokio::spawn(async move {
                // Which domain came or went is not in the event: drop the cache
                // entries of every domid that no longer exists, so a reused
                // domid never inherits a gone domain's UUID.
                while w.next().await.is_some() {
                    let Ok(ids) = xs2.directory("/local/domain").await else {
                        continue;
                    };
                    let alive: HashSet<DomId> = ids.iter().filter_map(|s| s.parse().ok()).collect();
                    let Some(state) = state.upgrade() else { break };
                    state.lock().await.cache.retain(|id, _| alive.contains(id));
                }
            }));
        }
        // Renames time the migrations libxl makes: a domain arrives named
        // `<name>--incoming` and is renamed to `<name>` when it is done.
        let mut w = watcher.watch("/local/domain").await?;
        let tracker = self.migrations.clone();
        let xs2 = xs.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(path) = w.next().await {
                let Some(id) = name_path_domid(&path) else {
                    continue;
                };
                let name = xs2.read(&path).await.ok();
                let mut t = tracker.lock().unwrap_or_else(|e| e.into_inner());
                t.observe(id, name.as_deref(), std::time::Instant::now());
            }
        }));
        Ok((xs, tasks))
    }

    async fn collect_inner(&self, out: &mut Collection) -> io::Result<()> {
        let mut st = self.state.lock().await;
        let xs = match &st.conn {
            Some(xs) => xs.clone(),
            None => {
                for t in st.watch_tasks.drain(..) {
                    t.abort();
                }
                let (xs, tasks) = tokio::time::timeout(self.timeout, self.connect())
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            "xenstored did not answer the connection",
                        )
                    })??;
                st.conn = Some(xs.clone());
                st.watch_tasks = tasks;
                xs
            }
        };
        // xenstore-rs never answers the request in flight when xenstored dies,
        // so a dead daemon shows up as a timeout here, not as an error.
        let res = match tokio::time::timeout(self.timeout, self.read_all(&xs, &mut st, out)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("xenstored did not answer within {:?}", self.timeout),
            )),
        };
        if res.is_err() {
            // Reconnect next time: a dead xenstored leaves a dead client.
            st.conn = None;
        }
        res
    }

    async fn read_all(&self, xs: &XsTokio, st: &mut State, out: &mut Collection) -> io::Result<()> {
        let ids: Vec<DomId> = xs
            .directory("/local/domain")
            .await?
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let alive: HashSet<DomId> = ids.iter().copied().collect();
        st.cache.retain(|id, _| alive.contains(id));
        let now = unix_now();
        let cache = &st.cache;
        let results: Vec<(DomId, io::Result<(DomainMeta, Static)>)> =
            stream::iter(ids.iter().copied())
                .map(|id| async move {
                    (
                        id,
                        read_domain(xs, id, cache.get(&id).cloned(), now, &self.rejections).await,
                    )
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        for (id, r) in results {
            match r {
                Ok((meta, stat)) => {
                    st.cache.insert(id, stat);
                    out.meta.insert(id, meta);
                }
                // Gone between the listing and the read: not an error.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
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

/// Turns ENOENT into `None`.
fn opt<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The UUID at the end of a `/vm/<uuid>` path, if it looks like one.
fn uuid_from_vm_path(vm: &str) -> Option<String> {
    let last = vm.rsplit('/').next()?;
    let ok = last.len() == 36
        && last.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    ok.then(|| last.to_ascii_lowercase())
}

async fn read_domain(
    xs: &XsTokio,
    id: DomId,
    cached: Option<Static>,
    now: f64,
    rej: &Rejections,
) -> io::Result<(DomainMeta, Static)> {
    let home = format!("/local/domain/{id}");
    let name = opt(xs.read(&format!("{home}/name")).await)?.map(|s| s.to_string());
    let stat = match cached {
        Some(s) => s,
        None => {
            let vm = opt(xs.read(&format!("{home}/vm")).await)?;
            // xen-init-dom0 may leave dom0 without a `vm` path; Xen's handle
            // for dom0 is the all-zero UUID, which is what `xl list -l` shows.
            let uuid = vm
                .as_deref()
                .and_then(uuid_from_vm_path)
                .or_else(|| (id == 0).then(|| DOM0_UUID.to_string()));
            let static_max = opt(xs.read(&format!("{home}/memory/static-max")).await)?;
            Static {
                uuid,
                memory_limit: static_max
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|kib| kib * 1024),
            }
        }
    };
    let target = opt(xs.read(&format!("{home}/memory/target")).await)?;
    let data_dir = format!("{home}/{}", guest::DATA_DIR);
    let mut keys = HashMap::new();
    if let Some(entries) = opt(xs.directory(&data_dir).await)? {
        for k in entries.iter().take(32) {
            if let Some(v) = opt(xs.read(&format!("{data_dir}/{k}")).await)? {
                keys.insert(k.to_string(), v.to_string());
            }
        }
    }
    let probe_target = keys.get(guest::KEY_PROBE).cloned();
    let mut report = guest::validate(id, &keys, stat.memory_limit, now, rej);
    if !keys.contains_key(guest::KEY_MEM_AVAILABLE) {
        // XCP-ng's agents: read only for domains without xentinel's key.
        if let Some(free) = opt(xs
            .read(&format!("{home}/{}", guest::XAPI_MEMINFO_FREE))
            .await)?
        {
            let total = opt(xs
                .read(&format!("{home}/{}", guest::XAPI_MEMINFO_TOTAL))
                .await)?;
            report.memory_available_bytes =
                guest::validate_xapi_free(id, &free, total.as_deref(), stat.memory_limit, rej);
        }
    }
    let meta = DomainMeta {
        domid: id,
        name,
        uuid: stat.uuid.clone(),
        memory_target_bytes: target
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024),
        guest: report,
        probe_target,
    };
    Ok((meta, stat))
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

    #[test]
    fn uuids_come_from_vm_paths_only_when_well_formed() {
        assert_eq!(
            uuid_from_vm_path("/vm/0A1b2c3d-0000-4000-8000-123456789abc").as_deref(),
            Some("0a1b2c3d-0000-4000-8000-123456789abc")
        );
        assert_eq!(uuid_from_vm_path("/vm/not-a-uuid"), None);
        assert_eq!(uuid_from_vm_path(""), None);
    }
}
