"""QEMU for a board: the CPU model `xenkit run --cpu` may name, how its disks are read."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from xenkit.config import boards
from xenkit.core.proc import run
from xenkit.errors import XenkitError
from xenkit.run import qemu

# The pc board's QEMU is bookworm's, fetched into the cache: those cases need Debian's packages.
PC = pytest.param("pc", marks=pytest.mark.debian)


@pytest.mark.parametrize(
    ("board", "models"),
    [
        pytest.param("pc", {"qemu64", "max"}, marks=pytest.mark.debian),
        ("qemu-virt", {"max", "cortex-a72"}),
    ],
)
def test_the_cpu_models_are_read_from_the_boards_qemu(board: str, models: set[str]) -> None:
    """The real listing (x86's is followed by its CPUID flags, which are no models)."""
    b = boards.load(board)
    listed = qemu.cpu_models(run([qemu.binary(b), "-cpu", "help"], capture=True).stdout)
    assert models <= listed
    assert "svm" not in listed and "Available" not in listed
    qemu.check_cpu(b, "qemu64,+svm,+npt" if board == "pc" else "max")


def test_qemu_7_2s_listing_of_x86_models_is_read_too() -> None:
    listing = "Available CPUs:\nx86 486    (alias)\nx86 qemu64   QEMU Virtual CPU\n\nflags\n"
    assert qemu.cpu_models(listing) == {"486", "qemu64"}


@pytest.mark.debian
def test_a_cpu_model_qemu_lacks_is_one_line_naming_where_to_look() -> None:
    """Naming the QEMU that was asked: the pc board's is bookworm's, in the cache."""
    b = boards.load("pc")
    with pytest.raises(XenkitError) as exc:
        qemu.check_cpu(b, "pentium9,+svm")
    exe = qemu.binary(b)
    assert exe.endswith("/usr/bin/qemu-system-x86_64")
    assert str(exc.value) == (
        f"--cpu pentium9,+svm: {exe} has no CPU model 'pentium9'; list them with {exe} -cpu help"
    )


@pytest.mark.parametrize("board", ["rpi4", PC])
def test_a_drive_is_read_through_io_uring_where_qemu_and_the_host_allow_it(board: str) -> None:
    """This host (as CI's) has both, and QEMU takes the resulting option."""
    b = boards.load(board)
    with tempfile.NamedTemporaryFile() as f:
        args = qemu.drive(b, f"if=none,id=d,format=raw,file={f.name}")
        assert args[-1].endswith(",aio=io_uring"), args
        head = [qemu.binary(b), "-machine", "none", "-nodefaults", "-display", "none"]
        run([*head, "-S", "-monitor", "stdio", *args], stdin=b"quit\n")


@pytest.mark.debian
def test_a_qemu_that_refuses_io_uring_keeps_its_default(tmp_path: Path) -> None:
    """As a QEMU built without it, or one in a container whose filter refuses the calls:
    the real QEMU, handed an aio mode it rejects in io_uring's place."""
    real = qemu.binary(boards.load("pc"))
    wrapper = tmp_path / "qemu-without-io-uring"
    wrapper.write_text(f'#!/bin/sh\nexec {real} $(echo "$@" | sed s/aio=io_uring/aio=none/)\n')
    wrapper.chmod(0o755)
    assert not qemu._io_uring(str(wrapper))
    assert qemu._io_uring(real)
