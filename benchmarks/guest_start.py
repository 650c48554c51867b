#!/usr/bin/env python3
"""How long a guest takes to come up: started by `xl create` in a running Dom0, next to the
same guest started by Xen at power-on (dom0less), in one emulated boot.

    python benchmarks/guest_start.py [--board qemu-virt|rpi4] [--runs 3] [--quick]

The system: Dom0 with the toolstack (root on the card), a dom0less Linux guest, and a
run-time guest with the same kernel and initramfs. Dom0 runs a script that creates the
run-time guest --runs times, each time timing `xl create` to the guest's banner in its
console log by Dom0's uptime, then destroys it. The dom0less figure is power-on (QEMU start)
to that guest's banner by the host clock, so it includes U-Boot loading every image; the
ratio says how much of a guest's start is Xen and Linux rather than the boot chain.
--quick (what CI runs) creates the run-time guest once and waits at most 600 s for the boot;
options given with it still win.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import quick

try:
    from xenkit.config import boards, settings, spec
    from xenkit.errors import XenkitError
    from xenkit.pipeline import build
    from xenkit.run import emulate
    from xenkit.system import initramfs
except ImportError as exc:  # pragma: no cover - only a wrong interpreter gets here
    sys.exit(f"{exc}: run this with the project's venv, e.g. .venv/bin/python {sys.argv[0]}")

# --quick: one boot is all this ever takes; one xl create is the least that gives the ratio.
# A boot that hangs (see the README on Dom0's stalled vCPUs) is given up on sooner.
QUICK = {"board": "qemu-virt", "runs": 1, "timeout": 600.0}

SCRIPT = r"""#!/bin/bash
up() { cut -d' ' -f1 /proc/uptime; }
for i in $(seq 1 @RUNS@); do
    log=/var/log/xen/console/guest-g1.log
    rm -f "$log"
    t0=$(up)
    xl create /etc/xen/g1.cfg >/dev/null 2>&1 || { echo "BENCH create failed"; exit 1; }
    n=0
    until grep -q "xenkit: guest g1 ready" "$log" 2>/dev/null; do
        n=$((n + 1)); [ $n -gt 3000 ] && { echo "BENCH no banner"; exit 1; }
        sleep 0.1
    done
    echo "BENCH create-to-banner $(awk -v a="$t0" -v b="$(up)" 'BEGIN { print b - a }')"
    xl destroy g1
    sleep 2
done
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="qemu-virt", choices=boards.available())
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1200)
    args = quick.parse_args(parser, argv, QUICK, "one xl create, on qemu-virt")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="xenkit-bench-") as tmp:
        work = Path(tmp)
        script = work / "autorun.sh"
        script.write_text(SCRIPT.replace("@RUNS@", str(args.runs)))
        values = settings.resolve(
            {},
            {
                "board": args.board,
                "toolstack": True,
                "dom0_autorun": str(script),
                "domain": [{"name": "linux1", "memory": "128M"}],
                "guest": [{"name": "g1", "memory": "128M"}],
            },
        )
        try:
            system = spec.resolve(values)
            m = build.build(system, work / "out")
            plan = emulate.prepare(boards.load(args.board), m.ram, work / "out", work / "run")
        except XenkitError as exc:
            sys.exit(f"bench: {exc}")
        want = emulate.banners(m)
        print(f"bench: booting {args.board} ...", file=sys.stderr, flush=True)
        result = emulate.check(plan, args.timeout, None, want)
        console = plan.console_log.read_text(errors="replace")
        if not result.ok:
            sys.exit(f"bench: {result.reason}")
    runtime = [
        float(line.split()[-1]) for line in console.splitlines() if "BENCH create-to-banner" in line
    ]
    if len(runtime) != args.runs:
        sys.exit("bench: the script in Dom0 failed:\n" + console[-2000:])
    boot_guest = result.banners[initramfs.GUEST_READY.format(name="linux1")][0]
    dom0 = result.banners[initramfs.READY][0]
    median = statistics.median(runtime)
    print(f"guest start on {args.board} (emulated), same kernel and initramfs:")
    runs = ", ".join(f"{t:.1f}" for t in runtime)
    print(f"  xl create -> banner, {args.runs} runs: {runs} s (median {median:.1f} s)")
    print(f"  power-on -> dom0less guest banner:  {boot_guest:.1f} s")
    print(f"  power-on -> Dom0 (toolstack) ready: {dom0:.1f} s")
    print(f"  ratio xl create / dom0less from power-on: {median / boot_guest:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
