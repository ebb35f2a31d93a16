//! The job runner shared by `xentinel webhook` and `xentinel evacuate`: plans
//! a job (waiting with backoff while its inventory is unreachable), records
//! the plan, then runs each step under per-source and per-target limits,
//! claiming its domain in the job log first. [`Engine::recover`] resumes the
//! unfinished jobs of a previous run without migrating any domain twice.
//!
//! Here: the engine and a job's life (plan, wait, run its steps, finish).
//! `step`: one step (claim, state, migrate, retries); `recovery`: a step a
//! previous run left behind; `events`: progress for `evacuate`; `limits`:
//! migrations at once per source and target; `storage`: reads and writes of
//! the job log that wait out a storage fault; `stop`: the graceful stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

mod events;
mod limits;
mod phase;
mod recovery;
mod step;
mod stop;
mod storage;

pub use events::{Event, PlannedStep};
use limits::Limiter;
pub use phase::{Phase, StopReport};

use super::executor::{self, Executor};
use super::joblog::JobLog;
use super::metrics::Metrics;
use super::planner::{self, Inventory, PlanConfig};

/// The job log failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite refused the statement (not the storage's fault).
    #[error("job log: {0}")]
    Sql(#[source] rusqlite::Error),
    /// The storage does not take writes now (full, read-only, removed): retry later.
    #[error("job log unavailable: {0}")]
    Unavailable(String),
}

/// A job log failure ends a job with its message as the reason.
impl From<DbError> for String {
    fn from(e: DbError) -> String {
        e.to_string()
    }
}

/// Runner settings (from the `webhook:` configuration section).
#[derive(Debug, Clone)]
pub struct Settings {
    pub headroom_bytes: u64,
    pub max_per_source: usize,
    pub max_per_target: usize,
    /// Longest wait between inventory retries (and between migration attempts).
    pub backoff_max: Duration,
    /// Attempts after a failed migration that left the domain running on its source.
    pub migrate_retries: u32,
    /// Wait before the first of them; doubled for each next one.
    pub migrate_backoff: Duration,
    /// Plan and record, never migrate.
    pub dry_run: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            headroom_bytes: 512 << 20,
            max_per_source: 2,
            max_per_target: 1,
            backoff_max: Duration::from_secs(30),
            migrate_retries: 2,
            migrate_backoff: Duration::from_secs(5),
            dry_run: false,
        }
    }
}

/// Everything a job needs: the log, the executor, the inventory, metrics.
pub struct Engine {
    log: Mutex<JobLog>,
    pub executor: Executor,
    pub inventory: Inventory,
    pub metrics: Metrics,
    pub settings: Settings,
    limits: Limiter,
    events: Option<mpsc::UnboundedSender<Event>>,
    /// Whether the job log takes writes.
    pub health: super::store::Health,
    phase: tokio::sync::watch::Sender<Phase>,
    /// Steps whose migration has started and whose end is not recorded yet,
    /// with their child's pid (command executors).
    active: Mutex<HashMap<i64, Option<u32>>>,
    active_changed: tokio::sync::Notify,
    stop: Mutex<phase::Counts>,
}

impl Engine {
    /// An engine over an open job log.
    pub fn new(
        log: JobLog,
        executor: Executor,
        inventory: Inventory,
        metrics: Metrics,
        settings: Settings,
        events: Option<mpsc::UnboundedSender<Event>>,
    ) -> Self {
        Engine {
            log: Mutex::new(log),
            executor,
            inventory,
            metrics,
            settings,
            limits: Limiter::default(),
            events,
            health: Default::default(),
            phase: tokio::sync::watch::Sender::new(Phase::Running),
            active: Mutex::new(HashMap::new()),
            active_changed: tokio::sync::Notify::new(),
            stop: Mutex::new(phase::Counts::default()),
        }
    }

