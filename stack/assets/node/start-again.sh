#!/bin/sh
# Starts the edgesense agent container(s) named as arguments (default: edgesense-agent) when
# dockerd tried to start them and failed. Installed on each node with the systemd unit
# edgesense-agent-start-again@.service, which runs it whenever docker.service starts.
#
# Why: a container joined to an attachable swarm overlay network (core-infra) sometimes fails to
# start when dockerd restarts — the swarm's cleanup of the old network attachment races the
# restart ("network … not found", moby/moby#32607) — and its restart policy never retries, so
# the agent would stay down until someone runs `docker start`. A container stopped on purpose
# (`docker stop`) has no start error and is left alone.
#
# Waits up to START_AGAIN_WAIT seconds (default 300) for each container; exit status 1 if one
# is still not running then. Uses the docker CLI (DOCKER_HOST is honoured).
wait_s=${START_AGAIN_WAIT:-300}
[ $# -gt 0 ] || set -- edgesense-agent
status=0
for name in "$@"; do
    waited=0
    while :; do
        if ! state=$(docker inspect --format '{{.State.Running}} {{.State.Error}}' "$name" 2>/dev/null); then
            echo "$name: no such container; nothing to do"
            break
        fi
        case "$state" in
            "true "*)
                echo "$name: running"
                break
                ;;
            "false ")
                # Not started yet, or stopped on purpose: dockerd may still be restoring.
                ;;
            *)
                echo "$name: dockerd could not start it (${state#false }); starting it again"
                docker start "$name" >/dev/null 2>&1 && continue
                ;;
        esac
        if [ "$waited" -ge "$wait_s" ]; then
            case "$state" in
                "false ") echo "$name: not running and no start error: left stopped" ;;
                *) echo "$name: still not running after ${wait_s}s" >&2; status=1 ;;
            esac
            break
        fi
        sleep 2
        waited=$((waited + 2))
    done
done
exit "$status"
