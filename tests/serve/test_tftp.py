"""The TFTP server against real clients, a hostile network, and hostile packets."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tftpclient import Relay, fetch, rrq
from xenkit.serve import tftp

SIZES = [0, 511, 512, 513, 1 << 20, (32 << 20) + 12345]


class Running:
    """A server on an event loop of its own, in a thread; `config` goes to the Server."""

    def __init__(self, root: Path, host: str = "127.0.0.1", **config: Any) -> None:
        self.server = tftp.Server(root, **config)
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.addr = self.loop.run_until_complete(self.server.listen(host, 0))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert ready.wait(30), "the server did not start"

    def close(self) -> None:
        async def shutdown() -> None:
            tasks = list(self.server.tasks)
            self.server.close()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tftproot")
    rng = __import__("random").Random(7)
    for n in [*SIZES, 60000]:
        (d / f"f{n}").write_bytes(rng.randbytes(n))
    (d / "sub").mkdir()
    (d / "sub" / "inner").write_bytes(b"inner\n")
    (d / "text.txt").write_bytes(b"one\ntwo\r\nthree")
    outside = d.parent / "secret"
    outside.write_text("secret")
    (d / "escape").symlink_to(outside)
    # A symlink loop: resolving it raised into the event loop (a traceback, no answer).
    (d / "loop1").symlink_to(d / "loop2")
    (d / "loop2").symlink_to(d / "loop1")
    return d


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[Running]:
    r = Running(root)
    yield r
    r.close()


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


CLIENTS = {
    "tftp-hpa": lambda a, f, out: ["tftp", a[0], str(a[1]), "-m", "binary", "-c", "get", f, out],
    "atftp": lambda a, f, out: [
        "atftp",
        "--option",
        "blksize 512",
        "-g",
        "-r",
        f,
        "-l",
        out,
        a[0],
        str(a[1]),
    ],
    "curl": lambda a, f, out: [
        "curl",
        "-sS",
        "--tftp-blksize",
        "512",
        "-o",
        out,
        f"tftp://{a[0]}:{a[1]}/{f}",
    ],
    "busybox": lambda a, f, out: ["busybox", "tftp", "-g", "-r", f, "-l", out, a[0], str(a[1])],
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_real_clients_get_identical_files(
    server: Running, root: Path, tmp_path: Path, client: str, size: int
) -> None:
    if client == "busybox" and size > 1 << 24:
        pytest.skip("busybox tftp's 16-bit block counter stops at 32 MiB with blksize 512")
    out = tmp_path / "got"
    subprocess.run(
        CLIENTS[client](server.addr, f"f{size}", str(out)),
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert _digest(out) == _digest(root / f"f{size}")


def test_windowsize_and_big_blocks_with_atftp(server: Running, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "got"
    subprocess.run(
        [
            "atftp",
            "--option",
            "blksize 8192",
            "--option",
            "windowsize 16",
            "-g",
            "-r",
            f"f{SIZES[-1]}",
            "-l",
            str(out),
            *map(str, server.addr),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert _digest(out) == _digest(root / f"f{SIZES[-1]}")


@pytest.mark.parametrize(("blksize", "window"), [(8, 4), (8, 16), (8192, 3)])
def test_windows_of_tiny_and_odd_blocks(
    server: Running, root: Path, blksize: int, window: int
) -> None:
    # Windows leave in segmented sends (GSO); the option reply is longer than an 8-byte
    # block and must still arrive whole, and a window need not divide the file.
    data = fetch(server.addr, "f60000", blksize=blksize, windowsize=window)
    assert data == (root / "f60000").read_bytes()


def test_netascii(server: Running, tmp_path: Path) -> None:
    out = tmp_path / "got"
    subprocess.run(
        [
            "tftp",
            server.addr[0],
            str(server.addr[1]),
            "-m",
            "ascii",
            "-c",
            "get",
            "text.txt",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == b"one\ntwo\r\nthree"
    # On the wire: LF as CR LF, a bare CR as CR NUL.
    assert fetch(server.addr, "text.txt", mode="netascii") == b"one\r\ntwo\r\0\r\nthree"


def test_block_numbers_roll_over(server: Running, root: Path) -> None:
    # 32 MiB + at blksize 512 is more than 65535 blocks.
    data = fetch(server.addr, f"f{SIZES[-1]}", windowsize=16)
    assert data == (root / f"f{SIZES[-1]}").read_bytes()


def test_ipv6(root: Path) -> None:
    r = Running(root, "::1")
    try:
        assert fetch(r.addr[:2], "f513") == (root / "f513").read_bytes()
    finally:
        r.close()


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize(("blksize", "window"), [(512, 1), (1468, 8), (8192, 4)])
def test_lossy_duplicating_reordering_network(
    server: Running, root: Path, seed: int, blksize: int, window: int
) -> None:
    relay = Relay(server.addr, loss=0.08, dup=0.08, reorder=0.08, seed=seed)
    addr = relay.start()
    try:
        # The relay drops requests too: they are sent again as quickly as blocks are.
        data = b""
        for name in ("f513", "f60000"):
            data += fetch(
                addr, name, 0.2, 200, request_timeout=0.2, blksize=blksize, windowsize=window
            )
    finally:
        relay.close()
    assert data == (root / "f513").read_bytes() + (root / "f60000").read_bytes()


def _exchange(addr: tuple[str, int], packet: bytes, wait: float = 1) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.sendto(packet, addr)
        try:
            return s.recvfrom(70000)[0]
        except TimeoutError:
            return None


@pytest.mark.parametrize(
    ("packet", "code"),
    [
        (b"", None),
        (b"\x00", None),
        (b"\x00\x01", tftp.ILLEGAL),
        (b"\x00\x01f10\x00octet", tftp.ILLEGAL),  # no final NUL
        (b"\x00\x09whatever\x00", tftp.ILLEGAL),  # unknown opcode
        (b"\x00\x03\x00\x01data", None),  # DATA to the request port: ignored
        (b"\x00\x05\x00\x00oops\x00", None),  # so is an ERROR
        (b"\x00\x01f10\x00mail\x00", tftp.ILLEGAL),  # obsolete mode
        (b"\x00\x01\xff\xfe\x00octet\x00", tftp.ILLEGAL),  # not ASCII
        (rrq("f513", blksize=4), tftp.BAD_OPTIONS),
        (b"\x00\x02f10\x00octet\x00", tftp.ACCESS),  # writes are refused
        (rrq("nope"), tftp.NOT_FOUND),
    ],
)
def test_malformed_requests_get_errors_and_the_server_lives(
    server: Running, packet: bytes, code: int | None
) -> None:
    # An answer may be late on a loaded host; silence is only waited for a second.
    reply = _exchange(server.addr, packet, 1 if code is None else 30)
    if code is None:
        assert reply is None
    else:
        assert reply is not None and struct.unpack("!HH", reply[:4]) == (tftp.ERROR, code)
    assert fetch(server.addr, "f513") == (Path(server.server.root) / "f513").read_bytes()


def test_huge_and_odd_option_values_are_ignored(server: Running, root: Path) -> None:
    packet = rrq("f513", blksize=10**30, windowsize=0, timeout=9999, tsize=5) + b"bogus\0x\0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(packet, server.addr)
        reply, _ = s.recvfrom(70000)
    # Nothing acceptable but tsize: the OACK carries only the real size.
    assert reply == struct.pack("!H", tftp.OACK) + b"tsize\x00513\x00"


@pytest.mark.parametrize(
    "name",
    [
        "../secret",
        "/../secret",
        "sub/../../secret",
        "escape",
        "..\\secret",
        "sub/../..",
        "/etc/passwd",
        ".",
        "loop1",
    ],
)
def test_paths_cannot_escape_the_root(server: Running, name: str) -> None:
    reply = _exchange(server.addr, rrq(name), 30)
    assert reply is not None
    op, code = struct.unpack("!HH", reply[:4])
    assert op == tftp.ERROR and code in (tftp.ACCESS, tftp.NOT_FOUND)
    assert b"secret" not in reply


def test_absolute_paths_are_served_from_the_root(server: Running) -> None:
    assert fetch(server.addr, "/sub/inner") == b"inner\n"


def test_client_aborting_after_oack_is_let_go(server: Running, root: Path) -> None:
    # The Pi bootloader asks for tsize, reads the OACK, sends an error, then asks again.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(rrq("f1048576", tsize=0), server.addr)
        reply, tid = s.recvfrom(100)
        assert reply == struct.pack("!H", tftp.OACK) + b"tsize\x001048576\x00"
        s.sendto(tftp.error_packet(tftp.BAD_OPTIONS, "probe only"), tid)
    assert fetch(server.addr, "f1048576", tsize=0) == (root / "f1048576").read_bytes()


def _held_at_block_one(s: socket.socket, addr: tuple[str, int], name: str) -> tuple[str, int]:
    """Ask for `name` with the longest timeout (255 s), so the server resends nothing on
    its own however starved this host is, and take block 1 without acknowledging it: the
    transfer's address."""
    s.settimeout(30)
    s.sendto(rrq(name, timeout=255), addr)
    oack, tid = s.recvfrom(600)
    assert isinstance(tid, tuple)
    assert oack == struct.pack("!H", tftp.OACK) + b"timeout\x00255\x00", oack
    s.sendto(struct.pack("!HH", tftp.ACK, 0), tid)
    assert s.recvfrom(600)[0][:4] == b"\x00\x03\x00\x01"
    return tid


