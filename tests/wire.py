"""A wire of its own for netboot tests: a network namespace holding a tap device, the
emulator's card at its other end. QEMU's user network answers TFTP itself and rewrites reply
ports (which breaks TFTP's transfer IDs) and has its own DHCP, so servers under test run on
this wire instead."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from xenkit.config.boards import Board
from xenkit.core.netns import with_tap
from xenkit.run import emulate, qemu
from xenkit.run.qemu import RunPlan

TAP = "tap0"


@contextlib.contextmanager
def namespace(interface: str) -> Iterator[list[str]]:
    """The namespace with TAP at `interface` (ADDR/PREFIX); yields the command prefix that
    runs a program inside it. Skips where namespaces or tap devices are unavailable."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces and tap devices need root")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun: tap devices unavailable")
    with with_tap(TAP, interface) as inside:
        yield inside


def plan(
    inside: list[str],
    board: Board,
    ram: str,
    build_dir: Path,
    workdir: Path,
    choices: qemu.Choices | None = None,
) -> RunPlan:
    """The emulator booting `build_dir` with its card on the wire. QEMU opens the tap device
    by name, so it runs inside the namespace too."""
    netdev = f"tap,ifname={TAP},script=no,downscript=no"
    p = emulate.prepare(board, ram, build_dir, workdir, netdev=netdev, choices=choices)
    return dataclasses.replace(p, argv=[*inside, *p.argv])
