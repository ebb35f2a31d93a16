//! The snapshot: what one scrape of a host yields, as plain data (the bottom
//! layer; it depends on nothing of the crate).
//!
//! Sources fill a [`Collection`]; the collector merges it into an immutable
//! [`Snapshot`]; `crate::exposition` turns a snapshot into the text format.
//! Nothing here does I/O. Every value is optional where a source may not
//! know it, so an absent value renders as an absent series, never as 0.

use std::collections::BTreeMap;

/// Xen domain id.
pub type DomId = u32;

/// Run state of a domain, as libxenstat reports it (one-hot on /metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    Running,
    Blocked,
    Paused,
    Shutdown,
    Crashed,
    Dying,
}

impl DomainState {
    /// Every state, in the order they are rendered.
    pub const ALL: [DomainState; 6] = [
        DomainState::Running,
        DomainState::Blocked,
        DomainState::Paused,
        DomainState::Shutdown,
        DomainState::Crashed,
        DomainState::Dying,
    ];

    /// The `state` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainState::Running => "running",
            DomainState::Blocked => "blocked",
            DomainState::Paused => "paused",
            DomainState::Shutdown => "shutdown",
            DomainState::Crashed => "crashed",
            DomainState::Dying => "dying",
        }
    }

    /// One state from libxenstat's flags, which may have several set: the
    /// most severe wins (dying > crashed > shutdown > paused > running > blocked);
    /// no flag at all means the domain is idle, i.e. blocked.
    pub fn from_flags(
        dying: bool,
        crashed: bool,
        shutdown: bool,
        paused: bool,
        running: bool,
    ) -> Self {
        if dying {
            DomainState::Dying
        } else if crashed {
            DomainState::Crashed
        } else if shutdown {
            DomainState::Shutdown
        } else if paused {
            DomainState::Paused
        } else if running {
            DomainState::Running
        } else {
            DomainState::Blocked
        }
    }
}

/// One virtual CPU.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vcpu {
    pub id: u32,
    pub online: bool,
    pub cpu_seconds: f64,
}

/// One virtual network interface, counters from the domain's point of view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetIf {
    /// Interface index within the domain (`vif<domid>.<id>`).
    pub id: u32,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

/// One virtual block device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vbd {
    /// Device name (`xvda`), or the device number where it has no name.
    pub device: String,
    pub read_requests: u64,
    pub write_requests: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub oo_requests: u64,
}

/// What the hypervisor (libxenstat or the model) says of one domain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainStats {
    pub domid: DomId,
    /// Name as the hypervisor library knows it; xenstore's name wins when present.
    pub name: Option<String>,
    pub state: Option<DomainState>,
    pub cpu_seconds: f64,
    pub vcpus: Vec<Vcpu>,
    /// Number of vCPUs the domain has (online or not).
    pub vcpu_count: u32,
    pub memory_bytes: u64,
    /// `None` when unlimited.
    pub memory_max_bytes: Option<u64>,
    pub ssid: Option<u32>,
    pub networks: Vec<NetIf>,
    pub vbds: Vec<Vbd>,
}

/// What the guest agent reported, each value already validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuestReport {
    pub page_faults_minor: Option<u64>,
    pub page_faults_major: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub swap_used_bytes: Option<u64>,
    /// Seconds since the guest last wrote its report.
    pub age_seconds: Option<f64>,
}

/// What xenstore (or the model) says of one domain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainMeta {
    pub domid: DomId,
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub memory_target_bytes: Option<u64>,
    pub guest: GuestReport,
    /// The domain's probe target from `data/xentinel/probe`, unvalidated.
    pub probe_target: Option<String>,
}

/// Node totals from the hypervisor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostStats {
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    pub cpus: u32,
    pub cpu_hz: u64,
    pub xen_version: Option<String>,
}

/// dom0's own health, from sysinfo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dom0Health {
    pub load: [f64; 3],
    pub memory_available_bytes: u64,
    pub memory_total_bytes: u64,
    /// (sensor label, degrees Celsius).
    pub temperatures: Vec<(String, f64)>,
}

/// The kinds of warning failure: a failure that announces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WarningKind {
    Maintenance,
    UpsOnBattery,
    HardwareErrors,
    Temperature,
    Shutdown,
}

