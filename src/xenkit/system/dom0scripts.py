"""The scripts of the toolstack Dom0: its init (what Debian's init.d/xen would do, on a
system without an init system) and xenkit-start, which starts guests. Shell for Debian's
bash and busybox; placeholders in @...@ are filled in by rootfs.stage."""

# xenkit's Dom0 init on the toolstack root: what Debian's init.d/xen would do at boot, for a
# system with no init system. Settings come from /etc/xenkit/dom0.conf.
DOM0_INIT = r"""#!/bin/sh
. /etc/xenkit/dom0.conf
. /@LIB@
export PATH="$XEN_BIN:/usr/sbin:/usr/bin:/usr/libexec/busybox"
mounted() { grep -q " $1 " /proc/mounts 2>/dev/null; }
export HOME=/root TERM=vt100
mounted /proc || mount -t proc proc /proc
mounted /sys || mount -t sysfs sysfs /sys
mounted /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mounted /dev/pts || mount -t devpts devpts /dev/pts
# A live root's first stage hands over /run with the medium and the layers mounted in it.
mounted /run || mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/xen /run/lock /run/xenkit /var/log/xen/console
mount -o remount,rw / 2>/dev/null
hostname -F /etc/hostname
ip link set lo up
# A boot menu's "Linux without Xen" runs this root too: then there is no Xen to serve.
xen=false
[ "$(cat /sys/hypervisor/type 2>/dev/null)" = xen ] && xen=true
for m in $(cat /etc/xenkit/modules.order); do
    case "$m" in *xen*) $xen || continue ;; esac
    insmod "/$m" 2>/dev/null || grep -q "^$(basename "${m%.xz}" .ko | tr - _) " /proc/modules ||
        echo "xenkit: insmod $m failed"
done

if $xen; then
mounted /proc/xen || mount -t xenfs xenfs /proc/xen
xenstored --pid-file /run/xen/xenstored.pid
i=0
until xenstore-read -s / >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "xenkit: xenstored did not start"; break; }
    sleep 0.1
done
xen-init-dom0 >/dev/null
xenconsoled --pid-file=/run/xen/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
# Only Arm's Xen starts dom0less domains (and only its toolstack has init-dom0less).
if command -v init-dom0less >/dev/null; then
    init-dom0less >/var/log/xen/init-dom0less.log 2>&1 || true
fi
# init-dom0less names the domains it finds dom0less-ID; xenkit knows their real names.
if [ -s /etc/xenkit/dom0less ]; then
    while read -r id name; do
        xl rename "dom0less-$id" "$name" >/tmp/rename.out 2>&1 ||
            echo "xenkit: cannot rename dom0less-$id to $name: $(tail -n 1 /tmp/rename.out)"
    done </etc/xenkit/dom0less
fi
fi

uplink=""
if [ "$AUTOCONFIG" = 1 ]; then
    # Xenoppix's autoconfig, the way udev's coldplug does it: each device the kernel found
    # names the drivers that fit it (its modalias), read from the buses' and classes' device
    # lists (and the CPU's, for its features' modules). Walking all of /sys/devices for them
    # took 10 s of an emulated PC's boot, the lists 1.3 s, for the same aliases. Twice, since
    # a driver can reveal devices behind it (a USB controller, its disks and NICs); the second
    # time for those alone (all of them again was another 1.6 s).
    seen=""
    for pass in 1 2; do
        all=$(cat /sys/bus/*/devices/*/modalias /sys/class/*/*/modalias \
            /sys/devices/system/cpu/modalias 2>/dev/null | sort -u)
        new=$(printf '%s\n' "$all" | grep -vxF -e "$seen")
        [ -z "$new" ] || modprobe -q -a -b $new 2>/dev/null
        seen=$all
    done
    nics=""
    for n in /sys/class/net/*; do
        [ -e "$n/device" ] && [ ! -e "$n/wireless" ] && [ ! -e "$n/phy80211" ] || continue
        nics="$nics ${n##*/}"
        ip link set "${n##*/}" up
    done
    # The first wired NIC with a link is the uplink; auto-negotiation takes a moment.
    i=0
    while [ -n "$nics" ] && [ -z "$uplink" ] && [ $i -lt 50 ]; do
        for nic in $nics; do
            [ "$(cat "/sys/class/net/$nic/carrier" 2>/dev/null)" = 1 ] && uplink=$nic && break
        done
        [ -n "$uplink" ] || { sleep 0.1; i=$((i + 1)); }
    done
fi

if [ -n "$BRIDGE" ] && [ -e "/sys/class/net/$BRIDGE" ]; then
    # A network root's first stage made the bridge: Dom0's root comes over it, so it stays
    # as it is (its DHCP client lives on in /run/xenkit/front).
    uplink=$(ls "/sys/class/net/$BRIDGE/brif" 2>/dev/null | head -n 1)
elif [ -n "$BRIDGE" ]; then
    ip link add name "$BRIDGE" type bridge stp_state 0 forward_delay 0
    if [ -n "$uplink" ]; then
        # Guests share the uplink's network: the bridge takes the NIC's MAC and its lease.
        ip link set "$uplink" master "$BRIDGE"
        ip link set "$BRIDGE" up
        udhcpc -i "$BRIDGE" -s /@UDHCPC@ -t 5 -T 2 -b -p /run/udhcpc.pid \
            >/run/xenkit/udhcpc.log 2>&1
    else
        ip addr add "$BRIDGE_ADDR" dev "$BRIDGE"
        ip link set "$BRIDGE" up
    fi
fi

if $xen; then
    version="$(cat /sys/hypervisor/version/major).$(cat /sys/hypervisor/version/minor)"
    version="$version$(cat /sys/hypervisor/version/extra)"
else
    version="none (Linux without Xen)"
fi
caps=""
$xen && caps=$(virt_caps)
mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
cpus=$(grep -c '^processor' /proc/cpuinfo)
domains=$(xl list 2>/dev/null | tail -n +2 | wc -l)
found=""
if [ "$AUTOCONFIG" = 1 ]; then
    # What Dom0 found, for a machine nobody described to xenkit.
    nicl=""
    for nic in $nics; do
        drv=$(basename "$(readlink "/sys/class/net/$nic/device/driver")")
        link=down; [ "$nic" = "$uplink" ] && link=uplink
        nicl="$nicl${nicl:+ }$nic/$drv/$link"
    done
    disks=$(ls /sys/block | grep -v -e '^loop' -e '^ram' -e '^zram' -e '^nbd' | tr '\n' ' ')
    disks=${disks% }
    addr=$(ip -4 addr show dev "$BRIDGE" 2>/dev/null | awk '/inet / { print $2; exit }')
    found="; NICs: ${nicl:-none}; disks: ${disks:-none}; address: ${addr:-none}"
    found="$found; virt_caps: $caps"
fi
runs=""
$xen && runs="; guests: $(runnable_types "$caps" | sed 's/ /, /g')"
echo
debian=$(cat /etc/xenkit/debian 2>/dev/null)
echo "@READY@: Xen $version, memory $mem MiB, $cpus vCPUs," \
    "kernel $(uname -r)${debian:+ (Debian $debian)}," \
    "xl sees $domains domains$runs$found"
echo
if $xen; then
    for cfg in /etc/xen/*.cfg; do
        [ -f "$cfg" ] && cannot_run "$(basename "$cfg" .cfg)" "$cfg" "$caps"
    done
fi

if ! $xen && ls /etc/xen/*.cfg >/dev/null 2>&1; then
    echo "xenkit: this is Linux without Xen: its guests (/etc/xen/*.cfg) need a Xen entry" \
        "of the boot menu"
fi

if [ -x /etc/xenkit/autorun ]; then
    echo "xenkit: autorun start"
    /etc/xenkit/autorun 2>&1
    echo "@AUTORUN@ $?"
fi

# A network root with a cache partition (the first stage said so in /run/xenkit/fill): the
# rest of the root in the background, once Dom0's own work is under way, so the next boot
# needs no server.
[ -e /run/xenkit/fill ] && (@FILL@ &)

while true; do
    setsid cttyhack bash -l
    sleep 1
done
"""


