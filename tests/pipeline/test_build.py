from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from tests import bootfiles
from tests.bootfiles import XEN_MARKS
from tests.conftest import edited_board, make_spec
from xenkit.bootscripts import uimage
from xenkit.config import boards
from xenkit.errors import XenkitError
from xenkit.formats import dt
from xenkit.images import media
from xenkit.pipeline import build, manifest

pytestmark = pytest.mark.debian


@pytest.fixture(scope="module")
def rpi4_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("b") / "rpi4"
    build.build(make_spec(board="rpi4"), out)
    return out


def test_rpi4_build_has_a_manifest_with_versions_and_checksums(rpi4_build: Path) -> None:
    m = manifest.read(rpi4_build)
    assert m.schema == manifest.SCHEMA and m.target == "rpi"
    names = {p.name for p in m.packages}
    assert {"xen-hypervisor-4.17-arm64", "busybox-static", "u-boot-rpi", "raspi-firmware"} <= names
    assert any(n.startswith("linux-image-6.") for n in names)
    assert all(len(p.sha256) == 64 and p.version for p in m.packages)
    assert m.files["sd.img"].size == (rpi4_build / "sd.img").stat().st_size
    # The manifest reads back as it was written, and the build keeps its board file.
    assert manifest.from_json(manifest.to_json(m), "again") == m
    assert manifest.board(rpi4_build) == boards.load("rpi4").for_release("bookworm")


def test_card_holds_the_boot_chain(rpi4_build: Path) -> None:
    files = media.fat_list(rpi4_build / "sd.img")
    assert {
        "start4.elf",
        "fixup4.dat",
        "config.txt",
        "u-boot.bin",
        "boot.scr",
        "xen",
        "Image.gz",
        "initrd.cpio.gz",
        "bcm2711-rpi-4-b.dtb",
    } <= set(files)
    config = (rpi4_build / "boot/config.txt").read_text().split()
    assert {"kernel=u-boot.bin", "arm_64bit=1", "enable_uart=1", "enable_gic=1"} <= set(config)


def test_hardware_and_emulator_copies_differ_only_where_they_must(rpi4_build: Path) -> None:
    hw = dt.DeviceTree.load(rpi4_build / "boot/bcm2711-rpi-4-b.dtb")
    emu = dt.DeviceTree.load(rpi4_build / "emulate/bcm2711-rpi-4-b.dtb")
    assert hw.enabled("/scb/ethernet@7d580000") and not emu.enabled("/scb/ethernet@7d580000")
    hw_script = uimage.script_text((rpi4_build / "boot/boot.scr").read_bytes())
    emu_script = uimage.script_text((rpi4_build / "emulate/boot.scr").read_bytes())
    assert hw_script == (rpi4_build / "boot/boot.source").read_text()
    assert "clk_ignore_unused" not in hw_script and "clk_ignore_unused" in emu_script
    assert "bootscrub" not in hw_script and '"bootscrub=off console=dtuart' in emu_script
    m = manifest.read(rpi4_build)
    assert m.emulator_xen_cmdline == "bootscrub=off " + m.xen_cmdline


