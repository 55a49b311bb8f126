#!/usr/bin/env bash
# edgesense against Debian's prometheus-node-exporter, same machine, same run:
#   bench/run.sh            the full run  -> bench/RESULTS.md
#   bench/run.sh --quick    a few seconds of each measurement (tests/run.sh runs it so the harness
#                           cannot rot), with the harness's debug build (tests/run.sh has built
#                           it; its own figures, webhook latency and 1-Wire, are a debug build's)
#                           -> bench/out/RESULTS-quick.md
#   bench/run.sh --build-only   only builds the harness (target/release)
# node_exporter runs twice: as a Pi user would for temperatures only (hwmon, thermal_zone,
# textfile collectors) and with its defaults. Every figure is measured here; nothing is asserted.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ "${1:-}" = --build-only ]; then
    exec cargo build --release --locked -q -p edgesense-bench
fi
quick=0
[ "${1:-}" = --quick ] && quick=1
if [ $quick = 1 ]; then
    SCRAPES=200 WRK_S=2 COLD_RUNS=5 POSTS=500 ROUNDS=1 CONV_MS=20 CG_SCRAPES=20 RECONCILE=1s
    out=bench/out/RESULTS-quick.md
else
    SCRAPES=1000 WRK_S=10 COLD_RUNS=21 POSTS=10000 ROUNDS=10 CONV_MS=750 CG_SCRAPES=100 RECONCILE=15s
    out=bench/RESULTS.md
fi
mkdir -p bench/out
log=bench/out/run.log
: >"$log"

need=()
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
command -v wrk >/dev/null || need+=(wrk)
command -v valgrind >/dev/null || need+=(valgrind)
# ring (TLS) compiles C for the static musl agent.
command -v musl-gcc >/dev/null || need+=(musl-tools)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "building" >&2
rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl >&2
cargo build --release --locked -q -p edgesense-agent -p edgesense --target x86_64-unknown-linux-musl
# The agent and the CLI measured are always the release builds; the harness around them is a
# release build for the full run (its in-process figures go into RESULTS.md) and the debug one
# for the quick run (a release build of its nine binaries is two minutes of CI's two cores).
if [ $quick = 1 ]; then
    cargo build --locked -q -p edgesense-bench
    B=$PWD/target/debug
else
    cargo build --release --locked -q -p edgesense-bench
    B=$PWD/target/release
fi
AGENT=$PWD/target/x86_64-unknown-linux-musl/release/edgesense-agent
CLI=$PWD/target/x86_64-unknown-linux-musl/release/edgesense
NE=$(command -v prometheus-node-exporter)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {  # URL: poll with a 30 s deadline (https: any certificate, this is readiness)
    for _ in $(seq 300); do curl -sfk -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "error: $1 not ready" >&2; return 1
}
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# CPU time of every thread of PID in µs (schedstat: ns on CPU; finer than /proc/PID/stat's ticks).
cpu_us() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s / 1000}'; }

# The fleet's credentials, as `stack up` makes them (stack render keeps them in --state-dir):
# the agent's certificate for the TLS figures, node_exporter gets the same one.
rm -rf bench/out/stack bench/out/state
"$CLI" stack render --out bench/out/stack --state-dir bench/out/state >>"$log"
BUNDLE=$PWD/bench/out/state/agent
CA=$BUNDLE/ca.crt
printf 'tls_server_config:\n  cert_file: %s\n  key_file: %s\n' "$BUNDLE/agent.pem" "$BUNDLE/agent.pem" >bench/out/ne-web.yml
AGENT_TLS=(--tls-cert "$BUNDLE/agent.pem" --tls-ca "$CA" --token-file "$BUNDLE/token")
SCHEME=http

start() {  # NAME CMD...: starts a server on a free port ($SCHEME); sets PORT and PID
    PORT=$(free_port)
    local args=("${@:2}")
    args=("${args[@]//\{port\}/$PORT}")
    "${args[@]}" >>"$log" 2>&1 &
    PID=$!
    pids+=("$PID")
    wait_ready "$SCHEME://127.0.0.1:$PORT/metrics"
}

