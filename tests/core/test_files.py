"""What xenkit reads from the user, and two xenkit runs sharing a cache."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import threading
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


def test_an_endless_file_is_refused_not_read_until_memory_runs_out(tmp_path: Path) -> None:
    """/dev/zero read forever; a device is refused outright now, and a huge file is not read
    past the cap."""
    with pytest.raises(XenkitError, match=r"config /dev/zero is a device or socket"):
        files.read_text(Path("/dev/zero"), "config", "give TOML")
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.truncate(1 << 40)  # sparse: a terabyte of zeros, on no disk
    with pytest.raises(XenkitError, match=r"config .*big.toml is over 4 MiB: give TOML"):
        files.read_text(big, "config", "give TOML")


def test_what_is_no_file_is_named(tmp_path: Path) -> None:
    """A symlink loop (Path.resolve raised RuntimeError), a device and a FIFO where a
    binary belongs (reading it waited forever for a writer): one line each."""
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    os.mkfifo(tmp_path / "fifo")
    for path, says in (
        (tmp_path / "l1", "is a symlink loop"),
        (tmp_path / "none", "does not exist"),
        (tmp_path, "is a directory"),
        (Path("/dev/null"), "is a device or socket, not a file"),
        (tmp_path / "fifo", "is a FIFO, not a file"),
    ):
        with pytest.raises(XenkitError, match=f"^kernel {re.escape(str(path))} {says}: fix it$"):
            files.binary(path, "kernel", "fix it")


def test_a_fifo_config_is_read_from_its_writer_or_given_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell's <(...) is a FIFO with a writer: read. One nothing writes to: refused after
    FIFO_WAIT instead of waiting forever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("w") as f:
            f.write('board = "rpi4"\n')

    writer = threading.Thread(target=write)
    writer.start()
    assert files.read_text(fifo, "config", "give a file") == 'board = "rpi4"\n'
    writer.join()
    monkeypatch.setattr(files, "FIFO_WAIT", 0.2)
    started = time.monotonic()
    with pytest.raises(XenkitError, match="is a FIFO nothing wrote to in 0 s"):
        files.read_text(fifo, "config", "give a file")
    assert time.monotonic() - started < 5


def test_a_full_disk_is_one_line_naming_the_target_and_leaves_nothing(full_dir: Path) -> None:
    """A temporary file whose write failed was left behind (`.b.source.XXXX`)."""
    outputs: dict[Path, bytes | str] = {
        full_dir / "b.source": "echo hi\n",
        full_dir / "b.scr": bytes(1 << 16),
    }
    with pytest.raises(XenkitError) as exc:
        files.write_atomically(outputs)
    assert str(exc.value) == (
        f"cannot write {full_dir / 'b.source'}: its filesystem is full: free some space or "
        "write elsewhere"
    )
    assert list(full_dir.iterdir()) == []


def test_a_sparse_copy_skips_holes_unread_and_keeps_zeros_as_holes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    with src.open("wb") as f:
        f.truncate(64 << 20)  # a hole of 64 MiB, data at 8 MiB and at the very end
        f.seek(8 << 20)
        f.write(b"\1" * 5000 + bytes(3 << 20) + b"\2" * 10)
        f.seek((64 << 20) - 3)
        f.write(b"end")
    done = list(files.copy_sparse(src, tmp_path / "dst"))
    dst = tmp_path / "dst"
    assert sum(done) == src.stat().st_size == dst.stat().st_size
    assert dst.read_bytes() == src.read_bytes()
    # The written zeros stay unallocated too: 2 MiB of data blocks at most, not 64 or 3.
    assert dst.stat().st_blocks * 512 <= 3 << 20
    # Into an open image at an offset, as a partition is.
    fd = os.open(tmp_path / "disk", os.O_CREAT | os.O_WRONLY, 0o644)
    os.ftruncate(fd, 80 << 20)
    list(files.copy_sparse(src, fd, 4 << 20))
    os.close(fd)
    disk = (tmp_path / "disk").read_bytes()
    assert disk[4 << 20 : 68 << 20] == src.read_bytes() and disk.count(0) == len(disk) - 5013


def test_what_a_killed_build_left_is_cleaned_but_a_running_ones_is_not(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = tmp_path / ".out.partial-999999999-abc"  # no such process
    mine = files.new_dir_beside(out)  # this process: still running
    other = tmp_path / ".other.partial-1-x"  # another output's
    for d in (dead, other):
        d.mkdir()
    files.clean_beside(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", mine.name, other.name])
    # replace_dir's fallback killed between its renames: the old output comes back.
    out.rename(tmp_path / ".out.old")
    files.clean_beside(out)
    assert out.is_dir() and not (tmp_path / ".out.old").exists()


def test_a_sparse_copy_of_many_small_extents_keeps_each_in_place(tmp_path: Path) -> None:
    """Extents read by position: after SEEK_HOLE, a buffered reader served the next extent
    from its stale buffer where st_blksize exceeds the hole size (found in review)."""
    src = tmp_path / "src"
    with src.open("wb") as f:
        f.truncate(1 << 20)
        for at, n, byte in ((0, 12 << 10, 1), (16 << 10, 4 << 10, 2), (40 << 10, 4 << 10, 3)):
            f.seek(at)
            f.write(bytes([byte]) * n)
    list(files.copy_sparse(src, tmp_path / "dst"))
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()


def test_a_files_digest_leaves_out_its_zero_mibs_holes_or_written(tmp_path: Path) -> None:
    """A card image's digest skips its all-zero MiB blocks, holes unread (0.3 s of a 0.8 s
    rebuild went on hashing zeros); the same bytes give the same entry, sparse or not."""
    from tests.manifests import entry_of

    mib = 1 << 20
    data = bytearray(9 * mib + 1000)
    data[5] = 1  # MiB 0: data
    data[3 * mib + mib // 2] = 2  # MiB 3: data inside; 1-2 zero
    data[9 * mib + 999] = 3  # the last, short block: data; 4-8 zero
    written = tmp_path / "written"
    written.write_bytes(bytes(data))
    sparse = tmp_path / "sparse"
    with sparse.open("wb") as f:
        f.truncate(len(data))
        for where in (5, 3 * mib + mib // 2, 9 * mib + 999):
            f.seek(where)
            f.write(bytes([data[where]]))
    want = entry_of(bytes(data))
    assert want.zero_mib == ((1, 3), (4, 9))
    for path in (written, sparse):
        assert (want.sha256, want.zero_mib) == files.sha256_sparse(path)
    plain = tmp_path / "plain"
    plain.write_bytes(b"xen" * 1000)
    assert files.sha256_sparse(plain) == (files.sha256(plain), ())
    empty = tmp_path / "empty"
    empty.write_bytes(bytes(mib + 10))
    assert files.sha256_sparse(empty) == (hashlib.sha256(b"").hexdigest(), ((0, 2),))
