"""Initramfs images: busybox and a small init.

Three uses: Dom0 running from the initramfs alone (prints its banner, then a shell on hvc0);
Dom0's first stage when its root is the toolstack filesystem on the card (load the storage
and ext4 modules, find the partition by label, switch_root to xenkit's init there); and a
guest's whole userspace (banner, optional network address and ping from its command line).
"""

from __future__ import annotations

import gzip
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xenkit.formats.cpio import Archive
from xenkit.system import netroot

READY = "xenkit: Dom0 ready"
# The Debian release a build came from, for the banner: its Dom0 says what it runs.
RELEASE_FILE = "etc/xenkit/debian"
GUEST_READY = "xenkit: guest {name} ready"
# Printed by a guest's init after it pinged each address in xenkit.ping=.
PING_RESULT = "xenkit: guest {name} ping {address} {result}"
# Printed by a guest's init once its network is up (its address, static or from DHCP, and
# the NIC's driver: "vif" is Xen's netfront).
ADDRESS = "xenkit: guest {name} address {address} driver {driver}"
# Printed by a guest's init whenever the vCPUs online change (sysfs's list, e.g. "0-1").
VCPUS = "xenkit: guest {name} vcpus online {cpus}"
# Printed by a guest's init once up: the disks it sees (xvda: Xen's blkfront).
DISKS = "xenkit: guest {name} disks {disks}"

# busybox udhcpc's hook, for Dom0's bridge and for guests: $1 is the event, the lease comes
# in the environment ($mask is the prefix length).
UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ip link set "$interface" up
        ;;
    bound | renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -z "$router" ] || ip route replace default via "${router%% *}" dev "$interface"
        [ -z "$dns" ] || for s in $dns; do echo "nameserver $s"; done >/etc/resolv.conf
        ;;
esac
exit 0
"""

# Plain POSIX sh for busybox. The banner is what `xenkit run --check` waits for, so its first
# words must stay READY.
HEAD = r"""#!/bin/sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
name=@HOST@
for word in $(cat /proc/cmdline); do
    case "$word" in
        xenkit.name=*) name=${word#xenkit.name=} ;;
        xenkit.ip=*) addr=${word#xenkit.ip=} ;;
        xenkit.ping=*) peer=${word#xenkit.ping=} ;;
    esac
done
hostname "$name"
if [ -s /etc/modules.order ]; then
    for m in $(cat /etc/modules.order); do insmod "/$m" || echo "xenkit: insmod $m failed"; done
fi
"""

BANNER = r"""
xen=unknown
if [ -r /sys/hypervisor/version/major ]; then
    v=/sys/hypervisor/version
    xen="$(cat $v/major).$(cat $v/minor)$(cat $v/extra)"
else
    xen=$(dmesg | sed -n 's/.*Xen version \([0-9][0-9.]*\).*/\1/p' | head -n 1)
fi
xen=${xen:-unknown}
mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
cpus=$(grep -c '^processor' /proc/cpuinfo)
# xenkit_busy=N on the kernel command line reaches init as a variable: N endless loops
# keep this domain's vCPUs busy (the tick guest's jitter benchmark loads Dom0 this way).
i=0
while [ "$i" -lt "${xenkit_busy:-0}" ] 2>/dev/null; do
    ( while :; do :; done ) &
    i=$((i + 1))
done
echo
debian=$(cat /etc/xenkit/debian 2>/dev/null)
echo "@READY@: Xen $xen, memory $mem MiB, $cpus vCPUs," \
    "kernel $(uname -r)${debian:+ (Debian $debian)}"
echo
"""

# A guest's address (ADDR/PREFIX or "dhcp") and the peers to ping (comma-separated;
# "gateway" is the default route's) come on its kernel command line, so one initramfs serves
# every guest.
NETWORK = r"""
ip link set lo up
if [ -n "$addr" ]; then
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if [ "$addr" = dhcp ]; then
        udhcpc -i eth0 -s /etc/udhcpc.script -t 10 -T 2 -n -q >/tmp/dhcp.out 2>&1
    else
        ip addr add "$addr" dev eth0 && ip link set eth0 up
    fi
    got=$(ip addr show dev eth0 | awk '/inet / { print $2; exit }')
    drv=$(basename "$(readlink /sys/class/net/eth0/device/driver)" 2>/dev/null)
    echo "@ADDRESS@ ${got:-none} driver ${drv:-none}"
fi
echo "@DISKS@ $(ls /sys/block | grep -v -e '^loop' -e '^ram' | tr '\n' ' ')"
for p in $(echo "$peer" | tr , ' '); do
    [ "$p" = gateway ] && p=$(ip route | awk '/^default/ { print $3; exit }')
    if ping -c 3 -W 2 "$p" >/tmp/ping.out 2>&1; then r=ok; else r=failed; fi
    echo "@PING@ $r $(tail -n 2 /tmp/ping.out | tr '\n' ' ')"
done
"""

SHELL = r"""
while true; do
    setsid cttyhack sh -l
    sleep 1
done
"""

# A guest's shell runs in the background so init can act on the signals busybox's poweroff
# and reboot send to PID 1, which is how `xl shutdown` ends the domain.
GUEST_SHELL = r"""
# `xl vcpu-set` makes a vCPU present; bringing it online is userspace's job (udev's, on a
# full distribution).
(
    was=$(cat /sys/devices/system/cpu/online)
    while sleep 1; do
        for f in /sys/devices/system/cpu/cpu[1-9]*/online; do
            [ -e "$f" ] && [ "$(cat "$f")" = 0 ] && echo 1 >"$f" 2>/dev/null
        done
        now=$(cat /sys/devices/system/cpu/online)
        [ "$now" = "$was" ] || echo "@VCPUS@ $now"
        was=$now
    done
) &
# An HVM guest's emulated serial port is what `xl console` shows there: a shell on it too.
case " $(cat /proc/cmdline) " in
    *" console=ttyS0 "*)
        ( while true; do setsid sh -c 'exec sh -l </dev/ttyS0 >/dev/ttyS0 2>&1'; sleep 1; done ) &
        ;;
