//! Planning: what the cluster looks like ([`Inventory`]: Prometheus, the
//! exporters' /metrics scraped directly, or the sim cluster itself) and where
//! each domain of an evacuated host goes
//! ([`plan`]: largest domains first onto the hosts with the most free memory,
//! keeping a headroom; never a warned, down or unreachable host).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::exposition::names;
use crate::exposition::parse;
use crate::http_client::{Client, Endpoint};
use crate::sim::SharedCluster;

use super::joblog::NewStep;
use super::prom::{self, PromClient, QueryError};

/// Dom0 is never migrated.
pub const DOM0: &str = "Domain-0";

/// One host as the planner sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostView {
    pub free_bytes: u64,
    /// `up` of its exporter; `None` when unknown.
    pub up: Option<bool>,
    /// Any warning failure raised.
    pub warned: bool,
    /// Heartbeat: `Some(false)` when a peer reports it unreachable; absent is unknown.
    pub reachable: Option<bool>,
}

/// One domain as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainView {
    pub name: String,
    pub host: String,
    pub memory_bytes: u64,
}

/// The cluster at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    pub hosts: BTreeMap<String, HostView>,
    pub domains: Vec<DomainView>,
    /// Where the view came from, for the job status.
    pub source: String,
}

/// Where views come from.
#[derive(Clone)]
pub enum Inventory {
    /// Prometheus' HTTP API; `job` is the exporters' scrape job for `up`.
    Prometheus { client: PromClient, job: String },
    /// The modelled cluster (sim executor without a Prometheus URL).
    Sim(SharedCluster),
    /// Each host's exporter, scraped directly (`--exporter host=URL`,
    /// `webhook.exporters`): for hosts without a Prometheus. In order; each
    /// scrape is cut off after `timeout`.
    Exporters {
        exporters: Vec<(String, Endpoint)>,
        client: Client,
        timeout: Duration,
    },
}

/// Why the inventory cannot tell now ("unreachable, retry").
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("prometheus unreachable: {0}")]
    Prometheus(QueryError),
    #[error("no exporter answered ({0})")]
    NoExporter(String),
}

/// One exporter's scrape: `(host, url, exposition text or why not)`.
pub type Scrape = (String, String, Result<String, ScrapeError>);

/// Why an exporter's scrape gave no exposition.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error(transparent)]
    Request(#[from] crate::http_client::RequestError),
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{0}: the body is not UTF-8")]
    NotUtf8(String),
    /// For tests and callers that scrape by other means.
    #[error("{0}")]
    Other(String),
}

/// GETs an exporter's /metrics; anything but a 200 with UTF-8 text is an error.
async fn scrape(c: &Client, e: &Endpoint, timeout: Duration) -> Result<String, ScrapeError> {
    let r = c
        .get(
            e,
            e.path(),
            "text/plain;version=0.0.4",
            timeout,
            prom::MAX_RESPONSE,
        )
        .await?;
    if r.status != 200 {
        return Err(ScrapeError::Status {
            url: e.url().to_string(),
            status: r.status,
        });
    }
    String::from_utf8(r.body.to_vec()).map_err(|_| ScrapeError::NotUtf8(e.url().to_string()))
}

/// Builds the [`View`] from exporter scrapes, in the configured order. Per
/// host: `up` = its scrape succeeded and parsed; free memory =
/// `xen_host_memory_free_bytes`; warned = any `xentinel_host_warning` at 1;
/// its domains = `xen_domain_memory_bytes` (Domain-0 skipped).
///
/// A URL's domains go to the first host that lists it; a later host with the
/// same URL gets its free memory, `up` and warnings but no domains. Two names
/// for one exporter exist only in tests (a single Xen host migrating to itself,
/// `xl migrate` to localhost); without this rule every domain would be seen on
/// both names, and the second name would be planned to evacuate domains the
/// first one owns (and vice versa).
pub fn view_from_scrapes(scrapes: &[Scrape]) -> View {
    let mut hosts = BTreeMap::new();
    let mut domains = Vec::new();
    let mut seen_urls = BTreeSet::new();
    for (host, url, res) in scrapes {
        let parsed = res.as_ref().ok().map(|text| parse::parse(text));
        let Some(Ok(samples)) = parsed else {
            hosts.insert(
                host.clone(),
                HostView {
                    up: Some(false),
                    ..HostView::default()
                },
            );
            continue;
        };
        let mut h = HostView {
            up: Some(true),
            ..HostView::default()
        };
        let owns_domains = seen_urls.insert(url.clone());
        for s in &samples {
            match s.name.as_str() {
                names::HOST_MEMORY_FREE_BYTES => h.free_bytes = s.value.max(0.0) as u64,
                names::HOST_WARNING if s.value == 1.0 => h.warned = true,
                names::DOMAIN_MEMORY_BYTES if owns_domains => {
                    if let Some(d) = s
                        .labels
                        .get("domain")
                        .filter(|d| *d != DOM0 && !d.is_empty())
                    {
                        domains.push(DomainView {
                            name: d.clone(),
                            host: host.clone(),
                            memory_bytes: s.value.max(0.0) as u64,
                        });
                    }
                }
                _ => {}
            }
        }
        hosts.insert(host.clone(), h);
    }
    let names: Vec<&str> = scrapes.iter().map(|(h, _, _)| h.as_str()).collect();
    View {
        hosts,
        domains,
        source: format!("the exporters of {}", names.join(", ")),
    }
}

