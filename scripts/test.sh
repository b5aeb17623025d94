#!/usr/bin/env bash
# Runs every test of CTI Host on a fresh machine (Debian, Rust stable, root).
# Installs the system packages the tests need when they are missing, builds
# the whole workspace (the end-to-end tests drive the built binary and plugin
# libraries), then runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages used by tests (none yet beyond Rust and a C compiler).
need=()
for pkg in ${CTI_TEST_PACKAGES:-}; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done 2>/dev/null || true
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

cargo build --release --workspace --locked
cargo test --release --workspace --locked "$@"
