//! The host's families: the hypervisor's view (memory, CPUs, domains),
//! migrations seen in xenstore, dom0's health, warnings and hardware errors.

use super::names::*;
use super::writer::{Val, Writer, label};
use crate::snapshot::{Snapshot, WarningKind};

/// The host's families.
pub(super) fn render_host(w: &mut Writer, s: &Snapshot) {
    if let Some(h) = &s.host {
        w.header(
            HOST_INFO,
            "Information about the hypervisor; always 1.",
            "gauge",
        );
        let v = label("xen_version", h.xen_version.as_deref().unwrap_or("unknown"));
        w.sample(HOST_INFO, &v, "", Val::U(1));
        w.single(
            HOST_MEMORY_TOTAL_BYTES,
            "Memory of the host, as the hypervisor sees it.",
            "gauge",
            Val::U(h.memory_total_bytes),
        );
        w.single(
            HOST_MEMORY_FREE_BYTES,
            "Memory not given to any domain.",
            "gauge",
            Val::U(h.memory_free_bytes),
        );
        w.single(
            HOST_CPUS,
            "Physical CPUs of the host.",
            "gauge",
            Val::U(u64::from(h.cpus)),
        );
        w.single(
            HOST_CPU_HZ,
            "CPU frequency of the host.",
            "gauge",
            Val::U(h.cpu_hz),
        );
    }
    if s.host.is_some() || !s.domains.is_empty() {
        w.single(
            HOST_DOMAINS,
            "Domains on the host, dom0 included.",
            "gauge",
            Val::U(s.domains.len() as u64),
        );
    }
    if !s.migrations.is_empty() {
        w.header(
            DOMAIN_MIGRATION_DURATION_SECONDS,
            "Live migrations this host saw in xenstore, by direction.",
            "histogram",
        );
        for (dir, h) in &s.migrations {
            w.histogram(
                DOMAIN_MIGRATION_DURATION_SECONDS,
                &label("direction", dir.as_str()),
                h,
            );
        }
    }
    if let Some(d) = &s.dom0 {
        for (i, name) in DOM0_LOAD.iter().enumerate() {
            w.single(name, "dom0 load average.", "gauge", Val::F(d.load[i]));
        }
        w.single(
            DOM0_MEMORY_AVAILABLE_BYTES,
            "MemAvailable of dom0.",
            "gauge",
            Val::U(d.memory_available_bytes),
        );
        w.single(
            DOM0_MEMORY_TOTAL_BYTES,
            "MemTotal of dom0.",
            "gauge",
            Val::U(d.memory_total_bytes),
        );
        if !d.temperatures.is_empty() {
            w.header(
                DOM0_TEMPERATURE_CELSIUS,
                "Temperature sensors seen from dom0.",
                "gauge",
            );
            for (sensor, t) in &d.temperatures {
                w.sample(
                    DOM0_TEMPERATURE_CELSIUS,
                    &label("sensor", sensor),
                    "",
                    Val::F(*t),
                );
            }
        }
    }
    w.header(
        HOST_WARNING,
        "1 while a warning failure (a failure that announces itself) is raised on this host.",
        "gauge",
    );
    for k in WarningKind::ALL {
        let on = s.warnings.get(&k).copied().unwrap_or(false);
        w.sample(
            HOST_WARNING,
            &label("kind", k.as_str()),
            "",
            Val::U(u64::from(on)),
        );
    }
    if let Some((ce, ue)) = s.hardware_errors {
        w.header(
            HOST_HARDWARE_ERRORS,
            "Memory errors counted by EDAC.",
            "counter",
        );
        w.sample(HOST_HARDWARE_ERRORS, "type=\"corrected\"", "", Val::U(ce));
        w.sample(HOST_HARDWARE_ERRORS, "type=\"uncorrected\"", "", Val::U(ue));
    }
}
