#!/usr/bin/env bash
# A multi-node Docker swarm on this one machine, for the tests: every node is a dockerd in its
# own network, UTS and mount namespace (its own hostname, its own /run/docker.sock), joined to
# the others over a veth pair and a bridge on a private subnet, so overlay traffic (VXLAN,
# gossip, the raft port) really crosses from one host to another.
#
#   tests/fleet.sh start [NODE...]   fresh nodes (default: mgr pi-a pi-b), mgr inits the swarm,
#                                    the others join as workers; prints one line per node:
#                                    NAME ADDRESS DOCKER_HOST (also kept in $DIR/listing).
#                                    With EDGESENSE_FLEET_IMAGES=TAR (a `docker save`), every
#                                    node loads those images (swarm tasks pull nothing).
#   tests/fleet.sh add NODE          one more node with the images, not in the swarm
#   tests/fleet.sh remove NODE       a node added so: dockerd stopped, namespace and veth gone
#   tests/fleet.sh restart NODE      stop and start that node's dockerd, keeping its state
#   tests/fleet.sh halt|launch NODE  only stop (a node lost: its containers stop with it), or
#                                    only start, that node's dockerd
#   tests/fleet.sh link NODE up|down cut a node off the network (its veth on the bridge) or back
#   tests/fleet.sh load NODE TAR     docker load the images in TAR on that node
#   tests/fleet.sh pid NODE          the node's dockerd pid (nsenter -t PID -n -u -m: "on the node")
#   tests/fleet.sh stranger up|down  a machine on the LAN that belongs to nobody in the fleet:
#                                    a bare namespace ("$PREFIX-stranger", $SUBNET.250) on the
#                                    bridge, no dockerd, no credentials; prints its address
#   tests/fleet.sh capture FILE      tcpdump of the bridge (every node's traffic, VXLAN
#                                    included) into FILE until killed; prints its pid once
#                                    tcpdump listens
#   tests/fleet.sh stop              everything down: dockerds, mounts, namespaces, bridge
#
# Several fleets can run side by side: give each its own EDGESENSE_FLEET_DIR, _PREFIX (up to 4
# letters: interface names are at most 15 bytes) and _SUBNET (a /24, as 192.168.231).
#
# Layout: the bridge lives in a namespace of its own ("$PREFIX-lan"), so the host's iptables
# (another dockerd may have set FORWARD to DROP) never see the nodes' traffic. The host reaches
# the subnet through one more veth ($SUBNET.1). Node i gets $SUBNET.(10+i), a dockerd listening
# on $DIR/NODE/docker.sock (for the host), /run/docker.sock (inside the node, on a tmpfs /run of
# its own, as on a real Pi) and tcp://ADDRESS:2375 (for "--docker-host from another node";
# only inside the private subnet, no TLS: test use only). /var/lib/edgesense and /etc/edgesense
# are per-node directories under $DIR/NODE/, as each Pi has its own.
#
# Facts that shape it (measured here): `ip netns exec` gives a fresh /sys without the cgroup
# mounts, so each node mounts the v1 controllers, name=systemd and cgroup2 again, and dockerd
# uses a relative --cgroup-parent; no IPVS, so service VIPs do not route (the stack uses dnsrr);
# DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 keeps swarm tasks on the images loaded locally.
set -euo pipefail
DIR=${EDGESENSE_FLEET_DIR:-/tmp/edgesense-fleet}
# A started fleet remembers its prefix and subnet: later calls need only the directory.
if [ "${1:-}" != start ] && [ -f "$DIR/env" ]; then
    # shellcheck source=/dev/null
    . "$DIR/env"
fi
PREFIX=${EDGESENSE_FLEET_PREFIX:-esf}
SUBNET=${EDGESENSE_FLEET_SUBNET:-192.168.231}
LAN="$PREFIX-lan"
BRIDGE="${PREFIX}br0"

log() { printf 'fleet: %s\n' "$*" >&2; }
die() { printf 'fleet: error: %s\n' "$*" >&2; exit 1; }

need() {
    for c in ip unshare nsenter dockerd docker mount; do
        command -v "$c" >/dev/null || die "$c not found (iproute2, util-linux, docker.io)"
    done
    [ "$(id -u)" = 0 ] || die "needs root (network namespaces, mounts, dockerd)"
}

# Node index from its position in $DIR/nodes (one name per line), so addresses stay stable.
index_of() {
    local n=$1 i=0
    while read -r name; do
        i=$((i + 1))
        [ "$name" = "$n" ] && { echo "$i"; return 0; }
    done <"$DIR/nodes"
    die "no node $n (nodes: $(tr '\n' ' ' <"$DIR/nodes"))"
}
addr_of() { echo "$SUBNET.$((10 + $(index_of "$1")))"; }
# Interface names are at most 15 bytes: "$PREFIX-" plus the index.
veth_of() { echo "$PREFIX-n$(index_of "$1")"; }

