//! Shared helpers for integration tests; each test binary uses `mod support;`
//! and only part of it.
#![allow(dead_code)]

pub mod netns;
pub mod scrape;
pub mod xenstored;
