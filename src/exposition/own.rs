//! xentinel's own families: its build, each source's last collection, and
//! the guest reports it rejected.

use super::names::*;
use super::writer::{Val, Writer, label};
use crate::snapshot::Snapshot;

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

/// xentinel's own families.
pub(super) fn render_self(w: &mut Writer, s: &Snapshot) {
    w.header(BUILD_INFO, "Build of xentinel; always 1.", "gauge");
    let b = format!(
        "{},{},{}",
        label("version", BUILD.version),
        label("revision", BUILD.revision),
        label("rustversion", BUILD.rustversion)
    );
    w.sample(BUILD_INFO, &b, "", Val::U(1));
    if !s.sources.is_empty() {
        w.header(
            SOURCE_UP,
            "1 when the source's last collection succeeded.",
            "gauge",
        );
        for st in &s.sources {
            w.sample(
                SOURCE_UP,
                &label("source", st.name),
                "",
                Val::U(u64::from(st.up)),
            );
        }
        w.header(
            SOURCE_DURATION_SECONDS,
            "Duration of the source's last collection.",
            "gauge",
        );
        for st in &s.sources {
            w.sample(
                SOURCE_DURATION_SECONDS,
                &label("source", st.name),
                "",
                Val::F(st.duration_seconds),
            );
        }
    }
    w.header(
        GUEST_REPORTS_REJECTED,
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
            GUEST_REPORTS_REJECTED,
            &label("reason", reason),
            "",
            Val::U(n),
        );
    }
}