declare -A R   # results: NAME.figure -> value
measure() {  # NAME CMD...
    local name=$1
    start "$@"
    local pid=$PID port=$PORT url="$SCHEME://127.0.0.1:$PORT/metrics"
    sleep 2   # settle (not readiness): idle means after start-up work is done
    R[$name.rss_idle]=$(kb "$pid" VmRSS)
    local c0 c1 secs how=(scrape "$url" "$SCRAPES")
    [ "$SCHEME" = http ] || how=(tls "$url" "$SCRAPES" "$CA")
    c0=$(cpu_us "$pid")
    secs=$("$B/scrape" "${how[@]}" | awk '$1 == "seconds" {print $2}')
    c1=$(cpu_us "$pid")
    R[$name.cpu_per_1000]=$(awk -v a="$c0" -v b="$c1" -v n="$SCRAPES" 'BEGIN {printf "%.1f", (b - a) / n}')
    R[$name.seq_ms]=$(awk -v s="$secs" -v n="$SCRAPES" 'BEGIN {printf "%.3f", s * 1000 / n}')
    R[$name.rss_after]=$(kb "$pid" VmRSS)
    R[$name.hwm_after]=$(kb "$pid" VmHWM)
    R[$name.bytes]=$(curl -sk "$url" | wc -c)
    if [ "$SCHEME" = https ]; then
        local h
        h=$("$B/scrape" handshakes "$url" "$SCRAPES" "$CA" | awk '$1 == "seconds" {print $2}')
        R[$name.handshake_ms]=$(awk -v s="$h" -v n="$SCRAPES" 'BEGIN {printf "%.3f", s * 1000 / n}')
    fi
    local w
    w=$(wrk -t1 -c8 -d"${WRK_S}s" --latency "$url")
    echo "$name wrk: $w" >>"$log"
    R[$name.rps]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$w")
    R[$name.p50]=$(awk '$1 == "50%" {print $2}' <<<"$w")
    R[$name.p99]=$(awk '$1 == "99%" {print $2}' <<<"$w")
    R[$name.hwm_load]=$(kb "$pid" VmHWM)
    kill "$pid"
}

echo "measuring footprint and /metrics" >&2
measure agent "$AGENT" --simulate --listen "127.0.0.1:{port}"
measure ne_min "$NE" --web.listen-address="127.0.0.1:{port}" --collector.disable-defaults \
    --collector.hwmon --collector.thermal_zone --collector.textfile
measure ne_full "$NE" --web.listen-address="127.0.0.1:{port}"
echo "measuring footprint and /metrics over TLS" >&2
SCHEME=https
measure agent_tls "$AGENT" --simulate --listen "127.0.0.1:{port}" "${AGENT_TLS[@]}"
measure ne_tls "$NE" --web.listen-address="127.0.0.1:{port}" --web.config.file=bench/out/ne-web.yml \
    --collector.disable-defaults --collector.hwmon --collector.thermal_zone --collector.textfile
SCHEME=http

# The Pi Zero's build (ARMv6) under qemu-user: a full TLS handshake and scrape per connection,
# the agent's CPU time per scrape as the emulator spends it (an upper bound for the real SoC).
R[armv6.handshake_ms]="n/a"; R[armv6.cpu_ms]="n/a"
ARMV6=target/arm-unknown-linux-musleabihf/release/edgesense-agent
[ $quick = 1 ] || [ -f "$ARMV6" ] || scripts/build-arm.sh arm-unknown-linux-musleabihf edgesense-agent >>"$log" 2>&1 || true
if [ -f "$ARMV6" ] && command -v qemu-arm-static >/dev/null; then
    echo "measuring TLS on the ARMv6 build under qemu-user" >&2
    SCHEME=https
    start armv6 qemu-arm-static "$ARMV6" --simulate --listen "127.0.0.1:{port}" "${AGENT_TLS[@]}"
    SCHEME=http
    n=$(( SCRAPES / 20 )); [ "$n" -ge 5 ] || n=5
    c0=$(cpu_us "$PID")
    h=$("$B/scrape" handshakes "https://127.0.0.1:$PORT/metrics" "$n" "$CA" | awk '$1 == "seconds" {print $2}')
    c1=$(cpu_us "$PID")
    R[armv6.handshake_ms]=$(awk -v s="$h" -v n="$n" 'BEGIN {printf "%.1f", s * 1000 / n}')
    R[armv6.cpu_ms]=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN {printf "%.1f", (b - a) / n / 1000}')
    R[armv6.share]=$(awk -v c="${R[armv6.cpu_ms]}" 'BEGIN {printf "%.3f", c / 15000 * 100}')
    kill "$PID"
fi

