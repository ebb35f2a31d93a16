//! The engine's phase (running, draining, aborting) and what a graceful
//! stop counted and reports; the stop itself is in `stop`.

use std::time::Duration;

/// Where the engine is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Stopping: no new alerts or steps; running migrations finish.
    Draining,
    /// The grace period is over: running migrations are killed.
    Aborting,
}

#[derive(Debug, Default)]
pub(super) struct Counts {
    pub finished: usize,
    pub interrupted: usize,
}

/// What a graceful stop did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    /// Steps whose migration ended (and was recorded) during the grace period.
    pub finished: usize,
    /// Steps killed at the end of the grace period (resumed at the next start).
    pub interrupted: usize,
    /// Steps not started, left `planned` for the next start.
    pub pending: usize,
    /// Jobs left unfinished for the next start.
    pub jobs: usize,
    pub took: Duration,
}
