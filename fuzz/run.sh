#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions (default 10 million), one after
# the other on one core, and prints libFuzzer's figures for each.
#   fuzz/run.sh                 # all targets, 10M executions each
#   RUNS=100000 fuzz/run.sh manifest
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# New inputs go to fuzz/corpus/<target> (not committed); the seeds in
# fuzz/seeds/<target> are read, never written. A crash stops the run with
# the reproducer in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-10000000}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifest ctl_command sim_settings elf_check privacy baresip_wire listener_request xmpp_core)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  start=$(date +%s)
  cargo +nightly fuzz run -O -a "$t" "corpus/$t" "seeds/$t" -- \
    -runs="$RUNS" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 2>&1 | tee "corpus/$t.log" | grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY)" || true
  end=$(date +%s)
  echo "$t: $(($end - $start)) s wall, corpus $(ls "corpus/$t" | wc -l) files"
done
