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


@pytest.mark.debian
def test_a_live_first_stage_joins_the_medium_layers_top_first(
    busybox: bytes, tmp_path: Path
) -> None:
    live = initramfs.Live("XENKIT", ("live/build.sqfs", "live/base.sqfs"))
    blob = initramfs.build(busybox, root=live, root_init="/usr/lib/xenkit/init")
    subprocess.run(
        ["cpio", "-id", "--quiet"], input=gzip.decompress(blob), cwd=tmp_path, check=True
    )
    init = (tmp_path / "init").read_text()
    subprocess.run(["sh", "-n", str(tmp_path / "init")], check=True)
    assert 'skip=32808 count=32 2>/dev/null | tr -d \' \')" = "XENKIT" ]' in init
    assert "for layer in live/build.sqfs live/base.sqfs; do" in init
    assert "lowerdir=$lower,upperdir=" in init and "mount --move /run /newroot/run" in init
    assert init.rstrip().endswith("exec switch_root /newroot /usr/lib/xenkit/init")


@pytest.mark.debian
def test_a_guest_asks_dhcp_with_the_hook_it_carries(busybox: bytes, tmp_path: Path) -> None:
    blob = initramfs.build(busybox, guest="g1")
    subprocess.run(
        ["cpio", "-id", "--quiet"], input=gzip.decompress(blob), cwd=tmp_path, check=True
    )
    hook = tmp_path / "etc/udhcpc.script"
    assert hook.stat().st_mode & 0o111
    subprocess.run(["sh", "-n", str(hook)], check=True)
    assert "udhcpc -i eth0 -s /etc/udhcpc.script" in (tmp_path / "init").read_text()
