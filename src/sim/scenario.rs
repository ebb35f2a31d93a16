//! Scenarios: timed events (workload changes, warnings, host deaths,
//! migrations) applied to a [`Cluster`] as simulated time passes.
//!
//! A scenario file is a YAML list of `{at, action}`:
//!
//! ```yaml
//! - at: 30s
//!   action: {workload: {domain: web1, request_rate: 500}}
//! - at: 1m
//!   action: {warning: {host: xen3, kind: ups_on_battery, on: true}}
//! - at: 90s
//!   action: {migrate: {domain: mail1, to: xen4}}
//! - at: 5m
//!   action: {kill_host: xen3}
//! ```

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use crate::snapshot::WarningKind;

use super::units::{de_duration, de_opt_bytes};
use super::{Cluster, SimError, YamlError};

/// The default demo scenario: load rises on web1, xen3's UPS goes on battery,
/// cache1 outgrows its allocation, and xen3 dies five minutes after the warning.
pub const DEMO_SCENARIO: &str = "\
- at: 20s
  action: {workload: {domain: web1, request_rate: 900}}
- at: 45s
  action: {warning: {host: xen3, kind: ups_on_battery, on: true}}
- at: 60s
  action: {workload: {domain: cache1, working_set_bytes: 4400MiB}}
- at: 5m
  action: {kill_host: xen3}
";

/// One timed event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Simulated time since start (`30s`, `1m30s`, `500ms`).
    #[serde(deserialize_with = "de_duration")]
    pub at: Duration,
    /// Written as a one-key map, `{kill_host: xen3}`, or as a tag, `!kill_host xen3`.
    #[serde(deserialize_with = "serde_yaml_ng::with::singleton_map::deserialize")]
    pub action: Action,
}

/// What an event does.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Sets some of a domain's workload fields.
    Workload(WorkloadPatch),
    /// Raises (`on: true`) or clears a warning failure on a host.
    Warning {
        host: String,
        #[serde(deserialize_with = "de_warning_kind")]
        kind: WarningKind,
        on: bool,
    },
    /// Kills a host and the domains on it.
    KillHost(String),
    /// Starts a live migration.
    Migrate { domain: String, to: String },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Workload(p) => write!(f, "workload of {} changed", p.domain),
            Action::Warning { host, kind, on } => {
                let what = if *on { "raised" } else { "cleared" };
                write!(f, "warning {} {what} on {host}", kind.as_str())
            }
            Action::KillHost(h) => write!(f, "host {h} killed"),
            Action::Migrate { domain, to } => write!(f, "migration of {domain} to {to} started"),
        }
    }
}

/// The workload fields to change; absent ones are left alone.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadPatch {
    pub domain: String,
    pub request_rate: Option<f64>,
    #[serde(default, deserialize_with = "de_opt_bytes")]
    pub working_set_bytes: Option<u64>,
    pub dirty_rate: Option<f64>,
    pub cpu_seconds_per_request: Option<f64>,
    pub idle_cpu: Option<f64>,
    #[serde(default, deserialize_with = "de_opt_bytes")]
    pub touched_bytes_per_request: Option<u64>,
}

/// The outcome of one applied event.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub at: Duration,
    pub action: Action,
    pub result: Result<(), SimError>,
}

/// Events in time order, and how far they have been applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    events: Vec<Event>,
    next: usize,
}

const KIND_NAMES: [&str; 5] = [
    "maintenance",
    "ups_on_battery",
    "hardware_errors",
    "temperature",
    "shutdown",
];

fn de_warning_kind<'de, D: Deserializer<'de>>(d: D) -> Result<WarningKind, D::Error> {
    let s = String::deserialize(d)?;
    WarningKind::parse(&s).ok_or_else(|| de::Error::unknown_variant(&s, &KIND_NAMES))
}

impl Action {
    /// Applies the action to `cluster`.
    pub fn apply(&self, cluster: &mut Cluster) -> Result<(), SimError> {
        match self {
            Action::Workload(p) => {
                let w = cluster.workload_mut(&p.domain)?;
                if let Some(v) = p.request_rate {
                    w.request_rate = v.max(0.0);
                }
                if let Some(v) = p.working_set_bytes {
                    w.working_set_bytes = v;
                }
                if let Some(v) = p.dirty_rate {
                    w.dirty_rate = v.max(0.0);
                }
                if let Some(v) = p.cpu_seconds_per_request {
                    w.cpu_seconds_per_request = v.max(0.0);
                }
                if let Some(v) = p.idle_cpu {
                    w.idle_cpu = v.clamp(0.0, 1.0);
                }
                if let Some(v) = p.touched_bytes_per_request {
                    w.touched_bytes_per_request = v;
                }
                Ok(())
            }
            Action::Warning { host, kind, on } => cluster.set_warning(host, *kind, *on),
            Action::KillHost(host) => cluster.kill_host(host).map(|_| ()),
            Action::Migrate { domain, to } => cluster.start_migration(domain, to).map(|_| ()),
        }
    }
}

impl Scenario {
    /// Parses a YAML list of events; `origin` (usually the file name)
    /// prefixes errors, which carry line, column and the offending field.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Self, YamlError> {
        crate::config::check_depth(text).map_err(|e| YamlError::depth(origin, e))?;
        let mut events: Vec<Event> =
            serde_yaml_ng::from_str(text).map_err(|e| YamlError::from_serde(origin, e))?;
        events.sort_by_key(|e| e.at); // stable: same-time events keep file order
        Ok(Scenario { events, next: 0 })
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Self, YamlError> {
        let origin = path.display().to_string();
        let text = crate::config::read_text(path).map_err(|e| YamlError::io(&origin, e))?;
        Self::from_yaml_str(&text, &origin)
    }

    /// [`DEMO_SCENARIO`], for [`Cluster::default_demo`].
    pub fn default_demo() -> Self {
        Self::from_yaml_str(DEMO_SCENARIO, "DEMO_SCENARIO").expect("the demo scenario parses")
    }

    /// All events, in time order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// True once every event has been applied.
    pub fn is_done(&self) -> bool {
        self.next >= self.events.len()
    }

    /// Checks every host and domain the events name exists in `cluster`.
    pub fn check(&self, cluster: &Cluster) -> Result<(), SimError> {
        let host = |h: &str| match cluster.host(h) {
            Some(_) => Ok(()),
            None => Err(SimError::UnknownHost(h.into())),
        };
        let domain = |d: &str| match cluster.domain(d) {
            Some(_) => Ok(()),
            None => Err(SimError::UnknownDomain(d.into())),
        };
        for e in &self.events {
            match &e.action {
                Action::Workload(p) => domain(&p.domain)?,
                Action::Warning { host: h, .. } | Action::KillHost(h) => host(h)?,
                Action::Migrate { domain: d, to } => {
                    domain(d)?;
                    host(to)?;
                }
            }
        }
        Ok(())
    }

    /// Applies, in order, every event due at or before `now` and not yet
    /// applied. A failing event is reported and skipped; the rest still run.
    pub fn apply_due(&mut self, cluster: &mut Cluster, now: Duration) -> Vec<Applied> {
        let mut done = Vec::new();
        while let Some(e) = self.events.get(self.next) {
            if e.at > now {
                break;
            }
            done.push(Applied {
                at: e.at,
                action: e.action.clone(),
                result: e.action.apply(cluster),
            });
            self.next += 1;
        }
        done
    }
}
