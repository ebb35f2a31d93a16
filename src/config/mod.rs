//! Configuration: the YAML file (`--config.file`), its defaults, and errors
//! that name the file, line, column and field — all of them at once.
//!
//! - [`values`]: the value types (durations, names, addresses, probe
//!   targets…) and what is wrong with a bad one ([`ValueError`]).
//! - [`leaf`]: [`V`], a leaf that records its own parse error and lets
//!   parsing go on, so one run reports every bad value.
//! - [`sections`]: the file's sections and their defaults.
//! - [`errors`]: [`ConfigError`] and [`ConfigErrors`].
//! - [`mod@load`]: reading and parsing; unknown keys are found with
//!   `serde_ignored` and located in the text. No file means all defaults.
//!
//! The second layer: it depends on nothing of the crate.

pub mod errors;
pub mod leaf;
pub mod load;
pub mod read;
pub mod sections;
pub mod values;

pub use errors::{ConfigError, ConfigErrors};
pub use leaf::V;
pub use load::{check_peers, load, load_str, load_yaml, parse_checked, parse_yaml};
pub use read::{MAX_DEPTH, MAX_FILE_BYTES, ReadError, TooDeep, check_depth, read_bytes, read_text};
pub use sections::*;
pub use values::{
    Bounded, Dur, HostPort, Interval, ListenAddr, MAX_DURATION, Name, ProbeTarget, ValueError,
    bounded_duration, parse_duration,
};

#[cfg(test)]
mod tests;
