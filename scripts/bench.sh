#!/usr/bin/env bash
# Benchmarks: builds the release binary, then runs benches/scrape.rs, which
# starts it (and Debian's node_exporter) as child processes, scrapes both over
# loopback, prints a Markdown report and writes docs/benchmarks.md.
# Takes about 2 minutes after the build. XENTINEL_BENCH_QUICK=1 for a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! [ -x /usr/bin/prometheus-node-exporter ] && ! command -v node_exporter >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends prometheus-node-exporter
fi
cargo build --release --locked
exec cargo bench --locked --bench scrape
