#!/usr/bin/env bash
# Figures on a real multi-node swarm (tests/fleet.sh: mgr, pi-a, pi-b), markdown rows on stdout
# (bench/run.sh puts them in RESULTS.md):
#   bench/fleet.sh [--rounds N]                  alerts to LEDs (fleet-alerts)
#   bench/fleet.sh --backfill [--partitions S,S] backfill after partitions of S seconds
#                                                (fleet-backfill; default 120,1800: ~40 min)
#   bench/fleet.sh --scale [--sizes N,N]         the fleet at N agents on the workers (fleet-scale;
#                                                default 10,30,100,300: ~25 min), with the dashboard
#   bench/fleet.sh --roll [--nodes N,N] [--parallelism P,P]
#                                                a rolling upgrade through the launchers on N nodes,
#                                                P at a time (fleet-roll; default 3,6,12 and 1,4: a
#                                                fleet of 12 nodes, ~15 min)
# Builds the local images on an isolated dockerd (tests/dockerd.sh), loads them on every node,
# runs target/release/fleet-alerts, and stops everything again, also on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=10
bin=fleet-alerts
partitions=120,1800
sizes=10,30,100,300
nodes=3,6,12
parallelism=1,4
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --backfill) bin=fleet-backfill; shift ;;
    --partitions) partitions=$2; shift 2 ;;
    --scale) bin=fleet-scale; shift ;;
    --sizes) sizes=$2; shift 2 ;;
    --roll) bin=fleet-roll; shift ;;
    --nodes) nodes=$2; shift 2 ;;
    --parallelism) parallelism=$2; shift 2 ;;
    *) echo "usage: bench/fleet.sh [--rounds N] [--backfill [--partitions S,S]] [--scale [--sizes N,N]] [--roll [--nodes N,N] [--parallelism P,P]]" >&2; exit 2 ;;
    esac
done
export EDGESENSE_FLEET_DIR=${EDGESENSE_FLEET_DIR:-/tmp/edgesense-fleet-bench}
export EDGESENSE_FLEET_PREFIX=${EDGESENSE_FLEET_PREFIX:-esb}
export EDGESENSE_FLEET_SUBNET=${EDGESENSE_FLEET_SUBNET:-192.168.232}
export EDGESENSE_DOCKERD_DIR=${EDGESENSE_DOCKERD_DIR:-/tmp/edgesense-dockerd-bench}
log=bench/out/$(basename "$EDGESENSE_FLEET_DIR").log
mkdir -p bench/out
: >"$log"
trap 'tests/fleet.sh stop >>"$log" 2>&1; tests/dockerd.sh stop >>"$log" 2>&1' EXIT
cargo build --locked -q -p edgesense --bin edgesense
cargo build --release --locked -q -p edgesense-bench --bin "$bin"
dh=$(tests/dockerd.sh start)
DOCKER_HOST=$dh stack/images/build.sh >>"$log" 2>&1
images=$(mktemp /tmp/edgesense-bench-images.XXXXXX.tar)
DOCKER_HOST=$dh docker save -o "$images" \
    edgesense/agent:local edgesense/prometheus:local edgesense/alertmanager:local edgesense/launcher:local
fleet_nodes=(mgr pi-a pi-b)
if [ "$bin" = fleet-roll ]; then
    # One node per agent, as many as the largest size; the bench dockerd stays up: the upgrade
    # image (edgesense/agent:next) is made on it (edgesense_tests::docker::upgrade_images).
    most=$(tr ',' '\n' <<<"$nodes" | sort -n | tail -1)
    fleet_nodes=(mgr)
    for i in $(seq 1 $((most - 1))); do fleet_nodes+=("r$i"); done
    export EDGESENSE_TEST_DOCKER_HOST=$dh
else
    tests/dockerd.sh stop >>"$log" 2>&1
fi
EDGESENSE_FLEET_IMAGES=$images tests/fleet.sh start "${fleet_nodes[@]}" >>"$log" 2>&1
rm -f "$images"
if [ "$bin" = fleet-backfill ]; then
    EDGESENSE_BIN=$PWD/target/debug/edgesense target/release/fleet-backfill --partitions "$partitions" 2>>"$log"
elif [ "$bin" = fleet-roll ]; then
    EDGESENSE_BIN=$PWD/target/debug/edgesense target/release/fleet-roll --nodes "$nodes" --parallelism "$parallelism" 2>>"$log"
elif [ "$bin" = fleet-scale ]; then
    # The dashboard's driver (playwright-core) and Chromium, as the tests use them.
    (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) >>"$log" 2>&1
    EDGESENSE_BIN=$PWD/target/debug/edgesense target/release/fleet-scale --sizes "$sizes" --dashboard 2>>"$log"
else
    EDGESENSE_BIN=$PWD/target/debug/edgesense target/release/fleet-alerts --rounds "$rounds" 2>>"$log"
fi
