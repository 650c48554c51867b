from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from xenkit.system import initramfs


@pytest.mark.debian
def test_initramfs_holds_busybox_and_an_init_printing_the_banner(
    busybox: bytes, tmp_path: Path
) -> None:
    blob = initramfs.build(busybox)
    assert blob[:2] == b"\x1f\x8b"
    subprocess.run(
        ["cpio", "-id", "--quiet"], input=gzip.decompress(blob), cwd=tmp_path, check=True
    )
    assert (tmp_path / "bin/busybox").read_bytes() == busybox
    init = (tmp_path / "init").read_text()
    assert (tmp_path / "init").stat().st_mode & 0o111
    assert initramfs.READY in init
    assert "mount -t devtmpfs" in init and "/sys/hypervisor/version" in init
    assert (tmp_path / "dev/console").is_char_device()
    # The init is plain POSIX sh: the host's sh must parse it.
    subprocess.run(["sh", "-n", str(tmp_path / "init")], check=True)
    assert initramfs.build(busybox) == blob, "the archive is not reproducible"
