#!/usr/bin/env bash
# Benchmarks: builds the release binary, then runs benches/scrape.rs, which
# starts it (and Debian's node_exporter) as child processes, scrapes both over
# loopback, measures the webhook and the heartbeat (on loopback, and between
# network namespaces against ping: needs root), prints a Markdown report and
# writes docs/benchmarks.md. Takes about 4 minutes after the build.
# XENTINEL_BENCH_QUICK=1 for a smoke run; XENTINEL_BENCH_ONLY=netns (or
# renderers, webhook, heartbeat, light) prints one part only.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
if ! [ -x /usr/bin/prometheus-node-exporter ] && ! command -v node_exporter >/dev/null; then
  missing+=(prometheus-node-exporter)
fi
# The heartbeat between network namespaces (as tests/heartbeat_netns.rs).
for p in iputils-ping nftables iproute2; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
cargo build --release --locked
exec cargo bench --locked --bench scrape
