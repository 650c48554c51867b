"""scripts/stall_hunt.py tells the stall it hunts (an idle vCPU whose wakeup never came)
from a busy one (a vCPU in a long hypercall loop), whichever CPU reports it."""

from __future__ import annotations

from types import ModuleType

from tests.scripts import load


def hunt() -> ModuleType:
    return load("scripts", "stall_hunt")


def test_a_report_is_idle_only_when_the_cpu_ticked_nothing() -> None:
    h = hunt()
    report = "[   69.576081] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"
    assert h.REPORT.search(report)
    # Seen on the emulated Pi 4 (stall_hunt, 2026-11-26): CPU 3 running xl, unmapping a guest.
    busy = "[   69.582297] rcu: \t3-....: (3679 ticks this GP) idle=bf34/1/0x4000000000000000"
    idle = "[  586.51] rcu: \t1-...!: (0 ticks this GP) idle=1234/0/0x0 softirq=10/10 fqs=0"
    assert h.stall_kind(busy) == "busy"
    assert h.stall_kind(idle) == "idle"
    assert h.STALL.search("rcu: rcu_sched kthread timer wakeup didn't happen for 5252 jiffies")
