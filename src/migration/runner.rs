//! The job runner shared by `xentinel webhook` and `xentinel evacuate`: plans
//! a job (waiting with backoff while its inventory is unreachable), records
//! the plan, then runs each step under per-source and per-target limits,
//! claiming its domain in the job log first. [`Engine::recover`] resumes the
//! unfinished jobs of a previous run without migrating any domain twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use super::executor::{self, Executor, Outcome, SourceState, StepSpec};
use super::joblog::{Claim, JobLog, NewStep, Step, StepEnd};
use super::metrics::Metrics;
use super::planner::{self, Inventory, PlanConfig};

/// The job log failed (SQLite).
#[derive(Debug, thiserror::Error)]
#[error("job log: {0}")]
pub struct DbError(#[source] pub rusqlite::Error);

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

/// Progress of a job, for `xentinel evacuate`'s display.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Waiting {
        job: i64,
        reason: String,
    },
    Planned {
        job: i64,
        source: String,
        steps: Vec<PlannedStep>,
    },
    Step {
        job: i64,
        domain: String,
        target: Option<String>,
        state: String,
        progress: f64,
        reason: String,
    },
    Finished {
        job: i64,
        state: String,
        reason: String,
    },
}

/// One line of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub domain: String,
    pub memory_bytes: u64,
    pub target: Option<String>,
    pub reason: Option<String>,
}

/// Counts of running migrations per source and per target host.
#[derive(Default)]
struct Limiter {
    counts: Mutex<(HashMap<String, usize>, HashMap<String, usize>)>,
    freed: Notify,
}

impl Limiter {
    /// Takes a slot for `source` and `target` if both have one free.
    fn try_acquire(&self, source: &str, target: &str, max_s: usize, max_t: usize) -> bool {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let s = c.0.get(source).copied().unwrap_or(0);
        let t = c.1.get(target).copied().unwrap_or(0);
        if s < max_s.max(1) && t < max_t.max(1) {
            *c.0.entry(source.into()).or_default() += 1;
            *c.1.entry(target.into()).or_default() += 1;
            true
        } else {
            false
        }
    }

