"""A read-only TFTP server on asyncio, for netbooting boards.

RFC 1350 (reads, octet and netascii), RFC 2347 option negotiation, RFC 2348 blksize,
RFC 2349 timeout and tsize, RFC 7440 windowsize; IPv4 and IPv6; block numbers roll over to
0 for files past 65535 blocks. Each transfer runs on its own port (its TID) with its own
retransmission timer; an ACK that does not advance the window never causes a resend, which
is what keeps the Sorcerer's Apprentice away. A client that gives up right after the OACK
(the Pi 4 bootloader probes file sizes that way) is let go quietly. Files are opened once
when the request arrives, so a file replaced while in flight is sent whole, old or new.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("xenkit")

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6
# Error codes (RFC 1350, 2347)
NOT_DEFINED, NOT_FOUND, ACCESS, DISK_FULL, ILLEGAL, UNKNOWN_TID, EXISTS, NO_USER, BAD_OPTIONS = (
    range(9)
)
BLKSIZE_MIN, BLKSIZE_MAX = 8, 65464
WINDOW_MAX = 65535
DEFAULT_TIMEOUT = 1.0
RETRIES = 6
PACE = 0.0002  # seconds between bursts once a transfer has lost packets


class PacketError(ValueError):
    """A malformed packet: the value is the TFTP error code to answer with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Request:
    opcode: int
    filename: str
    mode: str
    options: dict[str, str]


def parse_request(packet: bytes) -> Request:
    """An RRQ or WRQ: opcode, then NUL-terminated filename, mode and option/value pairs."""
    if len(packet) < 2:
        raise PacketError(0, "runt packet")  # not even an opcode: nothing to answer
    if len(packet) < 4:
        raise PacketError(ILLEGAL, "truncated request")
    (opcode,) = struct.unpack("!H", packet[:2])
    if opcode in (DATA, ACK, ERROR, OACK):
        # Strays from transfers that ended (the Pi bootloader sends ERRORs to port 69):
        # answering them would only start an exchange of errors.
        raise PacketError(0, f"stray packet (opcode {opcode})")
    if opcode not in (RRQ, WRQ):
        raise PacketError(ILLEGAL, f"unexpected opcode {opcode}")
    if not packet.endswith(b"\0"):
        raise PacketError(ILLEGAL, "request fields must end in NUL")
    fields = packet[2:-1].split(b"\0")
    if len(fields) < 2 or len(fields) % 2:
        raise PacketError(ILLEGAL, "request needs a filename, a mode and option pairs")
    try:
        words = [f.decode("ascii") for f in fields]
    except UnicodeDecodeError:
        raise PacketError(ILLEGAL, "request fields must be ASCII") from None
    filename, mode = words[0], words[1].lower()
    if not filename:
        raise PacketError(ILLEGAL, "empty filename")
    if mode not in ("octet", "netascii"):
        raise PacketError(ILLEGAL, f"unsupported mode {mode!r}")
    options: dict[str, str] = {}
    for name, value in zip(words[2::2], words[3::2], strict=True):
        options.setdefault(name.lower(), value)
    return Request(opcode, filename, mode, options)


def negotiate(options: dict[str, str], size: int | None) -> dict[str, int]:
    """The options this server accepts and their values. Unknown options and values out of
    range are dropped (RFC 2347: the server just leaves them out of the OACK), except a
    blksize below 8, which is an error."""
    out: dict[str, int] = {}
    for name, value in options.items():
        # isdigit() alone admits "²" and other digits int() refuses
        if not (value.isascii() and value.isdigit()) or len(value) > 10:
            continue
        n = int(value)
        if name == "blksize":
            if n < BLKSIZE_MIN:
                raise PacketError(BAD_OPTIONS, f"blksize {n} is below {BLKSIZE_MIN}")
            out[name] = min(n, BLKSIZE_MAX)
        elif name == "timeout" and 1 <= n <= 255:
            out[name] = n
        elif name == "tsize" and size:
            # An empty file needs no size; curl 7.88 stalls on "tsize 0" in an OACK.
            out[name] = size
        elif name == "windowsize" and 1 <= n <= WINDOW_MAX:
            out[name] = n
    return out


def error_packet(code: int, message: str) -> bytes:
    return struct.pack("!HH", ERROR, code) + message.encode("ascii", "replace")[:200] + b"\0"


def oack_packet(options: dict[str, int]) -> bytes:
    body = b"".join(f"{k}\0{v}\0".encode() for k, v in options.items())
    return struct.pack("!H", OACK) + body


class Netascii:
    """A binary file seen through netascii (RFC 764): LF -> CR LF, CR -> CR NUL."""

    def __init__(self, f: object) -> None:
        self.f = f
        self.pending = b""

    def read(self, n: int) -> bytes:
        while len(self.pending) < n:
            chunk = self.f.read(65536)  # type: ignore[attr-defined]
            if not chunk:
                break
            self.pending += chunk.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


