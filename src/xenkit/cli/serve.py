"""`xenkit serve`: netboot a build, rebuilding it as its inputs change."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from xenkit.config import settings, spec
from xenkit.pipeline import build, manifest, stamp


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from xenkit.serve import netboot

    build_dir = Path(args.dir)
    manifest.require(build_dir)
    watch = None
    if args.config:
        config = Path(args.config)

        def load() -> spec.SystemSpec:
            values = settings.resolve(settings.load_file(config), {"netboot": True})
            return spec.resolve(values)

        watch = netboot.watch_config(
            load(),
            load,
            lambda system: [config, *stamp.named_files(system)],
            lambda system: build.build(system, build_dir),
        )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            netboot.serve(
                build_dir,
                args.bind,
                args.port,
                args.emulated,
                args.proxy_dhcp or "",
                watch,
                http_port=args.http_port,
                workers=args.workers,
            )
        )
    return 0
