#!/usr/bin/env bash
# Runs the cargo-fuzz targets, each for SECONDS (default 10), on its committed corpus:
#   fuzz/run.sh [SECONDS] [TARGET...]
# Runs of a minute or more add new interesting inputs to fuzz/corpus/TARGET (minimise before
# committing: cargo fuzz cmin -O TARGET corpus/TARGET); shorter runs (CI) keep new inputs in
# fuzz/target/scratch-corpus so the tree stays clean. A crash is saved in fuzz/artifacts/TARGET
# and fails the run (turn it into a regression test, then fix it).
#   fuzz/run.sh --build-only  builds the targets for short runs and stops (tests/run.sh does it
#                             while the tests run, so that CI's fuzzing step only fuzzes)
# Short runs (under a minute: CI's smoke run over the corpora) use a debug build, with overflow
# checks and debug assertions (a third less of CI's time to build, and what they catch is a
# bug too: a boot sector's FAT layout overflowing fatfs's arithmetic, found so); runs of a
# minute or more an optimised one (-O), for speed.
# Needs cargo-fuzz (installed if missing); nightly features through RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(w1_slave sysfs_values agent_config webhook led_body boot_partition)
# A debug build of cargo-fuzz (it only drives cargo): a fraction of a release build's compile.
command -v cargo-fuzz >/dev/null || cargo install --locked --debug cargo-fuzz
export RUSTC_BOOTSTRAP=1
mode=(--dev)
[ "$secs" = --build-only ] || [ "$secs" -lt 60 ] || mode=(-O)
cargo fuzz build "${mode[@]}" >/dev/null
[ "$secs" = --build-only ] && exit 0
for t in "${targets[@]}"; do
    max_len=4096
    [ "$t" = boot_partition ] && max_len=65536
    mkdir -p "corpus/$t" "artifacts/$t"
    dirs=("corpus/$t")
    if [ "$secs" -lt 60 ]; then
        rm -rf "target/scratch-corpus/$t" && mkdir -p "target/scratch-corpus/$t"
        dirs=("target/scratch-corpus/$t" "corpus/$t")
    fi
    echo "fuzz $t for ${secs}s on $(ls "corpus/$t" | wc -l) corpus inputs"
    cargo fuzz run "${mode[@]}" "$t" "${dirs[@]}" -- -max_total_time="$secs" -max_len="$max_len" \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|thread)|panicked|Done" || true
    if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "error: fuzz target $t crashed; inputs in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
