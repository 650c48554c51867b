"""A private network namespace with a tap device, for netboot tests and benchmarks.

A sleeping `unshare --net` process holds it rather than `ip netns add`, which needs / to be
a mount point (it is not in a chroot, such as ../shared/tools/fresh-ci's) and leaves a mount
on /run/netns behind. The namespace, and the tap device with it, goes with that process.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from xenkit.core.proc import run, spawn
from xenkit.errors import XenkitError


@contextlib.contextmanager
def with_tap(dev: str, interface: str) -> Iterator[list[str]]:
    """A namespace with loopback and tap device `dev` at `interface` (ADDR/PREFIX) up; yields
    the command prefix that runs a program inside it (a QEMU given `dev` is the other end)."""
    holder = spawn(["unshare", "--net", "sleep", "infinity"])
    inside = ["nsenter", f"--target={holder.pid}", "--net"]
    try:
        deadline = time.monotonic() + 10
        # unshare enters the new namespace before it runs sleep: wait until it has.
        while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            if holder.poll() is not None or time.monotonic() > deadline:
                raise XenkitError("unshare --net could not make a network namespace (root?)")
            time.sleep(0.01)
        run([*inside, "ip", "tuntap", "add", "dev", dev, "mode", "tap"])
        run([*inside, "ip", "addr", "add", interface, "dev", dev])
        for link in ("lo", dev):
            run([*inside, "ip", "link", "set", link, "up"])
        yield inside
    finally:
        holder.kill()
        holder.wait()