def test_loads_stay_in_the_first_gib_and_clear_of_reserved(rpi4_build: Path) -> None:
    m = manifest.read(rpi4_build)
    spans = sorted((p.address, p.end) for p in m.layout)
    for start, end in spans:
        assert start % (2 << 20) == 0 and end <= 0x3C000000 - (64 << 20)
        assert start >= 0x200000  # firmware page and U-Boot
        assert end <= 0x2400000 or start >= 0x2600000  # boot.scr
        assert end <= 0x8000000 or start >= 0x8200000  # QEMU's DTB
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_rebuild_needs_no_network(rpi4_build: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Any attempt to reach the mirror now fails: apt and urllib both honour the proxy.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    out = rpi4_build.parent / "again"
    m = build.build(make_spec(board="rpi4", xen_extra="loglvl=all"), out)
    assert m.xen_cmdline.endswith("loglvl=all")
    assert "loglvl=all" in (out / "boot/boot.source").read_text()


def test_a_layout_that_cannot_fit_fails_and_leaves_nothing(tmp_path: Path) -> None:
    huge = tmp_path / "huge-Image"
    with huge.open("wb") as f:
        f.truncate(1100 << 20)  # sparse and all zeros: gzip makes it small, so force it raw
    f_head = bytearray(64)
    f_head[56:60] = b"ARM\x64"
    f_head[16:24] = (1100 << 20).to_bytes(8, "little")
    with huge.open("r+b") as f:
        f.write(f_head + XEN_MARKS)
    out = tmp_path / "out"
    with pytest.raises(XenkitError, match="boot modules do not fit: xen"):
        build.build(make_spec(board="rpi4", xen_image=str(huge)), out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["huge-Image"]


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/xenkit-out")
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        target = ro / "out"
    with pytest.raises(XenkitError, match="cannot write to"):
        build.build(make_spec(board="rpi4"), target)


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(XenkitError, match="non-empty directory xenkit did not build"):
        build.build(make_spec(board="rpi4"), tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.debian
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs in a mount namespace")
def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """A real full filesystem (40M, less than the PC image needs), in a private mount
    namespace so the host sees nothing of it."""
    import subprocess
    import sys

    # In a chroot (fresh-ci's), "/" is not a mount point, so unshare's default of making it
    # private fails with EINVAL: make it private where possible, and unmount at the end so
    # nothing stays even where the mount propagated to the host.
    script = (
        f"mount --make-rprivate / 2>/dev/null; "
        f"mount -t tmpfs -o size=40M tmpfs {tmp_path} || exit 99; "
        f"{sys.executable} -m xenkit build --board pc -o {tmp_path}/out; rc=$?; "
        f"ls -A {tmp_path}; umount {tmp_path}; exit $rc"
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "unchanged", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr
    assert errors[0].startswith(f"xenkit: error: no space left for the build in {tmp_path}")
    assert proc.stdout.strip() == "", "a partial build was left behind"


def test_a_guest_file_with_a_space_gets_a_name_the_boot_script_can_load(tmp_path: Path) -> None:
    kernel = bootfiles.image(tmp_path / "my Image", 4096, 1 << 20, body=b"Linux version 6.1.0")
    system = make_spec(board="qemu-virt", domain=[{"name": "g", "kernel": str(kernel)}])
    boot = tmp_path / "boot"
    boot.mkdir()
    (staged,) = build._stage_guests(system, boot, b"busybox", build.KERNEL)
    assert staged.kernel == "domU0-my_Image"
    assert (boot / staged.kernel).read_bytes() == kernel.read_bytes()


def test_a_package_the_release_lacks_is_one_line_naming_both(tmp_path: Path) -> None:
    """A board file that pins bookworm's Xen, built from trixie."""
    pinned = edited_board(
        tmp_path, "qemu-virt", "xen-hypervisor-{xen}-arm64", "xen-hypervisor-4.17-arm64"
    )
    with pytest.raises(XenkitError) as err:
        build.build(make_spec(board=str(pinned), debian="trixie"), tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message
    assert "xen-hypervisor-4.17-arm64 not found for arm64 in Debian trixie" in message
    assert not (tmp_path / "out").exists()


def test_a_file_changed_or_removed_after_it_was_hashed_is_hashed_again_or_left_out(
    tmp_path: Path,
) -> None:
    """Boot files are hashed while the target stages: one the target then rewrites must not
    keep its first digest in the manifest, even rewritten at once with the same size (the
    same mtime, from the kernel's coarse clock), and one it removes is left out."""
    names = ("kept", "changed", "same-tick", "gone", "gone-before")
    kept, changed, same_tick, gone, gone_before = (tmp_path / n for n in names)
    for path in (kept, changed, same_tick, gone, gone_before):
        path.write_bytes(path.name.encode())
    os.utime(kept, ns=(1, 1))  # written long before
    gone_before.unlink()
    hashed = build._digests(tmp_path, [kept, changed, same_tick, gone, gone_before])()
    changed.write_bytes(b"rewritten by the target")
    st = same_tick.stat()
    same_tick.write_bytes(b"SAME-TICK")
    os.utime(same_tick, ns=(st.st_atime_ns, st.st_mtime_ns))
    gone.unlink()
    assert build._entries(tmp_path, hashed) == {
        "kept": manifest.file_entry(kept),
        "changed": manifest.file_entry(changed),
        "same-tick": manifest.file_entry(same_tick),
    }