# Shell functions Dom0's init and xenkit-start share: which guest types this machine's Xen
# runs (from `xl info`'s virt_caps; PVH and HVM need hardware virtualisation with HAP, since
# Debian's Xen has no shadow paging), and why a guest cannot start here.
GUESTS_LIB = r"""
# The words of `xl info`'s virt_caps. Callers that ask more than once pass them on, since
# under emulation each `xl info` takes a noticeable moment.
# virt_caps [XL_INFO]: from `xl info`'s text where the caller has it.
virt_caps() { printf '%s\n' "${1-$(xl info 2>/dev/null)}" | sed -n 's/^virt_caps *: *//p'; }
# runnable_types [CAPS]
runnable_types() {
    case "$(uname -m)" in x86_64) ;; *) echo "arm"; return ;; esac
    caps=" ${1-$(virt_caps)} "
    hvm=false
    case "$caps" in *" hvm "*) case "$caps" in *" hap "*) hvm=true ;; esac ;; esac
    if $hvm; then echo "pv pvh hvm"; else echo "pv"; fi
}
# The physical CPUs guests run on when Dom0 keeps its own (Xen's dom0_vcpus_pin puts Dom0's
# vCPU n on CPU n): the ones after Dom0's, as a range for xl's cpus=. Nothing when Dom0's
# vCPUs float, or cover every CPU. guest_cpus [XL_INFO]
guest_cpus() {
    info=${1-$(xl info 2>/dev/null)}
    case " $(echo "$info" | sed -n 's/^xen_commandline *: //p') " in
    *" dom0_vcpus_pin "*) ;;
    *) return 0 ;;
    esac
    total=$(echo "$info" | sed -n 's/^nr_cpus *: *//p')
    dom0=$(xl list 0 2>/dev/null | awk 'NR == 2 { print $4 }')
    [ -n "$total" ] && [ -n "$dom0" ] && [ "$dom0" -lt "$total" ] && echo "$dom0-$((total - 1))"
    return 0
}
# cannot_run NAME CFG [CAPS]: nothing if the guest's xl.cfg is a type this machine runs,
# else one line saying why.
cannot_run() {
    type=$(sed -n 's/^type *= *"\(.*\)"/\1/p' "$2")
    [ "$(uname -m)" = x86_64 ] || return 0
    caps=${3-$(virt_caps)}
    case " $(runnable_types "$caps") " in *" ${type:-pv} "*) return 0 ;; esac
    echo "xenkit: guest $1 is $type, but this machine's Xen runs only PV guests" \
        "(virt_caps: ${caps:-none}; $type needs VT-x or AMD-V with nested paging):" \
        "make it type = \"pv\""
}
"""

