//! Rows for the roles other branches are building: the migration webhook and
//! the heartbeat mesh. Each says "not measured" while the binary lacks them.

use std::path::Path;
use std::process::Command;

/// True when `xentinel <args>` succeeds and its output contains `needle`.
fn binary_has(bin: &Path, args: &[&str], needle: &str) -> bool {
    Command::new(bin).args(args).output().is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .to_lowercase()
                .contains(needle)
    })
}

/// Webhook: POST-to-first-migration-start latency and alerts/s.
pub fn bench_webhook(bin: &Path, _logs: &Path) -> String {
    if !binary_has(bin, &["webhook", "--help"], "webhook") {
        return "not measured: the binary has no `webhook` subcommand yet \
                (`xentinel webhook --help` fails; it is being written on branch `webhook`).\n"
            .into();
    }
    "not measured: `xentinel webhook` exists but this bench does not drive it yet.\n".into()
}

/// Heartbeat: CPU per second at a 10 ms interval with 16 peers on loopback.
pub fn bench_heartbeat(bin: &Path, _logs: &Path) -> String {
    if !binary_has(bin, &["exporter", "--help"], "heartbeat") {
        return "not measured: `xentinel exporter --help` has no heartbeat flags yet \
                (the mesh is being written on branch `heartbeat`).\n"
            .into();
    }
    "not measured: heartbeat flags exist but this bench does not drive them yet.\n".into()
}
