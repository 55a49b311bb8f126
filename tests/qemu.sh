#!/usr/bin/env bash
# Emulated Raspberry Pis under QEMU (full system: a real ARM kernel, a busybox initramfs, the
# SoC's emulated GPIO/thermal blocks) for end-to-end tests of ARM binaries.
#
#   tests/qemu.sh fetch
#       Installs what is missing (qemu-system-arm, device-tree-compiler, cpio, qemu-user-static;
#       the arm64 and armel dpkg architectures) and caches kernels, dtbs, modules and busybox
#       under target/qemu/ (never under version control). Once: a second run returns at once.
#       target/qemu/VERSIONS lists the Debian packages the cache was built from.
#
#   tests/qemu.sh run MACHINE INIT [SRC:DEST ...]
#       MACHINE: raspi3b (Pi 3 Model B, BCM2837, arm64 kernel) or raspi0 (Pi Zero, BCM2835,
#       armel kernel). INIT: a shell script that becomes /init (PID 1; start it with
#       `#!/bin/sh`). SRC:DEST: more files or directories copied into the initramfs at DEST,
#       e.g. target/aarch64-unknown-linux-musl/release/edgesense-agent:/bin/edgesense-agent.
#       Fetches first if needed. Streams the guest console to stdout (CRs removed) and exits
#       when the guest halts: 0 if the console had a line `QEMU-TEST-OK`, 1 if not, 124 on
#       timeout (2: bad usage). The init should end with `poweroff -f`.
#
# The initramfs holds, besides INIT and the SRC:DEST files:
#   /bin/busybox (Debian's busybox-static) with a symlink for every applet, so /bin/sh, mount,
#     devmem, wget, httpd, nc, ip ... are all there; /etc/passwd and /etc/group with root;
#   /lib/thermal.ko on raspi3b: the SoC thermal driver, a module in Debian's arm64 kernel
#     (built in on raspi0); `insmod /lib/thermal.ko` gives /sys/class/thermal/thermal_zone0;
#   /bin/qemu-net-up: loads the USB network drivers (/lib/qemu-net/) and configures the NIC
#     that QEMU_HOSTFWD adds (see below) as 10.0.2.15/24, plus lo.
# Nothing is mounted for the init: it mounts proc, sysfs and devtmpfs itself
# (tests/qemu-smoke.init shows a complete one).
#
# Environment:
#   QEMU_TIMEOUT   seconds before the guest is killed (exit 124); default 120.
#   QEMU_HOSTFWD   space-separated QEMU hostfwd rules, e.g. "tcp:127.0.0.1:19842-:9842": adds a
#                  USB network adapter on user-mode networking with those forwards, and
#                  restrict=on, so the guest reaches nothing outside itself but the forwarded
#                  connections come in. The guest must run qemu-net-up.
#   QEMU_APPEND    more kernel command line; the default has `quiet` (errors only), so
#                  QEMU_APPEND=loglevel=7 shows the whole kernel log.
#   QEMU_KEEP      a directory: the initramfs and console.log are left there.
#
# Facts that shape it (QEMU 7.2 from Debian 12, Debian 12 kernels 6.1):
# - Both boards' console is the PL011 UART (ttyAMA0), QEMU's first serial port.
# - QEMU 7.2 has no BCM2835 PM/watchdog block (what resets a real Pi) and these machines no
#   PSCI, so neither `poweroff -f` nor `reboot -f` ends QEMU: the kernel prints
#   "reboot: System halted" or "reboot: Restarting system" and spins (raspi3b's four vCPUs at
#   full speed). This script watches the console for those lines (and the end of a panic, as
#   when init exits) and kills QEMU then.
# - raspi0: with that block missing, the armel kernel oopses in bcm2835_pm_probe, so the
#   cached dtb has /soc/watchdog@7e100000 disabled.
# - The upstream kernels have no /dev/gpiomem; GPIO registers are reached through /dev/mem
#   (root, iomem=relaxed), e.g. `devmem 0x3F200034` (GPLEV0; base 0x3F200000 on BCM2837,
#   0x20200000 on BCM2835).
# - Networking: both machines have the DWC2 USB host controller, and QEMU's usb-net (a CDC
#   Ethernet/RNDIS device) on it shows as usb0 through cdc_ether (modules in both kernels, and
#   on arm64 the whole USB stack is modules too). There is no other NIC on these machines.
#   QEMU's stderr then has "usbnet: failed control transaction" and "Slirp: Failed to send
#   packet" lines: harmless (an unsupported descriptor request; packets before usb0 is up).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="$ROOT/target/qemu"
MARK_OK='QEMU-TEST-OK'

