//! The collector: runs every source of one host concurrently, times each one,
//! and merges what they found into one [`Snapshot`].
//!
//! A failing or hanging source marks itself down (`xentinel_source_up 0`) and
//! the others still serve; it comes back on the next scrape that succeeds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::guest::Rejections;
use crate::snapshot::{Collection, SelfStats, Snapshot, SourceStatus};
use crate::sources::Source;

/// One host's set of sources and the state kept across scrapes.
pub struct Collector {
    sources: Vec<Box<dyn Source>>,
    timeout: Duration,
    rejections: Arc<Rejections>,
    /// Last error per source, so a failure is logged once, not at every scrape.
    last_error: Mutex<Vec<Option<String>>>,
}

impl Collector {
    /// A collector over `sources`; each collection of a source is cut off after `timeout`.
    pub fn new(
        sources: Vec<Box<dyn Source>>,
        timeout: Duration,
        rejections: Arc<Rejections>,
    ) -> Self {
        let n = sources.len();
        Collector {
            sources,
            timeout,
            rejections,
            last_error: Mutex::new(vec![None; n]),
        }
    }

    /// Collects from every source and merges the result.
    pub async fn snapshot(&self) -> Snapshot {
        let runs = self.sources.iter().map(|src| async move {
            let mut part = Collection::default();
            let start = Instant::now();
            let res = match tokio::time::timeout(self.timeout, src.collect(&mut part)).await {
                Ok(r) => r.map_err(|e| e.0),
                Err(_) => Err(format!("timed out after {:?}", self.timeout)),
            };
            (part, start.elapsed().as_secs_f64(), res)
        });
        let results = futures::future::join_all(runs).await;
        let mut all = Collection::default();
        let mut statuses = Vec::with_capacity(results.len());
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        for (i, (part, secs, res)) in results.into_iter().enumerate() {
            let name = self.sources[i].name();
            match (&res, &last[i]) {
                (Err(e), prev) if prev.as_deref() != Some(e.as_str()) => {
                    log::error!("source {name} failed: {e}");
                }
                (Ok(()), Some(_)) => log::info!("source {name} recovered"),
                _ => {}
            }
            last[i] = res.as_ref().err().cloned();
            statuses.push(SourceStatus {
                name,
                up: res.is_ok(),
                duration_seconds: secs,
            });
            absorb(&mut all, part);
        }
        drop(last);
        let self_stats = SelfStats {
            guest_rejections: self.rejections.counts(),
        };
        let snap = Snapshot::merge(all, statuses, self_stats);
        for src in &self.sources {
            src.observe(&snap);
        }
        snap
    }
}

/// Adds one source's findings to the whole; maps are unions, warnings OR.
fn absorb(all: &mut Collection, part: Collection) {
    all.stats.extend(part.stats);
    for (id, m) in part.meta {
        all.meta.insert(id, m);
    }
    if part.host.is_some() {
        all.host = part.host;
    }
    if part.dom0.is_some() {
        all.dom0 = part.dom0;
    }
    for (k, on) in part.warnings {
        all.warn(k, on);
    }
    if part.hardware_errors.is_some() {
        all.hardware_errors = part.hardware_errors;
    }
    all.migrations.extend(part.migrations);
    if part.heartbeat.is_some() {
        all.heartbeat = part.heartbeat;
    }
    all.probes.extend(part.probes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{DomainStats, WarningKind};
    use crate::sources::{BoxFuture, SourceError};

    struct Fixed(&'static str, bool);
    impl Source for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn collect<'a>(
            &'a self,
            out: &'a mut Collection,
        ) -> BoxFuture<'a, Result<(), SourceError>> {
            Box::pin(async move {
                out.stats.insert(
                    7,
                    DomainStats {
                        domid: 7,
                        ..Default::default()
                    },
                );
                out.warn(WarningKind::Maintenance, self.1);
                if self.0 == "broken" {
                    return Err(SourceError("boom".into()));
                }
                Ok(())
            })
        }
    }

    struct Hang;
    impl Source for Hang {
        fn name(&self) -> &'static str {
            "hang"
        }
        fn collect<'a>(&'a self, _: &'a mut Collection) -> BoxFuture<'a, Result<(), SourceError>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn one_failing_or_hanging_source_does_not_take_the_others_down() {
        let c = Collector::new(
            vec![
                Box::new(Fixed("ok", false)),
                Box::new(Fixed("broken", true)),
                Box::new(Hang),
            ],
            Duration::from_millis(50),
            Arc::default(),
        );
        let s = c.snapshot().await;
        let up: Vec<_> = s.sources.iter().map(|s| (s.name, s.up)).collect();
        assert_eq!(up, [("ok", true), ("broken", false), ("hang", false)]);
        assert_eq!(s.domains.len(), 1);
        assert_eq!(s.warnings.get(&WarningKind::Maintenance), Some(&true));
    }
}