impl WarningKind {
    /// Every kind, rendered always (0 or 1) so alerts can match on absence of 1.
    pub const ALL: [WarningKind; 5] = [
        WarningKind::Maintenance,
        WarningKind::UpsOnBattery,
        WarningKind::HardwareErrors,
        WarningKind::Temperature,
        WarningKind::Shutdown,
    ];

    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::Maintenance => "maintenance",
            WarningKind::UpsOnBattery => "ups_on_battery",
            WarningKind::HardwareErrors => "hardware_errors",
            WarningKind::Temperature => "temperature",
            WarningKind::Shutdown => "shutdown",
        }
    }

    /// Parses a `kind` label value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Which way a migration went, from this host's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    /// The `direction` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// A cumulative histogram: `counts[i]` observations `<= bounds[i]`, plus totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending, `+Inf` implied).
    pub fn new(bounds: &[f64]) -> Self {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    /// Records one observation.
    pub fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }
}

/// One heartbeat peer as of one scrape, counters cumulative since the peer was added.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerStats {
    /// The peer's configured name (the `peer` label).
    pub name: String,
    /// Round-trip times of the pongs that came within the loss timeout.
    pub rtt: Histogram,
    pub sent: u64,
    /// Pongs that came within the loss timeout.
    pub received: u64,
    /// Pings whose pong did not come within the loss timeout (late ones included).
    pub lost: u64,
    /// Pongs that came after the loss timeout.
    pub late: u64,
    /// An answer came within the last `down_after` intervals.
    pub up: bool,
    /// Longest time between two answers over the gap window, the ongoing one included.
    pub longest_gap_seconds: f64,
}

/// The heartbeat mesh as of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatStats {
    /// By name.
    pub peers: Vec<PeerStats>,
    /// Dropped datagrams by reason (every reason present, 0 or more).
    pub rejected: BTreeMap<&'static str, u64>,
}

/// One domain's service probe, cumulative since its target was first seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeStats {
    /// The target as configured or published by the guest.
    pub target: String,
    /// Durations of the probes that ran (failed ones included).
    pub duration: Histogram,
    /// The last probe succeeded.
    pub success: bool,
}

/// Everything the sources found in one collection, before merging.
#[derive(Debug, Clone, Default)]
pub struct Collection {
    /// Per-domain hypervisor stats, by domid.
    pub stats: BTreeMap<DomId, DomainStats>,
    /// Per-domain xenstore data, by domid.
    pub meta: BTreeMap<DomId, DomainMeta>,
    pub host: Option<HostStats>,
    pub dom0: Option<Dom0Health>,
    /// Warning-failure signals; several sources may raise the same kind (OR).
    pub warnings: BTreeMap<WarningKind, bool>,
    /// EDAC counters (corrected, uncorrected), when the host has EDAC.
    pub hardware_errors: Option<(u64, u64)>,
    /// Migration durations per direction, cumulative since start.
    pub migrations: BTreeMap<Direction, Histogram>,
    /// The heartbeat mesh, when it runs.
    pub heartbeat: Option<HeartbeatStats>,
    /// Domain probe results by domid.
    pub probes: BTreeMap<DomId, ProbeStats>,
}

impl Collection {
    /// Raises (or records as clear) a warning; a raised warning stays raised.
    pub fn warn(&mut self, kind: WarningKind, on: bool) {
        let w = self.warnings.entry(kind).or_insert(false);
        *w |= on;
    }
}

/// Outcome of one source in one collection (node_exporter's per-collector pattern).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceStatus {
    pub name: &'static str,
    pub up: bool,
    pub duration_seconds: f64,
}

/// One domain after merging hypervisor stats and xenstore data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Domain {
    pub domid: DomId,
    pub name: String,
    pub uuid: String,
    pub stats: Option<DomainStats>,
    pub meta: Option<DomainMeta>,
}

/// Counters the exporter keeps about itself, cumulative since start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelfStats {
    /// Rejected guest-agent values, by reason.
    pub guest_rejections: BTreeMap<&'static str, u64>,
}

/// An immutable, merged view of one host at one instant: what `/metrics` renders.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub domains: Vec<Domain>,
    pub host: Option<HostStats>,
    pub dom0: Option<Dom0Health>,
    pub warnings: BTreeMap<WarningKind, bool>,
    pub hardware_errors: Option<(u64, u64)>,
    pub migrations: BTreeMap<Direction, Histogram>,
    pub sources: Vec<SourceStatus>,
    pub self_stats: SelfStats,
    pub heartbeat: Option<HeartbeatStats>,
    /// Probe results by domid; rendered only for domains of this snapshot.
    pub probes: BTreeMap<DomId, ProbeStats>,
}

