//! One step of a job: claiming its domain, checking its state on the source,
//! migrating it (with retries after a failure that left it running there),
//! and recording how it ended.

use super::Engine;
use super::events::Event;
use crate::migration::executor::{self, Outcome, SourceState, StepSpec};
use crate::migration::joblog::{Claim, Step, StepEnd};

impl Engine {
    pub(super) fn step_event(&self, s: &Step, state: &str, progress: f64, reason: &str) {
        self.emit(Event::Step {
            job: s.job_id,
            domain: s.domain.clone(),
            target: s.target.clone(),
            state: state.into(),
            progress,
            reason: reason.into(),
        });
    }

    /// Records how a step ended (waiting out a storage fault); false when it
    /// could not be recorded before a shutdown's grace period ended.
    pub(super) async fn end_step(&self, s: &Step, end: StepEnd) -> bool {
        if end.state != "done" || !end.reason.is_empty() {
            log::info!(
                "step {} ({}): {}: {}",
                s.id,
                s.domain,
                end.state,
                end.reason
            );
        }
        let recorded = match self.write(|l| l.finish_step(s.id, &end)).await {
            Ok(()) => true,
            Err(e) => {
                log::error!(
                    "step {} ({}): not recorded ({e}); the next start locates the domain",
                    s.id,
                    s.domain
                );
                false
            }
        };
        self.step_ended(s.id, recorded);
        let p = if end.state == "done" { 1.0 } else { 0.0 };
        self.step_event(s, end.state, p, &end.reason);
        recorded
    }

    /// A claimed step that a stop keeps from (re)starting goes back to
    /// `planned`, for the next start.
    async fn release_for_stop(&self, s: &Step, why: &str) {
        log::info!("step {} ({}): {why}", s.id, s.domain);
        if let Err(e) = self.write(|l| l.release(s.id, why)).await {
            log::error!("step {}: {e}", s.id);
        }
        self.step_idle(s.id);
    }

    pub(super) async fn claimed_step(&self, s: &Step, target: &str, starts_at_unix: f64) {
        let end = |state, reason: String| StepEnd {
            state,
            reason,
            ..Default::default()
        };
        if self.stopping() {
            return;
        }
        match self.write(|l| l.claim(s.id)).await {
            Ok(Claim::Claimed) => {}
            Ok(Claim::NotPlanned(state)) => {
                self.step_event(s, &state, 0.0, "");
                return;
            }
            Ok(Claim::HeldBy(job)) => {
                let why = format!("domain is being migrated by job {job}");
                self.end_step(s, end("cancelled", why)).await;
                return;
            }
            // Not claimed (the store is gone for this run): it stays planned.
            Err(e) => return log::error!("step {} ({}): not started: {e}", s.id, s.domain),
        }
        match self.executor.is_on(&s.domain, &s.source).await {
            Ok(true) => {}
            Ok(false) => {
                let why = format!("no longer on {}: nothing to do", s.source);
                self.end_step(s, end("cancelled", why)).await;
                return;
            }
            Err(e) => {
                self.end_step(s, end("failed", e.to_string())).await;
                return;
            }
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
                self.end_step(s, end("failed", why)).await;
                return;
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
            if self.stopping() {
                let mut why = notes.join("; ");
                if !why.is_empty() {
                    why.push_str("; ");
                }
                why.push_str("not started: stopped by a shutdown (resumes at the next start)");
                return self.release_for_stop(s, &why).await;
            }
            let started = match self.executor.start(&spec).await {
                Ok(st) => st,
                Err(e) => {
                    if let Some(d) = failed_before {
                        self.metrics.observe_migration(false, d, None);
                    }
                    notes.push(e);
                    self.end_step(s, end("failed", notes.join("; "))).await;
                    return;
                }
            };
            let pid = started.pid();
            self.step_started(s.id, pid.as_ref().map(|p| p.0));
            match self.write(|l| l.mark_running(s.id, pid.clone())).await {
                Ok(Some(first)) => self
                    .metrics
                    .alert_to_start
                    .observe((first - starts_at_unix).max(0.0)),
                Ok(None) => {}
                Err(e) => log::error!("step {}: {e}", s.id),
            }
            self.metrics.in_flight.inc();
            self.step_event(s, "running", 0.0, "");
            let out = tokio::select! {
                biased;
                _ = self.aborted() => None,
                out = started.wait(|p| self.step_event(s, "running", p, "")) => Some(out),
            };
            self.metrics.in_flight.dec();
            // A failure once the grace period is over is the kill's doing, not the migration's.
            let out = out.filter(|o| o.ok || !self.aborting());
            let Some(out) = out else {
                // The grace period ended: the child (dropped) and its group are killed.
                if let Some((p, _)) = pid {
                    executor::kill_group(p).await;
                }
                let why = format!(
                    "interrupted during attempt {attempt}: killed when the shutdown's grace \
                     period ended; the next start locates the domain"
                );
                log::warn!("step {} ({}): {why}", s.id, s.domain);
                if let Err(e) = self.try_write(|l| l.interrupt_step(s.id, &why)) {
                    log::error!("step {}: {e}", s.id);
                }
                return self.step_ended(s.id, false);
            };
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
                    let why = notes.join("; ");
                    if let Err(e) = self.write(|l| l.retry_step(s.id, &why)).await {
                        log::error!("step {}: {e}", s.id);
                    }
                    self.step_idle(s.id);
                    self.sleep_unless_stopping(wait).await;
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
        )
        .await;
    }

    /// A migration attempt failed: finds the domain on its source. `Ok(note)`:
    /// it runs there (resumed if it was paused), try again; `Err(reason)`: the
    /// step fails (retries used up, a timeout, or the domain crashed, shut
    /// down or gone, which `domain_faults` counts for the alert).
    pub(super) async fn after_failure(
        &self,
        s: &Step,
        out: &Outcome,
        attempt: u32,
    ) -> Result<String, String> {
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
    pub(super) async fn resume(&self, s: &Step) -> Result<(), String> {
        self.executor.resume(&s.domain, &s.source).await?;
        match self.executor.state(&s.domain, &s.source).await? {
            (SourceState::Running, _) => Ok(()),
            (st, seen) => Err(format!("still {} after resuming ({seen})", st.name())),
        }
    }
}