lan_up() {
    ip netns add "$LAN"
    ip -n "$LAN" link set lo up
    ip -n "$LAN" link add "$BRIDGE" type bridge
    ip -n "$LAN" link set "$BRIDGE" up
    # The host's own port on the LAN.
    ip link add "$PREFIX-host" type veth peer name "$PREFIX-hostp"
    ip link set "$PREFIX-hostp" netns "$LAN"
    ip -n "$LAN" link set "$PREFIX-hostp" master "$BRIDGE" up
    ip addr add "$SUBNET.1/24" dev "$PREFIX-host"
    ip link set "$PREFIX-host" up
}

# Plugs the network namespace $1 into the LAN's bridge: a veth pair, $2 on the bridge, eth0
# with address $3 inside.
plug() {
    local ns=$1 veth=$2 addr=$3
    ip link add "$veth" type veth peer name "$veth-i"
    ip link set "$veth" netns "$LAN"
    ip -n "$LAN" link set "$veth" master "$BRIDGE" up
    ip link set "$veth-i" netns "$ns"
    ip -n "$ns" link set "$veth-i" name eth0
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

node_net() {
    local ns="$PREFIX-$1"
    ip netns add "$ns"
    plug "$ns" "$(veth_of "$1")" "$(addr_of "$1")"
}

# Starts node $1's dockerd in its namespaces (network from `ip netns exec`, UTS and mount from
# unshare) and waits until it answers.
launch() {
    local n=$1 ns="$PREFIX-$1" d="$DIR/$1" addr
    addr=$(addr_of "$n")
    mkdir -p "$d/varlib" "$d/etc"
    mkdir -p /var/lib/edgesense /etc/edgesense
    ip netns exec "$ns" unshare --uts --mount --propagation private env \
        NODE="$n" D="$d" ADDR="$addr" DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 bash -c '
        set -e
        hostname "$NODE"
        mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
        for c in cpu cpuacct cpuset memory devices freezer blkio pids; do
            mkdir -p /sys/fs/cgroup/$c
            mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c
        done
        mkdir -p /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
        mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
        mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified 2>/dev/null || true
        mount -t tmpfs -o mode=755 tmpfs /run
        mount --bind "$D/varlib" /var/lib/edgesense
        mount --bind "$D/etc" /etc/edgesense
        exec dockerd --host "unix://$D/docker.sock" --host unix:///run/docker.sock \
            --host "tcp://$ADDR:2375" \
            --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/docker.pid" \
            --bridge none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
            --cgroup-parent "edgesense-fleet-$NODE" --storage-driver overlay2
    ' >>"$d/dockerd.log" 2>&1 &
    for _ in $(seq 150); do
        if docker -H "unix://$d/docker.sock" version >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    tail -20 "$d/dockerd.log" >&2
    die "dockerd of $n did not start within 30 s (log: $d/dockerd.log)"
}

halt() {
    local d="$DIR/$1" pid
    [ -f "$d/docker.pid" ] || return 0
    pid=$(cat "$d/docker.pid")
    if kill "$pid" 2>/dev/null; then
        # dockerd stops its containers first (their stop timeouts, 10 s for the stack's): a
        # minute, as systemd would give it, before it is killed.
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -9 "$pid" 2>/dev/null; then log "$1: dockerd did not stop in 60 s, killed"; fi
    fi
    rm -f "$d/docker.pid"
}

dk() { docker -H "unix://$DIR/$1/docker.sock" "${@:2}"; }

report() {
    local n=$1
    echo "$n $(addr_of "$n") unix://$DIR/$n/docker.sock"
}

listing() {
    while read -r n; do
        case "$n" in -*) ;; *) report "$n" ;; esac
    done <"$DIR/nodes" >"$DIR/listing"
}

load_images() {
    [ -f "$DIR/images.tar" ] || return 0
    dk "$1" load -q -i "$DIR/images.tar" >/dev/null
}

add_node() {
    local n=$1
    [ -f "$DIR/nodes" ] || die "no fleet (tests/fleet.sh start first)"
    grep -qx -- "$n" "$DIR/nodes" && die "node $n exists"
    echo "$n" >>"$DIR/nodes"
    node_net "$n"
    launch "$n"
    load_images "$n"
    listing
    report "$n"
}

