//! The `probe` source: a TCP connect or an HTTP GET (with the crate's one
//! client, [`crate::http_client`]) per domain.
//!
//! Targets come from the configuration (`probes:`, by domain name) and from
//! each domain's xenstore key `data/xentinel/probe`; the configuration wins.
//! They reach the prober one way: the collector shows every merged snapshot
//! to [`ProbeSource::observe`], which sends the (domid, target) list to the
//! background task; the task probes on its own interval (and at once when a
//! target appears), and the source's `collect` only copies the results.
//! So a target published by a guest is probed after the scrape that saw it
//! and shown from the scrape after that.
//!
//! Every probe has a timeout; a failure is logged once per change of state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::{ProbeConfig, ProbeTarget};
use crate::http_client::{Client, Endpoint, RequestError, UrlError};
use crate::snapshot::{Collection, DomId, Histogram, ProbeStats, Snapshot};
use crate::sources::{BoxFuture, Source, SourceError};

/// Probe duration buckets (seconds).
pub const DURATION_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// One domain to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub domid: DomId,
    /// For log lines.
    pub domain: String,
    /// As written; parsed at each probe, so garbage fails the probe.
    pub target: String,
}

struct Outcome {
    target: String,
    duration: Histogram,
    success: bool,
    logged: Option<bool>,
}

type Results = Arc<Mutex<BTreeMap<DomId, Outcome>>>;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Target(#[from] crate::config::ValueError),
    #[error("invalid target")]
    Invalid,
    #[error("connect {addr}: {error}")]
    Connect { addr: String, error: std::io::Error },
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error(transparent)]
    Http(#[from] RequestError),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The longest a single HTTP probe may take by itself; the prober cuts
/// every probe off sooner, at its configured timeout.
const HTTP_CEILING: Duration = Duration::from_secs(300);

/// Probes one target once; `Err` says why it failed.
pub async fn probe(target: &str) -> Result<(), ProbeError> {
    match ProbeTarget::parse(target)? {
        ProbeTarget::Invalid => Err(ProbeError::Invalid),
        ProbeTarget::Tcp(a) => TcpStream::connect(a.0.as_str())
            .await
            .map(drop)
            .map_err(|error| ProbeError::Connect {
                addr: a.0.clone(),
                error,
            }),
        ProbeTarget::Http { authority, path } => {
            // A GET over a fresh connection; 2xx and 3xx succeed. Reads only
            // the response head.
            let e = Endpoint::parse(&format!("http://{}", authority.0), "probe")?;
            let code = Client::default()
                .get_status(&e, &path, HTTP_CEILING)
                .await?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(ProbeError::Status(code))
            }
        }
    }
}

/// The `probe` source and its background prober.
pub struct ProbeSource {
    results: Results,
    config: Vec<ProbeConfig>,
    jobs: watch::Sender<Vec<Job>>,
}

impl ProbeSource {
    /// Starts the prober task (in the current runtime) with config targets.
    pub fn start(config: Vec<ProbeConfig>, interval: Duration, timeout: Duration) -> Self {
        let (tx, rx) = watch::channel(vec![]);
        let results: Results = Arc::default();
        tokio::spawn(run(rx, results.clone(), interval, timeout));
        ProbeSource {
            results,
            config,
            jobs: tx,
        }
    }

    /// Jobs for a snapshot: a configured target by domain name, else the xenstore one.
    pub fn jobs(&self, s: &Snapshot) -> Vec<Job> {
        s.domains
            .iter()
            .filter_map(|d| {
                let cfg = self
                    .config
                    .iter()
                    .find(|p| *p.domain == d.name)
                    .map(|p| p.target.to_string());
                let target = cfg.or_else(|| d.meta.as_ref()?.probe_target.clone())?;
                Some(Job {
                    domid: d.domid,
                    domain: d.name.clone(),
                    target,
                })
            })
            .collect()
    }
}

impl Source for ProbeSource {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn collect<'a>(&'a self, out: &'a mut Collection) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let jobs = self.jobs.borrow().clone();
            let r = self.results.lock().unwrap_or_else(|e| e.into_inner());
            // Only domains still probed, with the target they have now.
            let live = r.iter().filter(|(id, res)| {
                jobs.iter()
                    .any(|j| j.domid == **id && j.target == res.target)
            });
            for (id, res) in live {
                out.probes.insert(
                    *id,
                    ProbeStats {
                        target: res.target.clone(),
                        duration: res.duration.clone(),
                        success: res.success,
                    },
                );
            }
            Ok(())
        })
    }

    fn observe(&self, s: &Snapshot) {
        let jobs = self.jobs(s);
        self.jobs.send_if_modified(|cur| {
            if *cur == jobs {
                false
            } else {
                *cur = jobs;
                true
            }
        });
    }
}

