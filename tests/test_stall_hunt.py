"""scripts/stall_hunt.py tells the stall it hunts (an idle vCPU whose wakeup never came)
from a busy one (a vCPU in a long hypercall loop), whichever CPU reports it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def hunt() -> ModuleType:
    sys.path.insert(0, str(SCRIPTS))
    try:
        return importlib.import_module("stall_hunt")
    finally:
        sys.path.remove(str(SCRIPTS))


def test_a_report_is_idle_only_when_the_cpu_ticked_nothing() -> None:
    h = hunt()
    report = "[   69.576081] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"
    assert h.REPORT.search(report)
    # Seen on the emulated Pi 4 (stall_hunt, 2026-11-26): CPU 3 running xl, unmapping a guest.
    busy = "[   69.582297] rcu: \t3-....: (3679 ticks this GP) idle=bf34/1/0x4000000000000000"
    idle = "[  586.51] rcu: \t1-...!: (0 ticks this GP) idle=1234/0/0x0 softirq=10/10 fqs=0"
    assert h.stall_kind(report, busy) == "busy"
    assert h.stall_kind(report, idle) == "idle"
    assert h.STALL.search("rcu: rcu_sched kthread timer wakeup didn't happen for 5252 jiffies")
