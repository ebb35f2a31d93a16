//! The demo's terminal story: firing alerts (from Prometheus' `ALERTS`), each
//! evacuation's steps as the job log records them, and where every domain
//! ended up once a job is over. It only reads; it never drives anything.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::migration::joblog::JobLog;
use crate::migration::prom::PromClient;
use crate::sim::SharedCluster;

/// What has been told already, so each event is printed once.
#[derive(Default)]
struct Told {
    alerts: HashSet<String>,
    steps: BTreeMap<i64, String>,
    jobs: BTreeMap<i64, String>,
}

/// Prints the story every half second until the process ends.
pub fn spawn(prometheus_url: String, db_path: Option<PathBuf>, cluster: SharedCluster) {
    tokio::spawn(async move {
        let Ok(prom) = PromClient::new(&prometheus_url, Duration::from_secs(2)) else {
            return;
        };
        let mut told = Told::default();
        let mut iv = tokio::time::interval(Duration::from_millis(500));
        loop {
            iv.tick().await;
            if let Ok(alerts) = prom.query("ALERTS{alertstate=\"firing\"}").await {
                for a in alerts {
                    let l = &a.labels;
                    let key = format!("{l:?}");
                    if told.alerts.insert(key) {
                        let get = |k: &str| l.get(k).map(String::as_str).unwrap_or("-");
                        println!(
                            "ALERT firing  {} host={} kind={} severity={}",
                            get("alertname"),
                            get("host"),
                            get("kind"),
                            get("severity")
                        );
                    }
                }
            }
            let Some(db) = db_path.clone() else { continue };
            let jobs = tokio::task::spawn_blocking(
                move || -> Option<Vec<crate::migration::joblog::Job>> {
                    if !db.exists() {
                        return None;
                    }
                    let log = JobLog::open(&db).ok()?;
                    let recent = log.jobs(20).ok()?;
                    Some(
                        recent
                            .into_iter()
                            .filter_map(|j| log.job(j.id).ok().flatten())
                            .collect(),
                    )
                },
            )
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
            for job in jobs.iter().rev() {
                tell_job(&mut told, job, &cluster);
            }
        }
    });
}

fn tell_job(told: &mut Told, job: &crate::migration::joblog::Job, cluster: &SharedCluster) {
    let prev = told.jobs.get(&job.id).cloned();
    if prev.as_deref() != Some(job.state.as_str()) {
        told.jobs.insert(job.id, job.state.clone());
        if prev.is_none() {
            println!(
                "EVACUATION   job {} of host {}: {}",
                job.id, job.host, job.state
            );
        }
    }
    for st in job.steps.iter().flatten() {
        let line = match st.state.as_str() {
            "running" => format!(
                "  migrating  {:<8} {} -> {}",
                st.domain,
                st.source,
                st.target.as_deref().unwrap_or("?")
            ),
            "done" => format!(
                "  moved      {:<8} {} -> {} in {:.1} s, downtime {:.0} ms",
                st.domain,
                st.source,
                st.target.as_deref().unwrap_or("?"),
                st.duration_seconds.unwrap_or(0.0),
                st.downtime_seconds.unwrap_or(0.0) * 1000.0
            ),
            "failed" | "cancelled" => format!("  {:<10} {:<8} {}", st.state, st.domain, st.reason),
            _ => continue,
        };
        if told.steps.get(&st.id) != Some(&st.state) {
            told.steps.insert(st.id, st.state.clone());
            println!("{line}");
        }
    }
    let over = matches!(job.state.as_str(), "done" | "failed" | "cancelled");
    if over && prev.as_deref() != Some(job.state.as_str()) {
        println!(
            "EVACUATION   job {} of host {}: {} {}",
            job.id, job.host, job.state, job.reason
        );
        let c = cluster.lock().unwrap_or_else(|e| e.into_inner());
        for h in c.hosts() {
            let names: Vec<_> = c.domains_on(&h.spec.name).map(|d| d.name.clone()).collect();
            println!("  {:<6} {}", h.spec.name, names.join(" "));
        }
    }
}
