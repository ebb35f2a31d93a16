//! The renderer as it was before the allocation-free rewrite (commit d839d39),
//! plus the heartbeat families main has rendered after it since, kept for
//! tests only: the current renderer must produce byte-identical output (see
//! `render::tests::output_is_byte_identical_to_the_reference`).

use std::fmt::Write;

use crate::model::{Domain, DomainState, Histogram, Snapshot, WarningKind};
use crate::render::BUILD;

/// Appends `v` to `out` escaped as a label value (`\`, `"` and newline).
pub fn escape_label(out: &mut String, v: &str) {
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
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // SAFETY-free: ASCII digits only.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
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

/// Renders a whole snapshot.
pub fn render(s: &Snapshot, out: &mut String) {
    let mut w = Writer { out };
    let prefixes: Vec<String> = s
        .domains
        .iter()
        .map(|d| format!("{},{}", label("domain", &d.name), label("uuid", &d.uuid)))
        .collect();
    render_domains(&mut w, &s.domains, &prefixes);
    render_host(&mut w, s);
    render_self(&mut w, s);
    // Rendered since by the heartbeat module, after these families.
    crate::heartbeat::render::render(&mut crate::render::Writer { out: &mut *w.out }, s);
}

/// Writes one family over all domains; `f` emits the domain's samples.
fn family<F>(
    w: &mut Writer,
    doms: &[Domain],
    pre: &[String],
    name: &str,
    help: &str,
    typ: &str,
    f: F,
) where
    F: Fn(&Domain) -> Vec<(String, Val)>,
{
    // Emit the header only if at least one domain has a value, so an absent
    // family is absent rather than an empty header.
    let mut wrote_header = false;
    for (d, p) in doms.iter().zip(pre) {
        for (extra, v) in f(d) {
            if !wrote_header {
                w.header(name, help, typ);
                wrote_header = true;
            }
            w.sample(name, p, &extra, v);
        }
    }
}

/// Like [`family`] for families with exactly zero or one sample per domain and no extra label.
fn family1<F>(
    w: &mut Writer,
    doms: &[Domain],
    pre: &[String],
    name: &str,
    help: &str,
    typ: &str,
    f: F,
) where
    F: Fn(&Domain) -> Option<Val>,
{
    let mut wrote_header = false;
    for (d, p) in doms.iter().zip(pre) {
        if let Some(v) = f(d) {
            if !wrote_header {
                w.header(name, help, typ);
                wrote_header = true;
            }
            w.sample(name, p, "", v);
        }
    }
}

fn render_domains(w: &mut Writer, doms: &[Domain], pre: &[String]) {
    if !doms.is_empty() {
        w.header(
            "xen_domain_info",
            "Information about a domain; always 1.",
            "gauge",
        );
        for (d, p) in doms.iter().zip(pre) {
            let mut domid = String::from("domid=\"");
            push_u64(&mut domid, u64::from(d.domid));
            domid.push('"');
            w.sample("xen_domain_info", p, &domid, Val::U(1));
        }
    }
    family(
        w,
        doms,
        pre,
        "xen_domain_state",
        "Run state of a domain, one-hot.",
        "gauge",
        |d| {
            let Some(st) = d.stats.as_ref().and_then(|s| s.state) else {
                return vec![];
            };
            DomainState::ALL
                .iter()
                .map(|s| {
                    (
                        format!("state=\"{}\"", s.as_str()),
                        Val::U(u64::from(*s == st)),
                    )
                })
                .collect()
        },
    );
    fn st(d: &Domain) -> Option<&crate::model::DomainStats> {
        d.stats.as_ref()
    }
    family1(
        w,
        doms,
        pre,
        "xen_domain_cpu_seconds_total",
        "CPU time used by the domain's vCPUs.",
        "counter",
        |d| st(d).map(|s| Val::F(s.cpu_seconds)),
    );
    family(
        w,
        doms,
        pre,
        "xen_domain_vcpu_seconds_total",
        "CPU time used by one vCPU.",
        "counter",
        |d| {
            st(d).map_or(vec![], |s| {
                s.vcpus
                    .iter()
                    .map(|v| (format!("vcpu=\"{}\"", v.id), Val::F(v.cpu_seconds)))
                    .collect()
            })
        },
    );
    family(
        w,
        doms,
        pre,
        "xen_domain_vcpu_online",
        "1 when the vCPU is online.",
        "gauge",
        |d| {
            st(d).map_or(vec![], |s| {
                s.vcpus
                    .iter()
                    .map(|v| (format!("vcpu=\"{}\"", v.id), Val::U(u64::from(v.online))))
                    .collect()
            })
        },
    );
    family1(
        w,
        doms,
        pre,
        "xen_domain_vcpus",
        "Number of vCPUs of the domain.",
        "gauge",
        |d| st(d).map(|s| Val::U(u64::from(s.vcpu_count))),
    );
    family1(
        w,
        doms,
        pre,
        "xen_domain_memory_bytes",
        "Current memory reservation of the domain.",
        "gauge",
        |d| st(d).map(|s| Val::U(s.memory_bytes)),
    );
    family1(
        w,
        doms,
        pre,
        "xen_domain_memory_max_bytes",
        "Maximum memory of the domain.",
        "gauge",
        |d| st(d).and_then(|s| s.memory_max_bytes).map(Val::U),
    );
    family1(
        w,
        doms,
        pre,
        "xen_domain_memory_target_bytes",
        "Balloon target from xenstore memory/target.",
        "gauge",
        |d| {
            d.meta
                .as_ref()
                .and_then(|m| m.memory_target_bytes)
                .map(Val::U)
        },
    );
    render_net(w, doms, pre);
    render_block(w, doms, pre);
    render_guest(w, doms, pre);
}

type NetField = fn(&crate::model::NetIf) -> u64;

fn render_net(w: &mut Writer, doms: &[Domain], pre: &[String]) {
    let fields: [(&str, &str, NetField); 8] = [
        ("receive_bytes", "Bytes received by the domain.", |n| {
            n.rx_bytes
        }),
        ("receive_packets", "Packets received by the domain.", |n| {
            n.rx_packets
        }),
        ("receive_errors", "Receive errors.", |n| n.rx_errors),
        ("receive_drops", "Received packets dropped.", |n| n.rx_drops),
        ("transmit_bytes", "Bytes sent by the domain.", |n| {
            n.tx_bytes
        }),
        ("transmit_packets", "Packets sent by the domain.", |n| {
            n.tx_packets
        }),
        ("transmit_errors", "Transmit errors.", |n| n.tx_errors),
        ("transmit_drops", "Sent packets dropped.", |n| n.tx_drops),
    ];
    for (suffix, help, get) in fields {
        let name = format!("xen_domain_network_{suffix}_total");
        family(w, doms, pre, &name, help, "counter", |d| {
            d.stats.as_ref().map_or(vec![], |s| {
                s.networks
                    .iter()
                    .map(|n| (format!("interface=\"{}\"", n.id), Val::U(get(n))))
                    .collect()
            })
        });
    }
}

type VbdField = fn(&crate::model::Vbd) -> u64;

fn render_block(w: &mut Writer, doms: &[Domain], pre: &[String]) {
    let fields: [(&str, &str, VbdField); 5] = [
        (
            "read_bytes",
            "Bytes read from the virtual block device.",
            |b| b.read_bytes,
        ),
        (
            "write_bytes",
            "Bytes written to the virtual block device.",
            |b| b.write_bytes,
        ),
        ("read_requests", "Read requests.", |b| b.read_requests),
        ("write_requests", "Write requests.", |b| b.write_requests),
        ("oo_requests", "Out-of-request events (ring full).", |b| {
            b.oo_requests
        }),
    ];
    for (suffix, help, get) in fields {
        let name = format!("xen_domain_block_{suffix}_total");
        family(w, doms, pre, &name, help, "counter", |d| {
            d.stats.as_ref().map_or(vec![], |s| {
                s.vbds
                    .iter()
                    .map(|b| (label("device", &b.device), Val::U(get(b))))
                    .collect()
            })
        });
    }
}

fn render_guest(w: &mut Writer, doms: &[Domain], pre: &[String]) {
    let g = |d: &Domain| d.meta.as_ref().map(|m| m.guest.clone()).unwrap_or_default();
    family(
        w,
        doms,
        pre,
        "xen_domain_guest_page_faults_total",
        "Page faults inside the guest, from its agent.",
        "counter",
        |d| {
            let r = g(d);
            let mut v = vec![];
            if let Some(x) = r.page_faults_minor {
                v.push(("kind=\"minor\"".to_string(), Val::U(x)));
            }
            if let Some(x) = r.page_faults_major {
                v.push(("kind=\"major\"".to_string(), Val::U(x)));
            }
            v
        },
    );
    family1(
        w,
        doms,
        pre,
        "xen_domain_guest_memory_available_bytes",
        "MemAvailable inside the guest.",
        "gauge",
        |d| g(d).memory_available_bytes.map(Val::U),
    );
    family1(
        w,
        doms,
        pre,
        "xen_domain_guest_swap_used_bytes",
        "Swap used inside the guest.",
        "gauge",
        |d| g(d).swap_used_bytes.map(Val::U),
    );
    family1(
        w,
        doms,
        pre,
        "xen_domain_guest_report_age_seconds",
        "Seconds since the guest agent last reported.",
        "gauge",
        |d| g(d).age_seconds.map(Val::F),
    );
}

fn render_host(w: &mut Writer, s: &Snapshot) {
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

fn render_self(w: &mut Writer, s: &Snapshot) {
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
