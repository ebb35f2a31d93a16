//! Resuming a step a previous run left claimed or running: its orphaned
//! child is awaited, then the domain is looked for, so no domain migrates
//! twice.

use std::time::Duration;

use super::Engine;
use crate::migration::executor::{self, Executor};
use crate::migration::joblog::{Step, StepEnd};

impl Engine {
    /// A step a previous run left claimed or running: wait for its orphaned
    /// child, then find the domain. True when it should run (again).
    pub(super) async fn recover_step(&self, s: &Step) -> bool {
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
                    self.end_step(s, end("done", why)).await;
                    return false;
                }
                Ok(false) => {}
                Err(e) => {
                    self.end_step(s, end("failed", format!("after a restart: {e}")))
                        .await;
                    return false;
                }
            }
        }
        match ex.is_on(&s.domain, &s.source).await {
            Ok(true) => {
                let why = format!("still on {} after a restart: migrating again", s.source);
                match self.write(|l| l.requeue(s.id, &why)).await {
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
                self.end_step(s, end("failed", why)).await;
                false
            }
            Ok(false) => {
                let why = format!(
                    "after a restart, no longer on {}: taken as moved by the interrupted \
                     migration (the locate command cannot ask {target})",
                    s.source
                );
                self.end_step(s, end("done", why)).await;
                false
            }
            Err(e) => {
                self.end_step(s, end("failed", format!("after a restart: {e}")))
                    .await;
                false
            }
        }
    }
}