esac
trap 'sync; poweroff -f' USR1 USR2
trap 'sync; reboot -f' TERM
( while true; do setsid cttyhack sh -l; sleep 1; done ) &
while true; do wait; done
"""

# Dom0's root is elsewhere: wait for it (disk controllers and USB probe asynchronously; a
# USB stick under emulation takes seconds), mount it, hand over. find_dev names the device.
WAIT = r"""
i=0
until dev=$(find_dev); do
    i=$((i + 1))
    if [ $i -gt 300 ]; then echo "xenkit: nothing labelled @LABEL@ found"; exec sh; fi
    sleep 0.2
done
mkdir -p /newroot
"""
# The toolstack root on the card's ext4 partition, found by its label.
PARTITION = (
    r"""
find_dev() { findfs LABEL=@LABEL@ 2>/dev/null; }
"""
    + WAIT
    + r"""
mount -t ext4 "$dev" /newroot || { echo "xenkit: cannot mount $dev"; exec sh; }
echo "xenkit: Dom0 root is $dev"
"""
)
# A live medium is an ISO 9660 image: on a CD, or written whole to a stick or disk, where
# the filesystem starts at the disk's first byte. Its partition table (grub-mkrescue's GPT
# has an HFS+ partition with the same name for Macs) must not be mistaken for it, so the
# medium is the device whose primary volume descriptor (sector 16) names it.
FIND_ISO = (
    r"""
iso() {
    [ "$(dd if="$1" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] &&
        [ "$(dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | tr -d ' ')" = "@LABEL@" ]
}
find_dev() {
    for b in /sys/class/block/*; do
        case "${b##*/}" in loop* | ram* | zram*) continue ;; esac
        iso "/dev/${b##*/}" && echo "/dev/${b##*/}" && return 0
    done
    return 1
}
"""
    + WAIT
)
# A live root: read-only compressed layers on the medium under a tmpfs, joined by overlayfs.
# /run holds the mounts and moves into the new root, so Dom0 sees its medium.
LIVE = r"""
fail() { echo "xenkit: $*"; exec sh; }
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/live/medium /run/live/rw
# Through a loop device: mounting the disk itself would claim all of it, and the stick's
# persistence partition could not be mounted beside it.
loop=$(losetup -f) && losetup -r "$loop" "$dev" || fail "no loop device for $dev"
mount -t iso9660 -o ro "$loop" /run/live/medium || fail "cannot mount $dev"
lower=""
for layer in @LAYERS@; do
    dir=/run/live/$(basename "$layer" .sqfs)
    mkdir -p "$dir"
    mount -t squashfs -o loop,ro "/run/live/medium/$layer" "$dir" || fail "cannot mount $layer"
    lower="$lower${lower:+:}$dir"
done
# Changes go to the stick's persistence partition if it has one, else to RAM.
kept="in RAM"
if pdev=$(findfs LABEL=@PERSIST@ 2>/dev/null) && mount -t ext4 "$pdev" /run/live/rw; then
    kept="on $pdev"
else
    mount -t tmpfs -o mode=0755 tmpfs /run/live/rw
fi
mkdir -p /run/live/rw/upper /run/live/rw/work
mount -t overlay overlay \
    -o "lowerdir=$lower,upperdir=/run/live/rw/upper,workdir=/run/live/rw/work" /newroot ||
    fail "cannot join the layers"
