"""What xenkit reads from the user, and two xenkit runs sharing a cache."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from xenkit.core import files
from xenkit.errors import XenkitError


def test_text_with_a_byte_order_mark_reads_as_if_it_had_none(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_bytes(b"\xef\xbb\xbfboard = 'pc'\n")
    assert files.read_text(f, "config", "fix") == "board = 'pc'\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00x", "config {} is not UTF-8 text: give TOML"),
        (None, "config {} is a directory: give TOML"),
    ],
)
def test_what_is_not_text_is_one_line_naming_it(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    f = tmp_path / "c.toml"
    if content is None:
        f.mkdir()
    else:
        f.write_bytes(content)
    with pytest.raises(XenkitError) as exc:
        files.read_text(f, "config", "give TOML")
    assert str(exc.value) == message.format(f)


def _hold(lock: Path, log: Path) -> None:
    with files.locked(lock):
        with log.open("a") as f:
            f.write("in\n")
        time.sleep(0.3)
        with log.open("a") as f:
            f.write("out\n")


def test_a_lock_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    log = tmp_path / "log"
    procs = [
        multiprocessing.Process(target=_hold, args=(tmp_path / "x.lock", log)) for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert log.read_text() == "in\nout\n" * 3


def test_an_endless_file_is_refused_not_read_until_memory_runs_out() -> None:
    with pytest.raises(XenkitError, match=r"config /dev/zero is over 4 MiB: give TOML"):
        files.read_text(Path("/dev/zero"), "config", "give TOML")
