//! xentinel: a Prometheus exporter, heartbeat and migration webhook for Xen hosts.
//!
//! # Layers
//!
//! The crate reads bottom-up: a module may use its own layer and the layers
//! below it, never one above. This table is the architecture's one
//! description; `tests/layers.rs` parses it and fails, naming the edge, when
//! a file imports from a higher layer (and when files import each other in a
//! circle).
//!
//! | rank | layer | modules | what it owns |
//! |---|---|---|---|
//! | 1 | base | `snapshot`, `guest`, `log`, `signals`, `http_client` | The data of one scrape ([`snapshot`]); the guest-report format and its rejections ([`guest`]); logging; shutdown signals; the one HTTP client ([`http_client`]). No I/O in `snapshot`. |
//! | 2 | config | `config` | The YAML configuration: values, located errors, sections, loading. |
//! | 3 | sim | `sim` | The modelled cluster: parameters, formulas, cluster state, pre-copy migration, scenarios, a shared stepped cluster. |
//! | 4 | sources | `sources` | Every [`sources::Source`]: libxenstat, xenstore, dom0 health, the sim, the heartbeat mesh, domain probes. |
//! | 5 | collector | `collector` | Runs a host's sources each scrape and merges them into a snapshot. |
//! | 6 | exposition | `exposition` | The text format: its writer, the families by area, the metric names, and its parser. |
//! | 7 | http | `http` | Serving: `/metrics` streamed from the collector, TLS and basic auth (`--web.config.file`). |
//! | 8 | migration | `migration` | The webhook and evacuations on plain options: alerts, receiver, job log, planner, executor, runner. |
//! | 9 | roles | `roles` | What each subcommand runs, with its flags: exporter, guest agent, webhook, evacuate, demo (and its stack). |
//! | 10 | cli | `cli` | The command line: composes the roles' flags and dispatches; `main.rs` (the binary) sits on top. |
//!
//! Data flows one way: [`sources`] fill a [`snapshot::Collection`], the
//! [`collector`] merges it into a [`snapshot::Snapshot`], [`exposition`]
//! writes the text format and [`http`] serves it. The product (layers 1–8)
//! never sees the command line or the demo.

// The product's own lint on top of Cargo.toml's `[lints]` (which also cover
// tests): a function that can return an error returns it, never unwraps.
#![deny(clippy::unwrap_in_result)]

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
