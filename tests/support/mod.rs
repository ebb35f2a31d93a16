//! Shared helpers for integration tests; each test binary uses `mod support;`
//! and only part of it.
#![allow(dead_code)]

pub mod alertmanager;
pub mod dashboards;
pub mod heartbeat_pair;
pub mod http;
pub mod netns;
pub mod proc;
pub mod prom_text;
pub mod scrape;
pub mod webhook;
pub mod xenstored;
