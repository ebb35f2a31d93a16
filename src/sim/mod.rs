//! The modelled Xen cluster: hosts, domains, workloads and pre-copy live
//! migration in simulated time, so `xentinel demo` runs on any laptop.
//!
//! Everything is a documented formula over documented parameters (see
//! `docs/simulator.md`); nothing is a canned number. A seed drives a small
//! PRNG ([`SplitMix64`]), so the same seed and the same sequence of
//! [`Cluster::step`] calls give identical collections.
//!
//! - [`params`]: the model's parameters (workloads, memory, pre-copy).
//! - [`formulas`]: the pure model (CPU, working-set walk and swap faults, pre-copy rounds).
//! - [`spec`]: the cluster description ([`ClusterSpec`]), loadable from YAML.
//! - [`migration`]: a pre-copy live migration as data (id, phase, state).
//! - [`cluster`]: the [`Cluster`] state advanced by [`Cluster::step`], and
//!   the migrations it runs.
//! - [`scenario`]: timed events ([`Scenario`]) applied to a cluster.
//! - [`shared`]: a [`SharedCluster`] stepped in real time by a background task.
//!
//! It depends on nothing above the snapshot: sources, the webhook's sim
//! executor and the demo read it (`crate::sources::sim` is one host of it
//! as a source).

pub mod cluster;
pub mod formulas;
pub mod migration;
pub mod params;
pub mod scenario;
pub mod shared;
pub mod spec;
mod units;

pub use cluster::{Cluster, HvCounters, LostDomain, SimDomain, SimHost};
pub use migration::{MigrationId, MigrationState, MigrationStatus};
pub use params::{MemoryParams, MigrationParams, PAGE_SIZE, Workload};
pub use scenario::{Action, Applied, Event, Scenario, WorkloadPatch};
pub use shared::{SharedCluster, spawn_stepper};
pub use spec::{ClusterSpec, DiskSpec, DomainSpec, HostSpec, NicSpec, SimParams};

/// Why a cluster operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    UnknownHost(String),
    UnknownDomain(String),
    /// The host has been killed.
    HostDown(String),
    /// The domain already has a migration in flight.
    AlreadyMigrating(String),
    /// Source and target are the same host.
    SameHost(String),
    /// The target lacks free memory for the domain.
    NoRoom {
        host: String,
        needed: u64,
        free: u64,
    },
    /// The spec is inconsistent (duplicate names, unknown host, zero sizes...).
    InvalidSpec(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::UnknownHost(h) => write!(f, "unknown host {h:?}"),
            SimError::UnknownDomain(d) => write!(f, "unknown domain {d:?}"),
            SimError::HostDown(h) => write!(f, "host {h:?} is down"),
            SimError::AlreadyMigrating(d) => write!(f, "domain {d:?} is already migrating"),
            SimError::SameHost(h) => write!(f, "domain is already on host {h:?}"),
            SimError::NoRoom { host, needed, free } => write!(
                f,
                "host {host:?} has {free} bytes free, the domain needs {needed}"
            ),
            SimError::InvalidSpec(m) => write!(f, "invalid cluster spec: {m}"),
        }
    }
}

impl std::error::Error for SimError {}

/// A YAML file that could not be read: where (file, line, column) and why
/// (serde's message, which names the field and its path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub origin: String,
    /// 1-based; 0 when the error has no location (I/O, empty input).
    pub line: usize,
    /// 1-based; 0 when the error has no location.
    pub column: usize,
    pub message: String,
}

impl YamlError {
    pub(crate) fn from_serde(origin: &str, e: serde_yaml_ng::Error) -> Self {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let mut message = e.to_string();
        // serde_yaml_ng appends " at line L column C"; we carry those separately.
        if let Some(i) = message.rfind(" at line ") {
            message.truncate(i);
        }
        // The path of the offending value, `.[0].action`, reads better as `[0].action`.
        if message.starts_with(".[") {
            message.remove(0);
        }
        YamlError {
            origin: origin.to_string(),
            line,
            column,
            message,
        }
    }

    pub(crate) fn io(origin: &str, e: impl std::fmt::Display) -> Self {
        YamlError {
            origin: origin.to_string(),
            line: 0,
            column: 0,
            message: e.to_string(),
        }
    }

    pub(crate) fn depth(origin: &str, e: crate::config::TooDeep) -> Self {
        YamlError {
            origin: origin.to_string(),
            line: e.line,
            column: 0,
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}: line {} column {}: {}",
                self.origin, self.line, self.column, self.message
            )
        } else {
            write!(f, "{}: {}", self.origin, self.message)
        }
    }
}

impl std::error::Error for YamlError {}

/// splitmix64 (Steele, Lea, Flood 2014): a tiny, fast, seedable PRNG; good
/// enough for noise in a model, not for cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A UUID (version-4 layout) derived from `name` and `seed`: FNV-1a of the
/// name, mixed with the seed, expanded by [`SplitMix64`].
pub fn derive_uuid(name: &str, seed: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    let mut r = SplitMix64::new(h ^ seed.rotate_left(32));
    let hi = r.next_u64();
    let lo = r.next_u64();
    let hi = (hi & !0xF000) | 0x4000; // version 4
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_depends_on_name_and_seed_and_is_well_formed() {
        let a = derive_uuid("web1", 1);
        assert_eq!(a, derive_uuid("web1", 1));
        assert_ne!(a, derive_uuid("web1", 2));
        assert_ne!(a, derive_uuid("web2", 1));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn splitmix_floats_are_in_unit_interval() {
        let mut r = SplitMix64::new(7);
        for _ in 0..1000 {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
