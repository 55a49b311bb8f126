#!/usr/bin/env bash
# Write throughput of `edgesense flash` against `xz -dc | dd bs=4M` (and plain `dd bs=4M`) to a
# file on the same disk, same image, same run. The image is 1 GiB: 384 MiB of random data and
# the rest zeros, like a Raspberry Pi OS image's mix of content and free space.
#   bench/flash.sh [SIZE_MIB]      prints a Markdown table
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
size=${1:-1024}
cargo build --release --locked -q -p edgesense
cli=target/release/edgesense
work=$(mktemp -d "${TMPDIR:-/var/tmp}/edgesense-flash-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
img="$work/bench.img"
# A real partition table and FAT boot partition, so `flash` checks the image as it would a Pi's.
truncate -s "${size}M" "$img"
printf 'label: dos\nstart=8192, size=81920, type=c\nstart=90112, type=83\n' | sfdisk -q "$img"
mformat -i "$img@@4194304" -T 81920 -h 64 -s 32 -F -v bootfs ::
head -c $((384 << 20)) /dev/urandom | dd of="$img" bs=4M seek=$((90112 * 512)) oflag=seek_bytes conv=notrunc status=none
xz -T2 -1 -k "$img"

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
rate() { echo "scale=1; $size * 1.048576 / $1" | bc; }
# The median of three runs: writing to the page cache and its write-back is noisy.
run() {
    local times=()
    for _ in 1 2 3; do rm -f "$work/out"; sync; times+=("$(secs "$@")"); done
    printf '%s\n' "${times[@]}" | sort -n | sed -n 2p
}

t_dd_xz=$(run bash -c "xz -dc '$img.xz' | dd of='$work/out' bs=4M conv=fsync status=none")
t_flash_xz=$(run "$cli" flash "$img.xz" --to "$work/out" --no-customise --no-verify)
t_flash_xz_v=$(run "$cli" flash "$img.xz" --to "$work/out" --no-customise)
t_dd=$(run dd if="$img" of="$work/out" bs=4M conv=fsync status=none)
t_flash=$(run "$cli" flash "$img" --to "$work/out" --no-customise --no-verify)

echo "Write throughput to a file on the same disk, ${size} MiB image, median of 3 ($(nproc) cores, $(date -I))"
echo
echo "| command | seconds | MB/s | vs the dd way |"
echo "|---|---:|---:|---:|"
row() { printf '| %s | %.2f | %s | %s× |\n' "$1" "$2" "$(rate "$2")" "$(echo "scale=2; $3 / $2" | bc)"; }
row "\`xz -dc img.xz | dd bs=4M conv=fsync\`" "$t_dd_xz" "$t_dd_xz"
row "\`edgesense flash img.xz --no-verify\`" "$t_flash_xz" "$t_dd_xz"
row "\`edgesense flash img.xz\` (+ read-back verify)" "$t_flash_xz_v" "$t_dd_xz"
row "\`dd if=img bs=4M conv=fsync\`" "$t_dd" "$t_dd"
row "\`edgesense flash img --no-verify\`" "$t_flash" "$t_dd"
