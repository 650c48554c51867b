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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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
# How long a transfer polls for the client's answer before it sleeps in the kernel. A near
# client (loopback, a LAN) answers within this, and a thread asleep in recv wakes tens of
# microseconds late on every round trip, idle CPUs costing most: polling skips that wakeup.
# Only as many transfers poll at once as leave a CPU free for the rest, and one whose client
# keeps answering later than this (a far one) goes back to sleeping.
SPIN = 0.0002
SPIN_MISSES = 8


class _Slots:
    """A count of things allowed at once, taken without waiting."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.size:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used -= 1


polling = _Slots(max(0, (os.cpu_count() or 1) - 1))  # transfers that may poll (SPIN)


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
        try:
            size = os.fstat(f.fileno()).st_size if req.mode == "octet" else None
            options = negotiate(req.options, size)
            transfer = Transfer(req, f, options, client, local)
        except PacketError as exc:
            f.close()
            self.stats.refused += 1
            self._send_error(client, local, exc.code, str(exc))
            return
        except OSError as exc:
            f.close()
            self.stats.failed += 1
            log.info("tftp: %s %s failed: %s", client[0], req.filename, exc)
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(transfer.guard, transfer.answer_stranger)
        try:
            sent = await _in_thread(transfer)
        except asyncio.CancelledError:
            transfer.abort()
            raise
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
        finally:
            loop.remove_reader(transfer.guard)
            transfer.guard.close()
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


async def _in_thread(transfer: Transfer) -> int | None:
    """Run a transfer on a thread of its own and wait for it without blocking the loop.
    Not the default executor: its few workers would queue the 50th concurrent client."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int | None] = loop.create_future()

    def settle(result: int | None, error: BaseException | None) -> None:
        if done.done():  # cancelled: the server is closing
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def work() -> None:
        result, error = None, None
        try:
            result = transfer.run()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed first
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=f"tftp {transfer.client[0]}", daemon=True).start()
    return await done


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


class _Octet:
    """A file's blocks read where they lie (os.preadv), so a resend needs no copy kept and
    a run of blocks is one system call. The size is taken when the transfer starts: a file
    replaced by rename keeps its old inode open here; one cut short in place fails the
    transfer rather than ending it early with a truncated file."""

    def __init__(self, f: BinaryIO, blksize: int) -> None:
        self.fd = f.fileno()
        self.size = os.fstat(self.fd).st_size
        self.blksize = blksize
        self.last = self.size // blksize + 1  # the short (maybe empty) final block

    def read(self, first: int, slots: list[memoryview]) -> list[int]:
        """Fill `slots` with blocks first, first+1, ...; their lengths."""
        offset = (first - 1) * self.blksize
        lengths = [
            min(self.blksize, self.size - offset - i * self.blksize) for i in range(len(slots))
        ]
        want = sum(lengths)
        if lengths[-1] < self.blksize:
            slots = [*slots[:-1], slots[-1][: lengths[-1]]]
        if want and os.preadv(self.fd, slots, offset) != want:
            raise TransferFailed("file shrank while being sent")
        return lengths


class _Text:
    """A file through netascii: the stream cannot be read at an offset, so the converted
    blocks not yet acknowledged are kept for resending."""

    def __init__(self, f: BinaryIO, blksize: int) -> None:
        self.stream = Netascii(f)
        self.blksize = blksize
        self.first = 1  # number of kept[0]
        self.kept: list[bytes] = []
        self.last = 1 << 62  # unknown until the short block is read

    def forget(self, below: int) -> None:
        drop = min(max(0, below - self.first), len(self.kept))
        del self.kept[:drop]
        self.first += drop

    def read(self, first: int, slots: list[memoryview]) -> list[int]:
        """Fill `slots` with blocks first, first+1, ... up to the final one; their lengths."""
        lengths = []
        for i, slot in enumerate(slots):
            n = first + i
            while self.first + len(self.kept) <= n:
                block = self.stream.read(self.blksize)
                self.kept.append(block)
                if len(block) < self.blksize:
                    self.last = self.first + len(self.kept) - 1
            block = self.kept[n - self.first]
            slot[: len(block)] = block
            lengths.append(len(block))
            if n == self.last:
                break
        return lengths