def test_duplicate_acks_do_not_duplicate_data(server: Running) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        tid = _held_at_block_one(s, server.addr, "f1048576")
        ack1 = struct.pack("!HH", tftp.ACK, 1)
        s.sendto(ack1, tid)
        s.sendto(ack1, tid)  # the duplicate of the Sorcerer's Apprentice
        got = [s.recvfrom(600)[0][:4]]
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            got.append(s.recvfrom(600)[0][:4])
        assert got == [b"\x00\x03\x00\x02"]


def test_strangers_on_a_transfer_port_get_unknown_tid(server: Running) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other,
    ):
        tid = _held_at_block_one(s, server.addr, "f1048576")
        other.settimeout(30)
        other.sendto(struct.pack("!HH", tftp.ACK, 1), tid)
        reply, _ = other.recvfrom(100)
        assert struct.unpack("!HH", reply[:4]) == (tftp.ERROR, tftp.UNKNOWN_TID)
        s.sendto(struct.pack("!HH", tftp.ACK, 1), tid)
        assert s.recvfrom(600)[0][:4] == b"\x00\x03\x00\x02"


def test_a_file_replaced_in_flight_is_sent_whole(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"a" * 100_000)
    r = Running(tmp_path)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(30)
            s.sendto(rrq("f"), r.addr)
            data, tid = s.recvfrom(600)
            new = tmp_path / ".f.new"
            new.write_bytes(b"b" * 50_000)
            os.replace(new, tmp_path / "f")
            body = data[4:]
            block = 1
            while len(data) - 4 == 512:
                s.sendto(struct.pack("!HH", tftp.ACK, block), tid)
                data, _ = s.recvfrom(600)
                # A block the server sent again (its 1 s timer ran out on a busy host).
                while struct.unpack("!H", data[2:4])[0] == block:
                    data, _ = s.recvfrom(600)
                block += 1
                body += data[4:]
            s.sendto(struct.pack("!HH", tftp.ACK, block), tid)
        assert body == b"a" * 100_000
        assert fetch(r.addr, "f") == b"b" * 50_000
    finally:
        r.close()


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_parser_never_fails_unexpectedly(packet: bytes) -> None:
    try:
        req = tftp.parse_request(packet)
    except tftp.PacketError as exc:
        assert exc.code in (0, tftp.ILLEGAL)  # 0: not worth an answer
        return
    assert req.opcode in (tftp.RRQ, tftp.WRQ) and req.filename
    try:
        tftp.negotiate(req.options, 1234)
    except tftp.PacketError as exc:
        assert exc.code == tftp.BAD_OPTIONS


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["blksize", "tsize", "timeout", "windowsize", "x"]), st.text(max_size=12)
    )
)
def test_negotiation_keeps_values_in_range(options: dict[str, str]) -> None:
    try:
        out = tftp.negotiate(options, 77)
    except tftp.PacketError:
        assert int(options["blksize"]) < 8
        return
    assert 8 <= out.get("blksize", 8) <= 65464
    assert 1 <= out.get("windowsize", 1) <= 65535 and 1 <= out.get("timeout", 1) <= 255
    assert out.get("tsize", 77) == 77