# Temporary directories, and the guest (timeout and QEMU, in a process group of their own that
# a Ctrl-C does not reach) to end when this script ends, however it does.
CLEANUP=()
QPID=''
cleanup() {
    if [ -n "$QPID" ]; then kill -TERM "$QPID" 2>/dev/null || true; fi
    rm -rf "${CLEANUP[@]}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "qemu.sh: $*" >&2; exit 2; }
say() { echo "qemu.sh: $*" >&2; }

usage() {
    sed -n '2,/^# Facts/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# Per machine: the Debian meta package whose dependency is the versioned kernel package, the
# dpkg architecture, the dtb in that package, modules to bundle (paths under kernel/, in load
# order), the QEMU binary and its memory (the boards' real sizes).
declare -A KMETA=([raspi3b]=linux-image-arm64 [raspi0]=linux-image-rpi)
declare -A ARCH=([raspi3b]=arm64 [raspi0]=armel)
declare -A DTB=([raspi3b]=bcm2837-rpi-3-b.dtb [raspi0]=bcm2835-rpi-zero.dtb)
declare -A QEMU=([raspi3b]=qemu-system-aarch64 [raspi0]=qemu-system-arm)
declare -A MEM=([raspi3b]=1G [raspi0]=512M)
declare -A USERQEMU=([arm64]=qemu-aarch64-static [armel]=qemu-arm-static)
# Modules to bundle, as paths under the kernel's lib/modules/*/kernel/. The SoC thermal driver
# is built into armel's rpi kernel.
declare -A THERMAL=([arm64]=drivers/thermal/broadcom/bcm2835_thermal [armel]='')
# usb-net's driver, and on arm64 the USB host (dwc2) too, built in on armel; in load order,
# dependencies first (their modinfo "depends=").
declare -A NET=(
    [arm64]="drivers/usb/common/usb-common drivers/usb/core/usbcore drivers/usb/roles/roles
        drivers/usb/gadget/udc/udc-core drivers/usb/phy/phy-generic drivers/usb/dwc2/dwc2
        drivers/net/mii drivers/net/usb/usbnet drivers/net/usb/cdc_ether"
    [armel]="drivers/net/mii drivers/net/usb/usbnet drivers/net/usb/cdc_ether"
)

fetched() {
    local m
    [ -f "$CACHE/VERSIONS" ] || return 1
    for m in raspi3b raspi0; do
        [ -f "$CACHE/$m/vmlinuz" ] && [ -f "$CACHE/$m/board.dtb" ] && [ -f "$CACHE/$m/busybox" ] &&
            [ -f "$CACHE/$m/applets" ] && [ -d "$CACHE/$m/net" ] || return 1
    done
}

ensure_host() {
    local -A pkg_for=(
        [qemu-system-aarch64]=qemu-system-arm [qemu-system-arm]=qemu-system-arm
        [fdtput]=device-tree-compiler [fdtget]=device-tree-compiler [cpio]=cpio
        [qemu-aarch64-static]=qemu-user-static [qemu-arm-static]=qemu-user-static
    )
    local cmd a missing=() update='' foreign
    for cmd in "${!pkg_for[@]}"; do
        command -v "$cmd" >/dev/null || missing+=("${pkg_for[$cmd]}")
    done
    foreign=" $(dpkg --print-foreign-architectures | tr '\n' ' ') "
    for a in arm64 armel; do
        if [[ $foreign != *" $a "* ]]; then
            say "adding dpkg architecture $a"
            dpkg --add-architecture "$a"
            update=1
        fi
    done
    if [ -n "$update" ] || [ ${#missing[@]} -gt 0 ]; then
        say "apt-get update"
        apt-get update -qq
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
        say "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
}

# apt-get download PKG... into the current directory; once more after an apt-get update if
# the lists are stale (the mirror dropped that version).
download() {
    apt-get download -qq -o APT::Sandbox::User=root "$@" ||
        { apt-get update -qq && apt-get download -qq -o APT::Sandbox::User=root "$@"; }
}

fetch() {
    ensure_host
    fetched && return 0
    local tmp m arch kpkg kdir dtb mod src n
    tmp=$(mktemp -d)
    CLEANUP+=("$tmp")
    mkdir -p "$CACHE"
    : >"$tmp/VERSIONS"
    for m in raspi3b raspi0; do
        arch=${ARCH[$m]}
        kpkg=$(apt-cache depends "${KMETA[$m]}:$arch" | sed -n 's/^ *Depends: \(linux-image-[^ ]*\)$/\1/p' | head -n1)
        [ -n "$kpkg" ] || die "no kernel package behind ${KMETA[$m]}:$arch"
        say "$m: downloading $kpkg and busybox-static:$arch"
        mkdir -p "$tmp/$m/deb" "$tmp/$m/k" "$tmp/$m/bb" "$tmp/$m/out"
        (cd "$tmp/$m/deb" && download "$kpkg" "busybox-static:$arch")
        dpkg-deb -x "$tmp/$m/deb"/linux-image-*.deb "$tmp/$m/k"
        dpkg-deb -x "$tmp/$m/deb"/busybox-static_*.deb "$tmp/$m/bb"
        for src in "$tmp/$m/deb"/*.deb; do
            # shellcheck disable=SC2016 # dpkg-deb's own ${Field} syntax
            dpkg-deb -W --showformat='${Package}:${Architecture} ${Version}\n' "$src" >>"$tmp/VERSIONS"
        done
        kdir=$(echo "$tmp/$m/k"/lib/modules/*/kernel)
        [ -d "$kdir" ] || die "$kpkg: no modules directory"
        cp "$tmp/$m/k"/boot/vmlinuz-* "$tmp/$m/out/vmlinuz"
        dtb=$(find "$tmp/$m/k/usr/lib" -name "${DTB[$m]}" | head -n1)
        [ -n "$dtb" ] || die "$kpkg: no ${DTB[$m]}"
        cp "$dtb" "$tmp/$m/out/board.dtb"
        if [ "$m" = raspi0 ]; then
            fdtget "$tmp/$m/out/board.dtb" /soc/watchdog@7e100000 compatible >/dev/null
            fdtput -t s "$tmp/$m/out/board.dtb" /soc/watchdog@7e100000 status disabled
        fi
        cp "$tmp/$m/bb/bin/busybox" "$tmp/$m/out/busybox"
        # Applet paths (bin/sh, usr/bin/wget, ...) from busybox itself, run under qemu-user.
        "${USERQEMU[$arch]}" "$tmp/$m/out/busybox" --list-full >"$tmp/$m/out/applets"
        grep -qx 'bin/sh' "$tmp/$m/out/applets" || die "busybox-static:$arch has no sh applet"
        mkdir -p "$tmp/$m/out/net"
        if [ -n "${THERMAL[$arch]}" ]; then
            mod=$(echo "$kdir/${THERMAL[$arch]}".ko*)
            unpack_module "$mod" "$tmp/$m/out/thermal.ko"
        fi
        n=10
        for src in ${NET[$arch]}; do
            mod=$(echo "$kdir/$src".ko*)
            unpack_module "$mod" "$tmp/$m/out/net/$n-$(basename "$src").ko"
            n=$((n + 1))
        done
        rm -rf "${CACHE:?}/$m"
        mv "$tmp/$m/out" "$CACHE/$m"
    done
    mv "$tmp/VERSIONS" "$CACHE/VERSIONS"
    say "cached in $CACHE:"
    sed 's/^/  /' "$CACHE/VERSIONS" >&2
}

# Debian's 6.1 modules are plain .ko, later kernels compress them, and busybox insmod reads
# only plain ones.
unpack_module() { # MODULE OUT
    case $1 in
        *.ko) cp "$1" "$2" ;;
        *.ko.xz) xz -dc "$1" >"$2" ;;
        *.ko.zst) zstd -qdc "$1" >"$2" ;;
        *.ko.gz) gzip -dc "$1" >"$2" ;;
        *) die "no module $1" ;;
    esac
}

