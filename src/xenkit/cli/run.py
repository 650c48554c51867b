"""`xenkit run`: a build on its emulated board."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xenkit.config import boards, settings
from xenkit.core import log
from xenkit.errors import XenkitError
from xenkit.pipeline import manifest
from xenkit.pipeline.manifest import Manifest
from xenkit.run import emulate, qemu
from xenkit.system import rootfs


def cmd_run(args: argparse.Namespace) -> int:
    if args.entry is not None and not args.check:
        raise XenkitError("--entry types the choice for --check; without it, pick in the menu")
    build_dir = Path(args.dir)
    m = manifest.read(build_dir)
    board = manifest.board(build_dir, m)
    from xenkit.serve import netboot

    given = settings.http_urls(",".join(args.mirror or ()), "--mirror")
    with netboot.store_for_run(build_dir, given) as mirrors:
        choices = qemu.Choices(
            args.firmware or "",
            args.media or "",
            args.nic or "",
            args.entry,
            args.cpu or "",
            mirrors,
            args.cache_disk or "",
        )
        return _run(args, build_dir, m, board, choices)


def _run(
    args: argparse.Namespace,
    build_dir: Path,
    m: Manifest,
    board: boards.Board,
    choices: qemu.Choices,
) -> int:
    from xenkit.pipeline import guest

    if shortfall := guest.emulator_shortfall(m):
        log.warning("warning: %s", shortfall)
    plan = emulate.prepare(board, m.ram, build_dir, build_dir / "run", choices=choices)
    if not args.check:
        return emulate.interactive(plan)
    echo = None if args.quiet else sys.stdout
    result = emulate.check(plan, args.timeout, echo, [*emulate.banners(m), *(args.wait_for or ())])
    print()
    print(f"xenkit run --check: {board.description}: {result.reason}")
    if result.banner:
        print(f"  {result.banner}")
    print(result.table())
    print(f"console log: {plan.console_log}")
    status = result.banners.get(rootfs.AUTORUN_DONE, (0.0, f"{rootfs.AUTORUN_DONE} 0"))[1]
    if result.ok and status.split()[-1] != "0":
        print(f"  Dom0's autorun script failed: {status}")
        return 1
    return 0 if result.ok else 1
