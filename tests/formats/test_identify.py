"""What a user's file is, from its first bytes, and the one line that refuses it."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.bootfiles import CPIO_HEAD, image
from tests.conftest import make_spec
from xenkit.errors import XenkitError
from xenkit.formats import identify


def _arm64(tmp_path: Path) -> bytes:
    return image(tmp_path / "Image", 4096, 0x10000).read_bytes()


def test_each_kind_is_named(tmp_path: Path) -> None:
    arm64 = _arm64(tmp_path)
    bz = bytearray(0x400)
    bz[0x202:0x206] = b"HdrS"
    assert identify.what(arm64) == "arm64 Image"
    assert identify.what(gzip.compress(arm64)) == "gzip'd arm64 Image"
    assert identify.what(bytes(bz)) == "x86 bzImage"
    assert identify.what(CPIO_HEAD) == "cpio archive"
    assert identify.what(gzip.compress(CPIO_HEAD)) == "gzip'd cpio archive"
    assert identify.what(lzma.compress(CPIO_HEAD)) == "xz'd cpio archive"
    assert identify.what(b"\xd0\x0d\xfe\xed" + bytes(60)) == "device tree blob"
    assert identify.what(b"\x7fELF\x02\x01") == "ELF file"
    assert identify.what(b"\x8c\xff\x7c\xf9\x08\0\0\0XenFlask\0") == "Xen FLASK policy"
    assert identify.what(b"root:x:0:0:root:/root:/bin/bash\n") == "text"
    assert identify.what(b"") == "an empty file"
    assert identify.what(b"\x1f\x8b" + bytes(100)) == "damaged gzip data"


@given(st.binary(max_size=3000))
def test_any_bytes_get_a_name_and_never_an_exception(data: bytes) -> None:
    assert identify.what(data)
    assert identify.what(gzip.compress(data)).startswith("gzip'd ")


def test_a_file_in_the_wrong_place_is_one_line_naming_it(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(XenkitError) as exc:
        identify.require(passwd, identify.KERNELS["arm64"], "[[domain]] rtos: kernel")
    assert str(exc.value) == (
        f"[[domain]] rtos: kernel: {passwd} looks like text, not arm64 Image, gzip'd arm64 "
        "Image or U-Boot uImage: give one of those"
    )


@pytest.mark.parametrize(
    ("board", "key", "value", "message"),
    [
        ("rpi4", "domain", {"name": "rtos", "kernel": "PASSWD"}, "rtos: kernel: .* text"),
        ("rpi4", "domain", {"name": "d", "ramdisk": "PASSWD"}, "d: ramdisk: .* text"),
        ("pc", "guest", {"name": "g", "kernel": "Image"}, "g: kernel: .* arm64 Image, not x86"),
        ("pc", "kernel_image", "Image", "kernel_image .* arm64 Image, not x86 bzImage"),
        ("rpi4", "xen_image", "PASSWD", "PASSWD does not look like a Xen hypervisor image"),
    ],
)
def test_the_build_refuses_a_file_that_is_not_what_its_place_needs(
    tmp_path: Path, board: str, key: str, value: object, message: str
) -> None:
    """Before anything is downloaded, and naming the user's path (not a copy of it)."""
    (tmp_path / "PASSWD").write_text("root:x:0:0:root:/root:/bin/bash\n")
    _arm64(tmp_path)

    def here(v: object) -> object:
        if isinstance(v, dict):
            return {k: here(x) for k, x in v.items()}
        return str(tmp_path / v) if v in ("PASSWD", "Image") else v

    setting = [here(value)] if key in ("domain", "guest") else here(value)
    with pytest.raises(XenkitError, match=message.replace("PASSWD", str(tmp_path / "PASSWD"))):
        make_spec(board=board, **{key: setting})
