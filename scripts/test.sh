#!/usr/bin/env bash
# The test command: installs what the tests need, then runs the lints, builds
# the Debian packages (tests/packages.rs installs, verifies and purges them)
# and runs the whole suite (unit tests, integration tests against real
# Prometheus, Alertmanager, xenstore CLI, network namespaces, and Xen 4.17 in
# QEMU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
scripts/build-packages.sh
cargo test --locked -- --test-threads 2
