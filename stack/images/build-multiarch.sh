#!/usr/bin/env bash
# The agent image for every Pi (and PCs), one name for all:
#
#   stack/images/build-multiarch.sh [REGISTRY [TAG]]
#
# Builds edgesense/agent FROM scratch (stack/images/Dockerfile.agent) for linux/amd64,
# linux/arm64, linux/arm/v7 and linux/arm/v6 from the static binaries in
# target/<triple>/release/edgesense-agent (scripts/build-arm.sh and stack/images/build.sh build
# them; missing ones are built here).
#   - without REGISTRY: local tags edgesense/agent:local-amd64, -arm64, -armv7, -armv6;
#     `edgesense node run --image edgesense/agent:local` picks the node's one.
#   - with REGISTRY (host:port, e.g. a Pi running Debian's docker-registry): pushes
#     REGISTRY/edgesense/agent:TAG-<arch> and a manifest list REGISTRY/edgesense/agent:TAG (TAG
#     defaults to the workspace version), so every node pulls the same name.
# Prints each image's size. Needs docker (DOCKER_HOST honoured); nothing is pulled.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
registry=${1:-}
tag=${2:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# platform  arch-suffix  rust target
platforms=(
    "linux/amd64 amd64 x86_64-unknown-linux-musl"
    "linux/arm64 arm64 aarch64-unknown-linux-musl"
    "linux/arm/v7 armv7 armv7-unknown-linux-musleabihf"
    "linux/arm/v6 armv6 arm-unknown-linux-musleabihf"
)
refs=()
for p in "${platforms[@]}"; do
    read -r platform arch triple <<<"$p"
    bin="target/$triple/release/edgesense-agent"
    [ -f "$bin" ] || scripts/build-arm.sh "$triple" edgesense-agent >&2
    ctx="$work/$arch"
    mkdir -p "$ctx/state"
    cp "$bin" "$ctx/edgesense-agent"
    cp stack/images/Dockerfile.agent "$ctx/Dockerfile"
    if [ -n "$registry" ]; then ref="$registry/edgesense/agent:$tag-$arch"; else ref="edgesense/agent:local-$arch"; fi
    # --no-cache: the legacy builder's cache ignores --platform.
    docker build --no-cache --platform "$platform" -q -t "$ref" "$ctx" >/dev/null
    size=$(docker image inspect "$ref" --format '{{.Size}}')
    printf '%s\t%s\t%s bytes\n' "$ref" "$platform" "$size"
    if [ -n "$registry" ]; then
        docker push -q "$ref" >/dev/null
        refs+=("$ref")
    fi
done
if [ -n "$registry" ]; then
    list="$registry/edgesense/agent:$tag"
    docker manifest rm "$list" >/dev/null 2>&1 || true
    docker manifest create --insecure "$list" "${refs[@]}" >/dev/null
    docker manifest push --insecure --purge "$list" >/dev/null
    echo "$list: manifest list for ${#refs[@]} platforms"
fi