# -- paths --------------------------------------------------------------------------------------
class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve(root: Path, filename: str) -> Path:
    """The file a request names, confined to `root`: no "..", no way out through symlinks."""
    name = filename.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts) or "\0" in name:
        raise Refused(ACCESS, "path not allowed")
    real_root = root.resolve()
    target = (real_root.joinpath(*parts)).resolve()
    if target != real_root and real_root not in target.parents:
        raise Refused(ACCESS, "path not allowed")
    if not target.is_file():
        raise Refused(NOT_FOUND, "file not found")
    return target


# -- the server ---------------------------------------------------------------------------------
@dataclass
class Stats:
    transfers: int = 0
    completed: int = 0
    failed: int = 0
    bytes: int = 0
    refused: int = 0
    malformed: int = 0


Lookup = Callable[[str, tuple[str, int]], Path]


@dataclass
class Server:
    """Serve files below `root` (or whatever `lookup` maps a request to)."""

    root: Path
    lookup: Lookup | None = None
    stats: Stats = field(default_factory=Stats)
    on_transfer: Callable[[dict[str, object]], None] | None = None
    transports: list[asyncio.DatagramTransport] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def find(self, filename: str, client: tuple[str, int]) -> Path:
        if self.lookup is not None:
            return self.lookup(filename, client)
        return resolve(self.root, filename)

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=(host, port), family=family
        )
        self.transports.append(transport)
        sockname = transport.get_extra_info("sockname")
        return sockname[0], sockname[1]

    def close(self) -> None:
        for t in self.transports:
            t.close()
        for task in self.tasks:
            task.cancel()

    def request(self, data: bytes, client: tuple[str, int], local: str) -> None:
        try:
            req = parse_request(data)
        except PacketError as exc:
            self.stats.malformed += 1
            log.debug("tftp: bad packet from %s: %s", client[0], exc)
            if exc.code:
                self._send_error(client, local, exc.code, str(exc))
            return
        if req.opcode == WRQ:
            self.stats.refused += 1
            self._send_error(client, local, ACCESS, "read-only server")
            return
        task = asyncio.get_running_loop().create_task(self._serve(req, client, local))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _send_error(self, client: tuple[str, int], local: str, code: int, message: str) -> None:
        family = socket.AF_INET6 if ":" in client[0] else socket.AF_INET
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((local, 0))
            s.sendto(error_packet(code, message), client)

    async def _serve(self, req: Request, client: tuple[str, int], local: str) -> None:
        self.stats.transfers += 1
        started = time.monotonic()
        try:
            path = self.find(req.filename, client)
            f = path.open("rb")
        except Refused as exc:
            self.stats.refused += 1
            log.info("tftp: %s %s refused: %s", client[0], req.filename, exc)
            self._send_error(client, local, exc.code, str(exc))
            return
        except OSError as exc:
            self.stats.refused += 1
            self._send_error(client, local, ACCESS, exc.strerror or "cannot open")
            return
        with f:
            size = os.fstat(f.fileno()).st_size if req.mode == "octet" else None
            try:
                options = negotiate(req.options, size)
            except PacketError as exc:
                self.stats.refused += 1
                self._send_error(client, local, exc.code, str(exc))
                return
            transfer = Transfer(req, f, options, client, local)
            try:
                sent = await transfer.run()
            except Exception as exc:  # one transfer's failure must never take the server down
                self.stats.failed += 1
                log.info(
                    "tftp: %s %s failed after %d bytes: %s",
                    client[0],
                    req.filename,
                    transfer.sent_bytes,
                    exc,
                )
                return
        seconds = max(time.monotonic() - started, 1e-6)
        if sent is None:
            log.info("tftp: %s %s: client stopped after the option reply", client[0], req.filename)
            return
        self.stats.completed += 1
        self.stats.bytes += sent
        record = {
            "client": client[0],
            "file": req.filename,
            "bytes": sent,
            "seconds": round(seconds, 3),
            "options": transfer.options,
        }
        log.info(
            "tftp: %s %s %d bytes in %.2f s (%.1f MiB/s)%s",
            client[0],
            req.filename,
            sent,
            seconds,
            sent / seconds / 2**20,
            "".join(f" {k}={v}" for k, v in transfer.options.items()),
        )
        if self.on_transfer:
            self.on_transfer(record)

    def summary(self) -> str:
        s = self.stats
        return (
            f"tftp: {s.completed} of {s.transfers} transfers completed, {s.bytes} bytes; "
            f"{s.failed} failed, {s.refused} refused, {s.malformed} malformed packets"
        )


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.local = "0.0.0.0"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.local = transport.get_extra_info("sockname")[0]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.request(data, (addr[0], addr[1]), self.local)

    def error_received(self, exc: Exception) -> None:
        log.debug("tftp: listener: %s", exc)


class TransferFailed(Exception):
    pass