# How late a far client answers: far past the server's poll (SPIN, 0.2 ms) even when its
# thread is itself late to look, as on a host starved by two emulators (5 x SPIN was a hit
# there now and then, which keeps the transfer polling).
LATE = 100 * tftp.SPIN


def _slow_lockstep(
    addr: tuple[str, int], polling: tftp.Slots, name: str, delay: float, seen: list[int]
) -> bytes:
    """Read `name` at blksize 512, answering each block `delay` seconds late; `seen` gets
    the number of polling transfers (of `polling`, the server's) as each block arrives."""
    data = b""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(30)
        s.sendto(rrq(name), addr)
        block = 0
        while True:
            packet, server = s.recvfrom(1024)
            assert struct.unpack("!H", packet[:2])[0] == 3, packet
            if struct.unpack("!H", packet[2:4])[0] == block:
                continue  # sent again: its 1 s timer ran out on a busy host
            block += 1
            seen.append(polling.used)
            data += packet[4:]
            time.sleep(delay)
            s.sendto(struct.pack("!HH", 4, struct.unpack("!H", packet[2:4])[0]), server)
            if len(packet) - 4 < 512:
                return data


def _no_transfer_polls(polling: tftp.Slots) -> None:
    """Wait for other transfers (a finishing thread, or one an earlier test left retrying
    for a client that has gone) to give up their polling slots."""
    deadline = time.monotonic() + 20
    while polling.used and time.monotonic() < deadline:
        time.sleep(0.01)
    assert polling.used == 0