# UDP generic segmentation (Linux 4.18): one send hands the kernel a run of DATA packets laid
# end to end, and it cuts them into separate datagrams. From <linux/udp.h>; Python 3.11's
# socket module lacks the name.
UDP_SEGMENT = 103
GSO_BYTES = 65000  # one send stays below the 64 KiB an IP datagram can carry
GSO_SEGMENTS = 64  # the kernel's limit per send
# Lockstep reads the file this much at a time (two such buffers a transfer). Measured at
# 8192-byte blocks: a read per block ran about 13% slower than tftpd-hpa, 64 KiB reads even,
# 256 KiB reads about 4% ahead. Each read lands while the client works on a block, but on
# two CPUs shared with the client every system call still counts.
LOCKSTEP_READ = 256 * 1024
LOCKSTEP_BLOCKS = 256  # and at most this many blocks, well inside preadv's IOV_MAX (1024)


def _transfer_sockets(client: tuple[str, int], local: str) -> tuple[socket.socket, socket.socket]:
    """Two sockets on one new port, the transfer's TID: the first connect()ed to the client,
    the second (the guard) catching everyone else, whom it answers with error 5.

    Connected, the data socket's sends name no address (no address to parse in Python, no
    route to look up in the kernel) and its receives report none: about a microsecond a
    round trip, which is most of what lockstep at large blocks is short of tftpd-hpa. The
    kernel delivers each datagram to the socket that matches it most closely, so the
    client's go to the connected one and strangers' to the guard. Sharing a port takes
    SO_REUSEADDR on both while the second binds; it is cleared after, so nothing else can
    join the port, and so no later bind to port 0 can be handed this one."""
    family = socket.AF_INET6 if ":" in client[0] else socket.AF_INET
    guard = socket.socket(family, socket.SOCK_DGRAM)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        guard.bind((local, 0))  # without SO_REUSEADDR: a port no other socket holds
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(guard.getsockname())
        sock.connect(client)
        for s in (guard, sock):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        guard.setblocking(False)  # read on the event loop
    except OSError:
        guard.close()
        sock.close()
        raise
    return sock, guard