# The guest half of QEMU_HOSTFWD: QEMU's user-mode network is 10.0.2.0/24, the guest 10.0.2.15.
# shellcheck disable=SC2016 # a script for the guest
NET_UP='#!/bin/sh
# Loads the USB network drivers and configures usb0 (QEMU usb-net, there only with
# QEMU_HOSTFWD) as 10.0.2.15/24; brings lo up too.
ip link set lo up
for m in /lib/qemu-net/*.ko; do
    name=${m##*/}; name=${name#*-}; name=${name%.ko}
    [ -d "/sys/module/$(echo "$name" | tr - _)" ] || insmod "$m" || exit 1
done
i=0
until [ -e /sys/class/net/usb0 ]; do
    i=$((i + 1))
    [ $i -le 100 ] || { echo "qemu-net-up: no usb0 (was QEMU_HOSTFWD set?)" >&2; exit 1; }
    usleep 100000
done
ip addr add 10.0.2.15/24 dev usb0
ip link set usb0 up
'

cpio_gz() { # DIR OUT: DIR's tree as a gzip'd newc archive, all owned by root
    (cd "$1" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) |
        gzip -1 >"$2"
}

# What every run's initramfs has, built once per machine (again when this script changes).
# The kernel unpacks concatenated archives in turn, later files replacing earlier ones, so a
# run appends only its own files.
base_initramfs() { # MACHINE
    local m=$1 out="$CACHE/$1/base.cpio.gz" root applet
    [ "$out" -nt "${BASH_SOURCE[0]}" ] && [ "$out" -nt "$CACHE/VERSIONS" ] && return 0
    root=$(mktemp -d)
    CLEANUP+=("$root")
    chmod 755 "$root"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,mnt,var/log,lib/qemu-net}
    chmod 1777 "$root/tmp"
    cp "$CACHE/$m/busybox" "$root/bin/busybox"
    while read -r applet; do
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done <"$CACHE/$m/applets"
    echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
    echo 'root:x:0:' >"$root/etc/group"
    # The kernel opens /dev/console for PID 1 before anything is mounted.
    mknod -m 600 "$root/dev/console" c 5 1
    if [ -f "$CACHE/$m/thermal.ko" ]; then cp "$CACHE/$m/thermal.ko" "$root/lib/thermal.ko"; fi
    cp "$CACHE/$m/net/"*.ko "$root/lib/qemu-net/"
    printf '%s' "$NET_UP" >"$root/bin/qemu-net-up"
    chmod 755 "$root/bin/qemu-net-up"
    cpio_gz "$root" "$out.tmp"
    mv "$out.tmp" "$out"
}

