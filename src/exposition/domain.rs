//! The per-domain families: a table of families, each writing one domain's
//! samples straight into the output (no allocation per domain or sample),
//! the label prefix `domain="…",uuid="…"` escaped once per rendering.

use super::names::*;
use super::writer::{Val, Writer, escape_label, push_f64, push_u64};
use crate::snapshot::{
    Domain, DomainState, DomainStats, GuestReport, Histogram, NetIf, Snapshot, Vbd, Vcpu,
};

/// Formatted bucket bounds of one set of histogram bounds.
#[derive(Default)]
pub(super) struct LeCache {
    bounds: Vec<f64>,
    text: String,
    ends: Vec<usize>,
}

impl LeCache {
    /// The formatted bounds of `bounds`, reformatted only when they change.
    fn get(&mut self, bounds: &[f64]) -> impl Iterator<Item = &str> {
        let same = self.bounds.len() == bounds.len()
            && self
                .bounds
                .iter()
                .zip(bounds)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if !same {
            self.bounds.clear();
            self.bounds.extend_from_slice(bounds);
            self.text.clear();
            self.ends.clear();
            for b in bounds {
                push_f64(&mut self.text, *b);
                self.ends.push(self.text.len());
            }
        }
        let text = &self.text;
        std::iter::once(0)
            .chain(self.ends.iter().copied())
            .zip(self.ends.iter().copied())
            .map(move |(a, b)| &text[a..b])
    }
}

/// One per-domain family: its header and what one domain contributes.
pub(super) struct DomainFamily {
    pub(super) name: &'static str,
    help: &'static str,
    typ: &'static str,
    pub(super) emit: fn(&mut Emitter, &Domain),
}

/// The extra label of a per-domain sample, after `domain` and `uuid`.
enum Extra<'a> {
    None,
    /// `name="<integer>"`.
    Num(&'static str, u64),
    /// `name="<value>"`, the value needing no escape.
    Plain(&'static str, &'static str),
    /// `name="<value>"`, the value escaped.
    Esc(&'static str, &'a str),
    /// `le="<bound>"` of a histogram bucket, the bound already formatted.
    Le(&'a str),
}

/// Writes one domain's samples of one family; the family's header goes out
/// before its first sample, so a family no domain has is absent.
pub(super) struct Emitter<'a> {
    pub(super) out: &'a mut String,
    pub(super) snap: &'a Snapshot,
    pub(super) fam: &'a DomainFamily,
    pub(super) pre: &'a str,
    pub(super) wrote_header: &'a mut bool,
    pub(super) le: &'a mut LeCache,
}

impl Emitter<'_> {
    fn sample(&mut self, extra: Extra, v: Val) {
        self.sample_as(self.fam.name, extra, v);
    }

    /// The `le` buckets of `h` (not `+Inf`), bounds formatted once per rendering.
    fn histogram_buckets(&mut self, bucket: &str, h: &Histogram) {
        let mut le = std::mem::take(self.le);
        for (b, c) in le.get(&h.bounds).zip(&h.counts) {
            self.sample_as(bucket, Extra::Le(b), Val::U(*c));
        }
        *self.le = le;
    }

    /// A sample named other than its family (a histogram's `_bucket`, ...).
    fn sample_as(&mut self, name: &str, extra: Extra, v: Val) {
        if !*self.wrote_header {
            Writer { out: self.out }.header(self.fam.name, self.fam.help, self.fam.typ);
            *self.wrote_header = true;
        }
        let o = &mut *self.out;
        o.push_str(name);
        o.push('{');
        o.push_str(self.pre);
        match extra {
            Extra::None => {}
            Extra::Num(k, n) => {
                o.push(',');
                o.push_str(k);
                o.push_str("=\"");
                push_u64(o, n);
                o.push('"');
            }
            Extra::Plain(k, v) => {
                o.push(',');
                o.push_str(k);
                o.push_str("=\"");
                o.push_str(v);
                o.push('"');
            }
            Extra::Esc(k, v) => {
                o.push(',');
                o.push_str(k);
                o.push_str("=\"");
                escape_label(o, v);
                o.push('"');
            }
            Extra::Le(b) => {
                o.push_str(",le=\"");
                o.push_str(b);
                o.push('"');
            }
        }
        o.push_str("} ");
        match v {
            Val::U(u) => push_u64(o, u),
            Val::F(f) => push_f64(o, f),
        }
        o.push('\n');
    }

    fn one(&mut self, v: Option<Val>) {
        if let Some(v) = v {
            self.sample(Extra::None, v);
        }
    }
}

