//! xentinel: a Prometheus exporter, heartbeat and migration webhook for Xen hosts.

pub mod cli;
pub mod collector;
pub mod config;
pub mod exposition;
pub mod guest;
pub mod http;
pub mod http_client;
pub mod log;
pub mod migration;
pub mod roles;
pub mod signals;
pub mod sim;
pub mod snapshot;
pub mod sources;
