"""`xenkit build`."""

from __future__ import annotations

import argparse
from pathlib import Path

from xenkit.cli.arguments import default_out
from xenkit.config import settings, spec
from xenkit.core import files
from xenkit.core.sizes import human
from xenkit.pipeline import build


def cmd_build(args: argparse.Namespace) -> int:
    file_values = settings.load_file(Path(args.config)) if args.config else {}
    values = settings.resolve(file_values, vars(args))
    system = spec.resolve(values)
    out = Path(args.output) if args.output else default_out(system.board.name)
    m = build.build(system, out)
    print(f"built {system.board.description} into {out}/ in {m.build_seconds} s")
    for image in m.media:
        print(f"  image: {out}/{image} ({human(files.size(out / image))})")
    print(f"  Xen: {system.xen_cmdline}")
    print(f"  Dom0: {system.dom0_cmdline}")
    drawn = f", map in {out}/map.svg" if (out / "map.svg").exists() else ""
    print(f"  check: {m.check['worst']} (report in {out}/check.txt{drawn})")
    print(f"  boot it: xenkit run {out}    write it: xenkit write {out} /dev/sdX")
    return 0