fn stats(d: &Domain) -> Option<&DomainStats> {
    d.stats.as_ref()
}

fn guest(d: &Domain) -> Option<&GuestReport> {
    d.meta.as_ref().map(|m| &m.guest)
}

fn vcpus(d: &Domain) -> &[Vcpu] {
    stats(d).map_or(&[], |s| &s.vcpus)
}

fn nets(d: &Domain) -> &[NetIf] {
    stats(d).map_or(&[], |s| &s.networks)
}

fn vbds(d: &Domain) -> &[Vbd] {
    stats(d).map_or(&[], |s| &s.vbds)
}

macro_rules! net_family {
    ($name:expr, $help:literal, $field:ident) => {
        DomainFamily {
            name: $name,
            help: $help,
            typ: "counter",
            emit: |e, d| {
                for n in nets(d) {
                    e.sample(Extra::Num("interface", u64::from(n.id)), Val::U(n.$field));
                }
            },
        }
    };
}

macro_rules! block_family {
    ($name:expr, $help:literal, $field:ident) => {
        DomainFamily {
            name: $name,
            help: $help,
            typ: "counter",
            emit: |e, d| {
                for b in vbds(d) {
                    e.sample(Extra::Esc("device", &b.device), Val::U(b.$field));
                }
            },
        }
    };
}

/// The series names of the probe duration histogram (checked against
/// [`DOMAIN_PROBE_DURATION_SECONDS`] by a test).
pub(super) const PROBE_BUCKET: &str = "xen_domain_probe_duration_seconds_bucket";
pub(super) const PROBE_SUM: &str = "xen_domain_probe_duration_seconds_sum";
pub(super) const PROBE_COUNT: &str = "xen_domain_probe_duration_seconds_count";

/// The per-domain probe families, written after the self and heartbeat
/// families.
pub(super) const PROBE_FAMILIES: [DomainFamily; 2] = [
    DomainFamily {
        name: DOMAIN_PROBE_DURATION_SECONDS,
        help: "Duration of the domain's service probes, failed ones included.",
        typ: "histogram",
        emit: |e, d| {
            let Some(p) = e.snap.probes.get(&d.domid) else {
                return;
            };
            let h = &p.duration;
            if h.count == 0 {
                return;
            }
            e.histogram_buckets(PROBE_BUCKET, h);
            e.sample_as(PROBE_BUCKET, Extra::Plain("le", "+Inf"), Val::U(h.count));
            e.sample_as(PROBE_SUM, Extra::None, Val::F(h.sum));
            e.sample_as(PROBE_COUNT, Extra::None, Val::U(h.count));
        },
    },
    DomainFamily {
        name: DOMAIN_PROBE_SUCCESS,
        help: "1 when the domain's last service probe succeeded.",
        typ: "gauge",
        emit: |e, d| {
            if let Some(p) = e.snap.probes.get(&d.domid) {
                e.sample(Extra::None, Val::U(u64::from(p.success)));
            }
        },
    },
];

