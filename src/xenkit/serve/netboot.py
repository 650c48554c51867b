"""`xenkit serve`: a build's netboot tree over TFTP, per-board directories, the Pi 4's
EEPROM netboot (proxyDHCP), a network root's chunk store over HTTP, and rebuilds when the
build's inputs change."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from xenkit.core import log
from xenkit.errors import XenkitError
from xenkit.images import chunkstore, netdir
from xenkit.serve import http, proxydhcp, tftp

T = TypeVar("T")
S = TypeVar("S")

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

    def over_http(self, path: str, client: str) -> Path | None:
        """The file an HTTP path names, found as over TFTP: a boot loader's HTTP fetch
        gets what its TFTP fetch would (board directories included)."""
        try:
            return self.lookup(path, (client, 0))
        except tftp.Refused:
            return None


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


@contextlib.contextmanager
def store_for_run(build_dir: Path, given: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """The mirrors an emulated boot of `build_dir` fetches its network root from: those
    `given`, else the build's own store, served from here while the boot runs (QEMU's user
    network reaches the host's loopback at 10.0.2.2), with what it fetched said at the end.
    None for a build without a network root."""
    netdir = build_dir / "netroot"
    if given and not netdir.is_dir():
        raise XenkitError(f"{build_dir} has no network root for --mirror: build it with --net-root")
    if not netdir.is_dir() or given:
        yield given
        return
    server = http.HttpServer({"/netroot/store/": netdir / "store"}, "127.0.0.1", level=log.DEBUG)
    # Debug only: said first, it stood above the one-line error of a run that never booted
    # (run --media usb on a network-root build); what the boot fetched is said at the end.
    log.debug("run: serving %s over HTTP on port %d", netdir, server.port)
    try:
        yield (f"http://10.0.2.2:{server.port}/netroot/store/",)
    finally:
        server.stop()
    # Not on the way out of an error: nothing was fetched, and the error is the one line.
    print(chunkstore.Published.read(netdir).fetched(server.stats.bytes, server.stats.chunks))


@dataclass
class Watch:
    """Rebuild when any of `paths` changes (polled: no inotify needed, works on any FS).
    With `relist`, each rebuild starts by asking for the inputs again (the caller reads
    its config there, once, for the rebuild to use): a config that now names another file
    (a new guest's kernel, a swapped Xen) has that file watched from then on, as it was
    before the rebuild read it. A file named before it exists fails that rebuild, and is
    watched once a rebuild has read it."""

    paths: list[Path]
    rebuild: Callable[[], object]  # False: nothing needed building
    interval: float = 1.0
    name: str = "serve"
    # Said after each rebuild: what the rebuild means for the user.
    after: str = "; the next boot gets the new files"
    relist: Callable[[], list[Path]] | None = None

    def stamp(self) -> dict[Path, tuple[int, int, int]]:
        """Each path's mtime, size and inode: a save within one mtime tick, or a file
        replaced by rename, still shows."""
        return {p: _identity(p) for p in self.paths}

    async def run(self, seen: dict[Path, tuple[int, int, int]] | None = None) -> None:
        """Poll until cancelled; `seen`: the paths as the last build found them, if taken
        before it (an edit saved during that build is then a change)."""
        seen = seen or self.stamp()
        while True:
            await asyncio.sleep(self.interval)
            now = self.stamp()
            if now == seen:
                continue
            seen = now
            log.info("%s: inputs changed, rebuilding", self.name)
            started = time.monotonic()
            if self.relist is not None:
                ok, paths = await self._attempt(self.relist)
                if not ok or paths is None:
                    continue
                self.paths = paths
                seen = {p: seen[p] if p in seen else _identity(p) for p in self.paths}
            ok, made = await self._attempt(self.rebuild)
            if ok:
                took = time.monotonic() - started
                if made is False:  # the build found nothing changed
                    log.info("%s: up to date (%.2f s)", self.name, took)
                else:
                    log.info("%s: rebuilt in %.2f s%s", self.name, took, self.after)

    async def _attempt(self, step: Callable[[], T]) -> tuple[bool, T | None]:
        """Run one step of a rebuild off the event loop (serving goes on meanwhile); a
        failure is logged and keeps the last build."""
        try:
            return True, await asyncio.to_thread(step)
        except XenkitError as exc:
            log.error("%s: rebuild failed (keeping the last build): %s", self.name, exc)
        except Exception as exc:  # a bug must not end the serving
            # Uncaught, the task died unnoticed and later edits never rebuilt.
            log.error(
                "%s: rebuild failed (keeping the last build): %s: %s "
                "(a xenkit bug: please report it)",
                self.name,
                type(exc).__name__,
                exc,
            )
        return False, None


def watch_config(
    first: S,
    load: Callable[[], S],
    named: Callable[[S], list[Path]],
    rebuild: Callable[[S], object],
    interval: float = 1.0,
    name: str = "serve",
    after: str = "; the next boot gets the new files",
) -> Watch:
    """A Watch over a config: each rebuild reads it once (`load`) and builds what it read,
    so a warning is printed once and the files the new config names (`named`) are the ones
    watched from then on. `first`: the config as read for the first build."""
    latest = [first]

    def relist() -> list[Path]:
        latest[0] = load()
        return named(latest[0])

    return Watch(named(first), lambda: rebuild(latest[0]), interval, name, after, relist)


def _identity(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0, 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _check_next_server(value: str) -> None:
    """--proxy-dhcp is what the responder tells PXE clients to fetch from: one host's IPv4
    address, which a client on the network can reach (0.0.0.0, a broadcast, multicast or
    loopback address was advertised as the TFTP server)."""
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise XenkitError(
            f"--proxy-dhcp {value}: give this server's IPv4 address (PXE clients "
            "fetch over TFTP on IPv4)"
        ) from None
    why = (
        "is no host's address" if addr in ipaddress.IPv4Network("0.0.0.0/8")
        else "is a loopback address" if addr.is_loopback
        else "is a multicast address" if addr.is_multicast
        else "is a broadcast or reserved address" if addr.is_reserved
        else ""
    )  # fmt: skip
    if why:
        raise XenkitError(
            f"--proxy-dhcp {value} {why}, which a PXE client cannot fetch from: give this "
            "server's address on the boards' network (ip -4 addr lists it)"
        )


async def serve(
    build_dir: Path,
    bind: str = "0.0.0.0",
    port: int = 69,
    emulated: bool = False,
    proxy_dhcp: str = "",
    watch: Watch | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[tuple[str, int]], None] | None = None,
    http_port: int | None = None,
    workers: int | None = None,
) -> tftp.Stats:
    """TFTP for a netboot tree, HTTP for a network root's chunk store and the tree (on
    `http_port`, 8080 unless given: where Dom0's first stage looks when DHCP names no
    store, and the port a build's boot loaders ask, netboot_http_port). TFTP's
    transfers run on `workers` processes (one a usable CPU unless given; 0: on threads of
    this one)."""
    for option, value in (("--port", port), ("--http-port", http_port or 0)):
        if not 0 <= value <= 65535:
            raise XenkitError(f"{option} {value}: give a port from 0 to 65535")
    if workers is None:
        workers = tftp.default_workers()
    if not 0 <= workers <= tftp.MAX_WORKERS:
        raise XenkitError(
            f"--workers {workers}: give 0 to {tftp.MAX_WORKERS} (0: transfers on threads of "
            "the server's own process)"
        )
    if proxy_dhcp:
        _check_next_server(proxy_dhcp)
    root = build_dir / "tftp"
    store = build_dir / "netroot" / "store"
    netboot, netroot = (root / "default").is_dir(), store.is_dir()
    if not netboot and not netroot:
        raise XenkitError(
            f"{build_dir} has no netboot tree and no network root: build it with --netboot "
            "or --net-root"
        )
    server = None
    addr = ("", 0)
    if netboot:
        tree = Tree(root, emulated)
        # Started before the HTTP server's and proxyDHCP's threads and sockets, so the
        # workers inherit none of them.
        server = tftp.Server(root, lookup=tree.lookup, workers=workers)
        addr = await _bind(server, bind, port)
        log.info(
            "serve: TFTP on %s port %d from %s%s",
            addr[0],
            addr[1],
            root,
            " (emulator files)" if emulated else "",
        )
    web = None
    if netroot or netboot:
        # The store at / (a mirror URL names the store itself) and where `xenkit run`
        # puts it; the netboot tree at / behind it, for boot loaders that fetch their big
        # files over HTTP (GRUB; U-Boot's wget).
        routes = {"/": store, "/netroot/store/": store} if netroot else {}
        lookup = Tree(root, emulated).over_http if netboot else None
        try:
            web = http.HttpServer(routes, bind, http_port or 8080, tree=lookup)
        except XenkitError as exc:
            if netroot:
                if server:
                    server.close()
                raise
            # A tree alone: its boot loaders fall back to TFTP, so serving goes on.
            log.warning("serve: %s; boot loaders fetch everything over TFTP", exc)
        if web:
            what = ", ".join(str(p) for p in (store, root) if p.is_dir())
            log.info("serve: HTTP on %s port %d from %s", bind, web.port, what)
    tasks = []
    responder = None
    # A PC tree (GRUB's core images): each PXE client gets the one for its architecture.
    pc_files = netdir.boot_files(root / "default")
    if proxy_dhcp:
        try:
            # iPXE fetches the core image over HTTP when this server's HTTP side is up.
            responder = await proxydhcp.start(
                proxy_dhcp, boot_files=pc_files or None, http_port=web.port if web else 0
            )
        except OSError as exc:
            if server:
                server.close()
            if web:
                web.stop()
            raise XenkitError(
                f"proxyDHCP cannot listen on port 67 ({exc.strerror}): run as "
                "root, and stop any DHCP server on this machine"
            ) from None
        log.info(
            "serve: proxyDHCP answering %s netboot requests with %s",
            "PC (PXE)" if pc_files else "Pi 4",
            proxy_dhcp,
        )
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
        if server:
            server.close()
            log.info("%s", server.summary())
        if responder and responder.transport:
            responder.transport.close()
        if web:
            web.stop()
            log.info("%s", web.stats.summary())
        if web and netroot:
            published = chunkstore.Published.read(store.parent)
            log.info("serve: %s", published.fetched(web.stats.bytes, web.stats.chunks))
    return server.stats if server else tftp.Stats()
