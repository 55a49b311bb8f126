#!/usr/bin/env bash
# Builds the local images for machines without a registry (and for the tests), without pulling
# anything:
#   edgesense/agent:local         FROM scratch, the static musl agent
#   edgesense/prometheus:local    FROM scratch, Debian's prometheus + its libraries
#   edgesense/alertmanager:local  FROM scratch, Debian's prometheus-alertmanager + its libraries
#   edgesense/launcher:local      FROM scratch, the static musl `edgesense` CLI (stack up --agents)
# Needs: docker (client; DOCKER_HOST honoured), rustup/cargo, musl-gcc (Debian's musl-tools: ring,
# the TLS library, compiles C), Debian's prometheus and prometheus-alertmanager packages.
# Usage: stack/images/build.sh [agent|prometheus|alertmanager|launcher]...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(agent prometheus alertmanager launcher)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

musl_target=x86_64-unknown-linux-musl
case "$(uname -m)" in
    aarch64) musl_target=aarch64-unknown-linux-musl ;;
esac
# The agent, and the CLI when the launcher image is asked for, static for this machine's musl
# target, in one cargo build: the two share most of their dependencies (built once, with the
# features of both), and bench/run.sh builds the same pair, so it measures these very binaries.
packages=(-p edgesense-agent)
for t in "${targets[@]}"; do [ "$t" = launcher ] && packages+=(-p edgesense); done
if ! rustup target list --installed | grep -qx "$musl_target"; then
    rustup target add "$musl_target" >&2
fi
command -v musl-gcc >/dev/null || { echo "error: musl-gcc not found (apt-get install musl-tools): ring, the TLS library, compiles C for $musl_target" >&2; exit 1; }
cargo build --release --locked "${packages[@]}" --target "$musl_target" >&2

# Copies binary $1 and the libraries ldd lists for it into rootfs $2 (same paths).
copy_with_libs() {
    local bin=$1 root=$2
    mkdir -p "$root/bin"
    cp "$bin" "$root/bin/app"
    ldd "$bin" | grep -oE '/[^ ]+' | sort -u | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

build_debian() {
    local name=$1 binary=$2 data=$3 agent=$4
    command -v "$binary" >/dev/null || { echo "error: $binary not found (apt-get install ${5})" >&2; exit 1; }
    local ctx="$work/$name"
    mkdir -p "$ctx/rootfs" "$ctx/data"
    copy_with_libs "$(command -v "$binary")" "$ctx/rootfs"
    # The package's data: web UI assets, Alertmanager's default notification template.
    dpkg -L "$5" | grep '^/usr/share/prometheus/' | while read -r f; do
        if [ -f "$f" ]; then
            mkdir -p "$ctx/rootfs$(dirname "$f")"
            cp "$f" "$ctx/rootfs$f"
        fi
    done
    cp "$agent" "$ctx/rootfs/bin/edgesense-probe"
    cp stack/images/Dockerfile.debian-binary "$ctx/Dockerfile"
    docker build -q -t "edgesense/$name:local" --build-arg DATA="$data" "$ctx" >/dev/null
    echo "built edgesense/$name:local ($("$binary" --version 2>&1 | head -1))"
}

agent=target/$musl_target/release/edgesense-agent
if ldd "$agent" >/dev/null 2>&1 && ! ldd "$agent" 2>&1 | grep -q 'statically linked'; then
    echo "error: $agent is not static" >&2; exit 1
fi
for t in "${targets[@]}"; do
    case "$t" in
        agent)
            mkdir -p "$work/agent/state"
            cp "$agent" "$work/agent/edgesense-agent"
            cp stack/images/Dockerfile.agent "$work/agent/Dockerfile"
            docker build -q -t edgesense/agent:local "$work/agent" >/dev/null
            echo "built edgesense/agent:local ($(stat -c %s "$agent") bytes)"
            ;;
        prometheus) build_debian prometheus prometheus /prometheus "$agent" prometheus ;;
        alertmanager) build_debian alertmanager prometheus-alertmanager /alertmanager "$agent" prometheus-alertmanager ;;
        launcher)
            cli=target/$musl_target/release/edgesense
            mkdir -p "$work/launcher"
            cp "$cli" "$work/launcher/edgesense"
            cp stack/images/Dockerfile.launcher "$work/launcher/Dockerfile"
            docker build -q -t edgesense/launcher:local "$work/launcher" >/dev/null
            echo "built edgesense/launcher:local ($(stat -c %s "$cli") bytes)"
            ;;
        *) echo "error: unknown image $t (agent, prometheus, alertmanager, launcher)" >&2; exit 2 ;;
    esac
done
