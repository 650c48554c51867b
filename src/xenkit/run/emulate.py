"""Boot a built image on QEMU: the same SD image, with emulation-only fixes on a copy."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TextIO

from xenkit import targets
from xenkit.config.boards import Board
from xenkit.core.proc import spawn
from xenkit.pipeline.manifest import Manifest
from xenkit.run import qemu
from xenkit.run.qemu import Choices, RunPlan
from xenkit.system.initramfs import READY


def prepare(
    board: Board,
    ram: str,
    build_dir: Path,
    workdir: Path,
    netdev: str = "",
    choices: Choices | None = None,
) -> RunPlan:
    """QEMU booting the build as the board would (its boot target decides how), from a copy
    of its media. `netdev` adds a network card (qemu.nic) for builds that netboot;
    `choices` are the user's, where the target offers any."""
    target = targets.for_board(board)
    choices = choices or Choices()
    target.check_choices(board, choices)
    if choices.cpu:
        # Any board's emulator takes another CPU model (one without virtualisation, to see
        # what a guest type needs).
        qemu.check_cpu(board, choices.cpu)
        board = replace(board, emulate=replace(board.emulate, cpu=choices.cpu))
    return target.run_plan(board, ram, build_dir, workdir, netdev, choices)


def netboot_plan(
    board: Board,
    ram: str,
    tftp_root: Path,
    firmware: Path,
    workdir: Path,
    bootfile: str = "boot.scr.uimg",
) -> RunPlan:
    """QEMU with no disk and a user-mode network whose DHCP/TFTP serve `tftp_root`."""
    target = targets.for_board(board)
    return target.netboot_plan(board, ram, tftp_root, firmware, workdir, bootfile)


# -- interactive ------------------------------------------------------------------------------
def interactive(plan: RunPlan) -> int:
    """Console on this terminal (and in the log); Ctrl-C or Ctrl-A X stops QEMU cleanly."""
    argv = [
        *plan.argv,
        "-chardev",
        f"stdio,id=con,mux=on,signal=on,logfile={plan.console_log}",
        "-mon",
        "chardev=con,mode=readline",
    ]
    print("xenkit: console follows; Ctrl-C or Ctrl-A X stops the emulator", file=sys.stderr)
    proc = spawn(argv)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


# -- --check ----------------------------------------------------------------------------------
# Each phase begins at the first console line matching its pattern. The first, the boot
# target's firmware (U-Boot, which QEMU runs directly), starts at power-on: its banner may go
# to another UART before it switches to the board's stdout-path, so no line marks it.
PHASES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Xen", re.compile(r"xenkit: starting Xen|^\(XEN\) |^ __  __")),
    ("Dom0 kernel", re.compile(r"Booting Linux on physical CPU|Linux version \d")),
    ("Dom0 userspace", re.compile(r"Run /init as init process|Freeing unused kernel memory")),
)
FAILURES = re.compile(
    r"Kernel panic|\(XEN\) Panic on CPU|\*\*\*\* PANIC|Synchronous Abort|"
    r"## Failed|Wrong Image Format|Unknown command 'booti'|resetting \.\.\."
)


@dataclass
class CheckResult:
    ok: bool
    reason: str
    marks: dict[str, float] = field(default_factory=dict)
    ready_at: float | None = None
    banners: dict[str, tuple[float, str]] = field(default_factory=dict)
    firmware: str = "U-Boot"

    @property
    def banner(self) -> str:
        return "\n  ".join(line for _, line in sorted(self.banners.values()))

    def table(self) -> str:
        rows = [("phase", "starts at", "took")]
        names = [self.firmware, *(n for n, _ in PHASES)]
        dom0 = self.banners.get(READY, (self.ready_at, ""))[0]
        for i, name in enumerate(names):
            if name not in self.marks:
                rows.append((name, "-", "-"))
                continue
            start = self.marks[name]
            nxt = next((self.marks[n] for n in names[i + 1 :] if n in self.marks), dom0)
            took = f"{nxt - start:.1f} s" if nxt is not None else "-"
            rows.append((name, f"{start:.1f} s", took))
        for marker, (t, _) in sorted(self.banners.items(), key=lambda kv: kv[1][0]):
            label = "Dom0 ready" if marker == READY else marker.removeprefix("xenkit: ")
            rows.append((label, f"{t:.1f} s", ""))
        width = [max(len(r[i]) for r in rows) for i in range(3)]
        return "\n".join(
            f"{r[0]:<{width[0]}}  {r[1]:>{width[1]}}  {r[2]:>{width[2]}}".rstrip() for r in rows
        )


def banners(m: Manifest) -> list[str]:
    """What a boot of this build prints once it is fully up (the manifest lists it)."""
    return list(m.banners)


