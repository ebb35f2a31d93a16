//! The xenstore source's domain table: what was last read of each domain,
//! which parts of it watch events marked stale ([`Dirty`]), and the reads
//! that fill or refresh an entry.

use std::collections::{HashMap, HashSet};
use std::io;

use xenstore_rs::AsyncXs;
use xenstore_rs::tokio::XsTokio;

use crate::guest::{self, Rejections};
use crate::snapshot::{DomId, DomainMeta};

/// The UUID Xen gives dom0.
pub const DOM0_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Keys of a domain's `data/xentinel` that are read (the first ones listed).
const MAX_KEYS: usize = 32;

/// Per-domain values that change only with `vm` or `memory/static-max`.
#[derive(Debug, Clone, Default)]
pub(super) struct Static {
    pub uuid: Option<String>,
    pub memory_limit: Option<u64>,
}

/// What the table holds of one domain: raw xenstore values, validated at
/// every scrape (report ages move with the clock).
#[derive(Debug, Clone, Default)]
pub(super) struct Entry {
    stat: Static,
    name: Option<String>,
    target: Option<String>,
    keys: HashMap<String, String>,
    xapi_free: Option<String>,
    xapi_total: Option<String>,
}

/// The parts of one domain that changed since they were read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Parts {
    /// The whole domain (its home, `memory/` or `data/` itself changed).
    pub full: bool,
    pub stat: bool,
    pub name: bool,
    pub target: bool,
    /// The listing of `data/xentinel`.
    pub dir: bool,
    pub keys: HashSet<String>,
    /// XCP-ng's `data/meminfo_free`/`data/meminfo_total`.
    pub xapi: bool,
}

/// Domains (or everything) marked stale by watch events since the last scrape.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    /// `/local/domain` itself changed (or the watch was just set): read all.
    pub all: bool,
    pub domains: HashMap<DomId, Parts>,
}

impl Dirty {
    /// Marks what the watch event on `path` may have changed. Paths the
    /// exporter does not read (`device/`, `control/`, `console/`...) mark
    /// nothing; an ancestor of a path it reads marks the whole domain.
    pub fn mark(&mut self, path: &str) {
        let Some(rest) = path.strip_prefix("/local/domain") else {
            return;
        };
        let Some(rest) = rest.strip_prefix('/').filter(|r| !r.is_empty()) else {
            if rest.is_empty() || rest == "/" {
                self.all = true;
            }
            return;
        };
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(id) = id.parse::<DomId>() else {
            return;
        };
        let key = tail
            .strip_prefix(guest::DATA_DIR)
            .and_then(|k| k.strip_prefix('/'))
            .and_then(|k| k.split('/').next())
            .filter(|k| !k.is_empty());
        let relevant = key.is_some()
            || matches!(
                tail,
                "" | "memory" | "data" | "name" | "vm" | "memory/target"
            )
            || [
                "memory/static-max",
                guest::DATA_DIR,
                guest::XAPI_MEMINFO_FREE,
                guest::XAPI_MEMINFO_TOTAL,
            ]
            .contains(&tail);
        if !relevant {
            return;
        }
        let p = self.domains.entry(id).or_default();
        match tail {
            "" | "memory" | "data" => p.full = true,
            "name" => p.name = true,
            "vm" | "memory/static-max" => p.stat = true,
            "memory/target" => p.target = true,
            t if t == guest::DATA_DIR => p.dir = true,
            t if t == guest::XAPI_MEMINFO_FREE || t == guest::XAPI_MEMINFO_TOTAL => p.xapi = true,
            _ => {
                if let Some(k) = key {
                    if p.keys.len() >= MAX_KEYS {
                        p.dir = true;
                    } else {
                        p.keys.insert(k.to_string());
                    }
                }
            }
        }
    }
}

/// Turns ENOENT into `None`.
pub(super) fn opt<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

async fn read_opt(xs: &XsTokio, path: &str) -> io::Result<Option<String>> {
    Ok(opt(xs.read(path).await)?.map(|s| s.to_string()))
}

/// The UUID at the end of a `/vm/<uuid>` path, if it looks like one.
pub(super) fn uuid_from_vm_path(vm: &str) -> Option<String> {
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

fn home(id: DomId) -> String {
    format!("/local/domain/{id}")
}

async fn read_static(xs: &XsTokio, id: DomId) -> io::Result<Static> {
    let home = home(id);
    let vm = read_opt(xs, &format!("{home}/vm")).await?;
    // xen-init-dom0 may leave dom0 without a `vm` path; Xen's handle
    // for dom0 is the all-zero UUID, which is what `xl list -l` shows.
    let uuid = vm
        .as_deref()
        .and_then(uuid_from_vm_path)
        .or_else(|| (id == 0).then(|| DOM0_UUID.to_string()));
    let static_max = read_opt(xs, &format!("{home}/memory/static-max")).await?;
    Ok(Static {
        uuid,
        memory_limit: static_max
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024),
    })
}

async fn read_keys(xs: &XsTokio, id: DomId) -> io::Result<HashMap<String, String>> {
    let data_dir = format!("{}/{}", home(id), guest::DATA_DIR);
    let mut keys = HashMap::new();
    if let Some(entries) = opt(xs.directory(&data_dir).await)? {
        for k in entries.iter().take(MAX_KEYS) {
            if let Some(v) = read_opt(xs, &format!("{data_dir}/{k}")).await? {
                keys.insert(k.to_string(), v);
            }
        }
    }
    Ok(keys)
}

