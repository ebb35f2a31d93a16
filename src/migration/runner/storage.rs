//! The engine's access to the job log: reads ([`Engine::db`]), writes that
//! check the file is still the one opened and fail fast
//! ([`Engine::try_write`], for the receiver: a 503), writes that wait out a
//! storage fault and then go through ([`Engine::write`], for running jobs:
//! their progress is kept, not dropped), and the watch that notices faults
//! and recoveries when nothing writes ([`Engine::watch_store`]).

use std::sync::Arc;
use std::time::Duration;

use super::{DbError, Engine, Phase};
use crate::migration::joblog::JobLog;
use crate::migration::store;

/// How often a waiting write is tried again, and the watch looks.
pub const STORE_RETRY: Duration = Duration::from_secs(1);

impl Engine {
    /// Runs `f` on the job log (short, synchronous transactions). A storage
    /// failure marks the store down.
    pub fn db<R>(&self, f: impl FnOnce(&mut JobLog) -> rusqlite::Result<R>) -> Result<R, DbError> {
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut l).map_err(|e| self.classify(e))
    }

    fn classify(&self, e: rusqlite::Error) -> DbError {
        match store::fault(&e) {
            Some(what) => {
                let why = format!("{what} ({e})");
                self.health.set_down(&why, false);
                DbError::Unavailable(why)
            }
            None => DbError::Sql(e),
        }
    }

    /// A write, after checking the log's file is still the one opened (never
    /// into an unlinked file). Fails at once when the store is down.
    pub fn try_write<R>(
        &self,
        f: impl FnOnce(&mut JobLog) -> rusqlite::Result<R>,
    ) -> Result<R, DbError> {
        if self.health.is_permanent() {
            return Err(DbError::Unavailable(
                self.health.reason().unwrap_or_default(),
            ));
        }
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Err((why, permanent)) = store::check_file(&mut l) {
            self.health.set_down(&why, permanent);
            return Err(DbError::Unavailable(why));
        }
        let r = f(&mut l).map_err(|e| self.classify(e))?;
        self.health.set_up();
        Ok(r)
    }

    /// A write that waits while the store is down (trying again every
    /// [`STORE_RETRY`]) and then goes through; it gives up only when a
    /// shutdown's grace period ends (the next start recovers from what was
    /// recorded).
    pub async fn write<R>(
        &self,
        mut f: impl FnMut(&mut JobLog) -> rusqlite::Result<R>,
    ) -> Result<R, DbError> {
        let mut phase = self.phase.subscribe();
        loop {
            match self.try_write(&mut f) {
                Err(DbError::Unavailable(why)) => {
                    if *phase.borrow() == Phase::Aborting {
                        return Err(DbError::Unavailable(why));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(STORE_RETRY) => {}
                        _ = phase.wait_for(|p| *p == Phase::Aborting) => {}
                    }
                }
                other => return other,
            }
        }
    }

    /// Watches the store in the background: every [`STORE_RETRY`], checks the
    /// log's file is still there (restoring a removed one) and, while the
    /// store is down, tries a small write so it comes back up (and alerts are
    /// accepted again) without waiting for a job to write.
    pub fn watch_store(self: &Arc<Self>) {
        let e = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(STORE_RETRY).await;
                let Some(e) = e.upgrade() else { return };
                if e.health.reason().is_some() {
                    let _ = e.try_write(|l| l.probe());
                } else {
                    let mut l = e.log.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err((why, permanent)) = store::check_file(&mut l) {
                        e.health.set_down(&why, permanent);
                    }
                }
            }
        });
    }
}
