from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenkit.bootscripts import uimage


def _mkimage(tmp: Path, text: bytes, *extra: str) -> bytes:
    src, out = tmp / "in.txt", tmp / "out.scr"
    src.write_bytes(text)
    subprocess.run(
        ["mkimage", "-A", "arm64", "-T", "script", "-C", "none", *extra, "-d", str(src), str(out)],
        check=True,
        capture_output=True,
        env={"SOURCE_DATE_EPOCH": "1700000000"},
    )
    return out.read_bytes()


@pytest.mark.parametrize(
    "text", [b"echo hi\n", b"a", b"ab", b"abc", b"abcd", 'fdt set /chosen x "\u00e9"\n'.encode()]
)
def test_script_image_is_byte_identical_to_mkimage(tmp_path: Path, text: bytes) -> None:
    assert uimage.script_image(text, timestamp=1700000000) == _mkimage(tmp_path, text)


def test_name_load_and_entry_match_mkimage(tmp_path: Path) -> None:
    ours = uimage.script_image(
        b"boot\n", name="xenkit boot", load=0x2400000, entry=0x2400000, timestamp=1700000000
    )
    theirs = _mkimage(
        tmp_path, b"boot\n", "-n", "xenkit boot", "-a", "0x2400000", "-e", "0x2400000"
    )
    assert ours == theirs


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=3000))  # mkimage refuses an empty file
def test_random_scripts_match_mkimage(
    tmp_path_factory: pytest.TempPathFactory, text: bytes
) -> None:
    tmp = tmp_path_factory.mktemp("mk")
    assert uimage.script_image(text, timestamp=1700000000) == _mkimage(tmp, text)


def test_script_text_round_trips_and_checks_crcs() -> None:
    image = uimage.script_image("echo ok\n")
    assert uimage.script_text(image) == "echo ok\n"
    broken = bytearray(image)
    broken[-1] ^= 1
    with pytest.raises(ValueError, match="data CRC"):
        uimage.script_text(bytes(broken))
    broken = bytearray(image)
    broken[20] ^= 1
    with pytest.raises(ValueError, match="header CRC"):
        uimage.script_text(bytes(broken))


def test_mkimage_reads_our_image(tmp_path: Path) -> None:
    path = tmp_path / "boot.scr"
    path.write_bytes(uimage.script_image("echo ok\n"))
    out = subprocess.run(
        ["mkimage", "-l", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "AArch64 Linux Script" in out and "Image 0: 8 Bytes" in out
