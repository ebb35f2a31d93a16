//! Roles: what each subcommand of the binary runs. The only modules that see
//! command-line types.

pub mod demo;
pub mod evacuate;
pub mod exporter;
pub mod guest_agent;
pub mod paper;
pub mod webhook;
pub mod xs_tx;
