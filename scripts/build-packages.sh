#!/usr/bin/env bash
# Builds the Debian packages into target/debian/ from one release build:
#   xentinel        dom0: exporter, webhook, evacuate, their units, /etc/xentinel/xentinel.yml
#   xentinel-guest  domU: the guest agent and its unit (the cargo-deb variant `guest`)
# Metadata: [package.metadata.deb*] in Cargo.toml; files: debian/. tests/packages.rs checks
# them. Needs cargo-deb at the version scripts/install-test-deps.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(sed -n 's/^CARGO_DEB_VERSION=//p' scripts/install-test-deps.sh)
have=$(cargo deb --version 2>/dev/null || true)
if [ "$have" != "cargo-deb $want" ]; then
  echo "build-packages: cargo-deb $want is needed (found: ${have:-none});" \
    "scripts/install-test-deps.sh installs it: cargo install --locked cargo-deb --version $want" >&2
  exit 1
fi
rm -f target/debian/xentinel_*.deb target/debian/xentinel-guest_*.deb
cargo deb --locked
cargo deb --locked --variant guest --no-build
ls -l target/debian/*.deb