# `xenkit-start NAME...`: xl create, after saying in one line why a guest cannot run here,
# and with the guest's disk image made on its first start.
GUEST_TOOL_SCRIPT = r"""#!/bin/sh
. /etc/xenkit/dom0.conf
export PATH="$XEN_BIN:/usr/sbin:/usr/bin:/usr/libexec/busybox"
. /@LIB@
if [ $# = 0 ]; then
    echo "usage: xenkit-start NAME... (guests:" \
        "$(cd /etc/xen && ls ./*.cfg 2>/dev/null | sed 's|^\./||; s/\.cfg$//' | tr '\n' ' '))"
    exit 2
fi
rc=0
info=$(xl info 2>/dev/null)
caps=$(virt_caps "$info")
cpus=$(guest_cpus "$info")
for name in "$@"; do
    cfg=/etc/xen/$name.cfg
    [ -f "$cfg" ] || { echo "xenkit-start: no guest $name (no $cfg)"; rc=2; continue; }
    why=$(cannot_run "$name" "$cfg" "$caps")
    [ -z "$why" ] || { echo "$why"; rc=2; continue; }
    sed -n 's/^# xenkit-disk: //p' "$cfg" | while read -r path size; do
        [ -e "$path" ] && continue
        mkdir -p "$(dirname "$path")" && truncate -s "$size" "$path" ||
            echo "xenkit-start: cannot make $path for $name"
    done
    if [ -n "$cpus" ]; then
        xl create "$cfg" "cpus=\"$cpus\"" || rc=1
    else
        xl create "$cfg" || rc=1
    fi
done
exit $rc
"""
