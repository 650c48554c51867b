"""`xenkit serve`: a build's netboot tree over TFTP, per-board directories, the Pi 4's
EEPROM netboot (proxyDHCP), and rebuilds when the build's inputs change."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xenkit.errors import XenkitError
from xenkit.serve import proxydhcp, tftp

log = logging.getLogger("xenkit")

SERIAL = re.compile(r"[0-9a-f]{8}")
MAC = re.compile(r"[0-9a-f]{2}(-[0-9a-f]{2}){5}")
# What the emulator must get instead of the hardware files: its script and DTB.
EMULATED = ("boot2.scr", "boot2.source", "boot.scr.uimg")


def arp_mac(ip: str, table: Path = Path("/proc/net/arp")) -> str | None:
    """The MAC of a neighbour, as the Pi's TFTP_PREFIX=2 writes it (dc-a6-32-01-02-03)."""
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        words = line.split()
        if len(words) >= 4 and words[0] == ip and words[3] != "00:00:00:00:00:00":
            return words[3].lower().replace(":", "-")
    return None


@dataclass
class Tree:
    """Where a request is served from. The Pi 4's EEPROM asks for `<serial>/start4.elf` (or
    `<mac>/...`); U-Boot asks for plain names, and is matched to a board directory by its
    MAC. A board directory that lacks a file falls back to default/."""

    root: Path
    emulated: bool = False
    mac_of: Callable[[str], str | None] = arp_mac

    def lookup(self, filename: str, client: tuple[str, int]) -> Path:
        parts = [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts:
            raise tftp.Refused(tftp.ACCESS, "path not allowed")
        candidates = []
        if len(parts) > 1 and (SERIAL.fullmatch(parts[0]) or MAC.fullmatch(parts[0])):
            board, rest = parts[0], parts[1:]
            candidates += [f"{board}/{'/'.join(rest)}", f"default/{'/'.join(rest)}"]
        else:
            name = "/".join(parts)
            if self.emulated and name in EMULATED:
                name = f"emulate/{name}"
            mac = self.mac_of(client[0])
            if mac:
                candidates.append(f"{mac}/{name}")
            candidates += [f"default/{name}", name]
        refusal: tftp.Refused | None = None
        for candidate in candidates:
            try:
                return tftp.resolve(self.root, candidate)
            except tftp.Refused as exc:
                if exc.code == tftp.ACCESS:
                    raise
                refusal = exc
        assert refusal is not None
        raise refusal


async def _bind(server: tftp.Server, host: str, port: int) -> tuple[str, int]:
    try:
        return await server.listen(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise XenkitError(
                f"port {port} on {host} is in use (another TFTP server?): stop it or pick --port"
            ) from None
        if exc.errno == errno.EACCES:
            raise XenkitError(
                f"binding port {port} needs root: run as root, or pick "
                "--port 6969 and point the client there"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise XenkitError(f"{host} is not an address of this machine: fix --bind") from None
        raise XenkitError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@dataclass
class Watch:
    """Rebuild when any of `paths` changes (polled: no inotify needed, works on any FS)."""

    paths: list[Path]
    rebuild: Callable[[], object]
    interval: float = 1.0

    def _stamp(self) -> list[float]:
        out = []
        for p in self.paths:
            try:
                out.append(p.stat().st_mtime)
            except OSError:
                out.append(0.0)
        return out

    async def run(self) -> None:
        seen = self._stamp()
        while True:
            await asyncio.sleep(self.interval)
            now = self._stamp()
            if now != seen:
                seen = now
                log.info("serve: inputs changed, rebuilding")
                try:
                    await asyncio.to_thread(self.rebuild)
                    log.info("serve: rebuilt; the next boot gets the new files")
                except XenkitError as exc:
                    log.error("serve: rebuild failed (still serving the last build): %s", exc)


async def serve(
    build_dir: Path,
    bind: str = "0.0.0.0",
    port: int = 69,
    emulated: bool = False,
    proxy_dhcp: str = "",
    watch: Watch | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[tuple[str, int]], None] | None = None,
) -> tftp.Stats:
    root = build_dir / "tftp"
    if not (root / "default").is_dir():
        raise XenkitError(
            f"{build_dir} has no netboot tree: run xenkit build --netboot -o {build_dir}"
        )
    tree = Tree(root, emulated)
    server = tftp.Server(root, lookup=tree.lookup)
    addr = await _bind(server, bind, port)
    log.info(
        "serve: TFTP on %s port %d from %s%s",
        addr[0],
        addr[1],
        root,
        " (emulator files)" if emulated else "",
    )
    tasks = []
    responder = None
    if proxy_dhcp:
        try:
            responder = await proxydhcp.start(proxy_dhcp)
        except OSError as exc:
            server.close()
            raise XenkitError(
                f"proxyDHCP cannot listen on port 67 ({exc.strerror}): run as "
                "root, and stop any DHCP server on this machine"
            ) from None
        log.info("serve: proxyDHCP answering Pi netboot requests with %s", proxy_dhcp)
    if watch is not None:
        tasks.append(asyncio.create_task(watch.run()))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    if on_ready:
        on_ready(addr)
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        server.close()
        if responder and responder.transport:
            responder.transport.close()
        log.info("%s", server.summary())
    return server.stats