echo "xenkit: Dom0 root is live from $dev, changes kept $kept"
mkdir -p /newroot/run
mount --move /run /newroot/run
"""
HANDOVER = r"""
umount /dev/pts
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /@INIT@
"""


@dataclass(frozen=True)
class Partition:
    """Dom0's root on an ext4 filesystem with this label (a card's partition)."""

    label: str


@dataclass(frozen=True)
class Live:
    """Dom0's root from squashfs images on the ISO 9660 medium labelled `label`, top layer
    first, under a tmpfs: the boot medium itself stays read-only."""

    label: str
    layers: tuple[str, ...]
    persist: str = ""  # the label of a writable filesystem for the changes, if one is there


RootSource = Partition | Live | netroot.Net

PROFILE = 'PS1="$(hostname)# "\nexport PATH=/sbin:/bin:/usr/sbin:/usr/bin\n'

Module = tuple[str, Path]  # (path inside the image, .ko file)


def _base(arc: Archive, busybox: bytes) -> None:
    for d in (
        "bin",
        "sbin",
        "dev",
        "etc",
        "proc",
        "sys",
        "tmp",
        "root",
        "usr",
        "usr/bin",
        "usr/sbin",
        "run",
        "var",
    ):
        arc.dir(d)
    arc.chardev("dev/console", 5, 1)
    arc.chardev("dev/null", 1, 3, 0o666)
    arc.file("bin/busybox", busybox, 0o755)
    arc.symlink("bin/sh", "busybox")
    arc.file("etc/profile", PROFILE.encode())


def _modules(arc: Archive, modules: Sequence[Module]) -> None:
    made: set[str] = set()
    for path, src in modules:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made and d not in ("usr",):
                arc.dir(d)
                made.add(d)
        arc.file(path, src.read_bytes())
    arc.file("etc/modules.order", "".join(f"{p}\n" for p, _ in modules).encode())


def _files(arc: Archive, files: dict[str, bytes]) -> None:
    """`files` (path -> content) with the directories they need (the kernel's unpacker
    makes none)."""
    made = {e.name for e in arc.entries}
    for path in sorted(files):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                arc.dir(d)
                made.add(d)
        arc.file(path, files[path], 0o755)


def build(
    busybox: bytes,
    guest: str = "",
    modules: Sequence[Module] = (),
    root: RootSource | None = None,
    root_init: str = "",
    files: dict[str, bytes] | None = None,
) -> bytes:
    """The gzip'd newc cpio archive, reproducible byte for byte for the same inputs.
    With `guest`, the banner names that guest instead of Dom0 (a dom0less or xl domain).
    With `root`, it is Dom0's first stage: it mounts that root and runs `root_init` there.
    `files` go in besides (programs the first stage runs)."""
    arc = Archive()
    _base(arc, busybox)
    _modules(arc, modules)
    _files(arc, files or {})
    host = guest or "xenkit-dom0"
    if isinstance(root, netroot.Net):
        body = (netroot.stage_script(root, root.layers) + HANDOVER).replace(
            "@INIT@", root_init.lstrip("/")
        )
    elif root:
        if isinstance(root, Live):
            mount = FIND_ISO + LIVE.replace("@LAYERS@", " ".join(root.layers))
            mount = mount.replace("@PERSIST@", root.persist)
        else:
            mount = PARTITION
        body = (mount + HANDOVER).replace("@LABEL@", root.label)
        body = body.replace("@INIT@", root_init.lstrip("/"))
    elif guest:
        ping = PING_RESULT.format(name="$name", address="$p", result="").rstrip()
        address = ADDRESS.format(name="$name", address="", driver="").split("  ")[0]
        vcpus = VCPUS.format(name="$name", cpus="").rstrip()
        disks = DISKS.format(name="$name", disks="").rstrip()
        body = BANNER + NETWORK.replace("@PING@", ping).replace("@ADDRESS@", address)
        body = body.replace("@DISKS@", disks)
        body += GUEST_SHELL.replace("@VCPUS@", vcpus)
        arc.file("etc/udhcpc.script", UDHCPC_SCRIPT.encode(), 0o755)
    else:
        body = BANNER + SHELL
    # A guest's name may come from its command line (xenkit.name=): one initramfs then
    # serves every run-time guest.
    banner = GUEST_READY.format(name="$name") if guest else READY
    init = (HEAD + body).replace("@READY@", banner).replace("@HOST@", host)
    arc.file("init", init.encode(), 0o755)
    return gzip.compress(arc.to_bytes(), compresslevel=9, mtime=0)


def from_tree(root: Path, init: str) -> bytes:
    """A whole root directory as an initramfs (Dom0 without a root partition); `init`
    becomes /init."""
    arc = Archive()
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            arc.symlink(rel, str(path.readlink()))
        elif stat.S_ISDIR(st.st_mode):
            arc.dir(rel, stat.S_IMODE(st.st_mode))
        elif stat.S_ISREG(st.st_mode):
            arc.file(rel, path.read_bytes(), stat.S_IMODE(st.st_mode))
    arc.symlink("init", init.lstrip("/"))
    return gzip.compress(arc.to_bytes(), compresslevel=6, mtime=0)
