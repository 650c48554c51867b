"""The two device trees a device-tree board's build carries: the hardware's, and the
emulator's copy without the blocks QEMU does not model."""

from __future__ import annotations

from xenkit.config.boards import Board
from xenkit.core import log
from xenkit.formats import dt
from xenkit.system.artifacts import Artifacts


def hardware(board: Board, art: Artifacts) -> bytes:
    """The packaged (or QEMU-generated) DTB, with serial aliases as Xen's console needs."""
    tree = dt.DeviceTree.load(art.files["dtb"])
    if board.xen_console:
        dt.console_uart(tree, board.xen_console)
    return tree.to_bytes()


def emulation(board: Board, dtb: bytes) -> bytes:
    """The emulator's copy of `dtb` (hardware()'s)."""
    tree = dt.DeviceTree(dtb, board.dtb_name, check=False)
    disabled = tree.disable_compatible(board.emulate.disable)
    log.info("emulation DTB: disabled %d nodes QEMU does not model", len(disabled))
    for compatible, prop in board.emulate.drop_properties:
        for path in tree.find_compatible(compatible):
            if tree.prop(path, prop) is not None:
                tree.delete_prop(path, prop)
    return tree.to_bytes()
