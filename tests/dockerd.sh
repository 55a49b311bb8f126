#!/usr/bin/env bash
# An isolated dockerd for the tests: its own socket, data-root, exec-root and pidfile under
# $EDGESENSE_DOCKERD_DIR (default /tmp/edgesense-dockerd), so it never touches a dockerd the
# machine already runs. Every start is fresh (no swarm, no images, no volumes left over).
#   tests/dockerd.sh start     # prints the DOCKER_HOST to use
#   tests/dockerd.sh restart   # stop and start again, keeping images, swarm state and volumes
#   tests/dockerd.sh stop
set -euo pipefail
dir=${EDGESENSE_DOCKERD_DIR:-/tmp/edgesense-dockerd}
sock="$dir/docker.sock"
pidfile="$dir/docker.pid"

halt() {
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    fi
}

launch() {
    mkdir -p "$dir"
    dockerd --host "unix://$sock" --data-root "$dir/data" --exec-root "$dir/exec" \
        --pidfile "$pidfile" >>"$dir/dockerd.log" 2>&1 &
    for _ in $(seq 150); do
        if docker -H "unix://$sock" version >/dev/null 2>&1; then
            echo "unix://$sock"
            return 0
        fi
        sleep 0.2
    done
    echo "error: dockerd did not start within 30 s; its log:" >&2
    tail -20 "$dir/dockerd.log" >&2
    return 1
}

stop() {
    halt
    # Containers' mounts under the exec and data roots go with the daemon; then the state.
    if [ -d "$dir" ]; then
        { grep -o " $dir/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
        # containerd may still be exiting: retry the removal a few times.
        for _ in $(seq 10); do
            rm -rf "$dir/data" "$dir/exec" 2>/dev/null && break
            sleep 0.5
        done
    fi
}

case "${1:-}" in
    start)
        stop
        mkdir -p "$dir"
        : >"$dir/dockerd.log"
        launch
        ;;
    restart)
        halt
        launch
        ;;
    stop) stop ;;
    *) echo "usage: $0 start|restart|stop" >&2; exit 2 ;;
esac
