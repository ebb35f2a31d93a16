#!/usr/bin/env bash
# Installs, from Debian's packages, everything the test suite runs for real:
# Prometheus + promtool, Alertmanager + amtool, node_exporter (benchmark
# baseline), the xenstore CLI, libxenstat, ping and nftables (heartbeat tests
# in network namespaces), docker-compose (compose validation) and QEMU with Xen
# 4.17 (the real-hypervisor test). Idempotent; needs root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(
  prometheus prometheus-alertmanager prometheus-node-exporter
  xenstore-utils libxen-dev
  iputils-ping nftables iproute2
  docker-compose
  qemu-system-x86 xen-hypervisor-4.17-amd64 xen-utils-4.17 linux-image-amd64 busybox-static cpio
  gcc libc6-dev openssl curl
  dpkg-dev systemd
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# cargo-deb builds the packages; compiled from crates.io (about 145 s of CPU, 75-300 s of wall
# time on the project's 2-core machine), once.
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
