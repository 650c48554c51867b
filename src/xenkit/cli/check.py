"""`xenkit check` and `xenkit map`: one target (a build, or a board piece by piece), two views."""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from xenkit import targets
from xenkit.analysis import check, memmap
from xenkit.config import DEFAULT_BOARD, boards, settings, spec
from xenkit.errors import XenkitError
from xenkit.system import dtbs
from xenkit.system.artifacts import gather


def _target(args: argparse.Namespace) -> check.Target:
    """A build directory, or a board with a DTB and command lines given piece by piece
    (defaulting to the board's packaged DTB, Xen and kernel)."""
    # The piece-by-piece options, by flag: a build brings its own.
    parts = {
        "--board": args.board, "--ram": args.ram, "--dtb": args.dtb, "--xen": args.xen,
        "--kernel": args.kernel, "--config-txt": args.config_txt,
        "--xen-cmdline": args.xen_cmdline, "--dom0-cmdline": args.dom0_cmdline,
    }  # fmt: skip
    if args.dir:
        if given := [flag for flag, value in parts.items() if value]:
            # They were ignored, and the report was of the build, not what the user gave.
            raise XenkitError(
                f"{given[0]} is for checking a board piece by piece; {args.dir} is a build, "
                f"checked with its own files: drop {given[0]}, or drop {args.dir}"
            )
        return check.from_build(Path(args.dir), args.emulated)
    args.board = args.board or DEFAULT_BOARD
    board = boards.load(args.board)
    target_checks = targets.for_board(board).checks  # its board file's faults before downloads
    if not board.dtb_name:
        raise XenkitError(
            f"{board.name} has no device tree to check piece by piece: check a build of it "
            f"(xenkit build --board {board.name}; xenkit check out/{board.name})"
        )
    banks = check.ram_banks(board, args.ram, args.emulated)
    xen, kernel, config_txt = (
        Path(p) if p else None for p in (args.xen, args.kernel, args.config_txt)
    )
    # The user's own files first: a bad one is one line before any package is fetched.
    check.read_given(board, xen, kernel, config_txt, Path(args.dtb) if args.dtb else None)
    # Command lines and packaged files are the board's whatever the RAM: a size that is no
    # model of the board takes its default model's.
    model = args.ram if args.ram in board.ram else ""
    system = spec.resolve(settings.resolve({}, {"board": args.board, "ram": model}))
    art = None if args.dtb and args.xen and args.kernel else gather(system)
    files = art.files if art else {}
    xen_default = system.emu_xen_cmdline if args.emulated else system.xen_cmdline
    dom0_default = system.emu_dom0_cmdline if args.emulated else system.dom0_cmdline
    with tempfile.TemporaryDirectory(prefix="xenkit-check-") as tmp:
        dtb = Path(args.dtb) if args.dtb else files["dtb"]
        if args.emulated and art and not args.dtb:
            # The emulator's copy, with the blocks QEMU does not model disabled, as a build
            # has it; from_parts reads it at once.
            dtb = Path(tmp) / board.dtb_name
            dtb.write_bytes(dtbs.emulation(board, dtbs.hardware(board, art)))
        target = check.from_parts(
            board,
            dtb,
            banks,
            args.xen_cmdline if args.xen_cmdline is not None else xen_default,
            args.dom0_cmdline if args.dom0_cmdline is not None else dom0_default,
            xen or files.get("xen"),
            kernel or files.get("kernel"),
            config_txt,
            label=(args.ram or board.default_ram) + (" (emulator)" if args.emulated else ""),
        )
        return replace(target, checks=target_checks)


def cmd_check(args: argparse.Namespace) -> int:
    target = _target(args)
    findings = check.run_checks(target)
    if args.json:
        print(json.dumps(check.as_json(target, findings), indent=2))
    else:
        print(check.report(target, findings))
    return int(check.worst(findings))


def cmd_map(args: argparse.Namespace) -> int:
    target = _target(args)
    print(memmap.render_text(target))
    if args.output:
        for path in memmap.render_files(target, Path(args.output)):
            print(f"wrote {path}")
    return 0
