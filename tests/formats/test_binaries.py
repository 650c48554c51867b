"""What a Xen or Linux binary is, read from its bytes: version, and for Xen the
architecture it was built for."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.bootfiles import XEN_MARKS, image, x86_xen
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
