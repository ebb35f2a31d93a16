//! How a domain is on a host after a failed migration: `xl list`'s state
//! column, read into a [`SourceState`].

/// How a domain is on a host, as [`super::Executor::state`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// Running, blocked or runnable.
    Running,
    Paused,
    /// Shut down (powered off, rebooting, suspended) and not crashed.
    Shutdown,
    Crashed,
    /// Not on the host (or dying).
    Gone,
}

impl SourceState {
    /// Lower-case name (the `state` label of the webhook's fault counter).
    pub fn name(self) -> &'static str {
        match self {
            SourceState::Running => "running",
            SourceState::Paused => "paused",
            SourceState::Shutdown => "shutdown",
            SourceState::Crashed => "crashed",
            SourceState::Gone => "gone",
        }
    }
}

/// Reads the state column of `xl list` output: the first word after a line's
/// name made of the six flags `r b p s c d`, each its letter or `-`. Dying
/// wins over crashed, shut down and paused, in that order.
pub fn parse_state(out: &str) -> Option<(SourceState, String)> {
    let is_flags =
        |w: &str| w.len() == 6 && w.bytes().zip(*b"rbpscd").all(|(c, f)| c == f || c == b'-');
    let flags = out
        .lines()
        .find_map(|l| l.split_whitespace().skip(1).find(|w| is_flags(w)))?;
    let on = |i: usize| flags.as_bytes()[i] != b'-';
    let state = if on(5) {
        SourceState::Gone
    } else if on(4) {
        SourceState::Crashed
    } else if on(3) {
        SourceState::Shutdown
    } else if on(2) {
        SourceState::Paused
    } else {
        SourceState::Running
    };
    Some((state, flags.to_string()))
}
