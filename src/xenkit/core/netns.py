"""Private network namespaces, for netboot tests and benchmarks: one with a tap device, or
any number wired together by the caller.

A sleeping `unshare --net` process holds each rather than `ip netns add`, which needs / to
be a mount point (it is not in a chroot, such as ../shared/tools/fresh-ci's) and leaves a
mount on /run/netns behind. The namespace, and the devices in it, go with that process.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from xenkit.core.proc import run, spawn
from xenkit.errors import XenkitError


def inside(pid: int) -> list[str]:
    """The command prefix that runs a program in the network namespace `pid` holds."""
    return ["nsenter", f"--target={pid}", "--net"]


@contextlib.contextmanager
def namespace() -> Iterator[int]:
    """A new network namespace with nothing up in it; yields the pid of the process holding
    it (`ip link set DEV netns PID` moves a device there, inside(PID) runs a program there)."""
    holder = spawn(["unshare", "--net", "sleep", "infinity"])
    try:
        deadline = time.monotonic() + 10
        # unshare enters the new namespace before it runs sleep: wait until it has.
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            if holder.poll() is not None or time.monotonic() > deadline:
                raise XenkitError("unshare --net could not make a network namespace (root?)")
            time.sleep(0.001)
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


@contextlib.contextmanager
def with_tap(dev: str, interface: str) -> Iterator[list[str]]:
    """A namespace with loopback and tap device `dev` at `interface` (ADDR/PREFIX) up; yields
    the command prefix that runs a program inside it (a QEMU given `dev` is the other end)."""
    with namespace() as pid:
        prefix = inside(pid)
        run([*prefix, "ip", "tuntap", "add", "dev", dev, "mode", "tap"])
        run([*prefix, "ip", "addr", "add", interface, "dev", dev])
        for link in ("lo", dev):
            run([*prefix, "ip", "link", "set", link, "up"])
        yield prefix
