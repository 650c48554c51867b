"""QEMU's options for a board: the CPU model `xenkit run --cpu` may name."""

from __future__ import annotations

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
