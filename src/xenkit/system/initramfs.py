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
from pathlib import Path

from xenkit.formats.cpio import Archive

READY = "xenkit: Dom0 ready"
GUEST_READY = "xenkit: guest {name} ready"
# Printed by a guest's init after it pinged the address in xenkit.ping=.
PING_RESULT = "xenkit: guest {name} ping {address} {result}"

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
echo "@READY@: Xen $xen, memory $mem MiB, $cpus vCPUs, kernel $(uname -r)"
echo
"""

# A guest's address and a peer to ping come on its kernel command line, so one initramfs
# serves every guest.
NETWORK = r"""
ip link set lo up
if [ -n "$addr" ]; then
    i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    ip addr add "$addr" dev eth0 && ip link set eth0 up
fi
if [ -n "$peer" ]; then
    if ping -c 3 -W 2 "$peer" >/tmp/ping.out 2>&1; then r=ok; else r=failed; fi
    echo "@PING@ $r $(tail -n 2 /tmp/ping.out | tr '\n' ' ')"
fi
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
    while sleep 1; do
        for f in /sys/devices/system/cpu/cpu[1-9]*/online; do
            [ -e "$f" ] && [ "$(cat "$f")" = 0 ] && echo 1 >"$f" 2>/dev/null
        done
    done
) &
trap 'sync; poweroff -f' USR1 USR2
trap 'sync; reboot -f' TERM
( while true; do setsid cttyhack sh -l; sleep 1; done ) &
while true; do wait; done
"""

# The toolstack root is on the card: wait for its partition (the SD host and its card probe
# asynchronously), mount it and hand over.
SWITCH = r"""
i=0
while ! dev=$(findfs LABEL=@LABEL@ 2>/dev/null); do
    i=$((i + 1))
    if [ $i -gt 300 ]; then echo "xenkit: no filesystem labelled @LABEL@ found"; exec sh; fi
    sleep 0.1
done
mkdir -p /newroot
mount -t ext4 "$dev" /newroot || { echo "xenkit: cannot mount $dev"; exec sh; }
echo "xenkit: Dom0 root is $dev"
umount /dev/pts
mount --move /dev /newroot/dev
umount /sys /proc
exec switch_root /newroot /@INIT@
"""

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


def build(
    busybox: bytes,
    guest: str = "",
    modules: Sequence[Module] = (),
    root_label: str = "",
    root_init: str = "",
) -> bytes:
    """The gzip'd newc cpio archive, reproducible byte for byte for the same inputs.
    With `guest`, the banner names that guest instead of Dom0 (a dom0less or xl domain).
    With `root_label`, it is Dom0's first stage: it mounts that filesystem and runs
    `root_init` there."""
    arc = Archive()
    _base(arc, busybox)
    _modules(arc, modules)
    host = guest or "xenkit-dom0"
    if root_label:
        body = SWITCH.replace("@LABEL@", root_label).replace("@INIT@", root_init.lstrip("/"))
    elif guest:
        ping = PING_RESULT.format(name="$name", address="$peer", result="").rstrip()
        body = BANNER + NETWORK.replace("@PING@", ping) + GUEST_SHELL
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
