//! Exposition: turns a [`Snapshot`] into the Prometheus text format
//! (version 0.0.4), and reads that format back ([`parse`]).
//!
//! - [`writer`]: escaping, numbers, headers and samples.
//! - [`names`]: every metric name, shared with the planner.
//! - the families by area: per domain (`domain`), host (`host`), xentinel
//!   itself (`own`) and the heartbeat mesh ([`heartbeat`]).
//! - [`Rendering`]: the whole text in order, resumable in pieces.
//! - [`parse`]: the one text-format parser of the crate.
//!
//! Every scrape renders a fresh snapshot, so a domain that is gone from the
//! snapshot is gone from the output: there is no registry to keep in step.

mod domain;
pub mod heartbeat;
mod host;
pub mod names;
mod own;
pub mod parse;
pub mod writer;

use crate::snapshot::Snapshot;

use domain::{DOMAIN_FAMILIES, DomainFamily, Emitter, LeCache, PROBE_FAMILIES};
pub use own::{BUILD, BuildInfo};
pub use writer::{CONTENT_TYPE, Val, Writer, escape_label, label};

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
                    host::render_host(&mut w, s);
                } else {
                    own::render_self(&mut w, s);
                    heartbeat::render_mesh(&mut w, s);
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

#[cfg(test)]
mod tests;
