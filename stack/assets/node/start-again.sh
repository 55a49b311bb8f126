#!/bin/sh
# Keeps the edgesense agent container(s) named as arguments (default: edgesense-agent) running
# and on their overlay network. Installed on each node with two systemd units:
#   edgesense-agent-start-again@NAME.service  runs it whenever docker.service starts
#   edgesense-agent-start-again@NAME.timer    runs it with --no-wait every minute
#
# Why:
# - A container joined to an attachable swarm overlay network (core-infra) sometimes fails to
#   start when dockerd restarts — the swarm's cleanup of the old network attachment races the
#   restart ("network … not found", moby/moby#32607) — and its restart policy never retries.
#   Such a container (it has a start error) is started again.
# - A node that leaves the swarm (`docker swarm leave`, or a rejoin after `docker node rm`)
#   loses its overlay networks, and Docker drops the container's attachment for good: it keeps
#   running, unreachable, also after the node joins again. A running agent that is not on the
#   network named by its label com.edgesense.network is attached to it again, with its aliases
#   (edgesense-agent, and its own name), once the node is back in a swarm.
# - dockerd 20.10 on a swarm worker sometimes does not start such a container at all after its
#   own restart: no start error, exit code 0 from the shutdown, and Docker's own record
#   (HasBeenManuallyStopped in the container's config.v2.json, readable by root on the node)
#   says it was not stopped on purpose. After a grace period for dockerd's own restore, it is
#   started too.
# A container stopped on purpose (`docker stop`: HasBeenManuallyStopped) is left alone, as is
# one whose record this script cannot read.
#
# Without --no-wait, waits up to START_AGAIN_WAIT seconds (default 300) for each container to
# run (dockerd may still be restoring it); exit status 1 if one is still not running then.
# Uses the docker CLI (DOCKER_HOST is honoured).
wait_s=${START_AGAIN_WAIT:-300}
# Seconds dockerd gets to restore a container itself before this script starts it.
grace_s=${START_AGAIN_GRACE:-30}
if [ "${1:-}" = --no-wait ]; then
    wait_s=0
    grace_s=0
    shift
fi
[ $# -gt 0 ] || set -- edgesense-agent
status=0

# True if Docker's restart policy says container $1 should run and Docker's own record says
# nobody stopped it on purpose.
should_run() {
    policy=$(docker inspect --format '{{.HostConfig.RestartPolicy.Name}}' "$1" 2>/dev/null) || return 1
    case "$policy" in always|unless-stopped) ;; *) return 1 ;; esac
    root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null) || return 1
    id=$(docker inspect --format '{{.Id}}' "$1" 2>/dev/null) || return 1
    record="$root/containers/$id/config.v2.json"
    [ -r "$record" ] || return 1
    grep -q '"HasBeenManuallyStopped":false' "$record"
}

# Attaches running container $1 to its network again if it lost it.
reattach() {
    name=$1
    net=$(docker inspect --format '{{index .Config.Labels "com.edgesense.network"}}' "$name" 2>/dev/null) || return 0
    [ -n "$net" ] || return 0
    attached=$(docker inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$name" 2>/dev/null)
    case " $attached" in *" $net "*) return 0 ;; esac
    if [ "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" != active ]; then
        echo "$name: not on $net, and this node is not in a swarm (yet); left as it is"
        return 0
    fi
    set -- --alias edgesense-agent
    [ "$name" = edgesense-agent ] || set -- "$@" --alias "$name"
    if docker network connect "$@" "$net" "$name" >/dev/null; then
        echo "$name: was not on $net (the node left the swarm); attached it to $net again"
    else
        echo "$name: could not attach it to $net" >&2
        status=1
    fi
}

for name in "$@"; do
    waited=0
    starts=0
    while :; do
        if ! state=$(docker inspect --format '{{.State.Running}} {{.State.Error}}' "$name" 2>/dev/null); then
            echo "$name: no such container; nothing to do"
            break
        fi
        case "$state" in
            "true "*)
                echo "$name: running"
                reattach "$name"
                break
                ;;
            "false ")
                # Not started yet (dockerd may still be restoring), stopped on purpose, or
                # forgotten by dockerd.
                if [ "$waited" -ge "$grace_s" ] && [ "$starts" -lt 3 ] && should_run "$name"; then
                    echo "$name: not running, not stopped on purpose, and dockerd did not start it; starting it"
                    if docker start "$name" >/dev/null 2>&1; then
                        starts=$((starts + 1))
                        continue
                    fi
                fi
                ;;
            *)
                # Every 2 s until it works (the network may take a while to come back), but a
                # container that dies again right after a good start is not restarted for ever.
                if [ "$starts" -lt 3 ]; then
                    echo "$name: dockerd could not start it (${state#false }); starting it again"
                    if docker start "$name" >/dev/null 2>&1; then
                        starts=$((starts + 1))
                        continue
                    fi
                fi
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
