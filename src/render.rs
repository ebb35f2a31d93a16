//! Rendering: turns a [`Snapshot`] into the Prometheus text exposition format
//! (version 0.0.4). The only code that knows metric names and help texts.
//!
//! Every scrape renders a fresh snapshot, so a domain that is gone from the
//! snapshot is gone from the output: there is no registry to keep in step.

use std::fmt::Write;

use crate::model::{Domain, DomainState, Histogram, Snapshot, WarningKind};

/// Content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `v` to `out` escaped as a label value (`\`, `"` and newline).
pub fn escape_label(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends a sample value: integers exactly, floats as Go's `strconv` would read them.
fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn push_u64(out: &mut String, v: u64) {
    // Most samples are 0 or 1 (one-hot states, online flags, error counters).
    if v < 10 {
        out.push(char::from(b'0' + v as u8));
        return;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v;
    while n > 0 {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // ASCII digits: pushed as chars, no UTF-8 check of the buffer needed.
    out.reserve(buf.len() - i);
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// A value a series can carry.
#[derive(Clone, Copy)]
pub enum Val {
    U(u64),
    F(f64),
}

impl From<u64> for Val {
    fn from(v: u64) -> Self {
        Val::U(v)
    }
}

impl From<f64> for Val {
    fn from(v: f64) -> Self {
        Val::F(v)
    }
}

/// Writes families and samples into a text buffer.
pub struct Writer<'a> {
    pub out: &'a mut String,
}

impl Writer<'_> {
    /// Writes the `# HELP` and `# TYPE` lines of a family.
    pub fn header(&mut self, name: &str, help: &str, typ: &str) {
        let o = &mut *self.out;
        o.push_str("# HELP ");
        o.push_str(name);
        o.push(' ');
        for c in help.chars() {
            match c {
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                c => o.push(c),
            }
        }
        o.push_str("\n# TYPE ");
        o.push_str(name);
        o.push(' ');
        o.push_str(typ);
        o.push('\n');
    }

    /// Writes one sample; `labels` is already escaped (`a="b",c="d"`) or empty,
    /// `extra` is one more label already escaped, appended after a comma.
    pub fn sample(&mut self, name: &str, labels: &str, extra: &str, v: Val) {
        let o = &mut *self.out;
        o.push_str(name);
        if !labels.is_empty() || !extra.is_empty() {
            o.push('{');
            o.push_str(labels);
            if !labels.is_empty() && !extra.is_empty() {
                o.push(',');
            }
            o.push_str(extra);
            o.push('}');
        }
        o.push(' ');
        match v {
            Val::U(u) => push_u64(o, u),
            Val::F(f) => push_f64(o, f),
        }
        o.push('\n');
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, typ: &str, v: Val) {
        self.header(name, help, typ);
        self.sample(name, "", "", v);
    }

    /// Writes a histogram's `_bucket`, `_sum` and `_count` samples (no header).
    pub fn histogram(&mut self, name: &str, labels: &str, h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut le = String::with_capacity(24);
        for (b, c) in h.bounds.iter().zip(&h.counts) {
            le.clear();
            le.push_str("le=\"");
            push_f64(&mut le, *b);
            le.push('"');
            self.sample(&bucket, labels, &le, Val::U(*c));
        }
        self.sample(&bucket, labels, "le=\"+Inf\"", Val::U(h.count));
        self.sample(&format!("{name}_sum"), labels, "", Val::F(h.sum));
        self.sample(&format!("{name}_count"), labels, "", Val::U(h.count));
    }
}

/// Builds the escaped `name="…"` pair.
pub fn label(name: &str, value: &str) -> String {
    let mut s = String::with_capacity(name.len() + value.len() + 3);
    s.push_str(name);
    s.push_str("=\"");
    escape_label(&mut s, value);
    s.push('"');
    s
}

/// Build metadata rendered as `xentinel_build_info`.
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub rustversion: &'static str,
}

/// This build's metadata.
pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    revision: match option_env!("XENTINEL_REVISION") {
        Some(r) => r,
        None => "unknown",
    },
    rustversion: match option_env!("XENTINEL_RUSTC") {
        Some(r) => r,
        None => "unknown",
    },
};

/// Renders a whole snapshot into `out` (appending).
pub fn render(s: &Snapshot, out: &mut String) {
    let mut r = Rendering::new(s);
    r.fill(s, out, usize::MAX);
}

