"""Boot a scenario again and again and count how often one of Dom0's vCPUs stalls.

    .venv/bin/python scripts/stall_hunt.py [--board qemu-virt] [--boots 30] [--jobs 1]
        [--xen-extra "vwfi=native"] [--accel tcg,thread=multi] [--qemu "..."] [--churn 0]

The scenario is the toolstack guest test's (tests/scenarios.py): Dom0 with Xen's tools, a
Linux dom0less guest, the tick guest, and tests/data/guest_lifecycle.sh driving run-time
guests through xl. `--churn N` runs N `xl create`/`xl destroy` cycles instead, for more
chances per boot. A boot counts as stalled when Dom0's Linux reports an RCU stall (the
symptom: an idle vCPU whose timer wakeup never comes); it is stopped there, since such a
boot only crawls on. One line per boot and a summary go to stdout and to OUT/stalls.jsonl.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))

from tests import scenarios  # noqa: E402

from xenkit.config import boards  # noqa: E402
from xenkit.errors import XenkitError  # noqa: E402
from xenkit.pipeline import build, manifest  # noqa: E402
from xenkit.run import emulate  # noqa: E402
from xenkit.system import rootfs  # noqa: E402

# The stall hunted: Dom0's Linux 6.1 finds an idle CPU that has stopped taking part in RCU
# grace periods, its timer wakeup never having come ("detected stalls on CPUs/tasks" with
# "1-...!: (0 ticks this GP) idle ..." on the next line, or "timer wakeup didn't happen").
STALL = re.compile(r"rcu_sched kthread timer wakeup didn't happen")
REPORT = re.compile(r"rcu: INFO: rcu_sched detected stalls on CPUs")
TICKS = re.compile(r"\((\d+) ticks this GP\)")
# A different thing, counted apart: a CPU busy in the kernel for RCU's whole timeout, in a
# stall report of its own ("self-detected stall") or of another CPU's (a report whose CPU
# line counts ticks: "3-....: (3679 ticks this GP)", the task running xl). Seen in `xl
# create`/`xl destroy` unmapping a guest (xen_unmap_domain_gfn_range, ~8000 hypercalls for
# a 32 MiB kernel, over RCU's 21 s under TCG), and more often on a loaded host.
BUSY = re.compile(r"rcu: INFO: rcu_sched self-detected stall")


def stall_kind(cpu_line: str) -> str:
    """'idle' or 'busy' for one CPU line of a "detected stalls on CPUs" report."""
    ticks = TICKS.search(cpu_line)
    return "idle" if ticks and ticks.group(1) == "0" else "busy"


UPTIME = re.compile(r"^\[\s*(\d+\.\d+)\]")

CHURN = """#!/bin/bash
# xl create / destroy, over and over: each start puts event channels, grant maps, vCPU
# wakeups and the bridge through their paces in Dom0.
log=/var/log/xen/console/guest-g1.log
for i in $(seq 1 {cycles}); do
    xl create /etc/xen/g1.cfg >/dev/null 2>&1
    end=$(( $(cut -d. -f1 /proc/uptime) + 180 ))
    until [ "$(grep -c 'xenkit: guest g1 ready' "$log" 2>/dev/null)" -ge "$i" ]; do
        [ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ] && break
        sleep 1
    done
    echo "XK $(cut -d' ' -f1 /proc/uptime) cycle $i $(grep -c 'xenkit: guest g1 ready' "$log")"
    xl destroy g1