/// Queries the Prometheus inventory runs, in order.
pub fn prometheus_queries(job: &str) -> [String; 5] {
    [
        names::HOST_MEMORY_FREE_BYTES.into(),
        format!(
            "up{{job=\"{}\"}}",
            job.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        format!("max by (host) ({})", names::HOST_WARNING),
        format!("min by (peer) ({})", names::HEARTBEAT_PEER_UP),
        names::DOMAIN_MEMORY_BYTES.into(),
    ]
}

impl Inventory {
    /// Names of the hosts this inventory knows (to refuse alerts about others).
    pub async fn known_hosts(&self) -> Result<Vec<String>, InventoryError> {
        match self {
            Inventory::Exporters { exporters, .. } => {
                Ok(exporters.iter().map(|(h, _)| h.clone()).collect())
            }
            Inventory::Sim(c) => {
                let c = c.lock().unwrap_or_else(|e| e.into_inner());
                Ok(c.hosts().iter().map(|h| h.spec.name.clone()).collect())
            }
            Inventory::Prometheus { client, job } => {
                let [free, up, ..] = prometheus_queries(job);
                let (a, b) = tokio::try_join!(client.query(&free), client.query(&up))
                    .map_err(InventoryError::Prometheus)?;
                let mut v: Vec<String> = a
                    .iter()
                    .chain(&b)
                    .filter_map(|s| s.labels.get("host").filter(|h| !h.is_empty()).cloned())
                    .collect();
                v.sort();
                v.dedup();
                Ok(v)
            }
        }
    }

    /// Reads the cluster; an error means "unreachable, retry", never a guess.
    pub async fn view(&self) -> Result<View, InventoryError> {
        match self {
            Inventory::Exporters {
                exporters,
                client,
                timeout,
            } => {
                let scrapes: Vec<Scrape> =
                    futures::future::join_all(exporters.iter().map(|(h, e)| async move {
                        (
                            h.clone(),
                            e.url().to_string(),
                            scrape(client, e, *timeout).await,
                        )
                    }))
                    .await;
                // None answered: more likely our network than every host at once; wait.
                if scrapes.iter().all(|(_, _, r)| r.is_err()) {
                    let why: Vec<String> = scrapes
                        .iter()
                        .filter_map(|(h, _, r)| r.as_ref().err().map(|e| format!("{h}: {e}")))
                        .collect();
                    return Err(InventoryError::NoExporter(why.join("; ")));
                }
                Ok(view_from_scrapes(&scrapes))
            }
            Inventory::Sim(c) => {
                let c = c.lock().unwrap_or_else(|e| e.into_inner());
                let hosts = c
                    .hosts()
                    .iter()
                    .map(|h| {
                        let name = h.spec.name.clone();
                        let v = HostView {
                            free_bytes: c.host_free_bytes(&name).unwrap_or(0),
                            up: Some(h.alive),
                            warned: h.warnings.values().any(|w| *w),
                            reachable: None,
                        };
                        (name, v)
                    })
                    .collect();
                let domains = c
                    .domains()
                    .iter()
                    .map(|d| DomainView {
                        name: d.name.clone(),
                        host: d.host.clone(),
                        memory_bytes: d.memory_bytes,
                    })
                    .collect();
                Ok(View {
                    hosts,
                    domains,
                    source: "the sim cluster's own state (no Prometheus URL given)".into(),
                })
            }
            Inventory::Prometheus { client, job } => {
                let [free, up, warn, hb, dom] = prometheus_queries(job);
                let (free, up, warn, hb, dom) = tokio::try_join!(
                    client.query(&free),
                    client.query(&up),
                    client.query(&warn),
                    client.query(&hb),
                    client.query(&dom),
                )
                .map_err(InventoryError::Prometheus)?;
                let mut hosts: BTreeMap<String, HostView> = BTreeMap::new();
                for s in &free {
                    if let Some(h) = s.labels.get("host").filter(|h| !h.is_empty()) {
                        hosts.entry(h.clone()).or_default().free_bytes = s.value.max(0.0) as u64;
                    }
                }
                for s in &up {
                    if let Some(h) = s.labels.get("host").filter(|h| !h.is_empty()) {
                        let e = hosts.entry(h.clone()).or_default();
                        // Several targets per host: down if any is down.
                        e.up = Some(e.up.unwrap_or(true) && s.value == 1.0);
                    }
                }
                for s in &warn {
                    if let Some(e) = s.labels.get("host").and_then(|h| hosts.get_mut(h)) {
                        e.warned = s.value > 0.0;
                    }
                }
                for s in &hb {
                    if let Some(e) = s.labels.get("peer").and_then(|h| hosts.get_mut(h)) {
                        e.reachable = Some(s.value >= 1.0);
                    }
                }
                let domains = dom
                    .iter()
                    .filter_map(|s| {
                        let name = s.labels.get("domain")?;
                        let host = s.labels.get("host")?;
                        (name != DOM0 && !name.is_empty()).then(|| DomainView {
                            name: name.clone(),
                            host: host.clone(),
                            memory_bytes: s.value.max(0.0) as u64,
                        })
                    })
                    .collect();
                Ok(View {
                    hosts,
                    domains,
                    source: format!("prometheus at {}", client.url()),
                })
            }
        }
    }
}

/// Planner settings.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// Free memory each target keeps after all placements.
    pub headroom_bytes: u64,
    /// `--to`: only these targets (still never a warned, down or unreachable one).
    pub only_targets: Option<Vec<String>>,
}