    fn emit(&self, e: Event) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }

    /// Starts every unfinished job of a previous run in the background.
    pub fn recover(self: &Arc<Self>) -> Result<usize, DbError> {
        let jobs = self.db(|l| l.unfinished_jobs())?;
        for j in &jobs {
            log::info!(
                "resuming job {} (host {}, state {}) from a previous run",
                j.id,
                j.host,
                j.state
            );
            let e = self.clone();
            let id = j.id;
            tokio::spawn(async move { e.run_job(id, None).await });
        }
        Ok(jobs.len())
    }

    /// Plans (if not yet planned) and runs one job to its end; returns its final state.
    pub async fn run_job(self: Arc<Self>, id: i64, only_targets: Option<Vec<String>>) -> String {
        match self.clone().run_job_inner(id, only_targets).await {
            Ok(s) => s,
            // Stopping: the job stays as recorded; the next start resumes it.
            Err(e) if self.stopping() => {
                log::info!("job {id}: left for the next start: {e}");
                "stopped".into()
            }
            Err(e) => {
                log::error!("job {id}: {e}");
                let _ = self.write(|l| l.set_job_state(id, "failed", &e)).await;
                self.metrics.failed.inc();
                self.emit(Event::Finished {
                    job: id,
                    state: "failed".into(),
                    reason: e,
                });
                "failed".into()
            }
        }
    }

    async fn run_job_inner(
        self: Arc<Self>,
        id: i64,
        only_targets: Option<Vec<String>>,
    ) -> Result<String, String> {
        let job = self
            .db(|l| l.job(id))?
            .ok_or_else(|| format!("no job {id}"))?;
        let mut steps = job.steps.clone().unwrap_or_default();
        if steps.is_empty() && matches!(job.state.as_str(), "pending" | "waiting") {
            let Some(source) = self.plan_job(id, &job.host, only_targets).await? else {
                return Ok("cancelled".into());
            };
            if job.dry_run || self.settings.dry_run {
                let why = format!("dry run; {source}");
                self.write(|l| l.set_job_state(id, "planned", &why)).await?;
                self.emit(Event::Finished {
                    job: id,
                    state: "planned".into(),
                    reason: "dry run".into(),
                });
                return Ok("planned".into());
            }
            let why = format!("planned from {source}");
            self.write(|l| l.set_job_state(id, "running", &why)).await?;
            steps = self.db(|l| l.steps(id))?;
        }
        // Steps a previous run left claimed or running: find their domains first.
        let mut pending = Vec::new();
        for mut s in steps {
            match s.state.as_str() {
                "planned" => pending.push(s),
                "claimed" | "running" if self.recover_step(&s).await => {
                    s.state = "planned".into();
                    pending.push(s);
                }
                _ => {}
            }
        }
        pending.sort_by_key(|s| s.id);
        // Start steps in plan order as the per-source and per-target limits allow.
        let mut tasks = tokio::task::JoinSet::new();
        let st = &self.settings;
        let mut phase = self.phase.subscribe();
        while !pending.is_empty() || !tasks.is_empty() {
            let freed = self.limits.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.stopping() {
                // A graceful stop starts no step; they stay planned.
                pending.clear();
            }
            let mut i = 0;
            while i < pending.len() {
                let Some(target) = pending[i].target.clone() else {
                    pending.remove(i);
                    continue;
                };
                let source = pending[i].source.clone();
                if self
                    .limits
                    .try_acquire(&source, &target, st.max_per_source, st.max_per_target)
                {
                    let s = pending.remove(i);
                    let e = self.clone();
                    let starts = job.starts_at_unix;
                    tasks.spawn(async move {
                        e.claimed_step(&s, &target, starts).await;
                        e.limits.release(&s.source, &target);
                    });
                } else {
                    i += 1;
                }
            }
            tokio::select! {
                r = tasks.join_next(), if !tasks.is_empty() => {
                    if let Some(Err(e)) = r {
                        log::error!("job {id}: a step task died: {e}");
                    }
                }
                _ = &mut freed, if !pending.is_empty() => {}
                _ = phase.wait_for(|p| *p != Phase::Running), if !pending.is_empty() => {}
            }
        }
        if self.stopping() {
            let open = self
                .db(|l| l.steps(id))?
                .iter()
                .any(|s| matches!(s.state.as_str(), "planned" | "claimed" | "running"));
            if open {
                return Err("stopped by a shutdown before its last step".into());
            }
        }
        self.finish_job(id).await
    }

    /// Plans a job; `None` when its alert resolved while waiting.
    async fn plan_job(
        &self,
        id: i64,
        host: &str,
        only_targets: Option<Vec<String>>,
    ) -> Result<Option<String>, String> {
        let mut backoff = Duration::from_millis(500);
        let view = loop {
            if self.db(|l| l.is_resolved(id))? {
                return Ok(None);
            }
            let why = match self.inventory.view().await {
                // A view with no host but the source cannot place anything; it is
                // usually a Prometheus that has not scraped the others yet: wait.
                Ok(v) if v.hosts.contains_key(host) && v.hosts.len() > 1 => break v,
                Ok(v) if v.hosts.contains_key(host) => {
                    format!("no host other than {host} is visible in {} yet", v.source)
                }
                Ok(v) => format!("host {host} is not visible in {}", v.source),
                Err(e) => e.to_string(),
            };
            log::warn!("job {id}: waiting: {why}; retrying in {backoff:?}");
            self.write(|l| l.set_job_state(id, "waiting", &why)).await?;
            self.emit(Event::Waiting {
                job: id,
                reason: why,
            });
            if !self.sleep_unless_stopping(backoff).await {
                return Err("stopped by a shutdown while waiting".into());
            }
            backoff = (backoff * 2).min(self.settings.backoff_max);
        };
        let cfg = PlanConfig {
            headroom_bytes: self.settings.headroom_bytes,
            only_targets,
        };
        let mut plan = planner::plan(host, &view, &cfg);
        if matches!(self.executor, Executor::Command(_)) {
            for s in &mut plan {
                if !executor::safe_name(&s.domain) {
                    s.target = Err(format!(
                        "refusing to pass the domain name {:?} to a command",
                        s.domain
                    ));
                }
            }
        }
        let unplaced = plan.iter().filter(|s| s.target.is_err()).count();
        self.metrics.unplaced.inc_by(unplaced as u64);
        self.write(|l| l.add_steps(id, &plan)).await?;
        if self.settings.dry_run {
            for p in &plan {
                match &p.target {
                    Ok(t) => log::info!("job {id}: dry run: {} {host} -> {t}", p.domain),
                    Err(r) => log::info!("job {id}: dry run: {} stays: {r}", p.domain),
                }
            }
        } else {
            self.metrics.started.inc();
        }
        self.emit(Event::Planned {
            job: id,
            source: host.into(),
            steps: plan.iter().map(events::planned).collect(),
        });
        log::info!(
            "job {id}: evacuating {host}: {} domain(s), {unplaced} without room; from {}",
            plan.len(),
            view.source
        );
        Ok(Some(view.source))
    }

    async fn finish_job(&self, id: i64) -> Result<String, String> {
        let steps = self.db(|l| l.steps(id))?;
        let resolved = self.db(|l| l.is_resolved(id))?;
        let n = |st: &str| steps.iter().filter(|s| s.state == st).count();
        let (done, failed, cancelled) = (n("done"), n("failed"), n("cancelled"));
        let state = if failed > 0 {
            "failed"
        } else if resolved && cancelled > 0 {
            "cancelled"
        } else {
            "done"
        };
        let mut reason = format!("{done} done, {failed} failed, {cancelled} cancelled");
        if steps.is_empty() {
            reason = "no domains on the host".into();
        }
        if resolved {
            reason.push_str("; alert resolved");
        }
        self.write(|l| l.set_job_state(id, state, &reason)).await?;
        match state {
            "failed" => self.metrics.failed.inc(),
            "done" => self.metrics.succeeded.inc(),
            _ => {}
        }
        log::info!("job {id}: {state}: {reason}");
        self.emit(Event::Finished {
            job: id,
            state: state.into(),
            reason,
        });
        Ok(state.into())
    }
}
