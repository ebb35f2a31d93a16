//! xentinel: a Prometheus exporter, heartbeat and migration webhook for Xen hosts.
pub mod model;
pub mod sim;
pub mod sources;
