//! xentinel: a Prometheus exporter, heartbeat and migration webhook for Xen hosts.
//!
//! Data flows one way: [`sources`] fill a [`model::Collection`], the
//! [`collector`] merges it into a [`model::Snapshot`], [`render`] writes the
//! exposition format and [`http`] serves it.

pub mod cli;
pub mod collector;
pub mod config;
pub mod demo;
pub mod exporter;
pub mod guest;
pub mod guest_agent;
pub mod heartbeat;
pub mod http;
pub mod log;
pub mod migration;
pub mod model;
pub mod render;
#[cfg(test)]
mod render_reference;
pub mod signals;
pub mod sim;
pub mod sources;
pub mod stack;
pub mod webconfig;