class Transfer:
    """One read transfer on its own socket and thread: OACK if options were asked for, then
    the file in windows of `windowsize` blocks (RFC 7440), each retransmitted on timeout
    until acknowledged.

    The data path runs in a thread with a blocking socket rather than on the event loop: a
    lockstep transfer is one round trip per block, and the loop's per-packet machinery
    (futures, callbacks, timers) cost more than the two system calls each round trip needs.
    The GIL is released while a thread waits in recvfrom or sendto, so transfers proceed
    side by side."""

    def __init__(
        self,
        req: Request,
        f: BinaryIO,
        options: dict[str, int],
        client: tuple[str, int],
        local: str,
    ) -> None:
        self.req = req
        self.file = f
        self.client = client
        self.options = options
        self.blksize = self.options.get("blksize", 512)
        self.window = self.options.get("windowsize", 1)
        self.timeout = float(self.options.get("timeout", DEFAULT_TIMEOUT))
        self.source: _Octet | _Text = (
            _Text(f, self.blksize) if req.mode == "netascii" else _Octet(f, self.blksize)
        )
        self.acked = 0  # blocks the client acknowledged
        self.text_bytes = 0  # netascii bytes those blocks carried
        self.stopped = False
        self.spin = 0.0  # seconds each receive polls first (SPIN while this transfer may)
        self.misses = 0  # polls in a row the client's answer missed
        # Packets sent back to back before a short pause. Starts at the whole window and is
        # halved only when a window goes unanswered for a whole timeout (the client's
        # socket buffer overflowed, or the network dropped it): an early ACK from a client
        # that saw a gap is answered by resending from the gap (go-back-N), not by slowing.
        self.burst = self.window
        self.sock, self.guard = _transfer_sockets(client, local)
        self.rcvtimeo = 0.0
        self.inbox = bytearray(1024)  # ACKs are 4 bytes; ERROR text past this is not needed
        seg = 4 + self.blksize
        # Blocks per send: with GSO a window leaves in one or a few system calls. Asked per
        # send (a control message), not per socket: the OACK and error packets sent from
        # this socket can be longer than a tiny block and must not be cut up.
        self.per_send = 1
        if self.window > 1 and seg <= GSO_BYTES // 2:
            self.per_send = min(self.window, GSO_SEGMENTS, GSO_BYTES // seg)
        self.gso = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", seg))]
        self.packets = bytearray(seg * self.per_send)
        self.ready: tuple[int, list[int]] | None = None  # blocks already in self.packets
        view = memoryview(self.packets)
        self.view = view
        self.slots = [view[i * seg + 4 : (i + 1) * seg] for i in range(self.per_send)]

    @property
    def sent_bytes(self) -> int:
        if isinstance(self.source, _Octet):
            return min(self.acked * self.blksize, self.source.size)
        return self.text_bytes

    def answer_stranger(self) -> None:
        """A packet on the transfer's port from anyone but the client (the guard socket has
        one waiting): error 5, from the port it was sent to. Runs on the event loop. The
        client's own packets land here only once the data socket has closed (a late
        duplicate of its last ACK): they are dropped, as a closed port would, not answered
        with an error that could break the client's next transfer."""
        with contextlib.suppress(OSError):
            _, addr = self.guard.recvfrom(1024)
            if addr[:2] != self.client[:2]:
                self.guard.sendto(error_packet(UNKNOWN_TID, "unknown transfer ID"), addr)

    def abort(self) -> None:
        """Stop from another thread: shutdown wakes a receive blocked in the kernel."""
        self.stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> int | None:
        """Bytes sent, or None if the client declined after the OACK."""
        if polling.take():
            self.spin = SPIN
        try:
            if self.options and not self._oack():
                return None
            if self.window == 1 and isinstance(self.source, _Octet):
                return self._lockstep(self.source)
            return self._data()
        finally:
            self._stop_spinning()
            self.sock.close()
            self.file.close()

    def _stop_spinning(self) -> None:
        if self.spin:
            self.spin = 0.0
            polling.give()

    def _recv_spun(self) -> int:
        """recv_into, polled for up to self.spin first: the length of the client's packet.
        Raises OSError as recv_into does."""
        recv, inbox, monotonic = self.sock.recv_into, self.inbox, time.monotonic
        end = monotonic() + self.spin
        while True:
            try:
                n = recv(inbox, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if monotonic() < end:
                    continue
                break
            self.misses = 0
            return n
        self.misses += 1
        if self.misses >= SPIN_MISSES:
            self._stop_spinning()
        return recv(inbox)

    def _wait(self, seconds: float) -> None:
        """Let the next recvfrom block at most `seconds` (SO_RCVTIMEO): one system call per
        receive, where a Python socket timeout adds a poll() before each."""
        seconds = max(seconds, 1e-6)
        if seconds != self.rcvtimeo:
            whole = int(seconds)
            self.sock.setsockopt(
                socket.SOL_SOCKET,
                socket.SO_RCVTIMEO,
                struct.pack("@ll", whole, max(1, int((seconds - whole) * 1e6))),
            )
            self.rcvtimeo = seconds

    def _recv(self) -> int:
        """One recv_into within SO_RCVTIMEO: the length of the client's packet, or -1."""
        try:
            if self.spin:
                return self._recv_spun()
            return self.sock.recv_into(self.inbox)
        except OSError as exc:
            return self._recv_failed(exc)

    def _recv_failed(self, exc: OSError) -> int:
        """What a failed receive means: nothing yet (SO_RCVTIMEO ran out: EAGAIN), or the
        end of the transfer."""
        if self.stopped:
            raise TransferFailed("server shutting down") from None
        if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
            raise TransferFailed("client unreachable") from None
        return -1

    def _receive(self, deadline: float, pending: int | None = None) -> int:
        """The length of the client's next packet, received into self.inbox before
        `deadline` (monotonic), or -1 once the deadline passed; `pending` is the length of
        one received already. The socket is connected: only the client's packets come here
        (the guard socket answers strangers)."""
        if pending is not None and pending >= 0:
            return pending
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return -1
            self._wait(left)
            n = self._recv()
            if self.stopped:  # shutdown() makes recv return at once, empty
                raise TransferFailed("server shutting down")
            if n >= 0:
                return n

    def _send(self, packet: bytes | memoryview) -> None:
        try:
            self.sock.send(packet)
        except OSError as exc:
            self._send_failed(exc)

    def _send_failed(self, exc: OSError) -> None:
        # A full queue on a real interface is loss like any other; the timer resends.
        if self.stopped:
            raise TransferFailed("server shutting down") from None
        if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.EINVAL):
            raise TransferFailed(f"cannot send: {exc.strerror}") from None

    def _oack(self) -> bool:
        packet = oack_packet(self.options)
        for _ in range(RETRIES):
            self._send(packet)
            deadline = time.monotonic() + self.timeout
            while (n := self._receive(deadline)) >= 0:
                if n >= 4:
                    opcode, number = struct.unpack_from("!HH", self.inbox)
                    if opcode == ACK and number == 0:
                        return True
                    if opcode == ERROR:
                        return False
        raise TransferFailed("no ACK for the option reply")

    def _send_blocks(self, first: int, count: int) -> int:
        """Send blocks first .. first+count-1, stopping after the final block; how many
        went. Runs of blocks leave in one send each (GSO), `burst` blocks at most."""
        seg = 4 + self.blksize
        sent = 0
        while sent < count:
            number = first + sent
            lengths = self._fill(number, min(count - sent, self.per_send, self.burst))
            n = len(lengths)
            if lengths[-1] < self.blksize:  # the final block: nothing after it is sent
                count = sent + n
            end = (n - 1) * seg + 4 + lengths[-1]
            if n == 1:
                self._send(self.view[:end])
            else:
                self._send_gso(end, n)
            sent += n
            if self.burst < self.window and sent < count:
                time.sleep(PACE)  # let a client with a small socket buffer drain it
        return sent

    def _fill(self, first: int, count: int) -> list[int]:
        """Put blocks first .. first+count-1 (headers and data) into the send buffer,
        unless _prefill already did; their lengths."""
        ready, self.ready = self.ready, None
        if ready is not None and ready[0] == first and len(ready[1]) == count:
            return ready[1]
        lengths = self.source.read(first, self.slots[:count])
        seg = 4 + self.blksize
        for i in range(len(lengths)):
            struct.pack_into("!HH", self.packets, i * seg, DATA, (first + i) & 0xFFFF)
        return lengths

    def _prefill(self, first: int) -> None:
        """Build the first run of the next window while the client works through this one:
        the ACK is then answered with a send, not a read first. Two cores overlap."""
        count = min(self.per_send, self.burst, self.window, self.source.last - first + 1)
        if count > 0:
            self.ready = (first, self._fill(first, count))

    def _send_gso(self, end: int, n: int) -> None:
        try:
            self.sock.sendmsg([self.view[:end]], self.gso)
        except OSError as exc:
            if self.stopped:
                raise TransferFailed("server shutting down") from None
            if exc.errno not in (errno.EINVAL, errno.EIO, errno.EMSGSIZE, errno.ENOTSUP):
                return  # loss, as in _send
            # The path cannot take segmented sends (MTU below the block, IPsec, an old
            # kernel): one by one from now on.
            self.per_send = 1
            seg = 4 + self.blksize
            for i in range(n):
                self._send(self.view[i * seg : min(end, (i + 1) * seg)])

    def _lockstep(self, src: _Octet) -> int:
        """Windowsize 1 from a file read at offsets: the hot loop, one send and one recv_into
        per block. The file is read a run of blocks per preadv, into one of two buffers
        while the client still works on the run's first block, so no read sits between an
        ACK and the next DATA. Each ACK is checked as one 32-bit number against a list made
        with the run, and the loop keeps no other per-block state: on a round trip of a few
        tens of microseconds every Python operation shows. Anything but the plain next ACK
        (a timeout, a duplicate, an error, a failed send) goes to _lockstep_slow, which
        keeps the rules of the general path."""
        seg = 4 + self.blksize
        batch = max(1, min(LOCKSTEP_BLOCKS, LOCKSTEP_READ // seg))
        header = struct.Struct("!HH")
        unpack = struct.Struct("!I").unpack_from
        last = src.last

        def load(buffer: memoryview, first: int) -> tuple[list[memoryview], list[int]]:
            """Blocks first ... of the next run, as the packets to send and their ACKs."""
            k = min(batch, last - first + 1)
            slots = [buffer[i * seg + 4 : (i + 1) * seg] for i in range(k)]
            lengths = src.read(first, slots)
            acks = [ACK << 16 | (first + i) & 0xFFFF for i in range(k)]
            for i in range(k):
                header.pack_into(buffer, i * seg, DATA, acks[i] & 0xFFFF)
            return [buffer[i * seg : i * seg + 4 + lengths[i]] for i in range(k)], acks

        buffers = [memoryview(bytearray(batch * seg)) for _ in range(2)]
        send, recv, inbox = self.sock.send, self.sock.recv_into, self.inbox
        monotonic = time.monotonic
        block = 1  # the next block to send
        run, acks = load(buffers[0], 1)
        self._wait(self.timeout)
        try:
            while True:
                # The run's first block, then the read of the next run, then the rest.
                upcoming: tuple[list[memoryview], list[int]] | None = None
                first = True
                after, spare = block + len(run), buffers[(block - 1) // batch % 2 ^ 1]
                for packet, ack in zip(run, acks, strict=True):
                    sent = monotonic()
                    try:
                        send(packet)
                        if first:
                            first = False
                            if after <= last:
                                upcoming = load(spare, after)
                        got = self._recv_spun() if self.spin else recv(inbox)
                    except OSError as exc:
                        got = self._io_failed(exc)
                    if got < 4 or unpack(inbox)[0] != ack:
                        self._lockstep_slow(packet, block, sent, got)
                    block += 1
                if upcoming is None:
                    return src.size
                run, acks = upcoming
        finally:
            self.acked = block - 1

    def _lockstep_slow(self, packet: memoryview, block: int, sent: float, got: int) -> None:
        """Until the client acknowledges `block`: whatever came instead (`got`, the length of
        a packet in self.inbox, or -1 for none) is judged by _await_ack, and the block is
        resent on a timeout or a repeated ACK, RETRIES times at most."""
        tries = 0
        while True:
            acked = self._await_ack(block, 1, sent, got)
            self._wait(self.timeout)
            if acked == 1:
                return
            if acked < 0:
                tries += 1
                if tries >= RETRIES:
                    raise TransferFailed(f"no ACK after {RETRIES} tries")
            sent = time.monotonic()
            self._send(packet)
            got = self._recv()

    def _io_failed(self, exc: OSError) -> int:
        """A send or receive of the lockstep loop failed: raise if that ends the transfer
        (as _send_failed and _recv_failed judge), else -1, as if nothing came."""
        self._send_failed(exc)
        return self._recv_failed(exc)

    def _data(self) -> int:
        base = 1  # oldest block not acknowledged
        nxt = 1  # next block to send
        tries = 0
        window = self.window
        while True:
            last = self.source.last
            end = min(base + window - 1, last)
            if nxt <= end:
                nxt += self._send_blocks(nxt, end - nxt + 1)
                if self.per_send > 1:
                    self._prefill(nxt)
            acked = self._await_ack(base, nxt - base)
            if acked < 0:  # a whole timeout without an ACK: resend, in smaller bursts
                tries += 1
                if tries >= RETRIES:
                    raise TransferFailed(f"no ACK after {RETRIES} tries")
                self.burst = max(1, self.burst // 2)
                nxt = base
                continue
            if acked == 0:  # the client repeated its last ACK: it is waiting, resend now
                nxt = base
                continue
            tries = 0
            k = base + acked - 1  # the newest block the client holds in order
            self._count(base, k)
            base = k + 1
            if k >= self.source.last:
                return self.sent_bytes
            if isinstance(self.source, _Text):
                self.source.forget(base)
            if k < nxt - 1 and k % window:
                # An early ACK: the client saw a gap after block k. Go back N: resend from
                # there (RFC 7440). An ACK on a multiple of the window is different: clients
                # that count windows by block number (atftp, U-Boot) acknowledge there even
                # when a resend shifted our windows, and what follows may well have arrived;
                # the window just slides on, and a real gap shows as an early or repeated ACK.
                nxt = base
            elif k == nxt - 1 and self.burst < window:
                self.burst += 1

    def _count(self, first: int, k: int) -> None:
        if isinstance(self.source, _Text):
            self.text_bytes += sum(len(b) for b in self.source.kept[: k - first + 1])
        self.acked = k

    def _await_ack(
        self,
        base: int,
        count: int,
        sent: float | None = None,
        pending: int | None = None,
    ) -> int:
        """How many of the blocks [base, base+count) the client acknowledged; 0 to resend at
        once, -1 on a timeout. Duplicate ACKs change nothing, not even the timer: a client
        re-acknowledging faster than it would otherwise hold the window forever. The one
        exception is a client repeating its ACK of the block before the window once a
        quarter of the timeout has passed since the window went out: it is waiting, and the
        window is resent then rather than a whole timeout later. The quarter keeps the
        Sorcerer's Apprentice away: duplicates can never multiply the data sent."""
        if sent is None:
            sent = time.monotonic()
        deadline = sent + self.timeout
        inbox = self.inbox
        while True:
            n = self._receive(deadline, pending)
            pending = None
            if n < 0:
                return -1
            if n < 4:
                continue
            opcode, number = struct.unpack_from("!HH", inbox)
            if opcode == ACK:
                offset: int = (number - base) & 0xFFFF
                if offset < count:
                    return offset + 1
                if offset == 0xFFFF and time.monotonic() - sent >= self.timeout / 4:
                    return 0
            elif opcode == ERROR:
                message = bytes(inbox[4:n]).split(b"\0")[0].decode(errors="replace")
                raise TransferFailed("client sent an error: " + message)
