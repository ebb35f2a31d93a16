//! The `xenstore` source: domain names, UUIDs, memory targets and guest-agent
//! data, read from xenstored with the `xenstore-rs` crate.
//!
//! It connects lazily (honouring `XENSTORED_PATH`, else `/run/xenstored/socket`,
//! else `/dev/xen/xenbus`) and reconnects at the next scrape after xenstored
//! dies. Names and guest data are read at every scrape, so a rename or a new
//! or gone domain shows on the next scrape; UUIDs and memory limits are cached
//! per domid, and watches on `@introduceDomain`/`@releaseDomain` drop the cache
//! entries of domains that come and go (domids are reused).

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, stream};
use xenstore_rs::tokio::XsTokio;
use xenstore_rs::{AsyncWatch, AsyncXs};

use super::{BoxFuture, Source, SourceError};
use crate::guest::{self, Rejections};
use crate::model::{Collection, DomId, DomainMeta, WarningKind};

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
    cache: HashMap<DomId, Static>,
}

/// Reads domain metadata and guest reports from xenstore.
pub struct XenstoreSource {
    state: Arc<tokio::sync::Mutex<State>>,
    rejections: Arc<Rejections>,
    maintenance_key: Option<String>,
    /// Domids seen by the watches since the last scrape, to drop from the cache.
    churn: Arc<Mutex<HashSet<DomId>>>,
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
            churn: Arc::default(),
            timeout,
        }
    }

    async fn connect(&self) -> io::Result<XsTokio> {
        let xs = XsTokio::new().await.map_err(|e| {
            let path =
                std::env::var("XENSTORED_PATH").unwrap_or_else(|_| "/run/xenstored/socket".into());
            io::Error::new(
                e.kind(),
                format!("cannot reach xenstored at {path} or /dev/xen/xenbus: {e}"),
            )
        })?;
        for special in ["@introduceDomain", "@releaseDomain"] {
            let mut w = xs.watch(special).await?;
            let churn = self.churn.clone();
            let xs2 = xs.clone();
            tokio::spawn(async move {
                // The first event is the one xenstored sends on registration.
                while w.next().await.is_some() {
                    // Which domain changed is not in the event: note every domid
                    // that exists now; the scrape compares with its cache.
                    if let Ok(ids) = xs2.directory("/local/domain").await {
                        let mut c = churn.lock().unwrap_or_else(|e| e.into_inner());
                        c.extend(ids.iter().filter_map(|s| s.parse::<DomId>().ok()));
                    }
                }
            });
        }
        Ok(xs)
    }

    async fn collect_inner(&self, out: &mut Collection) -> io::Result<()> {
        let mut st = self.state.lock().await;
        let xs = match &st.conn {
            Some(xs) => xs.clone(),
            None => {
                let xs = tokio::time::timeout(self.timeout, self.connect())
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            "xenstored did not answer the connection",
                        )
                    })??;
                st.conn = Some(xs.clone());
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
        self.churn.lock().unwrap_or_else(|e| e.into_inner()).clear();
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
        if let Some(key) = &self.maintenance_key {
            let on = opt(xs.read(key).await)?.is_some_and(|v| v.trim() == "1");
            out.warn(WarningKind::Maintenance, on);
        }
        Ok(())
    }
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
            let uuid = vm.as_deref().and_then(uuid_from_vm_path);
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
    let report = guest::validate(id, &keys, stat.memory_limit, now, rej);
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
    fn uuids_come_from_vm_paths_only_when_well_formed() {
        assert_eq!(
            uuid_from_vm_path("/vm/0A1b2c3d-0000-4000-8000-123456789abc").as_deref(),
            Some("0a1b2c3d-0000-4000-8000-123456789abc")
        );
        assert_eq!(uuid_from_vm_path("/vm/not-a-uuid"), None);
        assert_eq!(uuid_from_vm_path(""), None);
    }
}