class _Spinner:
    """What Channel.recv_spun uses of a channel, around a real socket, with a polling
    budget of its own (one slot)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.inbox, self.misses, self.spin = sock, bytearray(64), 0, 0.0
        self.polling = tftp.Slots(1)
        if self.polling.take():
            self.spin = tftp.SPIN

    def stop_spinning(self) -> None:  # recv_spun calls it on a run of misses
        tftp.Channel.stop_spinning(self)  # type: ignore[arg-type]


def test_an_answer_already_there_keeps_polling_and_late_ones_stop_it() -> None:
    # The policy without the clock: an ACK waiting when the transfer looks is a hit, however
    # loaded the host; one that never comes within the poll is a miss, and SPIN_MISSES of
    # them in a row give the polling slot back.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    # As the transfer waits (SO_RCVTIMEO): a blocking receive with nothing sent gives up at once.
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("@ll", 0, 1000))
    t = _Spinner(a)

    def hit() -> None:
        b.send(b"ack!")
        assert tftp.Channel.recv_spun(t) == 4  # type: ignore[arg-type]

    def miss() -> None:
        with pytest.raises(OSError):
            tftp.Channel.recv_spun(t)  # type: ignore[arg-type]

    try:
        with a, b:
            assert t.spin == tftp.SPIN and t.polling.used == 1
            for _ in range(3 * tftp.SPIN_MISSES):
                hit()
            for _ in range(2):  # a hit starts the count of misses again
                for _ in range(tftp.SPIN_MISSES - 1):
                    miss()
                assert t.spin == tftp.SPIN
                hit()
            for _ in range(tftp.SPIN_MISSES):
                miss()
            assert t.spin == 0 and t.polling.used == 0
    finally:
        t.stop_spinning()


def test_a_near_client_is_polled_for_and_a_far_one_is_not(server: Running, root: Path) -> None:
    polling = server.server.polling
    _no_transfer_polls(polling)
    seen: list[int] = []
    assert _slow_lockstep(server.addr, polling, "f60000", 0, seen) == (root / "f60000").read_bytes()
    # Whether a prompt client stays polled for to the end depends on the host's load (a busy
    # CPU answers later than SPIN): the policy itself is tested without the clock above.
    assert seen[0] == 1, "a transfer should start polling"
    _no_transfer_polls(polling)
    seen.clear()
    # Each ACK later than the poll: after SPIN_MISSES of them the transfer sleeps instead,
    # and its slot is free for another.
    assert (
        _slow_lockstep(server.addr, polling, "f60000", LATE, seen) == (root / "f60000").read_bytes()
    )
    assert seen[0] == 1 and seen[-1] == 0, seen
    # SPIN_MISSES late ACKs in a row stop it. A loaded host (a parallel test run beside two
    # emulators) moves that either way: an ACK the server finds already waiting (its thread
    # descheduled for longer than LATE) resets the count, and a wait that outlasts the
    # server's timer is a miss of its own (7 blocks once in CI). Within the first half of
    # the 118 blocks, it has stopped.
    assert 0 < seen.index(0) <= len(seen) // 2, seen
    assert polling.used == 0
