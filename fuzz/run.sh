#!/usr/bin/env bash
# Runs the cargo-fuzz targets, each for SECONDS (default 10), on its committed corpus:
#   fuzz/run.sh [SECONDS] [TARGET...]
# New interesting inputs are added to fuzz/corpus/TARGET; a crash is saved in
# fuzz/artifacts/TARGET and fails the run (turn it into a regression test, then fix it).
# Needs cargo-fuzz (installed if missing); nightly features through RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(w1_slave sysfs_values agent_config webhook led_body boot_partition)
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null
for t in "${targets[@]}"; do
    max_len=4096
    [ "$t" = boot_partition ] && max_len=65536
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "fuzz $t for ${secs}s"
    cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -max_len="$max_len" \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|thread)|panicked|Done" || true
    if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "error: fuzz target $t crashed; inputs in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