done
"""


@dataclasses.dataclass
class Boot:
    index: int
    outcome: str  # "done", "stall", "failed", "timeout"
    seconds: float
    stall_at: float | None = None  # Dom0's uptime at the first stall report
    stall_line: str = ""
    cycles: int = 0
    busy_stalls: int = 0
    tail: str = ""


def build_once(args: argparse.Namespace, work: Path) -> Path:
    system = scenarios.toolstack_guests(
        args.board,
        args.board == "qemu-virt",
        work,
        xen_extra=args.xen_extra,
        dom0_extra=args.dom0_extra,
    )
    if args.churn:
        script = work / "churn.sh"
        script.write_text(CHURN.format(cycles=args.churn))
        system = dataclasses.replace(system, dom0_autorun=script)
    out = work / "out"
    build.build(system, out)
    return out


# Xen's debug keys, after three Ctrl-A to move the console's input from Dom0 to Xen: each
# physical CPU's run queue and what runs there (r), every domain's vCPUs with their pause
# flags, pending events and interrupts (q), and the timers queued on each CPU (a): whether
# the stalled vCPU is runnable, blocked, and whether a wakeup for it is queued anywhere.
DEBUG_KEYS = b"\x01\x01\x01rqa"


def _xen_state(keys_in: IO[bytes], out: IO[bytes], start: float) -> None:
    """Ask Xen for its scheduling state and let it print into the console log."""
    for key in DEBUG_KEYS:
        keys_in.write(bytes([key]))
        keys_in.flush()
        for _ in emulate.timed_lines(out, start, time.monotonic() + 3):
            pass


def boot_once(index: int, out: Path, args: argparse.Namespace, work: Path) -> Boot:
    m = manifest.read(out)
    board = boards.load(args.board)
    if args.accel:
        # In place of the board's: QEMU takes the first -accel it is given.
        board = dataclasses.replace(
            board, emulate=dataclasses.replace(board.emulate, accel=args.accel)
        )
    plan = emulate.prepare(board, m.ram, out, work / f"run{index}")
    con = f"stdio,id=con,signal=off,logfile={plan.console_log}"
    argv = [*plan.argv, *shlex.split(args.qemu), "-chardev", con]
    result = Boot(index, "timeout", 0.0)
    with emulate.console(argv, subprocess.PIPE) as (proc, start):
        assert proc.stdin is not None and proc.stdout is not None
        pipe = proc.stdout
        # A report lists each stalled CPU on a line of its own, then "(detected by N, ...)":
        # it is the hunted stall if any of those CPUs ticked nothing in the grace period.
        report, kinds = "", list[str]()
        for _, line in emulate.untangle(emulate.timed_lines(pipe, start, start + args.timeout)):
            if line.startswith("XK ") and " cycle " in line:
                result.cycles += 1
            if BUSY.search(line):
                result.busy_stalls += 1
            kind = ""
            if REPORT.search(line):
                report, kinds = line, []
                continue
            if report and TICKS.search(line):
                kinds.append(stall_kind(line))
            if report and "detected by" in line:
                kind, line, report = ("idle" if "idle" in kinds else "busy"), report, ""
                if kind == "busy":
                    result.busy_stalls += 1
            if kind == "idle" or STALL.search(line):
                up = UPTIME.match(line)
                result.outcome, result.stall_line = "stall", line.strip()
                result.stall_at = float(up.group(1)) if up else None
                _xen_state(proc.stdin, pipe, start)
                break
            if rootfs.AUTORUN_DONE in line:
                result.outcome = "done"
                break
            if emulate.FAILURES.search(line):
                result.outcome, result.stall_line = "failed", line.strip()
                break
    result.seconds = round(time.monotonic() - start, 1)
    console = plan.console_log.read_text(errors="replace")
    result.tail = console[-3000:] if result.outcome != "done" else ""
    plan.image.unlink(missing_ok=True)  # a card copy per boot adds up
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", default="qemu-virt", choices=boards.available())
    ap.add_argument("--boots", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=1, help="boots at once")
    ap.add_argument("--xen-extra", default="", help="words added to Xen's command line")
    ap.add_argument("--dom0-extra", default="", help="words added to Dom0's command line")
    ap.add_argument(
        "--accel", default="", help="QEMU -accel in place of the board's, e.g. tcg,thread=multi"
    )
    ap.add_argument("--qemu", default="", help="options added to QEMU's")
    ap.add_argument("--churn", type=int, default=0, help="xl create/destroy cycles instead")
    ap.add_argument("--timeout", type=float, default=900, help="seconds each boot may take")
    ap.add_argument("-o", "--out", type=Path, help="where to keep the results")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="xenkit-stalls-"))
    results_dir = args.out or work
    results_dir.mkdir(parents=True, exist_ok=True)
    log = (results_dir / "stalls.jsonl").open("a")
    label = {k: v for k, v in vars(args).items() if k not in ("out",)}
    try:
        out = build_once(args, work)
    except XenkitError as exc:
        print(f"stall_hunt: {exc}", file=sys.stderr)
        return 2
    print(f"stall_hunt: {json.dumps(label)} in {work}", flush=True)
    boots: list[Boot] = []
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(boot_once, i, out, args, work) for i in range(args.boots)]
        for f in concurrent.futures.as_completed(futures):
            b = f.result()
            boots.append(b)
            print(
                f"boot {b.index:2d}: {b.outcome:7s} {b.seconds:6.1f} s cycles {b.cycles}"
                f" busy-stalls {b.busy_stalls}"
                + (f" stall at {b.stall_at} s: {b.stall_line}" if b.stall_line else ""),
                flush=True,
            )
            log.write(json.dumps({"settings": label, **dataclasses.asdict(b)}) + "\n")
            log.flush()
    stalls = sum(b.outcome == "stall" for b in boots)
    other = sum(b.outcome in ("failed", "timeout") for b in boots)
    print(f"stall_hunt: {stalls} of {len(boots)} boots stalled; {other} failed otherwise")
    return 0


if __name__ == "__main__":
    sys.exit(main())
