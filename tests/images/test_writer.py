"""`xenkit write`: an image onto a stick (here a file standing in for one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xenkit.errors import XenkitError
from xenkit.images import writer


def _image(tmp_path: Path) -> Path:
    image = tmp_path / "live-usb.img"
    image.write_bytes(bytes(range(256)) * 4096 + b"\0" * (1 << 20))
    return image


def test_the_image_lands_byte_for_byte_over_old_data(tmp_path: Path) -> None:
    image = _image(tmp_path)
    stick = tmp_path / "stick"
    stick.write_bytes(b"\xff" * (4 << 20))  # old data, where the image has zeros too
    assert writer.write(image, stick) == image.stat().st_size
    data = stick.read_bytes()
    assert data[: image.stat().st_size] == image.read_bytes()
    assert len(data) == 4 << 20  # a stick does not shrink


def test_a_stick_too_small_is_one_line_and_untouched(tmp_path: Path) -> None:
    stick = tmp_path / "stick"
    stick.write_bytes(b"\xff" * (1 << 20))
    with pytest.raises(
        XenkitError, match=r"live-usb.img \(2.0 MiB\) does not fit on .* \(1.0 MiB\): smaller"
    ):
        writer.write(_image(tmp_path), stick, "smaller")
    assert stick.read_bytes() == b"\xff" * (1 << 20)


def test_a_mounted_stick_or_a_missing_one_is_refused(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sdb1 /media/stick vfat rw 0 0\n/dev/sda2 / ext4 rw 0 0\n")
    assert writer.mounted(Path("/dev/sdb"), mounts) == ["/dev/sdb1"]
    assert writer.mounted(Path("/dev/sdc"), mounts) == []
    with pytest.raises(XenkitError, match="does not exist: give the stick's device"):
        writer.write(_image(tmp_path), tmp_path / "sdz")
    (tmp_path / "l1").symlink_to(tmp_path / "l2")
    (tmp_path / "l2").symlink_to(tmp_path / "l1")
    with pytest.raises(XenkitError, match=r"l1 cannot be opened .Too many levels of symbolic"):
        writer.write(_image(tmp_path), tmp_path / "l1")


def test_the_medium_is_the_last_image_file_not_a_store_or_pxe_tree(tmp_path: Path) -> None:
    (tmp_path / "net.iso").write_bytes(b"iso")
    (tmp_path / "netroot").mkdir()
    (tmp_path / "tftp").mkdir()
    assert writer.medium(tmp_path, ("net.iso", "netroot", "tftp")) == tmp_path / "net.iso"
    with pytest.raises(XenkitError, match="has no image to write"):
        writer.medium(tmp_path, ("netroot",))


def _sparse_stick(where: Path) -> Path:
    """`truncate -s 1G x.img`: big enough by its size, with no blocks behind it."""
    stick = where / "x.img"
    with stick.open("wb") as f:
        f.truncate(1 << 30)
    return stick


def test_an_image_file_on_a_full_filesystem_is_refused_before_a_byte(
    full_dir: Path, tmp_path: Path
) -> None:
    """A sparse stand-in for a stick is big enough by its size, not by the room under it:
    the write failed with ENOSPC (exit 3) after the first blocks."""
    stick = _sparse_stick(full_dir)
    with pytest.raises(XenkitError, match=r"x\.img's filesystem is full: it has no room for"):
        writer.write(_image(tmp_path), stick)
    assert stick.stat().st_blocks == 0


def test_a_write_that_runs_out_of_room_is_one_line(
    full_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room counted is not room promised (metadata, another writer): ENOSPC mid-way too."""
    monkeypatch.setattr(writer, "_room_for", lambda *_: None)
    stick = _sparse_stick(full_dir)
    with pytest.raises(XenkitError, match=r"x\.img's filesystem is full: it has no room for"):
        writer.write(_image(tmp_path), stick)