echo "measuring cold start" >&2
cold() { "$B/scrape" coldstart "$COLD_RUNS" "$@" | awk '$1 == "median_ms" {print $2}'; }
R[agent.cold]=$(cold "$AGENT" --simulate --listen "127.0.0.1:{port}")
R[ne_min.cold]=$(cold "$NE" --web.listen-address="127.0.0.1:{port}" --collector.disable-defaults \
    --collector.hwmon --collector.thermal_zone --collector.textfile)

echo "measuring instruction counts (callgrind)" >&2
instructions() {  # NAME CMD...: instructions per scrape
    local name=$1 port cg="bench/out/callgrind.$1.out"
    rm -f "$cg"*
    port=$(free_port)
    local args=("${@:2}")
    args=("${args[@]//\{port\}/$port}")
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$cg" "${args[@]}" >>"$log" 2>&1 &
    local pid=$!
    if ! wait_ready "http://127.0.0.1:$port/metrics"; then kill "$pid" 2>/dev/null; echo "n/a"; return; fi
    callgrind_control -i on "$pid" >>"$log" 2>&1
    "$B/scrape" scrape "http://127.0.0.1:$port/metrics" "$CG_SCRAPES" >/dev/null
    callgrind_control -i off "$pid" >>"$log" 2>&1
    callgrind_control -d "$pid" >>"$log" 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    local total
    total=$(grep -h '^totals:' "$cg"* 2>/dev/null | awk '{s += $2} END {print s + 0}')
    if [ "$total" = 0 ]; then echo "n/a"; else echo $((total / CG_SCRAPES)); fi
}
R[agent.ir]=$(instructions agent "$AGENT" --simulate --listen "127.0.0.1:{port}")
R[ne_min.ir]=$(instructions ne_min "$NE" --web.listen-address="127.0.0.1:{port}" --collector.disable-defaults \
    --collector.hwmon --collector.thermal_zone --collector.textfile)

echo "measuring sizes" >&2
R[agent.size]=$(stat -c %s "$AGENT")
R[cli.size]=$(stat -c %s "$CLI")
R[ne.size]=$(stat -c %s "$NE")
if [ $quick = 0 ] || [ -f target/aarch64-unknown-linux-musl/release/edgesense-agent ]; then
    [ $quick = 1 ] || scripts/build-arm.sh aarch64-unknown-linux-musl edgesense-agent >>"$log" 2>&1
    R[agent.size_arm64]=$(stat -c %s target/aarch64-unknown-linux-musl/release/edgesense-agent)
else
    R[agent.size_arm64]="n/a"
fi
R[agent.image]="n/a"
if [ $quick = 0 ] && command -v dockerd >/dev/null; then
    dh=$(tests/dockerd.sh start)
    if DOCKER_HOST=$dh stack/images/build.sh agent >>"$log" 2>&1; then
        R[agent.image]=$(DOCKER_HOST=$dh docker image inspect edgesense/agent:local --format '{{.Size}}')
    fi
    tests/dockerd.sh stop
fi

echo "measuring alerts to LEDs and 1-Wire" >&2
wh=$("$B/webhook-latency" --posts "$POSTS")
echo "$wh" >>"$log"
R[webhook.p50]=$(awk -F'|' '/post → pin write/ {gsub(/ /,"",$3); print $3}' <<<"$wh")
R[webhook.p99]=$(awk -F'|' '/post → pin write/ {gsub(/ /,"",$5); print $5}' <<<"$wh")
wh=$("$B/webhook-latency" --posts "$POSTS" --tls)
echo "$wh" >>"$log"
R[webhook_tls.p50]=$(awk -F'|' '/post → pin write/ {gsub(/ /,"",$3); print $3}' <<<"$wh")
R[webhook_tls.p99]=$(awk -F'|' '/post → pin write/ {gsub(/ /,"",$5); print $5}' <<<"$wh")
if command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null; then
    al=$(EDGESENSE_AGENT_BIN=$AGENT "$B/alert-loop" --rounds "$ROUNDS" 2>>"$log")
    R[loop.p50]=$(awk -F'|' '/above threshold/ {gsub(/ /,"",$4); print $4}' <<<"$al")
    sil=$(EDGESENSE_AGENT_BIN=$AGENT "$B/silence-latency" --rounds "$ROUNDS" --interval "$RECONCILE" --pair 2>>"$log")
    echo "$sil" >>"$log"
    R[silence.p50]=$(awk -F'|' '$2 == " silence → LED released " {gsub(/ /,"",$3); print $3}' <<<"$sil")
    R[silence.max]=$(awk -F'|' '$2 == " silence → LED released " {gsub(/ /,"",$4); print $4}' <<<"$sil")
    R[silence_pair.p50]=$(awk -F'|' '/LED released, pair/ {gsub(/ /,"",$3); print $3}' <<<"$sil")
    R[silence_pair.max]=$(awk -F'|' '/LED released, pair/ {gsub(/ /,"",$4); print $4}' <<<"$sil")
    R[silence_pair.diff]=$(awk -F'|' '/pair − one/ {gsub(/ /,"",$3); print $3}' <<<"$sil")