    fn release(&self, source: &str, target: &str) {
        {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = c.0.get_mut(source) {
                *n = n.saturating_sub(1);
            }
            if let Some(n) = c.1.get_mut(target) {
                *n = n.saturating_sub(1);
            }
        }
        self.freed.notify_waiters();
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
        }
    }

    /// Runs `f` on the job log (short, synchronous transactions).
    pub fn db<R>(&self, f: impl FnOnce(&mut JobLog) -> rusqlite::Result<R>) -> Result<R, DbError> {
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut l).map_err(DbError)
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
            Err(e) => {
                log::error!("job {id}: {e}");
                let _ = self.db(|l| l.set_job_state(id, "failed", &e));
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
                self.db(|l| l.set_job_state(id, "planned", &format!("dry run; {source}")))?;
                self.emit(Event::Finished {
                    job: id,
                    state: "planned".into(),
                    reason: "dry run".into(),
                });
                return Ok("planned".into());
            }
            self.db(|l| l.set_job_state(id, "running", &format!("planned from {source}")))?;
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
        while !pending.is_empty() || !tasks.is_empty() {
            let freed = self.limits.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
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
            }
        }
        self.finish_job(id)
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
            self.db(|l| l.set_job_state(id, "waiting", &why))?;
            self.emit(Event::Waiting {
                job: id,
                reason: why,
            });
            tokio::time::sleep(backoff).await;
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
        self.db(|l| l.add_steps(id, &plan))?;
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
            steps: plan.iter().map(planned).collect(),
        });
        log::info!(
            "job {id}: evacuating {host}: {} domain(s), {unplaced} without room; from {}",
            plan.len(),
            view.source
        );
        Ok(Some(view.source))
    }

    fn step_event(&self, s: &Step, state: &str, progress: f64, reason: &str) {
        self.emit(Event::Step {
            job: s.job_id,
            domain: s.domain.clone(),
            target: s.target.clone(),
            state: state.into(),
            progress,
            reason: reason.into(),
        });
    }

    fn end_step(&self, s: &Step, end: StepEnd) {
        if end.state != "done" || !end.reason.is_empty() {
            log::info!(
                "step {} ({}): {}: {}",
                s.id,
                s.domain,
                end.state,
                end.reason
            );
        }
        if let Err(e) = self.db(|l| l.finish_step(s.id, &end)) {
            log::error!("step {} ({}): {e}", s.id, s.domain);
        }
        let p = if end.state == "done" { 1.0 } else { 0.0 };
        self.step_event(s, end.state, p, &end.reason);
    }

    async fn claimed_step(&self, s: &Step, target: &str, starts_at_unix: f64) {
        let end = |state, reason: String| StepEnd {
            state,
            reason,
            ..Default::default()
        };
        match self.db(|l| l.claim(s.id)) {
            Ok(Claim::Claimed) => {}
            Ok(Claim::NotPlanned(state)) => {
                self.step_event(s, &state, 0.0, "");
                return;
            }
            Ok(Claim::HeldBy(job)) => {
                let why = format!("domain is being migrated by job {job}");
                return self.end_step(s, end("cancelled", why));
            }
            Err(e) => return self.end_step(s, end("failed", e.to_string())),
        }
        match self.executor.is_on(&s.domain, &s.source).await {
            Ok(true) => {}
            Ok(false) => {
                let why = format!("no longer on {}: nothing to do", s.source);
                return self.end_step(s, end("cancelled", why));
            }
            Err(e) => return self.end_step(s, end("failed", e.to_string())),
        }
        // A crashed or shut-down domain cannot move (`xl migrate` of a crashed
        // domain hangs until the timeout on Xen 4.17): fail now, and count it.
        match self.executor.state(&s.domain, &s.source).await {
            Ok((st @ (SourceState::Crashed | SourceState::Shutdown | SourceState::Gone), seen)) => {
                self.metrics
                    .domain_faults
                    .with_label_values(&[st.name()])
                    .inc();
                let why = format!("{} on {} ({seen}): not migrated", st.name(), s.source);
                return self.end_step(s, end("failed", why));
            }
            Ok(_) => {}
            Err(e) => log::warn!(
                "step {} ({}): migrating without its state: {e}",
                s.id,
                s.domain
            ),
        }
        let spec = StepSpec {
            id: s.id,
            domain: s.domain.clone(),
            source: s.source.clone(),
            target: target.into(),
            memory_bytes: s.memory_bytes,
        };
        // Attempts: after a failure, `after_failure` finds the domain on its
        // source and says whether to try again; `notes` is what the log shows.
        let (mut notes, mut tails) = (Vec::<String>::new(), String::new());
        let mut attempt = 1;
        let mut failed_before: Option<Option<f64>> = None; // the last failed attempt's duration
        let (out, failure) = loop {
            let started = match self.executor.start(&spec).await {
                Ok(st) => st,
                Err(e) => {
                    if let Some(d) = failed_before {
                        self.metrics.observe_migration(false, d, None);
                    }
                    notes.push(e);
                    return self.end_step(s, end("failed", notes.join("; ")));
                }
            };
            match self.db(|l| l.mark_running(s.id, started.pid())) {
                Ok(Some(first)) => self
                    .metrics
                    .alert_to_start
                    .observe((first - starts_at_unix).max(0.0)),
                Ok(None) => {}
                Err(e) => log::error!("step {}: {e}", s.id),
            }
            self.metrics.in_flight.inc();
            self.step_event(s, "running", 0.0, "");
            let out = started.wait(|p| self.step_event(s, "running", p, "")).await;
            self.metrics.in_flight.dec();
            if !out.stderr_tail.is_empty() {
                tails.push_str(&format!("--- attempt {attempt}\n{}", out.stderr_tail));
            }
            if out.ok {
                if attempt > 1 {
                    notes.push(format!("done on attempt {attempt}"));
                }
                break (out, None);
            }
            match self.after_failure(s, &out, attempt).await {
                Ok(note) => {
                    let wait = self
                        .settings
                        .migrate_backoff
                        .saturating_mul(1 << (attempt - 1).min(16))
                        .min(self.settings.backoff_max);
                    notes.push(format!("{note}; retrying in {wait:?}"));
                    log::warn!("step {} ({}): {}", s.id, s.domain, notes.join("; "));
                    if let Err(e) = self.db(|l| l.retry_step(s.id, &notes.join("; "))) {
                        log::error!("step {}: {e}", s.id);
                    }
                    tokio::time::sleep(wait).await;
                    failed_before = Some(out.duration);
                    attempt += 1;
                }
                Err(reason) => break (out, Some(reason)),
            }
        };
        self.metrics
            .observe_migration(out.ok, out.duration, out.downtime);
        log::info!(
            "step {} {} {} -> {}: {}",
            s.id,
            s.domain,
            s.source,
            target,
            failure.as_deref().unwrap_or("done")
        );
        notes.extend(failure);
        let cut = tails.len().saturating_sub(executor::STDERR_TAIL);
        let cut = (cut..tails.len())
            .find(|&i| tails.is_char_boundary(i))
            .unwrap_or(0);
        self.end_step(
            s,
            StepEnd {
                state: if out.ok { "done" } else { "failed" },
                reason: notes.join("; "),
                duration: out.duration,
                downtime: out.downtime,
                stderr_tail: if attempt > 1 {
                    tails[cut..].to_string()
                } else {
                    out.stderr_tail
                },
            },
        );
    }

    /// A migration attempt failed: finds the domain on its source. `Ok(note)`:
    /// it runs there (resumed if it was paused), try again; `Err(reason)`: the
    /// step fails (retries used up, a timeout, or the domain crashed, shut
    /// down or gone, which `domain_faults` counts for the alert).
    async fn after_failure(&self, s: &Step, out: &Outcome, attempt: u32) -> Result<String, String> {
        let why = format!("attempt {attempt}: {}", out.reason);
        let (state, seen) = match self.executor.state(&s.domain, &s.source).await {
            Ok(x) => x,
            Err(e) => return Err(format!("{why}; cannot tell how {} is: {e}", s.domain)),
        };
        let mut note = format!("{why}; {} on {} ({seen})", state.name(), s.source);
        match state {
            SourceState::Running => {}
            SourceState::Paused => match self.resume(s).await {
                Ok(()) => {
                    self.metrics.resumed.inc();
                    note.push_str(": resumed");
                }
                Err(e) => {
                    self.metrics
                        .domain_faults
                        .with_label_values(&["paused"])
                        .inc();
                    return Err(format!("{note}: resume failed: {e}"));
                }
            },
            other => {
                self.metrics
                    .domain_faults
                    .with_label_values(&[other.name()])
                    .inc();
                return Err(note);
            }
        }
        if out.timed_out || attempt > self.settings.migrate_retries {
            let why = if out.timed_out {
                "not retried after a timeout"
            } else {
                "no retries left"
            };
            return Err(format!("{note}; {why}"));
        }
        self.metrics.retries.inc();
        Ok(note)
    }

    /// Unpauses a step's domain on its source and checks that it runs (`xl
    /// unpause` exits 0 even when it could not unpause).
    async fn resume(&self, s: &Step) -> Result<(), String> {
        self.executor.resume(&s.domain, &s.source).await?;
        match self.executor.state(&s.domain, &s.source).await? {
            (SourceState::Running, _) => Ok(()),
            (st, seen) => Err(format!("still {} after resuming ({seen})", st.name())),
        }
    }

    /// A step a previous run left claimed or running: wait for its orphaned
    /// child, then find the domain. True when it should run (again).
    async fn recover_step(&self, s: &Step) -> bool {
        // Wait for the previous run's child: by recorded pid, or (if it died
        // before recording one) by the processes holding the step's stderr file.
        let stderr = match &self.executor {
            Executor::Command(c) => Some(executor::stderr_path(&c.state_dir, s.id)),
            Executor::Sim { .. } => None,
        };
        let alive = || {
            let by_pid = match (s.pid, s.pid_start.as_deref()) {
                (Some(pid), Some(start)) if executor::still_running(pid, start) => vec![pid],
                _ => vec![],
            };
            let by_file = stderr
                .as_deref()
                .map(executor::stderr_holders)
                .unwrap_or_default();
            [by_pid, by_file].concat()
        };
        let t0 = std::time::Instant::now();
        loop {
            let pids = alive();
            if pids.is_empty() {
                break;
            }
            if t0.elapsed() > self.executor.timeout() {
                log::warn!(
                    "step {}: orphaned migration {pids:?} timed out; killing",
                    s.id
                );
                for p in pids {
                    executor::kill_group(p).await;
                    executor::kill_pid(p).await;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let tail = stderr
            .as_deref()
            .map(executor::take_tail)
            .unwrap_or_default();
        let target = s.target.clone().unwrap_or_default();
        let end = |state, reason: String| StepEnd {
            state,
            reason,
            stderr_tail: tail.clone(),
            ..Default::default()
        };
        let ex = &self.executor;
        log::info!(
            "step {} ({}): left {} by a previous run; locating it",
            s.id,
            s.domain,
            s.state
        );
        if ex.locates_any_host() {
            match ex.is_on(&s.domain, &target).await {
                Ok(true) => {
                    let why = format!("found on {target} after a restart");
                    self.end_step(s, end("done", why));
                    return false;
                }
                Ok(false) => {}
                Err(e) => {
                    self.end_step(s, end("failed", format!("after a restart: {e}")));
                    return false;
                }
            }
        }
        match ex.is_on(&s.domain, &s.source).await {
            Ok(true) => {
                let why = format!("still on {} after a restart: migrating again", s.source);
                match self.db(|l| l.requeue(s.id, &why)) {
                    Ok(()) => true,
                    Err(e) => {
                        log::error!("step {}: {e}", s.id);
                        false
                    }
                }
            }
            Ok(false) if ex.locates_any_host() => {
                let why = format!(
                    "after a restart, found neither on {} nor on {target}",
                    s.source
                );
                self.end_step(s, end("failed", why));
                false
            }
            Ok(false) => {
                let why = format!(
                    "after a restart, no longer on {}: taken as moved by the interrupted \
                     migration (the locate command cannot ask {target})",
                    s.source
                );
                self.end_step(s, end("done", why));
                false
            }
            Err(e) => {
                self.end_step(s, end("failed", format!("after a restart: {e}")));
                false
            }
        }
    }

    fn finish_job(&self, id: i64) -> Result<String, String> {
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
        self.db(|l| l.set_job_state(id, state, &reason))?;
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

fn planned(s: &NewStep) -> PlannedStep {
    PlannedStep {
        domain: s.domain.clone(),
        memory_bytes: s.memory_bytes,
        target: s.target.as_ref().ok().cloned(),
        reason: s.target.as_ref().err().cloned(),
    }
}
