#!/usr/bin/env python3
"""Boot time and bytes over the wire of the PC's network root, against the whole root
downloaded first (what dracut's root=live:http:// and live-boot's fetch= do), in one run.

    python benchmarks/net_root.py [--runs N] [--quick]

Four boots of the emulated PC (SeaBIOS, GRUB), each to "xenkit: Dom0 ready":
  (a) the full live ISO: the root is on the medium, nothing over the network;
  (b) net.iso, the root fetched lazily, cold: an empty cache disk (the boot then fills it);
  (c) net.iso again with that cache disk and the server gone (its mirror a port nothing
      listens on): what a lab PC does at its next boot, and the proof the cache holds all;
  (d) net.iso built with net_fetch = "whole": every layer downloaded into RAM (one casync
      stream per layer, every chunk checked), then mounted.
Bytes over the wire are what xenkit's HTTP server sent until Dom0 was ready, counted by the
server. --quick (what CI runs) is one run of (b), (c) and (d): (a)'s boot is the one
benchmarks/pc_live.py times (the same CD, firmware and entry), and all it adds here is a
figure for context, so CI does not boot it twice.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import build_and_boot as bb
import quick

try:
    from xenkit.config import boards
    from xenkit.core import cachedir
    from xenkit.core.sizes import MiB
    from xenkit.images import chunkstore
    from xenkit.run import emulate, qemu
    from xenkit.serve.http import HttpServer
    from xenkit.system import netroot
    from xenkit.system.initramfs import READY
    from xenkit.targets import grub
except ImportError as exc:  # pragma: no cover - only a wrong interpreter gets here
    sys.exit(f"{exc}: run this with the project's venv, e.g. .venv/bin/python {sys.argv[0]}")

BOARD = "pc"
CASES = {
    "a": "(a) full ISO, root on the medium",
    "b": "(b) lazy root, cold",
    "c": "(c) lazy root, cache disk, no server",
    "d": "(d) whole root downloaded first",
}


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Meter:
    """The console's lines as the boot prints them (emulate's echo): the server's byte count
    is read the moment Dom0 says it is ready, before anything fetched later adds to it."""

    def __init__(self, server: HttpServer | None) -> None:
        self.server = server
        self.sent_at_ready: int | None = None

    def write(self, text: str) -> int:
        if self.sent_at_ready is None and READY in text:
            self.sent_at_ready = self.server.stats.bytes if self.server else 0
        return len(text)

    def flush(self) -> None:
        pass


@dataclass
class Figures:
    ready: list[float] = field(default_factory=list)  # power-on -> Dom0 ready, s
    sent: list[int] = field(default_factory=list)  # bytes served until then


def boot(
    build_dir: Path,
    work: Path,
    store: Path | None,
    cache_disk: Path | None,
    want: tuple[str, ...],
    timeout: float,
) -> tuple[float, int]:
    """(seconds to Dom0 ready, bytes the store's server sent until then)."""
    board = boards.load(BOARD)
    server = HttpServer({"/": store}, "127.0.0.1") if store else None
    try:
        port = server.port if server else _free_port()
        mirrors = (f"http://10.0.2.2:{port}/",) if store or cache_disk else ()
        choices = qemu.Choices(mirrors=mirrors, cache_disk=str(cache_disk or ""))
        plan = emulate.prepare(board, board.default_ram, build_dir, work, choices=choices)
        meter = Meter(server)
        result = emulate.check(plan, timeout, meter, want)  # type: ignore[arg-type]
    finally:
        if server:
            server.stop()
    if netroot.RETRYING in plan.console_log.read_text(errors="replace"):
        raise SystemExit(f"bench: {build_dir.name}: a chunk was not at hand ({plan.console_log})")
    if not result.ok or meter.sent_at_ready is None:
        why = f"{result.reason} ({plan.console_log})"
        raise SystemExit(f"bench: {build_dir.name} boot failed: {why}")
    return result.banners[READY][0], meter.sent_at_ready


def _free_port() -> int:
    """A port nothing listens on (the server that is gone)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def med(values: list[float] | list[int]) -> float:
    return float(statistics.median(values))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1500)
    ap.add_argument("--cases", default="abcd", help="which of (a)-(d) to run (default: all)")
    args = quick.parse_args(ap, argv, {"runs": 1, "cases": "bcd"}, "one run of (b), (c), (d)")
    cases = {case: what for case, what in CASES.items() if case in args.cases}
    if not cases or set(args.cases) - set(CASES):
        ap.error(f"--cases {args.cases}: give some of the letters abcd")
    if "c" in cases and "b" not in cases:
        ap.error(f"--cases {args.cases}: (c) boots the cache disk (b) fills: add b")
    board = boards.load(BOARD)
    with tempfile.TemporaryDirectory(prefix="xenkit-bench-netroot-") as tmp:
        work = Path(tmp)
        bb.prime(board, cachedir.cache_home(), work)
        store = work / "store"
        net = ["--net-root", "--net-store", str(store)]
        outs = {"a": work / "live", "b": work / "net", "d": work / "whole"}
        for case, extra in (("a", []), ("b", net), ("d", [*net, "--net-fetch", "whole"])):
            if case not in cases:
                continue
            log(f"building {outs[case].name}")
            bb.xenkit_build(BOARD, outs[case], None, extra)
        outs["c"] = outs["b"]
        # The store (b) and (d) share, if either was built.
        net_built = next((outs[c] for c in "bd" if c in cases), None)
        published = chunkstore.Published.read(net_built / grub.NETROOT) if net_built else None
        figures = {case: Figures() for case in cases}
        for i in range(args.runs):
            cache = work / f"cache-{i}.img"
            for case in cases:
                log(f"{cases[case]}, boot {i + 1}/{args.runs}")
                # (b) goes on to fill the cache disk (c) boots from.
                want = (READY, netroot.FILLED) if case == "b" else (READY,)
                served = None if case in "ac" else store
                disk = cache if case in "bc" else None
                run = work / f"run-{case}"
                ready, sent = boot(outs[case], run, served, disk, want, args.timeout)
                figures[case].ready.append(ready)
                figures[case].sent.append(sent)
        media = {
            case: (outs[case] / (grub.ISO if case == "a" else grub.NET_ISO)).stat().st_size
            for case in cases
        }

    store_line = (
        f"; root {published.size / MiB:.1f} MiB, store {published.stored / MiB:.1f} MiB in "
        f"{published.chunks} chunks"
        if published
        else ""
    )
    print(
        f"xenkit net_root: the PC ({BOARD} board), {args.runs} run(s), medians; "
        f"{qemu.version(board)}, TCG, -cpu {board.emulate.cpu}{store_line}"
    )
    print(f"{'':<36}{'to Dom0 ready':>14}{'over the wire':>15}{'boot medium':>13}")
    for case, what in cases.items():
        f = figures[case]
        print(
            f"{what:<36}{med(f.ready):>12.1f} s{med(f.sent) / MiB:>11.1f} MiB"
            f"{media[case] / MiB:>9.1f} MiB"
        )
    if "d" not in cases:
        return 0
    d = figures["d"]
    for case in (c for c in "bc" if c in cases):
        f = figures[case]
        print(
            f"{CASES[case][:3]} against (d): time {med(f.ready) / med(d.ready):.2f}x, "
            f"bytes {med(f.sent) / med(d.sent):.3f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
