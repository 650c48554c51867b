"""QEMU for a board: the CPU model `xenkit run --cpu` may name, how its disks are read."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from xenkit.config import boards
from xenkit.core.proc import run
from xenkit.errors import XenkitError
from xenkit.run import qemu


@pytest.mark.parametrize(
    ("board", "models"), [("pc", {"qemu64", "max"}), ("qemu-virt", {"max", "cortex-a72"})]
)
def test_the_cpu_models_are_read_from_the_boards_qemu(board: str, models: set[str]) -> None:
    """The real listing (x86's is followed by its CPUID flags, which are no models)."""
    b = boards.load(board)
    listed = qemu.cpu_models(run([qemu.binary(b), "-cpu", "help"], capture=True).stdout)
    assert models <= listed
    assert "svm" not in listed and "Available" not in listed
    qemu.check_cpu(b, "qemu64,+svm,+npt" if board == "pc" else "max")


def test_a_cpu_model_qemu_lacks_is_one_line_naming_where_to_look() -> None:
    with pytest.raises(XenkitError) as exc:
        qemu.check_cpu(boards.load("pc"), "pentium9,+svm")
    assert str(exc.value) == (
        "--cpu pentium9,+svm: qemu-system-x86_64 has no CPU model 'pentium9'; "
        "list them with qemu-system-x86_64 -cpu help"
    )


@pytest.mark.parametrize("board", ["rpi4", "pc"])
def test_a_drive_is_read_through_io_uring_where_qemu_and_the_host_allow_it(board: str) -> None:
    """This host (as CI's) has both, and QEMU takes the resulting option."""
    b = boards.load(board)
    with tempfile.NamedTemporaryFile() as f:
        args = qemu.drive(b, f"if=none,id=d,format=raw,file={f.name}")
        assert args[-1].endswith(",aio=io_uring"), args
        head = [qemu.binary(b), "-machine", "none", "-nodefaults", "-display", "none"]
        run([*head, "-S", "-monitor", "stdio", *args], stdin=b"quit\n")


def test_a_qemu_that_refuses_io_uring_keeps_its_default(tmp_path: Path) -> None:
    """As a QEMU built without it, or one in a container whose filter refuses the calls:
    the real QEMU, handed an aio mode it rejects in io_uring's place."""
    real = qemu.binary(boards.load("pc"))
    wrapper = tmp_path / "qemu-without-io-uring"
    wrapper.write_text(f'#!/bin/sh\nexec {real} $(echo "$@" | sed s/aio=io_uring/aio=none/)\n')
    wrapper.chmod(0o755)
    assert not qemu._io_uring(str(wrapper))
    assert qemu._io_uring(real)
