"""`xenkit guest add`: a run-time guest for Dom0's xl."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from xenkit.core.sizes import format_size


def cmd_guest_add(args: argparse.Namespace) -> int:
    from xenkit.pipeline import guest

    table = {
        "name": args.name,
        "memory": args.memory,
        "vcpus": args.vcpus,
        "bridge": args.bridge,
    }
    for key, value in (
        ("kernel", args.kernel),
        ("ramdisk", args.initramfs),
        ("maxmem", args.maxmem),
        ("maxvcpus", args.maxvcpus),
        ("ip", args.ip),
        ("ping", args.ping),
        ("type", args.type),
        ("pv_drivers", args.pv_drivers),
        ("disk", args.disk),
        ("cmdline", args.cmdline),
    ):
        if value is not None:
            # abspath, not resolve: a symlink loop is for the file's own check to name
            # (resolve raised RuntimeError, exit 3).
            table[key] = os.path.abspath(value) if key in ("kernel", "ramdisk") else value
    g = guest.add(Path(args.dir), table)
    print(f"added {g.type} guest {g.name} to {args.dir}: in Dom0, xenkit-start {g.name}")
    print(
        f"  memory {format_size(g.memory)} (up to {format_size(max(g.memory, g.maxmem))}),"
        f" vCPUs {g.vcpus} (up to {max(g.vcpus, g.maxvcpus)}), address {g.ip or 'none'}"
    )
    return 0
