from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from xenkit.errors import XenkitError
from xenkit.formats import caibx


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    work = tmp_path_factory.mktemp("caibx")
    blob = os.urandom(700_000)
    (work / "blob").write_bytes(blob)
    subprocess.run(
        [
            "casync",
            "make",
            f"--store={work / 'store'}",
            "--digest=sha256",
            "--chunk-size=16384:65536:262144",
            str(work / "i.caibx"),
            str(work / "blob"),
        ],
        check=True,
        env={**os.environ, "TMPDIR": str(work)},
    )
    return work / "i.caibx", work / "store", blob


def test_the_chunks_cover_the_blob_in_order_named_by_their_sha256(
    made: tuple[Path, Path, bytes],
) -> None:
    index = caibx.parse(made[0].read_bytes())
    blob = made[2]
    assert index.digest == "sha256" and index.chunk_size == (16384, 65536, 262144)
    assert index.size == len(blob) and len(index.chunks) > 3
    for c in index.chunks:
        assert hashlib.sha256(blob[c.offset : c.offset + c.size]).hexdigest() == c.id


@pytest.mark.parametrize("cut", [10, 60, -1, -41])
def test_a_damaged_index_is_one_line(made: tuple[Path, Path, bytes], cut: int) -> None:
    data = made[0].read_bytes()
    with pytest.raises(XenkitError, match="casync blob index"):
        caibx.parse(data[:cut], "i.caibx")


def test_something_else_is_not_an_index() -> None:
    with pytest.raises(XenkitError, match="not a casync blob index"):
        caibx.parse(b"\0" * 200, "x")
