"""What a transfer sends: the file a request names, confined to the served root, and its
blocks as the request's mode has them (octet: the bytes as they are; netascii: converted)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Protocol

from xenkit.serve.tftp.packet import ACCESS, NOT_FOUND


class TransferFailed(Exception):
    pass


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
    try:
        target = (real_root.joinpath(*parts)).resolve()
    except (RuntimeError, OSError):
        # A symlink loop in the tree: Python raised RuntimeError into the event loop, a
        # traceback per request and no answer for the client.
        raise Refused(NOT_FOUND, "file not found") from None
    if target != real_root and real_root not in target.parents:
        raise Refused(ACCESS, "path not allowed")
    if not target.is_file():
        raise Refused(NOT_FOUND, "file not found")
    return target


# -- blocks -------------------------------------------------------------------------------------
class Source(Protocol):
    """A file's blocks, numbered from 1, all `blksize` long but the final one (short, maybe
    empty). The transfer asks only this of a file, whatever its mode."""

    # The final block's number; until a netascii file has been converted to its end, a
    # bound far past it.
    last: int
    # Blocks can be read at any offset, as often as wanted, and `last` is known from the
    # start: what lockstep, which reads a run ahead and never says what was acknowledged
    # until it ends, needs.
    seekable: bool

    def read(self, first: int, slots: list[memoryview]) -> list[int]:
        """Fill `slots` with blocks first, first+1, ... up to the final one; their lengths."""
        ...

    def acknowledge(self, k: int) -> None:
        """The client holds blocks 1 to k."""
        ...

    @property
    def sent_bytes(self) -> int:
        """The bytes the acknowledged blocks carried."""
        ...


def open_source(f: BinaryIO, mode: str, blksize: int) -> Source:
    """The blocks of `f` (open, at its start) in `mode`, "octet" or "netascii"."""
    return _Text(f, blksize) if mode == "netascii" else _Octet(f, blksize)


class _Octet:
    """A file's blocks read where they lie (os.preadv), so a resend needs no copy kept and
    a run of blocks is one system call. The size is taken when the transfer starts: a file
    replaced by rename keeps its old inode open here; one cut short in place fails the
    transfer rather than ending it early with a truncated file."""

    seekable = True

    def __init__(self, f: BinaryIO, blksize: int) -> None:
        self.fd = f.fileno()
        self.size = os.fstat(self.fd).st_size
        self.blksize = blksize
        self.last = self.size // blksize + 1  # the short (maybe empty) final block
        self.acked = 0  # blocks the client acknowledged

    @property
    def sent_bytes(self) -> int:
        return min(self.acked * self.blksize, self.size)

    def acknowledge(self, k: int) -> None:
        self.acked = k

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


class Netascii:
    """A binary file seen through netascii (RFC 764): LF -> CR LF, CR -> CR NUL."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.pending = b""

    def read(self, n: int) -> bytes:
        while len(self.pending) < n:
            chunk = self.f.read(65536)
            if not chunk:
                break
            self.pending += chunk.replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


class _Text:
    """A file through netascii: the stream cannot be read at an offset, so the converted
    blocks not yet acknowledged are kept for resending."""

    seekable = False

    def __init__(self, f: BinaryIO, blksize: int) -> None:
        self.stream = Netascii(f)
        self.blksize = blksize
        self.first = 1  # number of kept[0]
        self.kept: list[bytes] = []
        self.last = 1 << 62  # unknown until the short block is read
        self.sent_bytes = 0  # netascii bytes the acknowledged blocks carried

    def acknowledge(self, k: int) -> None:
        """Count the bytes of the blocks up to k, and forget them: they are not resent."""
        drop = min(max(0, k + 1 - self.first), len(self.kept))
        self.sent_bytes += sum(len(b) for b in self.kept[:drop])
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
