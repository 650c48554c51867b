"""The bare-metal tick guest boots as a dom0less domain beside Dom0 and a Linux guest, and
keeps ticking, on time by its own counter, while they boot."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.conftest import make_spec
from xenkit import boards, build, emulate, initramfs, tickstats

pytestmark = pytest.mark.slow

# Not the guest's default (100 ms): a guest that ignored its bootargs would show it.
PERIOD_MS = 50


@pytest.mark.parametrize("board", ["qemu-virt", "rpi4"])
def test_tick_guest_keeps_its_period_while_linux_boots(board: str, tmp_path: Path) -> None:
    system = make_spec(
        board=board,
        domain=[
            {"name": "linux1", "memory": "128M"},
            {"name": "rtos", "kernel": "builtin:tick", "cmdline": f"period_ms={PERIOD_MS}"},
        ],
    )
    out = tmp_path / "out"
    manifest = build.build(system, out)
    plan = emulate.prepare(boards.load(board), manifest["ram"], out, tmp_path / "run")
    want = [initramfs.READY, *manifest["guest_banners"]]
    assert initramfs.GUEST_READY.format(name="rtos") in want
    # A few more seconds once everything is up, so ticks follow the last banner.
    result = emulate.check(plan, 600, None, want, linger=5)
    console = plan.console_log.read_text(errors="replace")
    assert result.ok, result.reason + "\n" + console[-3000:]
    assert "(XEN) DOM" in result.banners[want[2]][1], "tick guest not on its vpl011"

    run = tickstats.parse(console, "rtos")
    assert run.period_ms == PERIOD_MS
    assert run.period == run.cntfrq * PERIOD_MS // 1000
    lines = console.splitlines()
    linux = next(i for i, line in enumerate(lines) if "xenkit: guest linux1 ready" in line)
    dom0 = next(i for i, line in enumerate(lines) if initramfs.READY in line)
    # Ticks came before, between and after the Linux banners: the guest ran throughout.
    for first, last in ((run.banner_line, min(linux, dom0)), (min(linux, dom0), max(linux, dom0))):
        assert any(first < t.line < last for t in run.ticks), (first, last)
    assert any(t.line > max(linux, dom0) for t in run.ticks)
    # Each wake-up came at or after its deadline and before the next one: the tick number
    # is the last deadline that passed, by the guest's own counter.
    for tick, late in zip(run.ticks, run.lateness(), strict=True):
        assert 0 <= late < run.period, (tick, late)
    # No stall: the longest silence is short next to the whole boot.
    gaps = [run.seconds(b.cntvct - a.cntvct) for a, b in run.pairs()]
    assert max(gaps) < 10, f"the tick guest went {max(gaps):.1f} s without a tick"
    span = run.seconds(run.ticks[-1].cntvct - run.start)
    assert span > 5, f"ticks cover only {span:.1f} s"
    # The period, measured between consecutive ticks, is the configured one.
    measured = statistics.median(run.periods())
    assert abs(measured - run.period) < 0.2 * run.period, (measured, run.period)
    print(
        f"{board}: {len(run.ticks)} ticks over {span:.1f} s, {run.missed()} deadlines "
        f"missed, median period {measured / run.cntfrq * 1000:.2f} ms; "
        f"jitter {run.jitter()}"
    )
