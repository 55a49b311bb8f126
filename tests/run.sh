#!/usr/bin/env bash
# Every check and test of edgesense: README's test command, and what CI runs (.ci/run).
# Installs what is missing (Debian packages, rustup components), idempotently, then runs
# rustfmt, clippy -D warnings, cargo deny, and all tests (cargo-nextest if present, else cargo
# test), the fuzz targets for a few seconds each and the benchmark harness's quick run.
#
# Where the time goes (CI's budget is 40 minutes on 2 cores): the compilers, and tests that
# wait on dockerds. So the work that needs no test (the ARM builds, cargo-deny, the fuzz
# targets) is done at the lowest CPU priority while the end-to-end tests wait on their swarms,
# and what needs the ARM builds (the emulated Pis, qemu-user, the multi-platform image) runs
# after it, on a quiet host.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Each step's heading, with the time the previous one took (CI's budget is 40 min on 2 cores).
last_step=""
step_start=$SECONDS
step() {
    [ -z "$last_step" ] || printf '(%s: %d s)\n' "$last_step" $((SECONDS - step_start))
    last_step=$1
    step_start=$SECONDS
    printf '\n==> %s  [at %d s]\n' "$*" "$SECONDS"
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: need root (or sudo) to run: $*" >&2; exit 1
    fi
}