impl Snapshot {
    /// Merges a collection: domains are the union of both maps, joined on domid.
    /// Names and UUIDs come from xenstore when it has them, else from the
    /// hypervisor library; a domain without a name is named by its domid.
    pub fn merge(mut c: Collection, sources: Vec<SourceStatus>, self_stats: SelfStats) -> Snapshot {
        let mut domains = Vec::with_capacity(c.stats.len().max(c.meta.len()));
        // Both maps iterate in domid order: join them in one pass (removing
        // from a BTreeMap per domain shifted its nodes: half the merge's time).
        let mut stats = std::mem::take(&mut c.stats).into_iter().peekable();
        let mut meta = std::mem::take(&mut c.meta).into_iter().peekable();
        loop {
            let d = match (stats.peek(), meta.peek()) {
                (Some((s, _)), Some((m, _))) if s == m => {
                    let (domid, st) = stats.next().expect("peeked");
                    let (_, m) = meta.next().expect("peeked");
                    Self::domain(domid, Some(st), Some(m))
                }
                (Some((s, _)), Some((m, _))) if m < s => {
                    let (domid, m) = meta.next().expect("peeked");
                    Self::domain(domid, None, Some(m))
                }
                (Some(_), _) => {
                    let (domid, st) = stats.next().expect("peeked");
                    Self::domain(domid, Some(st), None)
                }
                (None, Some(_)) => {
                    let (domid, m) = meta.next().expect("peeked");
                    Self::domain(domid, None, Some(m))
                }
                (None, None) => break,
            };
            domains.push(d);
        }
        Snapshot {
            domains,
            host: c.host,
            dom0: c.dom0,
            warnings: c.warnings,
            hardware_errors: c.hardware_errors,
            migrations: c.migrations,
            sources,
            self_stats,
            heartbeat: c.heartbeat,
            probes: c.probes,
        }
    }

    fn domain(domid: DomId, stats: Option<DomainStats>, meta: Option<DomainMeta>) -> Domain {
        let name = meta
            .as_ref()
            .and_then(|m| m.name.clone())
            .or_else(|| stats.as_ref().and_then(|s| s.name.clone()))
            .unwrap_or_else(|| format!("domid-{domid}"));
        let uuid = meta
            .as_ref()
            .and_then(|m| m.uuid.clone())
            .unwrap_or_default();
        Domain {
            domid,
            name,
            uuid,
            stats,
            meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_priority_prefers_the_most_severe_flag() {
        assert_eq!(
            DomainState::from_flags(false, false, false, false, false),
            DomainState::Blocked
        );
        assert_eq!(
            DomainState::from_flags(false, false, false, true, true),
            DomainState::Paused
        );
        assert_eq!(
            DomainState::from_flags(true, true, true, true, true),
            DomainState::Dying
        );
    }

    #[test]
    fn merge_joins_on_domid_and_prefers_xenstore_names() {
        let mut c = Collection::default();
        c.stats.insert(
            1,
            DomainStats {
                domid: 1,
                name: Some("lib".into()),
                ..Default::default()
            },
        );
        c.stats.insert(
            2,
            DomainStats {
                domid: 2,
                ..Default::default()
            },
        );
        c.meta.insert(
            1,
            DomainMeta {
                domid: 1,
                name: Some("xs".into()),
                uuid: Some("u1".into()),
                ..Default::default()
            },
        );
        c.meta.insert(
            3,
            DomainMeta {
                domid: 3,
                ..Default::default()
            },
        );
        let s = Snapshot::merge(c, vec![], SelfStats::default());
        let names: Vec<_> = s.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["xs", "domid-2", "domid-3"]);
        assert_eq!(s.domains[0].uuid, "u1");
        assert!(s.domains[2].stats.is_none());
    }

    #[test]
    fn merge_interleaves_stats_only_and_meta_only_domains_in_domid_order() {
        let mut c = Collection::default();
        for id in [2, 5, 9] {
            c.stats.insert(
                id,
                DomainStats {
                    domid: id,
                    ..Default::default()
                },
            );
        }
        for id in [0, 5, 7, 11] {
            c.meta.insert(
                id,
                DomainMeta {
                    domid: id,
                    name: Some(format!("m{id}")),
                    ..Default::default()
                },
            );
        }
        let s = Snapshot::merge(c, vec![], SelfStats::default());
        let got: Vec<_> = s
            .domains
            .iter()
            .map(|d| {
                (
                    d.domid,
                    d.name.as_str(),
                    d.stats.is_some(),
                    d.meta.is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, "m0", false, true),
                (2, "domid-2", true, false),
                (5, "m5", true, true),
                (7, "m7", false, true),
                (9, "domid-9", true, false),
                (11, "m11", false, true),
            ]
        );
    }

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        assert_eq!(h.counts, [1, 2]);
        assert_eq!(h.count, 3);
    }
}