build_initramfs() { # MACHINE INIT OUT SRC:DEST...
    local m=$1 init=$2 out=$3 root spec src dest
    shift 3
    base_initramfs "$m"
    root=$(mktemp -d)
    CLEANUP+=("$root")
    chmod 755 "$root"
    for spec in "$@"; do
        src=${spec%%:*}
        dest=${spec#*:}
        if [ "$src" = "$spec" ] || [ -z "$dest" ]; then die "not SRC:DEST: $spec"; fi
        [ -e "$src" ] || die "no such file: $src"
        mkdir -p "$root/$(dirname "${dest#/}")"
        cp -a "$src" "$root/${dest#/}"
    done
    install -m 755 "$init" "$root/init"
    cpio_gz "$root" "$out.overlay"
    cat "$CACHE/$m/base.cpio.gz" "$out.overlay" >"$out"
    rm "$out.overlay"
}

run() {
    [ $# -ge 2 ] || usage
    local m=$1 init=$2 rc=0 killed='' ok='' work line rule netdev
    shift 2
    [ -n "${QEMU[$m]:-}" ] || die "unknown machine $m (raspi3b or raspi0)"
    [ -f "$init" ] || die "no such init script: $init"
    fetch
    if [ -n "${QEMU_KEEP:-}" ]; then
        work=$QEMU_KEEP
        mkdir -p "$work"
    else
        work=$(mktemp -d)
        CLEANUP+=("$work")
    fi
    build_initramfs "$m" "$init" "$work/initramfs.gz" "$@"

    local -a cmd=(
        "${QEMU[$m]}" -M "$m" -m "${MEM[$m]}"
        -kernel "$CACHE/$m/vmlinuz" -dtb "$CACHE/$m/board.dtb" -initrd "$work/initramfs.gz"
        -append "console=ttyAMA0 iomem=relaxed rdinit=/init quiet ${QEMU_APPEND:-}"
        -nographic -monitor none -serial stdio -no-reboot
    )
    # One host thread for all four vCPUs: on this 2-core host, busy with a build, the smoke test
    # took 11 s with multi-threaded TCG, 4 s with this.
    if [ "$m" = raspi3b ]; then cmd+=(-accel "tcg,thread=single"); fi
    # The Pi Zero's kernel times everything with the BCM2835 system timer: it reads the free
    # running counter, adds the delay and writes a compare register, and QEMU fires the match
    # `compare - counter` µs (32 bits) later. On a loaded host QEMU's thread can be descheduled
    # between the read and the write for longer than the delay (rppal's PWM thread sleeps for
    # under a millisecond at a time): the compare is then in the past and the match comes
    # 71 minutes later, every timer in the guest stalls with it (the agent blocked joining a PWM
    # thread asleep in nanosleep, CI saw the Pi Zero test time out so). With -icount the
    # guest's clock advances with the instructions it runs, so a handful of instructions
    # between the read and the write cannot miss the match; idle time still passes in real
    # time (sleep=on). The Pi 3's ARM generic timer fires at once on a compare in the past.
    if [ "$m" = raspi0 ]; then cmd+=(-icount "shift=auto,sleep=on"); fi
    if [ -n "${QEMU_HOSTFWD:-}" ]; then
        netdev=user,id=net0,restrict=on
        for rule in $QEMU_HOSTFWD; do netdev+=",hostfwd=$rule"; done
        cmd+=(-netdev "$netdev" -device "usb-net,netdev=net0")
    fi

    rm -f "$work/console"
    mkfifo "$work/console"
    exec 3>"$work/console.log"
    timeout -k 5 "${QEMU_TIMEOUT:-120}" "${cmd[@]}" </dev/null >"$work/console" &
    QPID=$!
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line//$'\r'/}
        printf '%s\n' "$line"
        printf '%s\n' "$line" >&3
        [ "$line" = "$MARK_OK" ] && ok=1
        # The kernel's last words once init has run poweroff/reboot (or died): see the header.
        if [ -z "$killed" ] && [[ $line =~ reboot:\ (System\ halted|Power\ down|Restarting\ system)|Reboot\ failed|end\ Kernel\ panic ]]; then
            killed=1
            kill -TERM "$QPID" 2>/dev/null || true
        fi
    done <"$work/console"
    wait "$QPID" || rc=$?
    QPID=''
    exec 3>&-
    rm -f "$work/console"
    if [ -z "$killed" ] && [ "$rc" = 124 ]; then
        say "timeout after ${QEMU_TIMEOUT:-120} s"
        exit 124
    fi
    [ -n "$ok" ] || { say "no $MARK_OK line (qemu exit $rc)"; exit 1; }
}

case ${1:-} in
    fetch) [ $# -eq 1 ] || usage; fetch ;;
    run) shift; run "$@" ;;
    *) usage ;;
esac
