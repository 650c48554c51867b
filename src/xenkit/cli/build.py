"""`xenkit build`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from xenkit.cli.arguments import default_out
from xenkit.config import settings, spec
from xenkit.core import files
from xenkit.core.sizes import human
from xenkit.pipeline import stamp


def _system(args: argparse.Namespace) -> spec.SystemSpec:
    file_values = settings.load_file(Path(args.config)) if args.config else {}
    return spec.resolve(settings.resolve(file_values, vars(args)))


def cmd_build(args: argparse.Namespace) -> int:
    system = _system(args)
    out = Path(args.output) if args.output else Path(default_out(system.board.name))
    if not args.watch:
        _build(system, out)
        return 0
    import asyncio
    import contextlib

    from xenkit.pipeline import build
    from xenkit.serve import netboot

    # What to watch, and how it looked, before the first build reads it: an edit saved
    # while that build runs is then a change.
    config = [Path(args.config)] if args.config else []

    def named(system: spec.SystemSpec) -> list[Path]:
        return [*config, *stamp.named_files(system)]

    watch = netboot.watch_config(
        system,
        lambda: _system(args),
        named,
        lambda s: build.build_if_changed(s, out)[1],
        0.5,
        "build",
        f": {out}/",
    )
    paths = watch.paths
    seen = watch.stamp()
    _build(system, out)
    if not paths:
        print("nothing to watch: give -c CONFIG or files (--xen-image, --kernel-image, guests)")
        return 0
    print(f"watching {', '.join(map(str, paths))} (Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch.run(seen))
    return 0


def _build(system: spec.SystemSpec, out: Path) -> None:
    started = time.monotonic()
    found = stamp.up_to_date(system, out)
    if found.manifest is not None:
        took = f"{time.monotonic() - started:.2f} s"
        print(f"{out}/ is up to date ({took}: nothing it was built from has changed)")
        return
    # Here: a build found up to date imports none of the pipeline's stages (the targets,
    # the root filesystem, the media), 30-40 ms of its 0.3 s.
    from xenkit.pipeline import build

    m = build.build(system, out, found.art, found.key)
    took = f"{time.monotonic() - started:.2f} s"
    print(f"built {system.board.description} into {out}/ in {took}")
    for image in m.media:
        print(f"  image: {out}/{image} ({human(files.size(out / image))})")
    print(f"  Xen: {system.xen_cmdline}")
    print(f"  Dom0: {system.dom0_cmdline}")
    drawn = f", map in {out}/map.svg" if (out / "map.svg").exists() else ""
    print(f"  check: {m.check['worst']} (report in {out}/check.txt{drawn})")
    print(f"  boot it: xenkit run {out}    write it: xenkit write {out} /dev/sdX")