class Transfer:
    """One read transfer on its own socket: OACK if options were asked for, then the file in
    windows of `windowsize` blocks, each retransmitted on timeout until acknowledged."""

    def __init__(
        self, req: Request, f: object, options: dict[str, int], client: tuple[str, int], local: str
    ) -> None:
        self.req = req
        self.source = Netascii(f) if req.mode == "netascii" else f
        self.client = client
        self.options = options
        self.blksize = self.options.get("blksize", 512)
        self.window = self.options.get("windowsize", 1)
        self.timeout = float(self.options.get("timeout", DEFAULT_TIMEOUT))
        self.sent_bytes = 0
        # Packets sent back to back before pausing. A burst bigger than the client's socket
        # buffer is lost whole (13 datagrams of 8 KiB fill Linux's default), and sending it
        # again loses it again: after a loss the window goes out in smaller bursts, growing
        # back as windows arrive whole. Windows stay full size, since some clients (atftp,
        # U-Boot) acknowledge only on multiples of the window.
        self.burst = self.window
        family = socket.AF_INET6 if ":" in client[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((local, 0))
        self.sock.setblocking(False)
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def _send(self, packet: bytes) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self.sock.sendto(packet, self.client)

    async def _receive(self, deadline: float) -> bytes | None:
        """The next packet from the client before `deadline` (loop time); strangers get
        error 5."""
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65536), left)
            except TimeoutError:
                return None
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
                    raise TransferFailed("client unreachable") from None
                continue
            if (addr[0], addr[1]) != self.client:
                self.sock.sendto(error_packet(UNKNOWN_TID, "unknown transfer ID"), addr)
                continue
            return data

    async def run(self) -> int | None:
        """Bytes sent, or None if the client declined after the OACK."""
        try:
            if self.options and not await self._oack():
                return None
            return await self._data()
        finally:
            self.sock.close()

    async def _oack(self) -> bool:
        packet = oack_packet(self.options)
        loop = asyncio.get_running_loop()
        for _ in range(RETRIES):
            self._send(packet)
            deadline = loop.time() + self.timeout
            while True:
                data = await self._receive(deadline)
                if data is None:
                    break
                if len(data) >= 4:
                    opcode, number = struct.unpack("!HH", data[:4])
                    if opcode == ACK and number == 0:
                        return True
                    if opcode == ERROR:
                        return False
        raise TransferFailed("no ACK for the option reply")

    async def _data(self) -> int:
        blocks: list[bytes] = []  # the unacknowledged window, oldest first
        base = 1  # absolute number of blocks[0]
        done = False  # the last (short) block has been read
        tries = 0
        while True:
            while not done and len(blocks) < self.window:
                chunk = self.source.read(self.blksize)  # type: ignore[attr-defined]
                blocks.append(chunk)
                done = len(chunk) < self.blksize
            if not blocks:
                return self.sent_bytes
            for i, chunk in enumerate(blocks):
                self._send(struct.pack("!HH", DATA, (base + i) & 0xFFFF) + chunk)
                if (i + 1) % self.burst == 0 and i + 1 < len(blocks):
                    await asyncio.sleep(PACE)
            acked, timed_out = await self._await_ack(base, len(blocks))
            # A short ACK on a multiple of the window is how counting clients acknowledge
            # after a resend moved our windows; anything else short means packets were lost.
            if acked == 0 or (acked < len(blocks) and (base + acked - 1) % self.window):
                self.burst = max(1, self.burst // 2)
            elif self.burst < self.window:
                self.burst += 1
            if acked == 0:
                tries = tries + 1 if timed_out else tries
                if tries >= RETRIES:
                    raise TransferFailed(f"no ACK after {RETRIES} tries")
                continue
            tries = 0
            for chunk in blocks[:acked]:
                self.sent_bytes += len(chunk)
            del blocks[:acked]
            base += acked
            if done and not blocks:
                return self.sent_bytes

    async def _await_ack(self, base: int, count: int) -> tuple[int, bool]:
        """How many blocks of the window [base, base+count) the client acknowledged, and
        whether the wait timed out. Duplicate ACKs change nothing, not even the timer: a
        client re-acknowledging faster than it would otherwise hold the window forever. The
        one exception is a client repeating its ACK of the block before the window once a
        quarter of the timeout has passed since the window went out: it is waiting, and the
        window is resent then (0, False) rather than a whole timeout later. The quarter keeps
        the Sorcerer's Apprentice away: duplicates can never multiply the data sent."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        deadline = sent + self.timeout
        while True:
            data = await self._receive(deadline)
            if data is None:
                return 0, True
            if len(data) < 4:
                continue
            opcode, number = struct.unpack("!HH", data[:4])
            if opcode == ERROR:
                raise TransferFailed("client sent an error: " + data[4:-1].decode(errors="replace"))
            if opcode != ACK:
                continue
            offset: int = (number - base) & 0xFFFF
            if offset < count:
                return offset + 1, False
            if offset == 0xFFFF and loop.time() - sent >= self.timeout / 4:
                return 0, False