/// Why a host cannot take domains, or `None` when it can.
fn ineligible(name: &str, h: &HostView, source: &str, cfg: &PlanConfig) -> Option<&'static str> {
    if name == source {
        Some("the source")
    } else if h.up == Some(false) {
        Some("down")
    } else if h.reachable == Some(false) {
        Some("unreachable (heartbeat)")
    } else if h.warned {
        Some("warned")
    } else if cfg
        .only_targets
        .as_ref()
        .is_some_and(|o| !o.iter().any(|t| t == name))
    {
        Some("not in --to")
    } else {
        None
    }
}

/// Places every domain of `source`: largest first, each onto the eligible
/// host with the most free memory left (after headroom and earlier
/// placements). A domain with no room gets `Err(reason)`; the others go on.
pub fn plan(source: &str, view: &View, cfg: &PlanConfig) -> Vec<NewStep> {
    let mut doms: Vec<&DomainView> = view.domains.iter().filter(|d| d.host == source).collect();
    doms.sort_by(|a, b| {
        b.memory_bytes
            .cmp(&a.memory_bytes)
            .then(a.name.cmp(&b.name))
    });
    let mut room: BTreeMap<String, u64> = BTreeMap::new();
    let mut excluded = Vec::new();
    for (name, h) in &view.hosts {
        match ineligible(name, h, source, cfg) {
            None => {
                room.insert(
                    name.clone(),
                    h.free_bytes.saturating_sub(cfg.headroom_bytes),
                );
            }
            Some(why) if name != source => excluded.push(format!("{name}: {why}")),
            Some(_) => {}
        }
    }
    doms.into_iter()
        .map(|d| {
            let best = room
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                .map(|(n, r)| (n.clone(), *r));
            let target = match best {
                Some((name, r)) if r >= d.memory_bytes => {
                    room.insert(name.clone(), r - d.memory_bytes);
                    Ok(name)
                }
                Some((name, r)) => Err(format!(
                    "no room: needs {} MiB, the roomiest target {name} has {} MiB left after a \
                     {} MiB headroom",
                    d.memory_bytes >> 20,
                    r >> 20,
                    cfg.headroom_bytes >> 20
                )),
                None if excluded.is_empty() => Err("no other host known".to_string()),
                None => Err(format!("no eligible target ({})", excluded.join(", "))),
            };
            NewStep {
                domain: d.name.clone(),
                source: source.to_string(),
                memory_bytes: d.memory_bytes,
                target,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn view() -> View {
        let h = |free, warned, up| HostView {
            free_bytes: free,
            up: Some(up),
            warned,
            reachable: None,
        };
        let d = |n: &str, host: &str, m| DomainView {
            name: n.into(),
            host: host.into(),
            memory_bytes: m,
        };
        View {
            hosts: [
                ("a".to_string(), h(0, true, true)),
                ("b".to_string(), h(10 * GIB, false, true)),
                ("c".to_string(), h(6 * GIB, false, true)),
                ("d".to_string(), h(100 * GIB, false, false)),
                ("e".to_string(), h(100 * GIB, true, true)),
            ]
            .into(),
            domains: vec![
                d("small", "a", GIB),
                d("big", "a", 8 * GIB),
                d("mid", "a", 5 * GIB),
                d("huge", "a", 64 * GIB),
                d("other", "b", GIB),
            ],
            source: "test".into(),
        }
    }

    fn targets(steps: &[NewStep]) -> Vec<(&str, Result<&str, ()>)> {
        steps
            .iter()
            .map(|s| (s.domain.as_str(), s.target.as_deref().map_err(|_| ())))
            .collect()
    }

    /// What `xentinel exporter` serves for a host with these domains (domid 0 is
    /// Domain-0), this much free memory and these warnings raised.
    fn exposition(doms: &[(u32, &str, u64)], free: u64, warned: bool) -> String {
        use crate::snapshot::{Collection, DomainMeta, DomainStats, HostStats, SelfStats};
        let mut c = Collection::default();
        for &(domid, name, mem) in doms {
            c.stats.insert(
                domid,
                DomainStats {
                    domid,
                    memory_bytes: mem,
                    ..Default::default()
                },
            );
            c.meta.insert(
                domid,
                DomainMeta {
                    domid,
                    name: Some(name.into()),
                    uuid: Some(format!("uuid-{domid}")),
                    ..Default::default()
                },
            );
        }
        c.host = Some(HostStats {
            memory_total_bytes: 64 * GIB,
            memory_free_bytes: free,
            ..Default::default()
        });
        c.warn(crate::snapshot::WarningKind::Shutdown, false);
        c.warn(crate::snapshot::WarningKind::UpsOnBattery, warned);
        let snap = crate::snapshot::Snapshot::merge(c, vec![], SelfStats::default());
        let mut out = String::new();
        crate::exposition::render(&snap, &mut out);
        out
    }

    #[test]
    fn exporter_scrapes_make_a_view() {
        let a = exposition(
            &[(0, DOM0, 4 * GIB), (3, "web", 2 * GIB), (7, "db", GIB)],
            8 * GIB,
            false,
        );
        let b = exposition(&[(0, DOM0, GIB), (2, "x", GIB)], 3 * GIB, true);
        let scrape = |h: &str, u: &str, r: Result<&String, &str>| -> Scrape {
            (
                h.into(),
                u.into(),
                r.cloned().map_err(|e| ScrapeError::Other(e.into())),
            )
        };
        let scrapes = [
            scrape("a", "http://a:1/metrics", Ok(&a)),
            // the same exporter under a second name: its host facts, not its domains
            scrape("a2", "http://a:1/metrics", Ok(&a)),
            scrape("b", "http://b:1/metrics", Ok(&b)),
            scrape("c", "http://c:1/metrics", Err("cannot connect")),
            scrape("d", "http://d:1/metrics", Ok(&"<html>".to_string())),
        ];
        let v = view_from_scrapes(&scrapes);
        let host = |free, up, warned| HostView {
            free_bytes: free,
            up: Some(up),
            warned,
            reachable: None,
        };
        assert_eq!(
            v.hosts,
            [
                ("a".to_string(), host(8 * GIB, true, false)),
                ("a2".to_string(), host(8 * GIB, true, false)),
                ("b".to_string(), host(3 * GIB, true, true)),
                ("c".to_string(), host(0, false, false)),
                ("d".to_string(), host(0, false, false)),
            ]
            .into()
        );
        let doms: Vec<(&str, &str, u64)> = v
            .domains
            .iter()
            .map(|d| (d.name.as_str(), d.host.as_str(), d.memory_bytes))
            .collect();
        assert_eq!(
            doms,
            [("web", "a", 2 * GIB), ("db", "a", GIB), ("x", "b", GIB)]
        );
        // a's domains go to a2, the only eligible target (b is warned, c and d down)
        let cfg = PlanConfig {
            headroom_bytes: GIB,
            only_targets: None,
        };
        assert_eq!(
            targets(&plan("a", &v, &cfg)),
            [("web", Ok("a2")), ("db", Ok("a2"))]
        );
        assert!(plan("a2", &v, &cfg).is_empty());
    }

    #[test]
    fn largest_first_onto_most_free_never_warned_or_down() {
        let cfg = PlanConfig {
            headroom_bytes: GIB / 2,
            only_targets: None,
        };
        let steps = plan("a", &view(), &cfg);
        assert_eq!(
            targets(&steps),
            [
                ("huge", Err(())),
                ("big", Ok("b")),
                ("mid", Ok("c")),
                ("small", Ok("b")),
            ]
        );
        assert!(steps[0].target.as_ref().unwrap_err().contains("no room"));
    }

    #[test]
    fn only_targets_and_heartbeat_restrict() {
        let mut v = view();
        v.hosts.get_mut("b").unwrap().reachable = Some(false);
        let cfg = PlanConfig {
            headroom_bytes: 0,
            only_targets: Some(vec!["b".into(), "c".into()]),
        };
        let steps = plan("a", &v, &cfg);
        assert_eq!(
            targets(&steps),
            [
                ("huge", Err(())),
                ("big", Err(())),
                ("mid", Ok("c")),
                ("small", Ok("c")),
            ]
        );
    }
}