else
    R[loop.p50]="n/a (no prometheus/alertmanager)"
    R[silence.p50]="n/a"; R[silence.max]="n/a"
    R[silence_pair.p50]="n/a"; R[silence_pair.max]="n/a"; R[silence_pair.diff]="n/a"
fi

echo "measuring backfill pushes" >&2
# A day of readings in the quick run too would take the CI machine a minute: an hour there.
HOURS=24; [ $quick = 1 ] && HOURS=1
backfill_rows=$("$B/backfill-push" --agent "$AGENT" --hours $HOURS 2>>"$log") \
    || backfill_rows="| backfill push to a sink | failed: bench/out/run.log |  |  |  |  |"
if [ $quick = 0 ] && command -v prometheus >/dev/null; then
    backfill_rows+=$'\n'$("$B/backfill-push" --agent "$AGENT" --hours $HOURS --receiver prometheus 2>>"$log" | head -1) \
        || backfill_rows+=$'\n'"| backfill push into Prometheus | failed: bench/out/run.log |  |  |  |  |"
fi
ARM64=target/aarch64-unknown-linux-musl/release/edgesense-agent
if [ -f "$ARM64" ] && command -v qemu-aarch64-static >/dev/null; then
    backfill_rows+=$'\n'$("$B/backfill-push" --agent "$ARM64" --runner qemu-aarch64-static --label "aarch64 under qemu-user" --hours $HOURS 2>>"$log") \
        || backfill_rows+=$'\n'"| backfill push, aarch64 under qemu-user | failed: bench/out/run.log |  |  |  |  |"
fi
fleet_rows=""
partition_rows=""
scale_rows=""
roll_rows=""
if [ $quick = 0 ] && command -v dockerd >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "measuring alerts across the 3-node swarm (bench/fleet.sh)" >&2
    fleet_rows=$(bench/fleet.sh --rounds "$ROUNDS" 2>>"$log") \
        || fleet_rows="| alerts across the 3-node swarm | failed: bench/out/edgesense-fleet-bench.log |  |  |  |  |"
    echo "measuring backfill after 2 and 30 minute partitions (bench/fleet.sh --backfill, ~40 min)" >&2
    partition_rows=$(bench/fleet.sh --backfill 2>>"$log") \
        || partition_rows="| backfill after partitions | failed: bench/out/edgesense-fleet-bench.log |"
    echo "measuring the fleet at 10, 30, 100 and 300 agents (bench/fleet.sh --scale, ~25 min)" >&2
    scale_rows=$(bench/fleet.sh --scale 2>>"$log") \
        || scale_rows="| the fleet at N agents | failed: bench/out/edgesense-fleet-bench.log |"
    echo "measuring a rolling upgrade through the launchers at 3, 6 and 12 nodes (bench/fleet.sh --roll, ~20 min)" >&2
    roll_rows=$(bench/fleet.sh --roll 2>>"$log") \
        || roll_rows="| a rolling upgrade at N nodes | failed: bench/out/edgesense-fleet-bench.log |"
fi
w1=$("$B/w1-bulk" --conversion-ms "$CONV_MS" --sensors 1,10,50)
echo "$w1" >>"$log"

ratio() { if [[ "$1" =~ ^[0-9.]+$ && "$2" =~ ^[0-9.]+$ && "$2" != 0 ]]; then echo "scale=2; $1 / $2" | bc | sed 's/^\./0./'; else echo "—"; fi; }
mib() { echo "scale=2; $1 / 1024" | bc | sed 's/^\./0./'; }
us() { local v=$1; case "$v" in *us) echo "${v%us}";; *ms) echo "scale=1; ${v%ms} * 1000" | bc;; *s) echo "scale=1; ${v%s} * 1000000" | bc;; *) echo "$v";; esac; }

