"""Dom0's initramfs: busybox and an init that reports what Dom0 got, then a shell on hvc0."""

from __future__ import annotations

import gzip

from xenkit.cpio import Archive

READY = "xenkit: Dom0 ready"
GUEST_READY = "xenkit: guest {name} ready"

# Plain POSIX sh for busybox. The banner is what `xenkit run --check` waits for, so its first
# words must stay READY.
INIT = r"""#!/bin/sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
hostname xenkit-dom0

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

while true; do
    setsid cttyhack sh -l
    sleep 1
done
"""

PROFILE = 'PS1="dom0# "\nexport PATH=/sbin:/bin:/usr/sbin:/usr/bin\n'


def build(busybox: bytes, guest: str = "") -> bytes:
    """The gzip'd newc cpio archive, reproducible byte for byte for the same busybox.
    With `guest`, the banner names that guest instead of Dom0 (a dom0less domain)."""
    arc = Archive()
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
    banner = GUEST_READY.format(name=guest) if guest else READY
    init = INIT.replace("@READY@", banner).replace("xenkit-dom0", guest or "xenkit-dom0")
    arc.file("init", init.encode(), 0o755)
    arc.file("etc/profile", PROFILE.encode())
    return gzip.compress(arc.to_bytes(), compresslevel=9, mtime=0)
