//! Sources of host and domain data, behind one trait: every [`Source`] of
//! the crate lives here.
//!
//! A [`Source`] adds what it knows to a [`Collection`]; the collector runs
//! every source of an exporter once per scrape, times it, and records whether
//! it succeeded. The rest of the code never knows which sources it reads.
//!
//! - [`xen`]: libxenstat (the only `unsafe`, in `xen::ffi`).
//! - [`xenstore`]: names, UUIDs, memory targets, guest reports.
//! - [`host`]: dom0's health and the warning-failure signals.
//! - [`sim`]: one host of the modelled cluster (`crate::sim`).
//! - [`heartbeat`]: the UDP mesh between exporters.
//! - [`probe`]: each domain's service probe.

pub mod xen;

use std::future::Future;
use std::pin::Pin;

use crate::snapshot::{Collection, Snapshot};

/// A boxed future, as returned by [`Source::collect`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a source could not collect; rendered as `xentinel_source_up{source} 0`
/// and logged once per change of state.
#[derive(Debug)]
pub struct SourceError(pub String);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceError {}

impl From<std::io::Error> for SourceError {
    fn from(e: std::io::Error) -> Self {
        SourceError(e.to_string())
    }
}

/// One origin of data for a host's snapshot.
pub trait Source: Send + Sync {
    /// The `source` label value, e.g. `xen`, `xenstore`, `host`, `sim`.
    fn name(&self) -> &'static str;

    /// Adds this source's data to `out`. On error, whatever was added is kept
    /// (a partial answer is still an answer) and the source is marked down.
    fn collect<'a>(&'a self, out: &'a mut Collection) -> BoxFuture<'a, Result<(), SourceError>>;

    /// Sees each merged snapshot once it is built (the probe source takes its
    /// targets from it). Must not block; the default ignores it.
    fn observe(&self, _snapshot: &Snapshot) {}
}

pub mod heartbeat;
pub mod host;
pub mod probe;
pub mod sim;
pub mod xenstore;
