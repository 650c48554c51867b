"""casync's blob index (.caibx): which chunks, in order, make a blob.

Layout from casync's src/caformat.h: an INDEX record (header, feature flags, the chunker's
min/avg/max), a TABLE record whose items are (end offset, chunk id), and a tail that repeats
the table's size. The chunk id is the digest of the chunk's uncompressed bytes: SHA-256
unless the SHA512_256 flag is set.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from xenkit.errors import XenkitError

INDEX = 0x96824D9C7B129FF9
TABLE = 0xE75B9E112F17417D
TAIL = 0x4B4F050E5549ECD1
SHA512_256 = 0x2000000000000000
_HEAD = struct.Struct("<QQQQQQ")  # size, type, flags, min, avg, max
_ITEM = struct.Struct("<Q32s")
_TAIL = struct.Struct("<QQQQQ")


@dataclass(frozen=True)
class Chunk:
    id: str  # hex digest of the uncompressed chunk
    offset: int  # where it starts in the blob
    size: int


@dataclass(frozen=True)
class Index:
    digest: str  # "sha256" or "sha512-256"
    chunk_size: tuple[int, int, int]  # min, avg, max
    chunks: tuple[Chunk, ...]

    @property
    def size(self) -> int:
        return self.chunks[-1].offset + self.chunks[-1].size if self.chunks else 0


def parse(data: bytes, name: str = "index") -> Index:
    """The chunks of a .caibx file, or a one-line error naming `name`."""
    if len(data) < _HEAD.size + 16 + _TAIL.size:
        raise XenkitError(f"{name} is too short for a casync blob index")
    size, kind, flags, lo, avg, hi = _HEAD.unpack_from(data)
    if kind != INDEX or size != _HEAD.size:
        raise XenkitError(f"{name} is not a casync blob index (no INDEX record)")
    tsize, ttype = struct.unpack_from("<QQ", data, _HEAD.size)
    if ttype != TABLE or tsize != 0xFFFFFFFFFFFFFFFF:
        raise XenkitError(f"{name} is not a casync blob index (no TABLE record)")
    body = data[_HEAD.size + 16 : len(data) - _TAIL.size]
    *_, marker = _TAIL.unpack_from(data, len(data) - _TAIL.size)
    if marker != TAIL or len(body) % _ITEM.size:
        raise XenkitError(f"{name} is a truncated casync blob index")
    chunks, start = [], 0
    for end, digest in _ITEM.iter_unpack(body):
        if end <= start:
            raise XenkitError(f"{name}: chunk offsets do not increase at {end}")
        chunks.append(Chunk(digest.hex(), start, end - start))
        start = end
    return Index("sha512-256" if flags & SHA512_256 else "sha256", (lo, avg, hi), tuple(chunks))