async fn run(
    mut jobs: watch::Receiver<Vec<Job>>,
    results: Results,
    interval: Duration,
    timeout: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        // Which jobs to run now: all on a tick, the new ones on a change.
        let changed = tokio::select! {
            _ = ticker.tick() => false,
            ch = jobs.changed() => {
                if ch.is_err() {
                    return;
                }
                true
            }
        };
        let all = jobs.borrow_and_update().clone();
        let due: Vec<Job> = {
            let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
            r.retain(|id, res| all.iter().any(|j| j.domid == *id && j.target == res.target));
            if changed {
                all.into_iter()
                    .filter(|j| !r.contains_key(&j.domid))
                    .collect()
            } else {
                all
            }
        };
        let runs = due.into_iter().map(|j| async move {
            let start = Instant::now();
            let res = match tokio::time::timeout(timeout, probe(&j.target)).await {
                Ok(r) => r,
                Err(_) => Err(ProbeError::Timeout(timeout)),
            };
            (j, start.elapsed(), res)
        });
        let done = futures::future::join_all(runs).await;
        let current = jobs.borrow().clone();
        let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
        for (j, took, res) in done {
            // A domain gone, or retargeted, while its probe ran.
            if !current.contains(&j) {
                continue;
            }
            let e = r.entry(j.domid).or_insert_with(|| Outcome {
                target: j.target.clone(),
                duration: Histogram::new(&DURATION_BUCKETS),
                success: false,
                logged: None,
            });
            // A target that does not parse was never probed: no duration.
            if ProbeTarget::parse(&j.target).is_ok() {
                e.duration.observe(took.as_secs_f64());
            }
            e.success = res.is_ok();
            if e.logged != Some(e.success) {
                match &res {
                    Ok(()) => log::info!("probe of domain {} ({}) succeeds", j.domain, j.target),
                    Err(why) => {
                        log::warn!("probe of domain {} ({}) fails: {why}", j.domain, j.target)
                    }
                }
                e.logged = Some(e.success);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{Collection, DomainMeta, SelfStats};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn http_server(status: &'static str) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn tcp_and_http_probes_judge_the_answer() {
        let ok = http_server("200 OK").await;
        let redirect = http_server("302 Found").await;
        let broken = http_server("503 Service Unavailable").await;
        assert!(probe(&format!("tcp://{ok}")).await.is_ok());
        assert!(probe(&format!("http://{ok}/health")).await.is_ok());
        assert!(probe(&format!("http://{redirect}/")).await.is_ok());
        assert!(
            probe(&format!("http://{broken}/"))
                .await
                .unwrap_err()
                .to_string()
                .contains("503")
        );
        // A port nobody listens on: bind one, learn its number, close it.
        let gone = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(probe(&format!("tcp://{gone}")).await.is_err());
        assert!(
            probe("ftp://x:1")
                .await
                .unwrap_err()
                .to_string()
                .contains("invalid probe target")
        );
        assert!(probe("tcp://no port").await.is_err());
    }

    #[tokio::test]
    async fn the_source_probes_what_the_snapshot_names_and_never_hangs() {
        let ok = http_server("204 No Content").await;
        // Accepts but never answers: the probe must time out.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let cfg: Vec<ProbeConfig> =
            crate::config::parse_yaml(&format!("- domain: web\n  target: http://{ok}/\n"), "t")
                .unwrap();
        let src = ProbeSource::start(cfg, Duration::from_millis(100), Duration::from_millis(200));
        let mut c = Collection::default();
        let dom = |id: DomId, name: &str, probe: Option<String>| DomainMeta {
            domid: id,
            name: Some(name.into()),
            uuid: Some(format!("u{id}")),
            probe_target: probe,
            ..Default::default()
        };
        c.meta
            .insert(1, dom(1, "web", Some("tcp://ignored:1".into())));
        c.meta
            .insert(2, dom(2, "db", Some(format!("http://{silent_addr}/"))));
        c.meta.insert(3, dom(3, "junk", Some("garbage!".into())));
        c.meta.insert(4, dom(4, "plain", None));
        let snap = Snapshot::merge(c, vec![], SelfStats::default());
        src.observe(&snap);
        // Wait for both probes to have ended once (the silent one by its
        // 200 ms timeout); polled, since a loaded machine may run them late.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut out = Collection::default();
        loop {
            src.collect(&mut out).await.unwrap();
            let ended = |id: DomId| out.probes.get(&id).is_some_and(|p| p.duration.count > 0);
            if ended(1) && ended(2) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "probes never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
            out = Collection::default();
        }
        let got: Vec<_> = out
            .probes
            .iter()
            .map(|(id, p)| (*id, p.success, p.duration.count > 0))
            .collect();
        assert_eq!(got, [(1, true, true), (2, false, true), (3, false, false)]);
        assert!(out.probes[&1].target.starts_with("http://"), "config wins");
        let slow = &out.probes[&2].duration;
        assert!(
            slow.sum / slow.count as f64 >= 0.19,
            "timed out, not hung: {slow:?}"
        );
        // A domain that leaves the snapshot leaves the results.
        let snap = Snapshot::merge(Collection::default(), vec![], SelfStats::default());
        src.observe(&snap);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut out = Collection::default();
            src.collect(&mut out).await.unwrap();
            if out.probes.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "results stayed: {:?}",
                out.probes
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(silent);
    }
}