# The node's line stays in $DIR/nodes (as "-NAME") so the others keep their addresses.
remove_node() {
    local n=$1 ns="$PREFIX-$1"
    halt "$n"
    for p in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
    { grep -o " $DIR/$n/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    ip -n "$LAN" link del "$(veth_of "$n")" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    sed -i "s/^$n\$/-$n/" "$DIR/nodes"
    rm -rf "${DIR:?}/$n"
    listing
}

STRANGER="$PREFIX-stranger"
stranger() {
    case "$1" in
        up)
            ip netns del "$STRANGER" 2>/dev/null || true
            ip netns add "$STRANGER"
            plug "$STRANGER" "$PREFIX-s0" "$SUBNET.250"
            echo "$SUBNET.250"
            ;;
        down)
            ip -n "$LAN" link del "$PREFIX-s0" 2>/dev/null || true
            ip netns del "$STRANGER" 2>/dev/null || true
            ;;
        *) die "usage: $0 stranger up|down" ;;
    esac
}

# tcpdump on the bridge, in the LAN's namespace: whatever crosses from one host to another.
capture() {
    local file=$1
    command -v tcpdump >/dev/null || die "tcpdump not found (apt-get install tcpdump)"
    rm -f "$file.err"
    ip netns exec "$LAN" tcpdump -i "$BRIDGE" -s 0 -U -n -w "$file" </dev/null >/dev/null 2>"$file.err" &
    local pid=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$file.err" 2>/dev/null && { echo "$pid"; return 0; }
        kill -0 "$pid" 2>/dev/null || { cat "$file.err" >&2; die "tcpdump did not start"; }
        sleep 0.1
    done
    die "tcpdump did not start listening within 10 s"
}

stop_all() {
    if [ -f "$DIR/nodes" ]; then
        while read -r n; do halt "$n"; done <"$DIR/nodes"
    fi
    # dockerd is gone; containerd-shims may linger a moment. Kill whatever still runs in the
    # nodes' network namespaces, then drop mounts under $DIR and the namespaces.
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-" || true); do
        for p in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
    done
    if [ -d "$DIR" ]; then
        { grep -o " $DIR/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
    fi
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    ip link del "$PREFIX-host" 2>/dev/null || true
    if [ -d "$DIR" ]; then
        for _ in $(seq 10); do rm -rf "$DIR" 2>/dev/null && break; sleep 0.5; done
    fi
}

start_all() {
    local nodes=("$@") t0
    [ ${#nodes[@]} -gt 0 ] || nodes=(mgr pi-a pi-b)
    t0=$(date +%s%N)
    stop_all
    mkdir -p "$DIR"
    printf 'EDGESENSE_FLEET_PREFIX=%s\nEDGESENSE_FLEET_SUBNET=%s\n' "$PREFIX" "$SUBNET" >"$DIR/env"
    : >"$DIR/nodes"
    lan_up
    for n in "${nodes[@]}"; do
        echo "$n" >>"$DIR/nodes"
        node_net "$n"
    done
    if [ -n "${EDGESENSE_FLEET_IMAGES:-}" ]; then
        cp "$EDGESENSE_FLEET_IMAGES" "$DIR/images.tar"
    fi
    local pids=() p
    for n in "${nodes[@]}"; do (launch "$n" && load_images "$n") & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p" || die "a node did not come up"; done
    local mgr=${nodes[0]}
    dk "$mgr" swarm init --advertise-addr "$(addr_of "$mgr")" >/dev/null
    local token
    token=$(dk "$mgr" swarm join-token -q worker)
    pids=()
    for n in "${nodes[@]:1}"; do
        dk "$n" swarm join --token "$token" --advertise-addr "$(addr_of "$n")" \
            "$(addr_of "$mgr"):2377" >/dev/null & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || die "a node could not join the swarm"; done
    log "swarm of ${#nodes[@]} nodes up in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    listing
    cp "$DIR/listing" "$DIR/listing.start"
    cat "$DIR/listing"
}

need
case "${1:-}" in
    start) shift; start_all "$@" ;;
    add) add_node "${2:?node name}" ;;
    remove) remove_node "${2:?node name}" ;;
    restart) halt "${2:?node name}"; launch "$2" ;;
    halt) halt "${2:?node name}" ;;
    launch) launch "${2:?node name}" ;;
    link)
        n=${2:?node name}
        case "${3:-}" in
            up|down) ip -n "$LAN" link set "$(veth_of "$n")" "$3" ;;
            *) die "usage: $0 link NODE up|down" ;;
        esac
        ;;
    load) dk "${2:?node name}" load -q -i "${3:?image tar}" >/dev/null ;;
    pid) cat "$DIR/${2:?node name}/docker.pid" ;;
    stranger) stranger "${2:-}" ;;
    capture) capture "${2:?capture file}" ;;
    stop) stop_all ;;
    *) echo "usage: $0 start [NODE...] | add NODE | remove NODE | restart NODE | halt NODE | launch NODE | link NODE up|down | load NODE TAR | pid NODE | stranger up|down | capture FILE | stop" >&2; exit 2 ;;
esac