/// A rendering in progress, resumable in pieces so a large snapshot can be
/// streamed in chunks of bounded size (see [`Rendering::fill`]). It holds
/// only a cursor and the domains' escaped label prefixes, not the snapshot,
/// so the caller may keep the snapshot behind an `Arc`.
///
/// Samples are written straight into the output: no allocation per domain
/// or per sample.
pub struct Rendering {
    /// `domain="…",uuid="…"` of every domain, back to back.
    prefixes: String,
    /// End of each domain's prefix in `prefixes`.
    ends: Vec<usize>,
    /// Next step: an index into [`DOMAIN_FAMILIES`], then host, self (with
    /// the heartbeat mesh), the [`PROBE_FAMILIES`], done.
    step: usize,
    /// Next domain within the current domain family.
    dom: usize,
    /// Whether the current family's header is out.
    wrote_header: bool,
    /// `le` values of the last histogram's bounds, formatted once: every
    /// domain's probe histogram has the same bounds.
    le: LeCache,
}

/// Formatted bucket bounds of one set of histogram bounds.
#[derive(Default)]
struct LeCache {
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

impl Rendering {
    /// A rendering of `s` from the start.
    pub fn new(s: &Snapshot) -> Self {
        let mut prefixes = String::with_capacity(s.domains.len() * 64);
        let mut ends = Vec::with_capacity(s.domains.len());
        for d in &s.domains {
            prefixes.push_str("domain=\"");
            escape_label(&mut prefixes, &d.name);
            prefixes.push_str("\",uuid=\"");
            escape_label(&mut prefixes, &d.uuid);
            prefixes.push('"');
            ends.push(prefixes.len());
        }
        Rendering {
            prefixes,
            ends,
            step: 0,
            dom: 0,
            wrote_header: false,
            le: LeCache::default(),
        }
    }

    /// True once everything has been written.
    pub fn done(&self) -> bool {
        self.step >= STEPS
    }

    /// Appends the next part of the rendering of `s` (the snapshot given to
    /// [`Rendering::new`]) to `out`, stopping at a line boundary once `out`
    /// holds at least `limit` bytes; each call makes progress (at least one
    /// domain's lines of one family). Returns [`Rendering::done`].
    pub fn fill(&mut self, s: &Snapshot, out: &mut String, limit: usize) -> bool {
        let doms = &s.domains;
        debug_assert_eq!(doms.len(), self.ends.len(), "another snapshot");
        while !self.done() {
            if let Some(fam) = family_at(self.step) {
                while self.dom < doms.len() {
                    let start = if self.dom == 0 {
                        0
                    } else {
                        self.ends[self.dom - 1]
                    };
                    let mut e = Emitter {
                        out: &mut *out,
                        snap: s,
                        fam,
                        pre: &self.prefixes[start..self.ends[self.dom]],
                        wrote_header: &mut self.wrote_header,
                        le: &mut self.le,
                    };
                    (fam.emit)(&mut e, &doms[self.dom]);
                    self.dom += 1;
                    if out.len() >= limit {
                        break;
                    }
                }
                if self.dom == doms.len() {
                    self.step += 1;
                    self.dom = 0;
                    self.wrote_header = false;
                }
            } else {
                let mut w = Writer { out: &mut *out };
                if self.step == DOMAIN_FAMILIES.len() {
                    render_host(&mut w, s);
                } else {
                    render_self(&mut w, s);
                    crate::heartbeat::render::render_mesh(&mut w, s);
                }
                self.step += 1;
            }
            if out.len() >= limit {
                return self.done();
            }
        }
        true
    }
}

/// Steps of a rendering: the per-domain families, host, self (and the
/// heartbeat mesh), then the per-domain probe families.
const STEPS: usize = DOMAIN_FAMILIES.len() + 2 + PROBE_FAMILIES.len();

/// The per-domain family of step `i`, `None` for the host and self steps.
fn family_at(i: usize) -> Option<&'static DomainFamily> {
    let n = DOMAIN_FAMILIES.len();
    if i < n {
        Some(&DOMAIN_FAMILIES[i])
    } else {
        PROBE_FAMILIES.get(i.checked_sub(n + 2)?)
    }
}