def untangle(lines: Iterable[tuple[float, str]]) -> Iterator[tuple[float, str]]:
    """Dom0's lines whole again. Dom0 and Xen share one serial console, and Xen prints its
    own lines whole (under its console lock) wherever Dom0's output has got to: a Dom0 line
    arrived as "XK 1.2 mem-set 0 98304(XEN) d1v0 ...", its end on the next line. A Xen line
    that starts mid-line is split off, and the fragment before it joins Dom0's next line."""
    held = ""
    for t, line in lines:
        cut = line.find("(XEN)")
        if cut > 0:
            held += line[:cut]
            yield t, line[cut:]
        elif cut == 0:
            yield t, line
        else:
            yield t, held + line
            held = ""
    if held:
        yield 0.0, held


def untangled(console: str) -> str:
    """A whole console log with Dom0's lines put back together (see untangle)."""
    return "\n".join(line for _, line in untangle((0.0, x) for x in console.splitlines()))


def watch(
    lines: Iterable[tuple[float, str]],
    echo: TextIO | None = None,
    want: Sequence[str] = (READY,),
    firmware: str = "U-Boot",
) -> CheckResult:
    """Follow a boot's console lines (with times since power-on) until every banner in
    `want` (Dom0's, and those of guests) has appeared. `firmware` names the first phase,
    from power-on to Xen: what the boot target starts."""
    marks: dict[str, float] = {firmware: 0.0}
    seen: dict[str, tuple[float, str]] = {}
    for t, line in untangle(lines):
        if echo is not None:
            echo.write(line + "\n")
            echo.flush()
        for name, pattern in PHASES:
            if name not in marks and pattern.search(line):
                marks[name] = t
        for marker in want:
            if marker in line and marker not in seen:
                seen[marker] = (t, line.strip())
        if len(seen) == len(want):
            what = "Dom0 is up" if list(want) == [READY] else "every domain is up"
            return CheckResult(True, what, marks, t, seen, firmware)
        if FAILURES.search(line):
            return CheckResult(False, f"boot failed: {line.strip()}", marks, None, seen, firmware)
    missing = ", ".join(m for m in want if m not in seen)
    reason = f"the emulator stopped before {missing} appeared"
    return CheckResult(False, reason, marks, None, seen, firmware)


def timed_lines(stream: IO[bytes], start: float, deadline: float) -> Iterator[tuple[float, str]]:
    """Console lines from a pipe, each with the seconds since `start` it arrived at."""
    buf = ""
    fd = stream.fileno()
    os.set_blocking(fd, False)

    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk.decode(errors="replace").replace("\r", "")
        *complete, buf = buf.split("\n")
        now = time.monotonic() - start
        for line in complete:
            yield now, line
    if buf:
        yield time.monotonic() - start, buf


@contextlib.contextmanager
def console(
    argv: list[str], stdin: int = subprocess.DEVNULL
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """QEMU started with its console on stdout (and its input on stdin, given PIPE): the
    process and the time it started at; QEMU is stopped on the way out, however the caller
    leaves."""
    start = time.monotonic()
    proc = spawn(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield proc, start
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def answered(
    lines: Iterable[tuple[float, str]], keys: IO[bytes], answers: Sequence[tuple[str, bytes]]
) -> Iterator[tuple[float, str]]:
    """The console's lines, typing each answer into `keys` once its prompt has shown."""
    pending = list(answers)
    for t, line in lines:
        if pending and pending[0][0] in line:
            keys.write(pending.pop(0)[1])
            keys.flush()
        yield t, line


def watch_qemu(
    argv: list[str],
    timeout: float,
    echo: TextIO | None = None,
    want: Sequence[str] = (READY,),
    linger: float = 0.0,
    firmware: str = "U-Boot",
    answers: Sequence[tuple[str, bytes]] = (),
) -> CheckResult:
    """Start QEMU with the console on its stdout, follow it to the banners, stop it;
    after `linger` more seconds if the banners came, to see what runs once all are up.
    `answers` are typed on the console when their prompts show (RunPlan.answers)."""
    stdin = subprocess.PIPE if answers else subprocess.DEVNULL
    with console(argv, stdin) as (proc, start):
        assert proc.stdout is not None
        out = proc.stdout
        lines = timed_lines(out, start, start + timeout)
        if answers:
            assert proc.stdin is not None
            lines = answered(lines, proc.stdin, answers)
        result = watch(lines, echo, want, firmware)
        if result.ok and linger > 0:
            for _, line in timed_lines(out, start, time.monotonic() + linger):
                if echo is not None:
                    echo.write(line + "\n")
        if not result.ok and time.monotonic() - start >= timeout:
            missing = ", ".join(m for m in want if m not in result.banners)
            result.reason = f"no {missing} within {timeout:.0f} s"
        return result


def check(
    plan: RunPlan,
    timeout: float,
    echo: TextIO | None = None,
    want: Sequence[str] = (READY,),
    linger: float = 0.0,
) -> CheckResult:
    con = f"stdio,id=con,signal=off,logfile={plan.console_log}"
    argv = [*plan.argv, "-chardev", con]
    return watch_qemu(argv, timeout, echo, want, linger, plan.firmware, plan.answers)