{
    echo "# Benchmark results"
    echo
    echo "$( [ $quick = 1 ] && echo "Quick run (seconds per measurement, the harness a debug build; figures are rough)." || echo "Full run.") $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(uname -r)."
    echo "edgesense-agent $("$AGENT" --version | awk '{print $2}') (x86_64-unknown-linux-musl, release); node_exporter: $("$NE" --version 2>&1 | head -1)."
    echo "Reproduce: \`bench/run.sh\` (full) or \`bench/run.sh --quick\`."
    echo
    echo "| figure | edgesense | node_exporter minimal | ratio | node_exporter default | goal |"
    echo "|---|---:|---:|---:|---:|---|"
    row() { printf '| %s | %s | %s | %s | %s | %s |\n' "$@"; }
    row "idle RSS (MiB)" "$(mib "${R[agent.rss_idle]}")" "$(mib "${R[ne_min.rss_idle]}")" "$(ratio "${R[agent.rss_idle]}" "${R[ne_min.rss_idle]}")" "$(mib "${R[ne_full.rss_idle]}")" "≤ 3 MiB"
    row "RSS after $SCRAPES scrapes (MiB)" "$(mib "${R[agent.rss_after]}")" "$(mib "${R[ne_min.rss_after]}")" "$(ratio "${R[agent.rss_after]}" "${R[ne_min.rss_after]}")" "$(mib "${R[ne_full.rss_after]}")" ""
    row "peak RSS under load, VmHWM (MiB)" "$(mib "${R[agent.hwm_load]}")" "$(mib "${R[ne_min.hwm_load]}")" "$(ratio "${R[agent.hwm_load]}" "${R[ne_min.hwm_load]}")" "$(mib "${R[ne_full.hwm_load]}")" "≤ 5 MiB"
    row "/metrics throughput, wrk 1 thread 8 conns ${WRK_S} s (req/s)" "${R[agent.rps]}" "${R[ne_min.rps]}" "$(ratio "${R[agent.rps]}" "${R[ne_min.rps]}")×" "${R[ne_full.rps]}" "≥ 10× minimal"
    row "/metrics latency p50 under load" "${R[agent.p50]}" "${R[ne_min.p50]}" "$(ratio "$(us "${R[agent.p50]}")" "$(us "${R[ne_min.p50]}")")" "${R[ne_full.p50]}" ""
    row "/metrics latency p99 under load" "${R[agent.p99]}" "${R[ne_min.p99]}" "$(ratio "$(us "${R[agent.p99]}")" "$(us "${R[ne_min.p99]}")")" "${R[ne_full.p99]}" "< 1 ms"
    row "sequential scrape, one connection (ms)" "${R[agent.seq_ms]}" "${R[ne_min.seq_ms]}" "$(ratio "${R[agent.seq_ms]}" "${R[ne_min.seq_ms]}")" "${R[ne_full.seq_ms]}" ""
    row "CPU per 1 000 scrapes (ms, all threads)" "${R[agent.cpu_per_1000]}" "${R[ne_min.cpu_per_1000]}" "$(ratio "${R[agent.cpu_per_1000]}" "${R[ne_min.cpu_per_1000]}")" "${R[ne_full.cpu_per_1000]}" ""
    row "instructions per scrape (callgrind)" "${R[agent.ir]}" "${R[ne_min.ir]}" "$(ratio "${R[agent.ir]}" "${R[ne_min.ir]}")" "" ""
    row "/metrics body (bytes)" "${R[agent.bytes]}" "${R[ne_min.bytes]}" "" "${R[ne_full.bytes]}" ""
    row "cold start to first /metrics, median of $COLD_RUNS (ms)" "${R[agent.cold]}" "${R[ne_min.cold]}" "$(ratio "${R[agent.cold]}" "${R[ne_min.cold]}")" "" "< 50 ms"
    row "idle RSS, TLS on (MiB)" "$(mib "${R[agent_tls.rss_idle]}")" "$(mib "${R[ne_tls.rss_idle]}")" "$(ratio "${R[agent_tls.rss_idle]}" "${R[ne_tls.rss_idle]}")" "" "≤ 3 MiB"
    row "peak RSS under TLS load, VmHWM (MiB)" "$(mib "${R[agent_tls.hwm_load]}")" "$(mib "${R[ne_tls.hwm_load]}")" "$(ratio "${R[agent_tls.hwm_load]}" "${R[ne_tls.hwm_load]}")" "" ""
    row "/metrics over TLS, keep-alive, wrk 1 thread 8 conns ${WRK_S} s (req/s)" "${R[agent_tls.rps]}" "${R[ne_tls.rps]}" "$(ratio "${R[agent_tls.rps]}" "${R[ne_tls.rps]}")×" "" "≥ 10× node_exporter with TLS"
    row "/metrics over TLS latency p99 under load" "${R[agent_tls.p99]}" "${R[ne_tls.p99]}" "$(ratio "$(us "${R[agent_tls.p99]}")" "$(us "${R[ne_tls.p99]}")")" "" ""
    row "sequential scrape over one TLS connection (ms)" "${R[agent_tls.seq_ms]}" "${R[ne_tls.seq_ms]}" "$(ratio "${R[agent_tls.seq_ms]}" "${R[ne_tls.seq_ms]}")" "" ""
    row "full TLS 1.3 handshake + scrape, a new connection each (ms)" "${R[agent_tls.handshake_ms]}" "${R[ne_tls.handshake_ms]}" "$(ratio "${R[agent_tls.handshake_ms]}" "${R[ne_tls.handshake_ms]}")" "" ""
    row "ARMv6 agent (Pi Zero build) under qemu-user: full handshake + scrape (ms), agent CPU per scrape (ms), share of a core at a 15 s scrape interval (%)" "${R[armv6.handshake_ms]} / ${R[armv6.cpu_ms]} / ${R[armv6.share]:-n/a}" "" "" "" ""
    row "stripped binary x86_64 (bytes)" "${R[agent.size]}" "${R[ne.size]}" "$(ratio "${R[agent.size]}" "${R[ne.size]}")" "" ""
    row "stripped CLI x86_64 (bytes)" "${R[cli.size]}" "" "" "" ""
    row "stripped binary aarch64 (bytes)" "${R[agent.size_arm64]}" "" "" "" "≤ 4 MB"
    row "agent image (bytes)" "${R[agent.image]}" "" "" "" "≤ 5 MB"
    row "webhook post → LED pin write p50 / p99, $POSTS posts" "${R[webhook.p50]} / ${R[webhook.p99]}" "" "" "" "p99 < 1 ms"
    row "webhook post → LED pin write over TLS p50 / p99, $POSTS posts" "${R[webhook_tls.p50]} / ${R[webhook_tls.p99]}" "" "" "" "p99 < 1 ms"
    row "threshold → LED via Prometheus + Alertmanager (1 s scrape/eval), median of $ROUNDS" "${R[loop.p50]}" "" "" "" ""
    row "silence in Alertmanager → LED released (reconcile_interval $RECONCILE; no webhook tells of it), median of $ROUNDS" "${R[silence.p50]} (max ${R[silence.max]})" "" "" "" ""
    row "the same with an Alertmanager pair, the silence made on the one the agent does not ask (gossip with mutual TLS), median of $ROUNDS; pair − one, median of the per-round differences" "${R[silence_pair.p50]} (max ${R[silence_pair.max]}); ${R[silence_pair.diff]}" "" "" "" ""
    echo "$backfill_rows"
    [ -z "$fleet_rows" ] || echo "$fleet_rows"
    echo
    if [ -n "$partition_rows" ]; then
        echo "Backfill after a partition (3-node swarm, \`bench/fleet.sh --backfill\`: one agent on pi-a polling every second, the stack's 15 s scrapes; seconds from the link's return):"
        echo
        echo "$partition_rows"
        echo
    fi
    echo "node_exporter minimal: \`--collector.disable-defaults --collector.hwmon --collector.thermal_zone --collector.textfile\`."
    echo "The agent runs the built-in simulated node (4 sensors, 3 LEDs); its scrapes serve the exposition rendered at the last change."
    echo
    echo "DS18B20 poll round on the fake 1-Wire bus (${CONV_MS} ms conversion):"
    echo
    tail -n +3 <<<"$w1"
    if [ -n "$scale_rows" ]; then
        echo
        echo "## The fleet at N agents (\`bench/fleet.sh --scale\`: 3-node swarm, the agents spread over its 2 workers, 2 s scrape)"
        echo
        echo "$scale_rows"
        echo
        echo "How each figure grows, and a 1 000-node fleet sized on paper: README.md, \"Sizing a fleet\". The figures before and after the fixes that scale needed: bench/README.md."
    fi
    if [ -n "$roll_rows" ]; then
        echo
        echo "## A rolling upgrade at N nodes (\`bench/fleet.sh --roll\`: one dockerd per node, an agent on each through the launchers, the image switched by \`stack up --agents --roll-parallelism P\`)"
        echo
        echo "$roll_rows"
    fi
} >"$out"
cat "$out"
