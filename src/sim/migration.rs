//! Pre-copy live migration as data: a migration's identity, its phase and
//! its state as seen from outside. [`super::cluster`] runs them.

use std::time::Duration;

/// Bucket bounds (seconds) of the migration duration histograms.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Bucket bounds (seconds) of the migration downtime histograms.
pub const DOWNTIME_BUCKETS: [f64; 9] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Identifies one migration of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MigrationId(pub u64);

/// Where a migration is.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrationState {
    /// Pre-copy round `round` (0 sends all memory), or the stop-and-copy
    /// (`stop_and_copy`, domain paused); `remaining_bytes` are still to send
    /// in this round.
    Running {
        round: u32,
        remaining_bytes: u64,
        stop_and_copy: bool,
    },
    /// Resumed on the target.
    Done {
        duration: Duration,
        downtime: Duration,
    },
    /// Abandoned; the reason names the host that died.
    Failed(String),
}

/// A migration as seen from outside.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationStatus {
    pub id: MigrationId,
    pub domain: String,
    pub from: String,
    pub to: String,
    /// Simulated time it started.
    pub started: Duration,
    pub state: MigrationState,
}

#[derive(Debug, Clone)]
pub(super) enum Phase {
    /// Pre-copy round `round` of `bytes`, `sent` of them so far.
    PreCopy {
        round: u32,
        bytes: u64,
        sent: f64,
    },
    /// Paused; `rest` bytes to send, `left` seconds until resumption.
    StopAndCopy {
        round: u32,
        rest: u64,
        left: f64,
        downtime: f64,
    },
    Over(MigrationState),
}

#[derive(Debug, Clone)]
pub(super) struct Migration {
    pub(super) id: MigrationId,
    pub(super) domain: String,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) started: Duration,
    pub(super) bandwidth: f64,
    pub(super) phase: Phase,
}
