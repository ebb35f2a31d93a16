//! The renderer as it was before the allocation-free rewrite (commit d839d39),
//! plus the heartbeat families main has rendered after it since, kept for
//! tests only: the current renderer must produce byte-identical output (see
//! `render::tests::output_is_byte_identical_to_the_reference`).

use std::fmt::Write;

use crate::model::{Domain, DomainState, Snapshot};

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
    // The host and self families did not change with the rewrite: the live
    // ones serve here too; only the per-domain families are the old code.
    let mut live = crate::render::Writer { out: &mut *w.out };
    crate::render::render_host(&mut live, s);
    crate::render::render_self(&mut live, s);
    // Rendered since by the heartbeat module, after these families.
    crate::heartbeat::render::render(&mut live, s);
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
