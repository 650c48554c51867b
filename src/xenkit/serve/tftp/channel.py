"""A transfer's end of the conversation with its client: its own port (the TID), receives
that wait in the kernel or poll first, and what a failed send or receive means."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import threading
import time

from xenkit.serve.tftp.packet import UNKNOWN_TID, error_packet
from xenkit.serve.tftp.source import TransferFailed

# How long a transfer polls for the client's answer before it sleeps in the kernel. A near
# client (loopback, a LAN) answers within this, and a thread asleep in recv wakes tens of
# microseconds late on every round trip, idle CPUs costing most: polling skips that wakeup.
# Only as many transfers poll at once as leave a CPU free for the rest (polling_slots, one
# budget a server), and one whose client keeps answering later than this (a far one) goes
# back to sleeping.
SPIN = 0.0002
SPIN_MISSES = 8


class Slots:
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


def polling_slots() -> Slots:
    """The transfers of one server that may poll (SPIN) at once."""
    return Slots(max(0, (os.cpu_count() or 1) - 1))


def transfer_sockets(client: tuple[str, int], local: str) -> tuple[socket.socket, socket.socket]:
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


def answer_stranger(guard: socket.socket, client: tuple[str, int]) -> None:
    """A packet on a transfer's port from anyone but its client (the guard socket has one
    waiting): error 5, from the port it was sent to. Runs on the event loop. The client's
    own packets land here only once the data socket has closed (a late duplicate of its
    last ACK): they are dropped, as a closed port would, not answered with an error that
    could break the client's next transfer."""
    with contextlib.suppress(OSError):
        _, addr = guard.recvfrom(1024)
        if addr[:2] != client[:2]:
            guard.sendto(error_packet(UNKNOWN_TID, "unknown transfer ID"), addr)


class Channel:
    """A transfer's data socket (the first of transfer_sockets), used from the transfer's
    thread but for abort (any thread). Receives land in self.inbox; `polling` is the
    server's budget of transfers that may poll at once."""

    def __init__(self, client: tuple[str, int], sock: socket.socket, polling: Slots) -> None:
        self.client = client
        self.polling = polling
        self.stopped = False
        self.spin = 0.0  # seconds each receive polls first (SPIN while this transfer may)
        self.misses = 0  # polls in a row the client's answer missed
        self.sock = sock
        self.rcvtimeo = 0.0
        self.inbox = bytearray(1024)  # ACKs are 4 bytes; ERROR text past this is not needed

    def start_spinning(self) -> None:
        if self.polling.take():
            self.spin = SPIN

    def stop_spinning(self) -> None:
        if self.spin:
            self.spin = 0.0
            self.polling.give()

    def close(self) -> None:
        """Give the polling slot back and close the data socket (the guard is the event
        loop's to close, in whatever process that runs)."""
        self.stop_spinning()
        self.sock.close()

    def recv_spun(self) -> int:
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
            self.stop_spinning()
        return recv(inbox)

    def wait(self, seconds: float) -> None:
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

    def recv(self) -> int:
        """One recv_into within SO_RCVTIMEO: the length of the client's packet, or -1."""
        try:
            if self.spin:
                return self.recv_spun()
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

    def receive(self, deadline: float, pending: int | None = None) -> int:
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
            self.wait(left)
            n = self.recv()
            if self.stopped:  # shutdown() makes recv return at once, empty
                raise TransferFailed("server shutting down")
            if n >= 0:
                return n

    def send(self, packet: bytes | memoryview) -> None:
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

    def io_failed(self, exc: OSError) -> int:
        """A send or receive of the lockstep loop failed: raise if that ends the transfer
        (as _send_failed and _recv_failed judge), else -1, as if nothing came."""
        self._send_failed(exc)
        return self._recv_failed(exc)

    def abort(self) -> None:
        """Stop from another thread: shutdown wakes a receive blocked in the kernel."""
        self.stopped = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