# Debian packages the tests use, keyed by the command they provide.
declare -A PKG_FOR=(
    [promtool]=prometheus
    [prometheus]=prometheus
    [amtool]=prometheus-alertmanager
    [prometheus-alertmanager]=prometheus-alertmanager
    [dockerd]=docker.io
    [qemu-aarch64-static]=qemu-user-static
    [qemu-arm-static]=qemu-user-static
    [readelf]=binutils
    [docker-registry]=docker-registry
    [mtype]=mtools
    [sfdisk]=fdisk
    [mke2fs]=e2fsprogs
    [losetup]=mount
    [xz]=xz-utils
    [cloud-init]=cloud-init
    [chromium]=chromium
    [node]=nodejs
    [npm]=npm
    [ip]=iproute2
    [nsenter]=util-linux
    # ring's C for the static x86_64 musl builds (images, benchmarks).
    [musl-gcc]=musl-tools
    # The capture of the fleet's LAN (no secret in clear).
    [tcpdump]=tcpdump
)
missing=()
for cmd in "${!PKG_FOR[@]}"; do
    command -v "$cmd" >/dev/null || missing+=("${PKG_FOR[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    # Sorted and unique: one package can provide several of the commands.
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for comp in rustfmt clippy; do
    if ! cargo "${comp/rustfmt/fmt}" --version >/dev/null 2>&1; then
        step "installing rustup component $comp"
        rustup component add "$comp"
    fi
done

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "shipped Prometheus and Alertmanager configs (promtool, amtool)"
# --syntax-only: the TLS files it names are swarm secrets, only there in the task.
promtool check config --syntax-only stack/assets/prometheus.yml
promtool test rules stack/assets/rules/edgesense.test.yml
amtool check-config stack/assets/alertmanager.yml

step "building the binaries the end-to-end tests run"
cargo build --workspace --bins --locked
export EDGESENSE_AGENT_BIN="$PWD/target/debug/edgesense-agent"
export EDGESENSE_BIN="$PWD/target/debug/edgesense"

step "isolated dockerd (tests/dockerd.sh) and the local images (stack/images/build.sh)"
export EDGESENSE_TEST_DOCKER_HOST
EDGESENSE_TEST_DOCKER_HOST=$(tests/dockerd.sh start)
fleets=(/tmp/edgesense-fleet /tmp/edgesense-fleet2)
background=""
stop_all() {
    [ -z "$background" ] || kill -- -"$background" 2>/dev/null || true
    for f in "${fleets[@]}"; do EDGESENSE_FLEET_DIR=$f tests/fleet.sh stop || true; done
    tests/dockerd.sh stop
}
trap stop_all EXIT
DOCKER_HOST=$EDGESENSE_TEST_DOCKER_HOST stack/images/build.sh

step "two multi-node swarms (tests/fleet.sh): mgr, pi-a, pi-b, each a dockerd in its own namespaces"
images=$(mktemp /tmp/edgesense-images.XXXXXX.tar)
DOCKER_HOST=$EDGESENSE_TEST_DOCKER_HOST docker save -o "$images" \
    edgesense/agent:local edgesense/prometheus:local edgesense/alertmanager:local edgesense/launcher:local
EDGESENSE_FLEET_DIR=${fleets[0]} EDGESENSE_FLEET_PREFIX=esf EDGESENSE_FLEET_SUBNET=192.168.231 \
    EDGESENSE_FLEET_IMAGES=$images tests/fleet.sh start mgr pi-a pi-b
EDGESENSE_FLEET_DIR=${fleets[1]} EDGESENSE_FLEET_PREFIX=esg EDGESENSE_FLEET_SUBNET=192.168.233 \
    EDGESENSE_FLEET_IMAGES=$images tests/fleet.sh start mgr pi-a pi-b
rm -f "$images"
export EDGESENSE_FLEET_DIRS="${fleets[0]}:${fleets[1]}"

step "browser test driver (playwright-core from npm, Debian's Chromium)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

step "emulated Raspberry Pis (tests/qemu.sh fetch: Debian's kernels and busybox, cached in target/qemu)"
tests/qemu.sh fetch

step "test binaries"
nextest=""
command -v cargo-nextest >/dev/null && nextest=1
if [ -n "$nextest" ]; then
    cargo nextest run --workspace --locked --no-run
else
    cargo test --workspace --locked --no-run
fi

# Everything the tests do not need, in the background at the lowest CPU and I/O priority (its
# own process group, killed on exit; its output in a log, shown if it fails):
#   - the ARM builds (scripts/build-arm.sh): the agent and the CLI for the Pi 3/4/5 (aarch64)
#     and the Pi Zero (ARMv6), which the emulated Pis run, and the ARMv7 agent for the
#     multi-platform image (the ARMv7 CLI is the same code as the ARMv6 one, which runs on
#     every 32-bit Pi: not built here, a fifth of this step);
#   - cargo deny (licenses, bans, sources; deny.toml), installed if missing;
#   - the fuzz targets (fuzz/run.sh --build-only).
step "tests that need no ARM build, while the ARM builds, cargo deny and the fuzz targets build"
background_log=$(mktemp /tmp/edgesense-background.XXXXXX.log)
set -m
(
    RUN_START=$((EPOCHSECONDS - SECONDS)) nice -n 19 ionice -c 3 sh -c '
        set -e
        at() { echo "--- $* [at $(($(date +%s) - RUN_START)) s]"; }
        at aarch64
        scripts/build-arm.sh aarch64-unknown-linux-musl
        at armv7
        scripts/build-arm.sh armv7-unknown-linux-musleabihf edgesense-agent
        at armv6
        scripts/build-arm.sh arm-unknown-linux-musleabihf
        at cargo deny
        # A debug build: a third of the compile of a release build; the check takes a second.
        command -v cargo-deny >/dev/null || cargo install --locked --quiet --debug cargo-deny
        cargo deny --locked check bans licenses sources
        at fuzz targets
        fuzz/run.sh --build-only
        at done'
) >"$background_log" 2>&1 &
background=$!
set +m
# What needs the ARM builds: the emulated Pis (pi.rs), qemu-user (arm.rs), the multi-platform
# image (images.rs).
needs_arm='binary(pi) | binary(arm) | binary(images)'
rest_status=0
if [ -n "$nextest" ]; then
    # Four at once: .config/nextest.toml's groups keep fleet tests to one per swarm.
    cargo nextest run --workspace --locked --no-fail-fast --test-threads 4 -E "not ($needs_arm)" || rest_status=$?
else
    cargo test --workspace --locked --no-fail-fast -- \
        --skip pi_3b_runs_the_aarch64_agent --skip pi_zero_runs_the_armv6_agent \
        --skip agent_binaries_are_static_and_serve_metrics_under_qemu \
        --skip one_name_serves_every_platform_from_a_registry || rest_status=$?
fi

step "waiting for the ARM builds, cargo deny and the fuzz targets"
if ! wait "$background"; then
    background=""
    cat "$background_log" >&2
    echo "error: the ARM builds, cargo deny or the fuzz targets failed (their log is above)" >&2
    exit 1
fi
background=""
grep -E '^(---|target/.*bytes$|bans|licenses|sources)' "$background_log" || true
rm -f "$background_log"

step "tests that need the ARM builds: the emulated Pis, qemu-user, the multi-platform image"
# TCG emulation is CPU-bound: on a quiet host (CI saw a Pi Zero's blink and pulse checks fail
# beside a compile).
arm_status=0
if [ -n "$nextest" ]; then
    cargo nextest run --workspace --locked --no-fail-fast -E "$needs_arm" || arm_status=$?
else
    cargo test --locked -p edgesense-tests --test pi --test arm --test images || arm_status=$?
fi
if [ "$rest_status" != 0 ] || [ "$arm_status" != 0 ]; then
    echo "error: tests failed (needing no ARM build: exit $rest_status; the ARM ones: exit $arm_status)" >&2
    exit 100
fi

# The two side by side (the fuzzer takes one core for its 10 s a target; the quick run's figures
# are rough anyway): a minute less of CI.
step "fuzzing, 10 s per target on the committed corpora (fuzz/run.sh), beside the benchmark harness's quick run (bench/run.sh --quick; figures only, nothing asserted)"
fuzz_log=$(mktemp /tmp/edgesense-fuzz.XXXXXX.log)
set -m
fuzz/run.sh 10 >"$fuzz_log" 2>&1 &
background=$!
set +m
bench_status=0
bench/run.sh --quick || bench_status=$?
fuzz_status=0
wait "$background" || fuzz_status=$?
background=""
cat "$fuzz_log"
rm -f "$fuzz_log"
if [ "$fuzz_status" != 0 ] || [ "$bench_status" != 0 ]; then
    echo "error: fuzzing exit $fuzz_status, benchmark quick run exit $bench_status" >&2
    exit 1
fi
step "done"
