#!/usr/bin/env python3
"""The tick guest's period jitter while Dom0 idles and while Dom0 is busy, in emulation.

    python benchmarks/tick_jitter.py [--board rpi4|qemu-virt] [--period-ms 100] [--seconds 30]
                                     [--linux-guests 1] [--quick]

Two boots of the same system (Dom0, --linux-guests Linux dom0less guests, the tick guest),
differing only in Dom0's command line: the busy one has xenkit_busy=N, and Dom0's init spins
N loops. After every banner is up, the console is followed for --seconds more; only ticks
printed in that window count. Jitter is how far each interval between printed ticks strays from the
whole number of periods it spans; lateness is how long after its deadline each tick woke.
Both come from the guest's own counter (CNTVCT, CNTFRQ), not the host's clock. Each boot
also gives the time from power-on (QEMU start) to the last dom0less guest's banner.
--quick (what CI runs) boots qemu-virt, faster to emulate than the Pi 4, without the Linux
guest, and follows each boot for 3 s; options given with it still win. The Linux guest is
what makes these boots slow: on one 2-CPU host, with it Dom0 was up some 75 s after power-on,
without it after 17 s, and the quick run took 161 s with it, 46 s without.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import quick

try:
    from xenkit.analysis import tickstats
    from xenkit.config import boards, settings, spec
    from xenkit.errors import XenkitError
    from xenkit.pipeline import build
    from xenkit.run import emulate
    from xenkit.system import initramfs
except ImportError as exc:  # pragma: no cover - only a wrong interpreter gets here
    sys.exit(f"{exc}: run this with the project's venv, e.g. .venv/bin/python {sys.argv[0]}")

TICK = "rtos"
# --quick: still both boots (the ratio needs them), with some 30 ticks after each.
QUICK = {"board": "qemu-virt", "seconds": 3.0, "linux_guests": 0}


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Case:
    name: str
    jitter: tickstats.Summary
    lateness: tickstats.Summary
    ticks: int
    missed: int
    guests_up: float  # seconds from power-on to the last dom0less banner
    dom0_up: float


def boot(board: str, busy: int, args: argparse.Namespace, work: Path) -> Case:
    name = f"busy ({busy} loops)" if busy else "idle"
    values = settings.resolve(
        {},
        {
            "board": board,
            "dom0_extra": f"xenkit_busy={busy}" if busy else "",
            "domain": [
                *({"name": f"linux{i}", "memory": "128M"} for i in range(1, args.linux_guests + 1)),
                {"name": TICK, "kernel": "builtin:tick", "cmdline": f"period_ms={args.period_ms}"},
            ],
        },
    )
    system = spec.resolve(values)
    out = work / ("busy" if busy else "idle")
    log(f"{name}: building into {out}")
    m = build.build(system, out)
    plan = emulate.prepare(boards.load(board), m.ram, out, out / "run")
    want = emulate.banners(m)
    log(f"{name}: booting, then following the console for {args.seconds:.0f} s")
    echo = sys.stderr if args.echo else None
    result = emulate.check(plan, args.timeout, echo, want, linger=args.seconds)
    if not result.ok:
        raise XenkitError(f"{name}: {result.reason} (console log {plan.console_log})")
    console = plan.console_log.read_text(errors="replace")
    run = tickstats.parse(console, TICK)
    lines = console.splitlines()
    up = max(i for i, line in enumerate(lines) if any(m in line for m in want))
    after = [(t, late) for t, late in zip(run.ticks, run.lateness(), strict=True) if t.line > up]
    if len(after) < 2:
        raise XenkitError(f"{name}: fewer than two ticks after boot: raise --seconds")
    us = 1e6 / run.cntfrq
    guests = [result.banners[b][0] for b in m.guest_banners]
    return Case(
        name,
        run.jitter(after_line=up),
        tickstats.summarize([late * us for _, late in after]),
        len(after),
        after[-1][0].n - after[0][0].n + 1 - len(after),
        max(guests),
        result.banners[initramfs.READY][0],
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", default="rpi4", choices=boards.available())
    ap.add_argument("--period-ms", type=int, default=100, help="the tick guest's period")
    ap.add_argument("--seconds", type=float, default=30, help="console time after boot")
    ap.add_argument("--busy", type=int, default=4, help="Dom0 busy loops in the busy case")
    ap.add_argument("--linux-guests", type=int, default=1, help="Linux dom0less guests")
    ap.add_argument("--timeout", type=float, default=600, help="seconds each boot may take")
    ap.add_argument("--echo", action="store_true", help="show the emulated consoles")
    args = quick.parse_args(ap, argv, QUICK, "3 s after each boot, on qemu-virt, no Linux guest")
    if args.period_ms < 1 or args.seconds <= 0 or args.busy < 1 or args.linux_guests < 0:
        ap.error(
            "--period-ms and --busy must be at least 1, --linux-guests at least 0, "
            "--seconds more than 0"
        )
    try:
        with tempfile.TemporaryDirectory(prefix="xenkit-tick-") as tmp:
            cases = [boot(args.board, n, args, Path(tmp)) for n in (0, args.busy)]
    except XenkitError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    idle, busy = cases
    print()
    print(
        f"tick guest on {args.board} beside {args.linux_guests} Linux guest(s), "
        f"period {args.period_ms} ms, "
        f"{args.seconds:.0f} s after boot (microseconds, from the guest's own counter)"
    )
    head = ("Dom0", "ticks", "missed", "jitter min/mean/max/p99", "lateness mean/p99", "guests up")
    rows = [head]
    for c in cases:
        j, late = c.jitter, c.lateness
        rows.append(
            (
                c.name,
                str(c.ticks),
                str(c.missed),
                f"{j.min:.0f} / {j.mean:.0f} / {j.max:.0f} / {j.p99:.0f}",
                f"{late.mean:.0f} / {late.p99:.0f}",
                f"{c.guests_up:.1f} s",
            )
        )
    width = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for r in rows:
        print("  ".join(f"{cell:<{width[i]}}" for i, cell in enumerate(r)).rstrip())
    ratio = busy.jitter.mean / idle.jitter.mean if idle.jitter.mean else math.inf
    ratio99 = busy.jitter.p99 / idle.jitter.p99 if idle.jitter.p99 else math.inf
    print(f"busy/idle jitter: mean x{ratio:.1f}, p99 x{ratio99:.1f}")
    print(
        "power-on to all dom0less guests up: "
        + ", ".join(f"{c.name} {c.guests_up:.1f} s (Dom0 {c.dom0_up:.1f} s)" for c in cases)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