/// One per-domain family: its header and what one domain contributes.
struct DomainFamily {
    name: &'static str,
    help: &'static str,
    typ: &'static str,
    emit: fn(&mut Emitter, &Domain),
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
struct Emitter<'a> {
    out: &'a mut String,
    snap: &'a Snapshot,
    fam: &'a DomainFamily,
    pre: &'a str,
    wrote_header: &'a mut bool,
    le: &'a mut LeCache,
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

fn stats(d: &Domain) -> Option<&crate::model::DomainStats> {
    d.stats.as_ref()
}

fn guest(d: &Domain) -> Option<&crate::model::GuestReport> {
    d.meta.as_ref().map(|m| &m.guest)
}

fn vcpus(d: &Domain) -> &[crate::model::Vcpu] {
    stats(d).map_or(&[], |s| &s.vcpus)
}

fn nets(d: &Domain) -> &[crate::model::NetIf] {
    stats(d).map_or(&[], |s| &s.networks)
}

fn vbds(d: &Domain) -> &[crate::model::Vbd] {
    stats(d).map_or(&[], |s| &s.vbds)
}

macro_rules! net_family {
    ($suffix:literal, $help:literal, $field:ident) => {
        DomainFamily {
            name: concat!("xen_domain_network_", $suffix, "_total"),
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
    ($suffix:literal, $help:literal, $field:ident) => {
        DomainFamily {
            name: concat!("xen_domain_block_", $suffix, "_total"),
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

/// The per-domain probe families, written after the self and heartbeat
/// families (the order `heartbeat::render::render` has).
const PROBE_FAMILIES: [DomainFamily; 2] = [
    DomainFamily {
        name: "xen_domain_probe_duration_seconds",
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
            let bucket = "xen_domain_probe_duration_seconds_bucket";
            e.histogram_buckets(bucket, h);
            e.sample_as(bucket, Extra::Plain("le", "+Inf"), Val::U(h.count));
            e.sample_as(
                "xen_domain_probe_duration_seconds_sum",
                Extra::None,
                Val::F(h.sum),
            );
            e.sample_as(
                "xen_domain_probe_duration_seconds_count",
                Extra::None,
                Val::U(h.count),
            );
        },
    },
    DomainFamily {
        name: "xen_domain_probe_success",
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
const DOMAIN_FAMILIES: [DomainFamily; 26] = [
    DomainFamily {
        name: "xen_domain_info",
        help: "Information about a domain; always 1.",
        typ: "gauge",
        emit: |e, d| e.sample(Extra::Num("domid", u64::from(d.domid)), Val::U(1)),
    },
    DomainFamily {
        name: "xen_domain_state",
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
        name: "xen_domain_cpu_seconds_total",
        help: "CPU time used by the domain's vCPUs.",
        typ: "counter",
        emit: |e, d| e.one(stats(d).map(|s| Val::F(s.cpu_seconds))),
    },
    DomainFamily {
        name: "xen_domain_vcpu_seconds_total",
        help: "CPU time used by one vCPU.",
        typ: "counter",
        emit: |e, d| {
            for v in vcpus(d) {
                e.sample(Extra::Num("vcpu", u64::from(v.id)), Val::F(v.cpu_seconds));
            }
        },
    },
    DomainFamily {
        name: "xen_domain_vcpu_online",
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
        name: "xen_domain_vcpus",
        help: "Number of vCPUs of the domain.",
        typ: "gauge",
        emit: |e, d| e.one(stats(d).map(|s| Val::U(u64::from(s.vcpu_count)))),
    },
    DomainFamily {
        name: "xen_domain_memory_bytes",
        help: "Current memory reservation of the domain.",
        typ: "gauge",
        emit: |e, d| e.one(stats(d).map(|s| Val::U(s.memory_bytes))),
    },
    DomainFamily {
        name: "xen_domain_memory_max_bytes",
        help: "Maximum memory of the domain.",
        typ: "gauge",
        emit: |e, d| e.one(stats(d).and_then(|s| s.memory_max_bytes).map(Val::U)),
    },
    DomainFamily {
        name: "xen_domain_memory_target_bytes",
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
    net_family!("receive_bytes", "Bytes received by the domain.", rx_bytes),
    net_family!(
        "receive_packets",
        "Packets received by the domain.",
        rx_packets
    ),
    net_family!("receive_errors", "Receive errors.", rx_errors),
    net_family!("receive_drops", "Received packets dropped.", rx_drops),
    net_family!("transmit_bytes", "Bytes sent by the domain.", tx_bytes),
    net_family!(
        "transmit_packets",
        "Packets sent by the domain.",
        tx_packets
    ),
    net_family!("transmit_errors", "Transmit errors.", tx_errors),
    net_family!("transmit_drops", "Sent packets dropped.", tx_drops),
    block_family!(
        "read_bytes",
        "Bytes read from the virtual block device.",
        read_bytes
    ),
    block_family!(
        "write_bytes",
        "Bytes written to the virtual block device.",
        write_bytes
    ),
    block_family!("read_requests", "Read requests.", read_requests),
    block_family!("write_requests", "Write requests.", write_requests),
    block_family!(
        "oo_requests",
        "Out-of-request events (ring full).",
        oo_requests
    ),
    DomainFamily {
        name: "xen_domain_guest_page_faults_total",
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
        name: "xen_domain_guest_memory_available_bytes",
        help: "MemAvailable inside the guest.",
        typ: "gauge",
        emit: |e, d| e.one(guest(d).and_then(|g| g.memory_available_bytes).map(Val::U)),
    },
    DomainFamily {
        name: "xen_domain_guest_swap_used_bytes",
        help: "Swap used inside the guest.",
        typ: "gauge",
        emit: |e, d| e.one(guest(d).and_then(|g| g.swap_used_bytes).map(Val::U)),
    },
    DomainFamily {
        name: "xen_domain_guest_report_age_seconds",
        help: "Seconds since the guest agent last reported.",
        typ: "gauge",
        emit: |e, d| e.one(guest(d).and_then(|g| g.age_seconds).map(Val::F)),
    },
];

/// The host's families (also used by the test reference renderer).
pub(crate) fn render_host(w: &mut Writer, s: &Snapshot) {
    if let Some(h) = &s.host {
        w.header(
            "xen_host_info",
            "Information about the hypervisor; always 1.",
            "gauge",
        );
        let v = label("xen_version", h.xen_version.as_deref().unwrap_or("unknown"));
        w.sample("xen_host_info", &v, "", Val::U(1));
        w.single(
            "xen_host_memory_total_bytes",
            "Memory of the host, as the hypervisor sees it.",
            "gauge",
            Val::U(h.memory_total_bytes),
        );
        w.single(
            "xen_host_memory_free_bytes",
            "Memory not given to any domain.",
            "gauge",
            Val::U(h.memory_free_bytes),
        );
        w.single(
            "xen_host_cpus",
            "Physical CPUs of the host.",
            "gauge",
            Val::U(u64::from(h.cpus)),
        );
        w.single(
            "xen_host_cpu_hz",
            "CPU frequency of the host.",
            "gauge",
            Val::U(h.cpu_hz),
        );
    }
    if s.host.is_some() || !s.domains.is_empty() {
        w.single(
            "xen_host_domains",
            "Domains on the host, dom0 included.",
            "gauge",
            Val::U(s.domains.len() as u64),
        );
    }
    if !s.migrations.is_empty() {
        w.header(
            "xen_domain_migration_duration_seconds",
            "Live migrations this host saw in xenstore, by direction.",
            "histogram",
        );
        for (dir, h) in &s.migrations {
            w.histogram(
                "xen_domain_migration_duration_seconds",
                &label("direction", dir.as_str()),
                h,
            );
        }
    }
    if let Some(d) = &s.dom0 {
        for (i, n) in ["1", "5", "15"].iter().enumerate() {
            w.single(
                &format!("xentinel_dom0_load{n}"),
                "dom0 load average.",
                "gauge",
                Val::F(d.load[i]),
            );
        }
        w.single(
            "xentinel_dom0_memory_available_bytes",
            "MemAvailable of dom0.",
            "gauge",
            Val::U(d.memory_available_bytes),
        );
        w.single(
            "xentinel_dom0_memory_total_bytes",
            "MemTotal of dom0.",
            "gauge",
            Val::U(d.memory_total_bytes),
        );
        if !d.temperatures.is_empty() {
            w.header(
                "xentinel_dom0_temperature_celsius",
                "Temperature sensors seen from dom0.",
                "gauge",
            );
            for (sensor, t) in &d.temperatures {
                w.sample(
                    "xentinel_dom0_temperature_celsius",
                    &label("sensor", sensor),
                    "",
                    Val::F(*t),
                );
            }
        }
    }
    w.header(
        "xentinel_host_warning",
        "1 while a warning failure (a failure that announces itself) is raised on this host.",
        "gauge",
    );
    for k in WarningKind::ALL {
        let on = s.warnings.get(&k).copied().unwrap_or(false);
        w.sample(
            "xentinel_host_warning",
            &label("kind", k.as_str()),
            "",
            Val::U(u64::from(on)),
        );
    }
    if let Some((ce, ue)) = s.hardware_errors {
        w.header(
            "xentinel_host_hardware_errors_total",
            "Memory errors counted by EDAC.",
            "counter",
        );
        w.sample(
            "xentinel_host_hardware_errors_total",
            "type=\"corrected\"",
            "",
            Val::U(ce),
        );
        w.sample(
            "xentinel_host_hardware_errors_total",
            "type=\"uncorrected\"",
            "",
            Val::U(ue),
        );
    }
}

/// xentinel's own families (also used by the test reference renderer).
pub(crate) fn render_self(w: &mut Writer, s: &Snapshot) {
    w.header(
        "xentinel_build_info",
        "Build of xentinel; always 1.",
        "gauge",
    );
    let b = format!(
        "{},{},{}",
        label("version", BUILD.version),
        label("revision", BUILD.revision),
        label("rustversion", BUILD.rustversion)
    );
    w.sample("xentinel_build_info", &b, "", Val::U(1));
    if !s.sources.is_empty() {
        w.header(
            "xentinel_source_up",
            "1 when the source's last collection succeeded.",
            "gauge",
        );
        for st in &s.sources {
            w.sample(
                "xentinel_source_up",
                &label("source", st.name),
                "",
                Val::U(u64::from(st.up)),
            );
        }
        w.header(
            "xentinel_source_duration_seconds",
            "Duration of the source's last collection.",
            "gauge",
        );
        for st in &s.sources {
            w.sample(
                "xentinel_source_duration_seconds",
                &label("source", st.name),
                "",
                Val::F(st.duration_seconds),
            );
        }
    }
    w.header(
        "xentinel_guest_reports_rejected_total",
        "Guest-agent values rejected as garbage, negative, oversized or implausible.",
        "counter",
    );
    for reason in crate::guest::REASONS {
        let n = s
            .self_stats
            .guest_rejections
            .get(reason)
            .copied()
            .unwrap_or(0);
        w.sample(
            "xentinel_guest_reports_rejected_total",
            &label("reason", reason),
            "",
            Val::U(n),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label(&mut s, "a\"b\\c\nd é");
        assert_eq!(s, "a\\\"b\\\\c\\nd é");
    }

    #[test]
    fn numbers_render_as_prometheus_reads_them() {
        let mut s = String::new();
        push_f64(&mut s, 3.0);
        s.push(' ');
        push_f64(&mut s, 0.25);
        s.push(' ');
        push_f64(&mut s, f64::INFINITY);
        s.push(' ');
        push_u64(&mut s, u64::MAX);
        assert_eq!(s, "3 0.25 +Inf 18446744073709551615");
    }

    #[test]
    fn domain_families_follow_the_snapshot() {
        let mut c = Collection::default();
        c.stats.insert(
            3,
            DomainStats {
                domid: 3,
                state: Some(DomainState::Paused),
                cpu_seconds: 1.5,
                vcpu_count: 1,
                vcpus: vec![Vcpu {
                    id: 0,
                    online: true,
                    cpu_seconds: 1.5,
                }],
                memory_bytes: 1024,
                ..Default::default()
            },
        );
        c.meta.insert(
            3,
            DomainMeta {
                domid: 3,
                name: Some("web \"1\"".into()),
                uuid: Some("u".into()),
                ..Default::default()
            },
        );
        let s = Snapshot::merge(c, vec![], SelfStats::default());
        let mut out = String::new();
        render(&s, &mut out);
        assert!(
            out.contains("xen_domain_info{domain=\"web \\\"1\\\"\",uuid=\"u\",domid=\"3\"} 1\n")
        );
        assert!(out.contains(
            "xen_domain_state{domain=\"web \\\"1\\\"\",uuid=\"u\",state=\"paused\"} 1\n"
        ));
        assert!(out.contains(
            "xen_domain_state{domain=\"web \\\"1\\\"\",uuid=\"u\",state=\"running\"} 0\n"
        ));
        assert!(
            out.contains("xen_domain_cpu_seconds_total{domain=\"web \\\"1\\\"\",uuid=\"u\"} 1.5\n")
        );
        // No value, no family: max memory is unknown here.
        assert!(!out.contains("xen_domain_memory_max_bytes"));
        // Warnings are always present, 0 when not raised.
        assert!(out.contains("xentinel_host_warning{kind=\"maintenance\"} 0\n"));

        let empty = Snapshot::merge(Collection::default(), vec![], SelfStats::default());
        let mut out = String::new();
        render(&empty, &mut out);
        assert!(!out.contains("xen_domain_info"));
    }

    /// A snapshot exercising every family and every escape: names with quotes,
    /// backslashes, newlines, braces and non-ASCII; domains with stats only,
    /// meta only, partial guest reports; odd floats; several NICs and disks.
    pub(crate) fn hostile_snapshot() -> Snapshot {
        let mut c = Collection::default();
        let names = [
            "web \"1\"",
            "back\\slash",
            "new\nline",
            "}{,=\"",
            "é中\u{1F600}",
            "",
            "domid-9",
            "trailing\\",
        ];
        for (i, name) in names.iter().enumerate() {
            let domid = i as u32 * 3;
            let floats = [
                0.0,
                1.5,
                1e15,
                1e-7,
                f64::NAN,
                f64::INFINITY,
                -2.25,
                123456.789,
            ];
            let f = floats[i % floats.len()];
            if i != 5 {
                c.stats.insert(
                    domid,
                    DomainStats {
                        domid,
                        name: Some(format!("lib-{name}")),
                        state: (i != 2).then_some(DomainState::ALL[i % 6]),
                        cpu_seconds: f,
                        vcpu_count: (i % 3) as u32,
                        vcpus: (0..(i % 3) as u32)
                            .map(|id| Vcpu {
                                id,
                                online: id % 2 == 0,
                                cpu_seconds: f * f64::from(id + 1),
                            })
                            .collect(),
                        memory_bytes: u64::MAX - i as u64,
                        memory_max_bytes: (i % 2 == 0).then_some(1 << 30),
                        ssid: None,
                        networks: (0..(i % 3) as u32)
                            .map(|id| NetIf {
                                id,
                                rx_bytes: 1 << (i + 10),
                                rx_packets: 7,
                                rx_errors: 1,
                                rx_drops: 2,
                                tx_bytes: 3,
                                tx_packets: 4,
                                tx_errors: 5,
                                tx_drops: 6,
                            })
                            .collect(),
                        vbds: (0..(i % 3))
                            .map(|k| Vbd {
                                device: format!("xvd{k}\"\\\n{name}"),
                                read_requests: 1,
                                write_requests: 2,
                                read_bytes: 3,
                                write_bytes: 4,
                                oo_requests: 5,
                            })
                            .collect(),
                    },
                );
            }
            if i != 6 {
                c.meta.insert(
                    domid,
                    DomainMeta {
                        domid,
                        name: (i != 7).then(|| name.to_string()),
                        uuid: (i % 4 != 1).then(|| format!("uuid-{i}\"\\\n")),
                        memory_target_bytes: (i % 2 == 1).then_some(42),
                        guest: GuestReport {
                            page_faults_minor: (i % 2 == 0).then_some(10),
                            page_faults_major: (i % 3 == 0).then_some(0),
                            memory_available_bytes: (i != 3).then_some(1 << 20),
                            swap_used_bytes: (i == 4).then_some(5),
                            age_seconds: (i != 0).then_some(f),
                        },
                        probe_target: None,
                    },
                );
            }
        }
        c.host = Some(HostStats {
            memory_total_bytes: 1 << 36,
            memory_free_bytes: 12345,
            cpus: 16,
            cpu_hz: 2_400_000_000,
            xen_version: Some("4.17 \"x\"\\\n".into()),
        });
        c.dom0 = Some(Dom0Health {
            load: [0.5, f64::NAN, 1e20],
            memory_available_bytes: 1,
            memory_total_bytes: 2,
            temperatures: vec![("cpu \"0\"\n".into(), 45.5), ("b\\".into(), -1.0)],
        });
        c.warn(WarningKind::UpsOnBattery, true);
        c.hardware_errors = Some((3, 4));
        // The heartbeat mesh: a peer with a hostile name, one never answered.
        let mut rtt = Histogram::new(&[25e-6, 1e-3, 0.5]);
        rtt.observe(60e-6);
        rtt.observe(2.0);
        c.heartbeat = Some(HeartbeatStats {
            peers: vec![
                PeerStats {
                    name: "h\"2\\\n".into(),
                    rtt,
                    sent: 10,
                    received: 9,
                    lost: 1,
                    late: 0,
                    up: true,
                    longest_gap_seconds: 0.25,
                },
                PeerStats {
                    name: "silent".into(),
                    rtt: Histogram::new(&[25e-6, 1e-3, 0.5]),
                    sent: 7,
                    received: 0,
                    lost: 7,
                    late: 2,
                    up: false,
                    longest_gap_seconds: f64::INFINITY,
                },
            ],
            rejected: [("bad_mac", 2), ("replay", 0), ("unknown_peer", 5)]
                .into_iter()
                .collect(),
        });
        // Probes: one with durations, one never run, one on a meta-only domain.
        let mut ph = Histogram::new(&[0.005, 0.25, 1e-4]);
        ph.observe(0.1);
        ph.observe(f64::INFINITY);
        for (domid, h, success) in [
            (0, ph, true),
            (3, Histogram::new(&[0.5]), false),
            (15, Histogram::new(&[]), true),
        ] {
            c.probes.insert(
                domid,
                ProbeStats {
                    target: "tcp://x:1".into(),
                    duration: h,
                    success,
                },
            );
        }
        let mut h = Histogram::new(&[0.5, 1.0, 2.5, 10.0, 1e-3]);
        h.observe(0.7);
        h.observe(100.0);
        c.migrations.insert(Direction::Incoming, h);
        c.migrations
            .insert(Direction::Outgoing, Histogram::new(&[0.25]));
        let sources = vec![
            SourceStatus {
                name: "sim",
                up: true,
                duration_seconds: 0.000123,
            },
            SourceStatus {
                name: "x\"s",
                up: false,
                duration_seconds: 5.0,
            },
        ];
        let mut rej = std::collections::BTreeMap::new();
        rej.insert("garbage", 3);
        Snapshot::merge(
            c,
            sources,
            SelfStats {
                guest_rejections: rej,
            },
        )
    }

    fn assert_same_as_reference(s: &Snapshot) {
        let mut want = String::new();
        crate::render_reference::render(s, &mut want);
        let mut got = String::new();
        render(s, &mut got);
        if got != want {
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "output differs from the reference at line {}:\n got: {:?}\nwant: {:?}",
                line + 1,
                got.lines().nth(line),
                want.lines().nth(line)
            );
        }
    }

    #[test]
    fn output_is_byte_identical_to_the_reference() {
        let s = hostile_snapshot();
        assert_same_as_reference(&s);
        let mut out = String::new();
        render(&s, &mut out);
        // The snapshot does reach every kind of family.
        for fam in [
            "xen_domain_block_oo_requests_total{",
            "xen_domain_guest_report_age_seconds{",
            "xen_domain_migration_duration_seconds_bucket{",
            "xentinel_dom0_temperature_celsius{",
            "xen_domain_probe_duration_seconds_bucket{",
            "xen_domain_probe_success{",
        ] {
            assert!(out.contains(fam), "{fam}");
        }
        // Rendering into a buffer that already holds something appends.
        let mut out = String::from("x");
        render(&s, &mut out);
        assert!(out.starts_with('x'));
        assert_same_as_reference(&Snapshot::merge(
            Collection::default(),
            vec![],
            SelfStats::default(),
        ));
    }

    /// `xentinel_build_info`'s labels depend on the build: the golden files
    /// hold placeholders instead.
    fn without_build(text: &str) -> String {
        text.replace(
            &format!(
                "{},{},{}",
                label("version", BUILD.version),
                label("revision", BUILD.revision),
                label("rustversion", BUILD.rustversion)
            ),
            "version=\"VERSION\",revision=\"REVISION\",rustversion=\"RUSTVERSION\"",
        )
    }

    /// Compares a rendering with `tests/golden/<name>`; `XENTINEL_BLESS=1`
    /// rewrites the file instead (after an intended change of the output).
    fn assert_golden(name: &str, s: &Snapshot) {
        let mut got = String::new();
        render(s, &mut got);
        let got = without_build(&got);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("XENTINEL_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &got).unwrap();
            return;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}): XENTINEL_BLESS=1 cargo test --lib golden writes it",
                path.display()
            )
        });
        if got != want {
            let line = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
            let around = |t: &str| -> Vec<String> {
                t.lines()
                    .enumerate()
                    .skip(line.saturating_sub(2))
                    .take(5)
                    .map(|(i, l)| format!("{:>6}: {l}", i + 1))
                    .collect()
            };
            panic!(
                "the rendering differs from {} from line {} on (XENTINEL_BLESS=1 rewrites it \
                 after an intended change)\nwant:\n{}\ngot:\n{}",
                path.display(),
                line + 1,
                around(&want).join("\n"),
                around(&got).join("\n")
            );
        }
    }

    #[test]
    fn golden_hostile_snapshot() {
        let s = hostile_snapshot();
        assert_golden("hostile.prom", &s);
        let mut out = String::new();
        render(&s, &mut out);
        // The snapshot does reach every kind of family: domain, host, self, heartbeat.
        for fam in [
            "xen_domain_block_oo_requests_total{",
            "xen_domain_guest_report_age_seconds{",
            "xen_domain_migration_duration_seconds_bucket{",
            "xen_host_memory_free_bytes ",
            "xentinel_dom0_temperature_celsius{",
            "xentinel_host_hardware_errors_total{",
            "xentinel_build_info{",
            "xentinel_source_up{",
            "xentinel_guest_reports_rejected_total{",
            "xentinel_heartbeat_rtt_seconds_bucket{",
            "xentinel_heartbeat_longest_gap_seconds{",
            "xentinel_heartbeat_rejected_total{",
            "xen_domain_probe_duration_seconds_bucket{",
            "xen_domain_probe_success{",
        ] {
            assert!(out.contains(fam), "{fam}");
        }
        assert_golden(
            "empty.prom",
            &Snapshot::merge(Collection::default(), vec![], SelfStats::default()),
        );
    }

    /// The golden files are valid exposition text by Prometheus' own checker.
    #[test]
    fn golden_files_pass_promtool() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        for name in ["hostile.prom", "empty.prom", "sim-host.prom"] {
            let path = dir.join(name);
            let text = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            use std::io::Write;
            use std::process::{Command, Stdio};
            let mut child = Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run promtool ({e}): apt-get install prometheus")
                });
            child.stdin.take().unwrap().write_all(&text).unwrap();
            let out = child.wait_with_output().unwrap();
            let findings = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && findings.trim().is_empty(),
                "promtool check metrics {name}: {findings}"
            );
        }
    }

