from __future__ import annotations

import subprocess
from pathlib import Path

from xenkit.formats.cpio import Archive


def _sample() -> Archive:
    arc = Archive()
    arc.dir("bin")
    arc.file("bin/hello", b"hello world\n", 0o755)
    arc.file("empty", b"")
    arc.file("odd", b"x" * 513)
    arc.symlink("bin/sh", "hello")
    arc.chardev("console", 5, 1)
    return arc


def test_cpio_tool_lists_every_entry_with_modes(tmp_path: Path) -> None:
    data = _sample().to_bytes()
    out = subprocess.run(["cpio", "-itv"], input=data, capture_output=True, check=True).stdout
    lines = out.decode().splitlines()
    names = [line.split()[-1] if "->" not in line else line.split()[-3] for line in lines]
    assert names == ["bin", "bin/hello", "empty", "odd", "bin/sh", "console"]
    assert lines[0].startswith("drwxr-xr-x")
    assert lines[1].startswith("-rwxr-xr-x")
    assert lines[4].startswith("lrwxrwxrwx") and lines[4].endswith("bin/sh -> hello")
    assert lines[5].startswith("crw-------") and "5,   1" in lines[5]


def test_cpio_tool_extracts_identical_contents(tmp_path: Path) -> None:
    subprocess.run(["cpio", "-id", "--quiet"], input=_sample().to_bytes(), cwd=tmp_path, check=True)
    assert (tmp_path / "bin/hello").read_bytes() == b"hello world\n"
    assert (tmp_path / "odd").read_bytes() == b"x" * 513
    assert (tmp_path / "empty").read_bytes() == b""
    assert (tmp_path / "bin/sh").readlink() == Path("hello")


def test_newc_framing_as_the_kernel_reads_it() -> None:
    # buffer-format.rst: "070701", 13 8-digit hex fields, name padded so header+name is a
    # multiple of 4, data padded to 4, archive ends with TRAILER!!!
    data = _sample().to_bytes()
    pos, names = 0, []
    while True:
        assert data[pos : pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        filesize, namesize = fields[6], fields[11]
        name = data[pos + 110 : pos + 110 + namesize]
        assert name.endswith(b"\0")
        names.append(name[:-1].decode())
        pos += 110 + namesize
        pos += -pos % 4
        pos += filesize + (-filesize % 4)
        if names[-1] == "TRAILER!!!":
            break
    assert pos == len(data)
    assert names[-1] == "TRAILER!!!" and "bin/hello" in names


def test_output_is_reproducible() -> None:
    assert _sample().to_bytes() == _sample().to_bytes()
