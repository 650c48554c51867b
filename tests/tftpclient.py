"""A small TFTP client and a misbehaving UDP relay, for driving the server in tests."""

from __future__ import annotations

import random
import select
import socket
import struct
import threading
from dataclasses import dataclass, field


def rrq(name: str, mode: str = "octet", **options: int) -> bytes:
    body = f"{name}\0{mode}\0".encode() + b"".join(
        f"{k}\0{v}\0".encode() for k, v in options.items()
    )
    return struct.pack("!H", 1) + body


def fetch(
    addr: tuple[str, int],
    name: str,
    timeout: float = 0.3,
    tries: int = 40,
    mode: str = "octet",
    request_timeout: float = 5.0,
    **options: int,
) -> bytes:
    """Read a file; tolerant of loss, duplicates and reordering (like a careful client).

    The request is sent again only after `request_timeout`: each copy starts a transfer of
    its own, which a starved test host (two emulators beside the tests) would otherwise
    turn into an extra, failed transfer in the server's counts. A transfer that is not the
    one taken is turned away with error 5, as RFC 1350 says."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    blksize = options.get("blksize", 512)
    window = options.get("windowsize", 1)
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(request_timeout)
        request = rrq(name, mode, **options)
        s.sendto(request, addr)
        server: tuple[str, int] | None = None
        received: dict[int, bytes] = {}
        expected = 1  # next absolute block wanted
        last_ack = b""
        misses = 0
        while True:
            try:
                data, src = s.recvfrom(70000)
            except TimeoutError:
                misses += 1
                if misses > tries:
                    raise TimeoutError("server went quiet") from None
                s.sendto(last_ack, server) if server else s.sendto(request, addr)
                continue
            if server is None:
                server = src
                s.settimeout(timeout)
            elif src != server:
                s.sendto(struct.pack("!HH", 5, 5) + b"unknown transfer ID\0", src)
                continue
            op = struct.unpack("!H", data[:2])[0]
            if op == 5:
                raise FileNotFoundError(data[4:-1].decode())
            if op == 6:
                last_ack = struct.pack("!HH", 4, 0)
                s.sendto(last_ack, server)
                continue
            if op != 3:
                continue
            misses = 0
            number = struct.unpack("!H", data[2:4])[0]
            block = expected + ((number - expected) & 0xFFFF)
            if (number - expected) & 0xFFFF > 0x8000:  # an old block: ack what we have
                s.sendto(last_ack, server)
                continue
            received[block] = data[4:]
            if block == expected:
                while expected in received:
                    final = len(received[expected]) < blksize
                    expected += 1
                    if final:
                        last_ack = struct.pack("!HH", 4, (expected - 1) & 0xFFFF)
                        for _ in range(2):
                            s.sendto(last_ack, server)
                        return b"".join(received[i] for i in range(1, expected))
                last_ack = struct.pack("!HH", 4, (expected - 1) & 0xFFFF)
                if (expected - 1) % window == 0:
                    s.sendto(last_ack, server)
            else:
                s.sendto(last_ack, server)  # a gap: tell the server where we are


@dataclass
class Relay:
    """A UDP relay between a client and a TFTP server that drops, duplicates and reorders
    packets with a seeded random generator, in both directions."""

    server: tuple[str, int]
    loss: float = 0.1
    dup: float = 0.1
    reorder: float = 0.1
    seed: int = 1
    addr: tuple[str, int] = ("127.0.0.1", 0)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> tuple[str, int]:
        self.rng = random.Random(self.seed)
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(self.addr)
        self.front.settimeout(0.05)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        addr: tuple[str, int] = self.front.getsockname()
        return addr

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.front.close()

    def _mangle(
        self,
        sock: socket.socket,
        data: bytes,
        to: tuple[str, int],
        held: list[tuple[socket.socket, bytes, tuple[str, int]]],
    ) -> None:
        r = self.rng.random()
        if r < self.loss:
            return
        if r < self.loss + self.reorder:
            held.append((sock, data, to))
            return
        sock.sendto(data, to)
        if self.rng.random() < self.dup:
            sock.sendto(data, to)
        while held and self.rng.random() < 0.7:
            s, d, t = held.pop(0)
            s.sendto(d, t)

    def _run(self) -> None:
        back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        back.bind(("127.0.0.1", 0))
        client: tuple[str, int] | None = None
        tid: tuple[str, int] | None = None
        held: list[tuple[socket.socket, bytes, tuple[str, int]]] = []
        while not self.stop.is_set():
            ready, _, _ = select.select([self.front, back], [], [], 0.01)
            for sock in ready:
                data, src = sock.recvfrom(70000)
                if sock is self.front:
                    if src != client:  # a new client: a new transfer, a new server TID
                        client, tid = src, None
                    self._mangle(back, data, tid or self.server, held)
                else:
                    tid = tid or src
                    if client:
                        self._mangle(self.front, data, client, held)
            if held and (not ready or self.rng.random() < 0.3):
                s, d, t = held.pop(0)
                s.sendto(d, t)
        back.close()
