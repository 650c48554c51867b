"""What a Xen or Linux binary is, read from its bytes: version, and for Xen the
architecture it was built for."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.bootfiles import LINUX_BANNER, XEN_MARKS, image, x86_xen
from xenkit.errors import XenkitError
from xenkit.formats import binaries


def test_arm64_and_x86_xen_give_their_version_and_architecture(tmp_path: Path) -> None:
    arm = image(tmp_path / "xen", 4096, 4096, XEN_MARKS)
    x86 = x86_xen(tmp_path / "xen.gz")
    assert str(binaries.xen_version(arm, "arm64")) == "4.17.0"
    assert str(binaries.xen_version(x86, "amd64")) == "4.17.5-pre"
    assert binaries.xen_arch(arm.read_bytes()) == "arm64"
    assert binaries.xen_arch(gzip.decompress(x86.read_bytes())) == "amd64"


def test_xen_for_another_architecture_is_refused_naming_the_setting(tmp_path: Path) -> None:
    x86 = x86_xen(tmp_path / "xen.gz")
    with pytest.raises(XenkitError) as exc:
        binaries.xen_version(x86, "arm64", "xen_image (--xen-image)")
    assert str(exc.value) == (
        f"xen_image (--xen-image) {x86} is Xen for amd64, not arm64: give Debian's "
        "xen-hypervisor-*-arm64 build (or yours for arm64)"
    )


def test_text_that_merely_mentions_xen_is_not_xen(tmp_path: Path) -> None:
    fake = tmp_path / "notes.txt"
    fake.write_bytes(b"see" + XEN_MARKS + b"for details\n" * 10)
    with pytest.raises(XenkitError, match="does not look like a Xen hypervisor image"):
        binaries.xen_version(fake)


def test_an_image_without_a_linux_banner_is_not_a_kernel(tmp_path: Path) -> None:
    xen = image(tmp_path / "xen", 4096, 4096, XEN_MARKS)
    with pytest.raises(XenkitError, match=rf"^kernel_image \(--kernel-image\) {xen} does not"):
        binaries.linux_version(xen, "kernel_image (--kernel-image)")


def test_linux_version_from_a_raw_gzipd_or_bzimage_kernel(tmp_path: Path) -> None:
    # The banner deep in the file, as in a real Image (the raw file is mapped, not read).
    raw = tmp_path / "Image"
    with raw.open("wb") as f:
        f.truncate(9 << 20)
        f.seek(8 << 20)
        f.write(LINUX_BANNER)
    packed = tmp_path / "Image.gz"
    packed.write_bytes(gzip.compress(raw.read_bytes()))
    # An x86 bzImage: its banner is compressed; the setup header points at the version.
    bz = bytearray(0x4000)
    bz[0x202:0x206] = b"HdrS"
    bz[0x20E:0x210] = (0x3000 - 0x200).to_bytes(2, "little")
    bz[0x3000:0x3020] = b"6.12.38+deb13-amd64 (x@y) #1\0"
    (tmp_path / "bzImage").write_bytes(bz)
    assert str(binaries.linux_version(raw)) == "6.1.0-13-arm64"
    assert binaries.linux_version(packed).at_least(6, 1)
    assert str(binaries.linux_version(tmp_path / "bzImage")) == "6.12.38+deb13-amd64"


@pytest.mark.parametrize("size", [0, 100])
def test_an_empty_or_missing_kernel_is_one_clear_error(tmp_path: Path, size: int) -> None:
    empty = tmp_path / "Image"
    empty.write_bytes(b"\0" * size)
    with pytest.raises(XenkitError, match=rf"^DOM0_KERNEL {empty} does not look like a Linux"):
        binaries.linux_version(empty, "DOM0_KERNEL")
    with pytest.raises(XenkitError, match=r"^cannot read DOM0_KERNEL \S+/gone: No such file"):
        binaries.linux_version(tmp_path / "gone", "DOM0_KERNEL")