impl Entry {
    /// Reads every part of domain `id`.
    pub async fn read(xs: &XsTokio, id: DomId) -> io::Result<Entry> {
        let home = home(id);
        let mut e = Entry {
            name: read_opt(xs, &format!("{home}/name")).await?,
            stat: read_static(xs, id).await?,
            target: read_opt(xs, &format!("{home}/memory/target")).await?,
            keys: read_keys(xs, id).await?,
            ..Entry::default()
        };
        e.read_xapi(xs, id).await?;
        Ok(e)
    }

    /// Rereads the parts of domain `id` that `p` marks.
    pub async fn refresh(mut self, xs: &XsTokio, id: DomId, p: &Parts) -> io::Result<Entry> {
        if p.full {
            return Entry::read(xs, id).await;
        }
        let home = home(id);
        if p.name {
            self.name = read_opt(xs, &format!("{home}/name")).await?;
        }
        if p.stat {
            self.stat = read_static(xs, id).await?;
        }
        if p.target {
            self.target = read_opt(xs, &format!("{home}/memory/target")).await?;
        }
        let had_mem = self.keys.contains_key(guest::KEY_MEM_AVAILABLE);
        // A key not read before may or may not be among the first listed.
        if p.dir || p.keys.iter().any(|k| !self.keys.contains_key(k)) {
            self.keys = read_keys(xs, id).await?;
        } else {
            for k in &p.keys {
                let path = format!("{home}/{}/{k}", guest::DATA_DIR);
                match read_opt(xs, &path).await? {
                    Some(v) => self.keys.insert(k.clone(), v),
                    None => self.keys.remove(k),
                };
            }
        }
        if p.xapi || had_mem != self.keys.contains_key(guest::KEY_MEM_AVAILABLE) {
            self.read_xapi(xs, id).await?;
        }
        Ok(self)
    }

    /// XCP-ng's agents: read only for domains without xentinel's key.
    async fn read_xapi(&mut self, xs: &XsTokio, id: DomId) -> io::Result<()> {
        self.xapi_free = None;
        self.xapi_total = None;
        if !self.keys.contains_key(guest::KEY_MEM_AVAILABLE) {
            let home = home(id);
            self.xapi_free = read_opt(xs, &format!("{home}/{}", guest::XAPI_MEMINFO_FREE)).await?;
            if self.xapi_free.is_some() {
                self.xapi_total =
                    read_opt(xs, &format!("{home}/{}", guest::XAPI_MEMINFO_TOTAL)).await?;
            }
        }
        Ok(())
    }

    /// The domain's metadata at Unix time `now`, guest values validated.
    pub fn meta(&self, id: DomId, now: f64, rej: &Rejections) -> DomainMeta {
        let limit = self.stat.memory_limit;
        let mut report = guest::validate(id, &self.keys, limit, now, rej);
        if !self.keys.contains_key(guest::KEY_MEM_AVAILABLE) {
            if let Some(free) = &self.xapi_free {
                report.memory_available_bytes =
                    guest::validate_xapi_free(id, free, self.xapi_total.as_deref(), limit, rej);
            }
        }
        DomainMeta {
            domid: id,
            name: self.name.clone(),
            uuid: self.stat.uuid.clone(),
            memory_target_bytes: self
                .target
                .as_deref()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|kib| kib * 1024),
            guest: report,
            probe_target: self.keys.get(guest::KEY_PROBE).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(paths: &[&str]) -> Dirty {
        let mut d = Dirty::default();
        for p in paths {
            d.mark(p);
        }
        d
    }

    #[test]
    fn events_mark_only_the_parts_they_touch() {
        let d = marked(&[
            "/local/domain/3/name",
            "/local/domain/3/data/xentinel/pgfault",
            "/local/domain/3/data/xentinel/timestamp",
            "/local/domain/4/memory/target",
            "/local/domain/5/vm",
            "/local/domain/6/data/meminfo_free",
            "/local/domain/7/data/xentinel",
            "/local/domain/8/device/vif/0/state",
            "/local/domain/9/control/shutdown",
            "/vm/abc/name",
            "/local/domainx/1/name",
            "/local/domain/x/name",
        ]);
        assert!(!d.all);
        let p3 = &d.domains[&3];
        assert!(p3.name && !p3.full && !p3.dir && !p3.target);
        let mut keys: Vec<_> = p3.keys.iter().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["pgfault", "timestamp"]);
        assert!(d.domains[&4].target);
        assert!(d.domains[&5].stat);
        assert!(d.domains[&6].xapi);
        assert!(d.domains[&7].dir);
        assert_eq!(
            d.domains.len(),
            5,
            "device/, control/, /vm and junk mark nothing"
        );
    }

    #[test]
    fn ancestors_mark_the_whole_domain_or_everything() {
        let d = marked(&[
            "/local/domain/3",
            "/local/domain/4/data",
            "/local/domain/5/memory",
        ]);
        assert!(d.domains.values().all(|p| p.full));
        assert!(!d.all);
        assert!(marked(&["/local/domain"]).all);
        assert!(marked(&["/local/domain/"]).all);
    }

    #[test]
    fn too_many_keys_collapse_into_a_listing() {
        let mut d = Dirty::default();
        for i in 0..100 {
            d.mark(&format!("/local/domain/1/data/xentinel/k{i}"));
        }
        let p = &d.domains[&1];
        assert_eq!(p.keys.len(), MAX_KEYS);
        assert!(p.dir);
        d.mark("/local/domain/1/data/xentinel/a/b");
        assert!(!d.domains[&1].keys.contains("a/b"));
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