/// Every per-domain family, in output order.
pub(super) const DOMAIN_FAMILIES: [DomainFamily; 26] = [
    DomainFamily {
        name: DOMAIN_INFO,
        help: "Information about a domain; always 1.",
        typ: "gauge",
        emit: |e, d| e.sample(Extra::Num("domid", u64::from(d.domid)), Val::U(1)),
    },
    DomainFamily {
        name: DOMAIN_STATE,
        help: "Run state of a domain, one-hot.",
        typ: "gauge",
        emit: |e, d| {
            if let Some(st) = stats(d).and_then(|s| s.state) {
                for s in DomainState::ALL {
                    e.sample(
                        Extra::Plain("state", s.as_str()),
                        Val::U(u64::from(s == st)),
                    );
                }
            }
        },
    },
    DomainFamily {
        name: DOMAIN_CPU_SECONDS,
        help: "CPU time used by the domain's vCPUs.",
        typ: "counter",
        emit: |e, d| e.one(stats(d).map(|s| Val::F(s.cpu_seconds))),
    },
    DomainFamily {
        name: DOMAIN_VCPU_SECONDS,
        help: "CPU time used by one vCPU.",
        typ: "counter",
        emit: |e, d| {
            for v in vcpus(d) {
                e.sample(Extra::Num("vcpu", u64::from(v.id)), Val::F(v.cpu_seconds));
            }
        },
    },
    DomainFamily {
        name: DOMAIN_VCPU_ONLINE,
        help: "1 when the vCPU is online.",
        typ: "gauge",
        emit: |e, d| {
            for v in vcpus(d) {
                e.sample(
                    Extra::Num("vcpu", u64::from(v.id)),
                    Val::U(u64::from(v.online)),
                );
            }
        },
    },
    DomainFamily {
        name: DOMAIN_VCPUS,
        help: "Number of vCPUs of the domain.",
        typ: "gauge",
        emit: |e, d| e.one(stats(d).map(|s| Val::U(u64::from(s.vcpu_count)))),
    },
    DomainFamily {
        name: DOMAIN_MEMORY_BYTES,
        help: "Current memory reservation of the domain.",
        typ: "gauge",
        emit: |e, d| e.one(stats(d).map(|s| Val::U(s.memory_bytes))),
    },
    DomainFamily {
        name: DOMAIN_MEMORY_MAX_BYTES,
        help: "Maximum memory of the domain.",
        typ: "gauge",
        emit: |e, d| e.one(stats(d).and_then(|s| s.memory_max_bytes).map(Val::U)),
    },
    DomainFamily {
        name: DOMAIN_MEMORY_TARGET_BYTES,
        help: "Balloon target from xenstore memory/target.",
        typ: "gauge",
        emit: |e, d| {
            e.one(
                d.meta
                    .as_ref()
                    .and_then(|m| m.memory_target_bytes)
                    .map(Val::U),
            )
        },
    },
    net_family!(
        DOMAIN_NET_RECEIVE_BYTES,
        "Bytes received by the domain.",
        rx_bytes
    ),
    net_family!(
        DOMAIN_NET_RECEIVE_PACKETS,
        "Packets received by the domain.",
        rx_packets
    ),
    net_family!(DOMAIN_NET_RECEIVE_ERRORS, "Receive errors.", rx_errors),
    net_family!(
        DOMAIN_NET_RECEIVE_DROPS,
        "Received packets dropped.",
        rx_drops
    ),
    net_family!(
        DOMAIN_NET_TRANSMIT_BYTES,
        "Bytes sent by the domain.",
        tx_bytes
    ),
    net_family!(
        DOMAIN_NET_TRANSMIT_PACKETS,
        "Packets sent by the domain.",
        tx_packets
    ),
    net_family!(DOMAIN_NET_TRANSMIT_ERRORS, "Transmit errors.", tx_errors),
    net_family!(DOMAIN_NET_TRANSMIT_DROPS, "Sent packets dropped.", tx_drops),
    block_family!(
        DOMAIN_BLOCK_READ_BYTES,
        "Bytes read from the virtual block device.",
        read_bytes
    ),
    block_family!(
        DOMAIN_BLOCK_WRITE_BYTES,
        "Bytes written to the virtual block device.",
        write_bytes
    ),
    block_family!(DOMAIN_BLOCK_READ_REQUESTS, "Read requests.", read_requests),
    block_family!(
        DOMAIN_BLOCK_WRITE_REQUESTS,
        "Write requests.",
        write_requests
    ),
    block_family!(
        DOMAIN_BLOCK_OO_REQUESTS,
        "Out-of-request events (ring full).",
        oo_requests
    ),
    DomainFamily {
        name: DOMAIN_GUEST_PAGE_FAULTS,
        help: "Page faults inside the guest, from its agent.",
        typ: "counter",
        emit: |e, d| {
            if let Some(g) = guest(d) {
                if let Some(x) = g.page_faults_minor {
                    e.sample(Extra::Plain("kind", "minor"), Val::U(x));
                }
                if let Some(x) = g.page_faults_major {
                    e.sample(Extra::Plain("kind", "major"), Val::U(x));
                }
            }
        },
    },
    DomainFamily {
        name: DOMAIN_GUEST_MEMORY_AVAILABLE_BYTES,
        help: "MemAvailable inside the guest.",
        typ: "gauge",
        emit: |e, d| e.one(guest(d).and_then(|g| g.memory_available_bytes).map(Val::U)),
    },
    DomainFamily {
        name: DOMAIN_GUEST_SWAP_USED_BYTES,
        help: "Swap used inside the guest.",
        typ: "gauge",
        emit: |e, d| e.one(guest(d).and_then(|g| g.swap_used_bytes).map(Val::U)),
    },
    DomainFamily {
        name: DOMAIN_GUEST_REPORT_AGE_SECONDS,
        help: "Seconds since the guest agent last reported.",
        typ: "gauge",
        emit: |e, d| e.one(guest(d).and_then(|g| g.age_seconds).map(Val::F)),
    },
];
