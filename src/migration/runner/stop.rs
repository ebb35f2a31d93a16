//! The graceful stop (SIGTERM): no new alerts or steps, the migrations in
//! flight finish within a grace period and are recorded as usual, what is
//! left stays in the job log for the next start; past the grace period the
//! children are killed and their steps recorded as interrupted (the next start
//! locates their domains, as after a SIGKILL).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Engine;
use super::phase::{Phase, StopReport};
use crate::migration::executor;

impl Engine {
    /// True once a stop has begun.
    pub fn stopping(&self) -> bool {
        *self.phase.borrow() != Phase::Running
    }

    /// True once the grace period is over.
    pub(super) fn aborting(&self) -> bool {
        *self.phase.borrow() == Phase::Aborting
    }

    /// Sleeps `d`; false when a stop began meanwhile.
    pub(super) async fn sleep_unless_stopping(&self, d: Duration) -> bool {
        let mut p = self.phase.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.stopping(),
            _ = p.wait_for(|p| *p != Phase::Running) => false,
        }
    }

    /// Resolves when the grace period is over.
    pub(super) async fn aborted(&self) {
        let mut p = self.phase.subscribe();
        let _ = p.wait_for(|p| *p == Phase::Aborting).await;
    }

    /// A step's migration started (`pid`: its child, a process group leader).
    pub(super) fn step_started(&self, step: i64, pid: Option<u32>) {
        self.lock_active().insert(step, pid);
    }

    /// A step's migration ended; `recorded`: and its end is in the log.
    pub(super) fn step_ended(&self, step: i64, recorded: bool) {
        if self.lock_active().remove(&step).is_some() && self.stopping() {
            let mut c = self.stop.lock().unwrap_or_else(|e| e.into_inner());
            if recorded {
                c.finished += 1;
            } else {
                c.interrupted += 1;
            }
        }
        self.active_changed.notify_waiters();
    }

    /// A step has no migration running (between attempts, or released).
    pub(super) fn step_idle(&self, step: i64) {
        self.lock_active().remove(&step);
        self.active_changed.notify_waiters();
    }

    fn lock_active(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, Option<u32>>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn until_idle(&self) {
        loop {
            let changed = self.active_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.lock_active().is_empty() {
                return;
            }
            changed.await;
        }
    }

    /// Ends the grace period now (a second signal).
    pub fn abort(&self) {
        self.phase.send_replace(Phase::Aborting);
    }

    /// Stops gracefully: refuses new work, waits up to `grace` for the
    /// migrations in flight, then kills what is left; records in each
    /// unfinished job's reason what stays for the next start.
    pub async fn graceful_stop(self: &Arc<Self>, grace: Duration) -> StopReport {
        let t0 = Instant::now();
        self.phase.send_if_modified(|p| {
            let was = *p == Phase::Running;
            if was {
                *p = Phase::Draining;
            }
            was
        });
        let n = self.lock_active().len();
        log::info!(
            "stopping: accepting no new alerts and starting no new step; waiting up to \
             {grace:?} for {n} migration(s) in flight"
        );
        let mut phase = self.phase.subscribe();
        let expired = tokio::select! {
            r = tokio::time::timeout(grace, self.until_idle()) => r.is_err(),
            _ = phase.wait_for(|p| *p == Phase::Aborting) => true,
        };
        if expired {
            let left: Vec<(i64, Option<u32>)> =
                self.lock_active().iter().map(|(k, v)| (*k, *v)).collect();
            log::warn!(
                "stopping: the grace period ({grace:?}) is over; killing {} migration(s) in \
                 flight (steps {:?}); the next start locates their domains",
                left.len(),
                left.iter().map(|(s, _)| *s).collect::<Vec<_>>()
            );
            // Each step task kills its child's group and records the interruption.
            self.abort();
            if tokio::time::timeout(Duration::from_secs(10), self.until_idle())
                .await
                .is_err()
            {
                for (_, pid) in &left {
                    if let Some(p) = pid {
                        executor::kill_group(*p).await;
                    }
                }
            }
        }
        // Let the jobs' tasks notice and leave their state as recorded.
        tokio::task::yield_now().await;
        let (pending, jobs) = self.note_unfinished_jobs();
        let c = self.stop.lock().unwrap_or_else(|e| e.into_inner());
        let r = StopReport {
            finished: c.finished,
            interrupted: c.interrupted,
            pending,
            jobs,
            took: t0.elapsed(),
        };
        log::info!(
            "stopped in {:.1?}: {} step(s) finished during the grace period, {} interrupted, \
             {} not started; {} job(s) resume at the next start",
            r.took,
            r.finished,
            r.interrupted,
            r.pending,
            r.jobs
        );
        r
    }

    /// Writes into each unfinished job's reason what a stop left; returns
    /// (planned steps, jobs).
    fn note_unfinished_jobs(&self) -> (usize, usize) {
        let jobs = match self.db(|l| l.unfinished_jobs()) {
            Ok(j) => j,
            Err(e) => {
                log::error!("stopping: cannot list the unfinished jobs: {e}");
                return (0, 0);
            }
        };
        let mut pending = 0;
        for j in &jobs {
            let steps = self.db(|l| l.steps(j.id)).unwrap_or_default();
            let n = |st: &str| steps.iter().filter(|s| s.state == st).count();
            let (done, planned) = (n("done"), n("planned"));
            let open = n("claimed") + n("running");
            pending += planned;
            let was = j.reason.rsplit("; was: ").next().unwrap_or(&j.reason);
            let why = format!(
                "stopped by a shutdown ({done} step(s) done, {planned} not started, {open} \
                 interrupted); resumes at the next start; was: {was}"
            );
            if let Err(e) = self.try_write(|l| l.set_job_reason(j.id, &why)) {
                log::error!("stopping: job {}: {e}", j.id);
            }
        }
        (pending, jobs.len())
    }
}
