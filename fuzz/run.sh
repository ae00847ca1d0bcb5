#!/usr/bin/env bash
# Fuzzes every target in turn for SECS seconds each (default 180) with AFL++ through afl.rs,
# then prints each target's executions, coverage and crashes. Needs `cargo install cargo-afl`.
# Crashes land in out/<target>/default/crashes/: copy them to regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-180}
targets=(ocpp_frame ocpp_call link_frame link_request firmware_header profile keymap scenario)
cargo afl build --release
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1
mkdir -p out
for t in "${targets[@]}"; do
  rm -rf "out/$t"
  cargo afl fuzz -i "corpus/$t" -o "out/$t" -V "$secs" "target/release/$t" >"out/$t.log" 2>&1
done
printf '%-16s %12s %10s %8s %8s\n' target executions exec/s coverage crashes
for t in "${targets[@]}"; do
  f="out/$t/default/fuzzer_stats"
  get() { awk -F: -v k="$1" '$1 ~ "^"k" *$" {gsub(/ /, "", $2); print $2}' "$f"; }
  printf '%-16s %12s %10s %8s %8s\n' "$t" "$(get execs_done)" "$(get execs_per_sec)" \
    "$(get bitmap_cvg)" "$(get saved_crashes)"
done