    #[test]
    fn rendering_in_chunks_gives_the_same_bytes() {
        let s = hostile_snapshot();
        let mut whole = String::new();
        render(&s, &mut whole);
        for limit in [0, 1, 100, 1000, 1 << 20] {
            let mut r = Rendering::new(&s);
            let mut joined = String::new();
            let mut chunks = 0;
            loop {
                let mut chunk = String::new();
                let done = r.fill(&s, &mut chunk, limit);
                joined.push_str(&chunk);
                chunks += 1;
                assert!(chunks < 10_000, "no progress at limit {limit}");
                if done {
                    break;
                }
            }
            assert_eq!(joined, whole, "limit {limit}");
            assert!(r.done());
            if limit == 100 {
                assert!(chunks > 10);
            }
        }
    }

    #[test]
    fn simulated_host_renders_like_the_reference() {
        use crate::sim::{Cluster, ClusterSpec, SimSource};
        use std::sync::{Arc, Mutex};
        let mut cl = Cluster::new(ClusterSpec::one_host("xen1", 40), 3).unwrap();
        cl.step(std::time::Duration::from_secs(7));
        let src = SimSource::new(Arc::new(Mutex::new(cl)), "xen1");
        let mut c = Collection::default();
        src.fill(&mut c).unwrap();
        let s = Snapshot::merge(c, vec![], SelfStats::default());
        assert_eq!(s.domains.len(), 41);
        assert_same_as_reference(&s);
        assert_golden("sim-host.prom", &s);
    }
}
