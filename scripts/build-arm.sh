#!/usr/bin/env bash
# Static, stripped release builds of the agent and the CLI for one Raspberry Pi target, without
# cross's container images:
#
#   scripts/build-arm.sh TARGET [PACKAGE...]     (default packages: edgesense-agent edgesense)
#
#   aarch64-unknown-linux-musl       Pi 3/4/5, 64-bit OS   rustup's std, C and linking by zig
#   armv7-unknown-linux-musleabihf   Pi 2/3/4, 32-bit OS   std built from source, zig
#   arm-unknown-linux-musleabihf     Pi Zero/1 (ARMv6)     std built from source for arm1176jzf-s
#   x86_64-unknown-linux-musl        PCs, the tests        rustup's std, C by musl-gcc (musl-tools)
#
# ring (rustls's crypto) compiles C and assembly for the target, so every target but this
# machine's own needs a C cross compiler: zig's, through cargo-zigbuild (pip packages ziglang
# and cargo-zigbuild, installed with --user if missing). Where `rustup target add` serves the
# target's standard library it is used; where it does not (the 32-bit ARM musl targets here),
# the standard library is built from source (`-Zbuild-std`, rust-src). The binaries land in
# target/TARGET/release/; their sizes are printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${1:?usage: scripts/build-arm.sh TARGET [PACKAGE...]}
shift
packages=("$@")
[ ${#packages[@]} -gt 0 ] || packages=(edgesense-agent edgesense)
pkg_args=()
for p in "${packages[@]}"; do pkg_args+=(-p "$p"); done

rustflags=""
case "$target" in
    arm-unknown-linux-musleabihf) rustflags="-C target-cpu=arm1176jzf-s" ;;
    armv7-unknown-linux-musleabihf | aarch64-unknown-linux-musl | x86_64-unknown-linux-musl) ;;
    *) echo "error: unsupported target $target" >&2; exit 2 ;;
esac

need_zig() {
    export PATH="$HOME/.local/bin:$PATH"
    if ! command -v cargo-zigbuild >/dev/null || ! python3 -m ziglang version >/dev/null 2>&1; then
        python3 -m pip install --quiet --user ziglang cargo-zigbuild
    fi
}

host="$(uname -m)-unknown-linux-musl"
if [ "$target" = "$host" ]; then
    echo "==> $target: this machine's own target, plain cargo" >&2
    rustup target list --installed | grep -qx "$target" || rustup target add "$target" >/dev/null
    RUSTFLAGS="$rustflags" cargo build --release --locked --target "$target" "${pkg_args[@]}"
elif rustup target list --installed | grep -qx "$target" || rustup target add "$target" >/dev/null 2>&1; then
    echo "==> $target: rustup's standard library, zig for C and linking" >&2
    need_zig
    RUSTFLAGS="$rustflags" cargo zigbuild --release --locked --target "$target" "${pkg_args[@]}"
else
    echo "==> $target: no prebuilt standard library; building it from source with zig as linker" >&2
    rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
    need_zig
    # musl's own CRT objects come from zig, so Rust's self-contained ones stay out.
    # A target directory of its own: proc-macro2's build script reruns when RUSTC_BOOTSTRAP
    # changes, so sharing target/release's host proc macros with plain builds would rebuild
    # them, and every crate that uses them, on each switch (88 s of the next x86_64 build).
    RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C link-self-contained=no $rustflags" CARGO_TARGET_DIR=target/build-std \
        cargo zigbuild --release --locked --target "$target" -Zbuild-std=std,panic_abort "${pkg_args[@]}"
    mkdir -p "target/$target/release"
    for p in "${packages[@]}"; do
        bin=$p
        [ "$p" = edgesense-agent ] || bin=edgesense
        cp "target/build-std/$target/release/$bin" "target/$target/release/$bin"
    done
fi

status=0
for p in "${packages[@]}"; do
    bin="target/$target/release/$p"
    [ "$p" = edgesense-agent ] || bin="target/$target/release/edgesense"
    # Static: no program interpreter and no shared library needed.
    if readelf -l "$bin" 2>/dev/null | grep -q 'Requesting program interpreter' ||
        readelf -d "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
        echo "error: $bin is dynamically linked" >&2
        status=1
    fi
    printf '%s\t%s bytes\n' "$bin" "$(stat -c %s "$bin")"
done
exit $status
