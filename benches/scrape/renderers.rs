//! Renderer comparison on one in-process snapshot (filled in below).

/// Renders the same `domains`-domain snapshot through each renderer `runs` times.
pub fn compare(_domains: usize, _runs: usize) -> String {
    "not measured yet.\n".into()
}
