#!/usr/bin/env bash
# Runs every test of CTI Host on a fresh machine (Debian, Rust stable, root).
# Installs the system packages the tests need when they are missing (real SIP
# peers, a real browser), builds the whole workspace (the end-to-end tests
# drive the built binary and plugin libraries), then runs the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  baresip-core sip-tester kamailio   # real telephony: softphone, SIPp, SIP proxy
  chromium chromium-driver           # real browser for the web desktop
  prosody openssl                    # real XMPP server for the chat channel (openssl: test CA)
)
need=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  # Packaged services (kamailio listens on every address) must not start:
  # the tests run their own instances on loopback.
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e "$policy" ] && had_policy=1
  [ $had_policy -eq 1 ] || printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  [ $had_policy -eq 1 ] || rm -f "$policy"
fi
# Packaged services started by an earlier install would hold the standard
# ports on every address (kamailio 5060, prosody 5222/5269).
for svc in kamailio prosody; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl disable --now "$svc" || true
  elif command -v service >/dev/null 2>&1; then
    service "$svc" stop >/dev/null 2>&1 || true
  fi
done

cargo build --release --workspace --locked
# The benchmarks are compiled, not timed (BENCHMARKS.md says how to run them).
cargo bench --workspace --locked --no-run
cargo test --release --workspace --locked "$@"
