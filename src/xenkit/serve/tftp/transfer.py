"""One read transfer: the option reply, then the file's blocks, in lockstep or in windows,
on a thread of its own."""

from __future__ import annotations

import errno
import mmap
import socket
import struct
import time
from dataclasses import dataclass
from typing import BinaryIO

from xenkit.serve.tftp.channel import Channel, Slots
from xenkit.serve.tftp.packet import ACK, DATA, ERROR, Request, oack_packet
from xenkit.serve.tftp.source import Source, TransferFailed, open_source

DEFAULT_TIMEOUT = 1.0
RETRIES = 6
PACE = 0.0002  # seconds between bursts once a transfer has lost packets

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


@dataclass(frozen=True)
class Accepted:
    """A request the server has taken on: its file open, the options agreed, the data socket
    made (transfer_sockets). All a transfer needs, wherever it runs."""

    req: Request
    file: BinaryIO
    options: dict[str, int]
    client: tuple[str, int]
    sock: socket.socket

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class Transfer:
    """One read transfer on its own socket and thread: OACK if options were asked for, then
    the file in windows of `windowsize` blocks (RFC 7440), each retransmitted on timeout
    until acknowledged.

    The data path runs in a thread with a blocking socket rather than on the event loop: a
    lockstep transfer is one round trip per block, and the loop's per-packet machinery
    (futures, callbacks, timers) cost more than the two system calls each round trip needs.
    The GIL is released while a thread waits in recvfrom or sendto, so transfers proceed
    side by side."""

    def __init__(self, accepted: Accepted, polling: Slots) -> None:
        self.req = accepted.req
        self.file = accepted.file
        self.client = accepted.client
        self.options = accepted.options
        self.blksize = self.options.get("blksize", 512)
        self.window = self.options.get("windowsize", 1)
        self.timeout = float(self.options.get("timeout", DEFAULT_TIMEOUT))
        self.source: Source = open_source(self.file, self.req.mode, self.blksize)
        # Packets sent back to back before a short pause. Starts at the whole window and is
        # halved only when a window goes unanswered for a whole timeout (the client's
        # socket buffer overflowed, or the network dropped it): an early ACK from a client
        # that saw a gap is answered by resending from the gap (go-back-N), not by slowing.
        self.burst = self.window
        self.channel = Channel(self.client, accepted.sock, polling)
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
        return self.source.sent_bytes

    def abort(self) -> None:
        """Stop from another thread: shutdown wakes a receive blocked in the kernel."""
        self.channel.abort()

    def run(self) -> int | None:
        """Bytes sent, or None if the client declined after the OACK."""
        self.channel.start_spinning()
        try:
            if self.options and not self._oack():
                return None
            if self.window == 1 and self.source.seekable:
                return self._lockstep(self.source)
            return self._data()
        finally:
            self.channel.close()
            self.file.close()

    def _oack(self) -> bool:
        packet = oack_packet(self.options)
        channel = self.channel
        for _ in range(RETRIES):
            channel.send(packet)
            deadline = time.monotonic() + self.timeout
            while (n := channel.receive(deadline)) >= 0:
                if n >= 4:
                    opcode, number = struct.unpack_from("!HH", channel.inbox)
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
                self.channel.send(self.view[:end])
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
        channel = self.channel
        try:
            channel.sock.sendmsg([self.view[:end]], self.gso)
        except OSError as exc:
            if channel.stopped:
                raise TransferFailed("server shutting down") from None
            if exc.errno not in (errno.EINVAL, errno.EIO, errno.EMSGSIZE, errno.ENOTSUP):
                return  # loss, as in Channel.send
            # The path cannot take segmented sends (MTU below the block, IPsec, an old
            # kernel): one by one from now on.
            self.per_send = 1
            seg = 4 + self.blksize
            for i in range(n):
                channel.send(self.view[i * seg : min(end, (i + 1) * seg)])

    def _lockstep(self, src: Source) -> int:
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

        # Mapped, not bytearrays: the pages are the kernel's again when the transfer ends.
        # From malloc they stayed with the process (glibc keeps freed chunks this size in
        # its per-thread arenas): after 200 clients at once (100 in lockstep), 56 MiB more
        # than before them, against 14 MiB mapped. Pages a small file never reaches are
        # never touched, either.
        buffers = [memoryview(mmap.mmap(-1, batch * seg)) for _ in range(2)]
        channel = self.channel
        send, recv, inbox = channel.sock.send, channel.sock.recv_into, channel.inbox
        monotonic = time.monotonic
        block = 1  # the next block to send
        run, acks = load(buffers[0], 1)
        channel.wait(self.timeout)
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
                        got = channel.recv_spun() if channel.spin else recv(inbox)
                    except OSError as exc:
                        got = channel.io_failed(exc)
                    if got < 4 or unpack(inbox)[0] != ack:
                        self._lockstep_slow(packet, block, sent, got)
                    block += 1
                if upcoming is None:
                    break
                run, acks = upcoming
        finally:
            src.acknowledge(block - 1)
        return src.sent_bytes

    def _lockstep_slow(self, packet: memoryview, block: int, sent: float, got: int) -> None:
        """Until the client acknowledges `block`: whatever came instead (`got`, the length of
        a packet in the channel's inbox, or -1 for none) is judged by _await_ack, and the
        block is resent on a timeout or a repeated ACK, RETRIES times at most."""
        tries = 0
        while True:
            acked = self._await_ack(block, 1, sent, got)
            self.channel.wait(self.timeout)
            if acked == 1:
                return
            if acked < 0:
                tries += 1
                if tries >= RETRIES:
                    raise TransferFailed(f"no ACK after {RETRIES} tries")
            sent = time.monotonic()
            self.channel.send(packet)
            got = self.channel.recv()

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
            self.source.acknowledge(k)
            base = k + 1
            if k >= self.source.last:
                return self.sent_bytes
            if k < nxt - 1 and k % window:
                # An early ACK: the client saw a gap after block k. Go back N: resend from
                # there (RFC 7440). An ACK on a multiple of the window is different: clients
                # that count windows by block number (atftp, U-Boot) acknowledge there even
                # when a resend shifted our windows, and what follows may well have arrived;
                # the window just slides on, and a real gap shows as an early or repeated ACK.
                nxt = base
            elif k == nxt - 1 and self.burst < window:
                self.burst += 1

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
        receive, inbox = self.channel.receive, self.channel.inbox
        while True:
            n = receive(deadline, pending)
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
