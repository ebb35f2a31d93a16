//! How many migrations run at once out of each source and into each target.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

/// Counts of running migrations per source and per target host.
#[derive(Default)]
pub(super) struct Limiter {
    counts: Mutex<(HashMap<String, usize>, HashMap<String, usize>)>,
    pub(super) freed: Notify,
}

impl Limiter {
    /// Takes a slot for `source` and `target` if both have one free.
    pub(super) fn try_acquire(
        &self,
        source: &str,
        target: &str,
        max_s: usize,
        max_t: usize,
    ) -> bool {
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

    pub(super) fn release(&self, source: &str, target: &str) {
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
