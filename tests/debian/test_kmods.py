from __future__ import annotations

import struct
from pathlib import Path

import pytest

from xenkit.debian.kmods import ModuleTree, canonical, modinfo
from xenkit.errors import XenkitError


def _elf_with_modinfo(fields: bytes) -> bytes:
    """A minimal ELF64 LE object with a .modinfo section, laid out by hand."""
    shstr = b"\0.modinfo\0.shstrtab\0"
    body_off = 64
    mod_off = body_off
    str_off = mod_off + len(fields)
    sh_off = (str_off + len(shstr) + 7) // 8 * 8
    header = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 1, 183, 1, 0, 0, sh_off, 0, 64, 0, 0, 64, 3, 2)
    data = bytearray(header + fields + shstr)
    data += b"\0" * (sh_off - len(data))
    data += b"\0" * 64  # the null section
    data += struct.pack("<IIQQQQIIQQ", 1, 1, 0, 0, mod_off, len(fields), 0, 0, 1, 0)
    data += struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, str_off, len(shstr), 0, 0, 1, 0)
    return bytes(data)


def test_modinfo_reads_the_section() -> None:
    blob = _elf_with_modinfo(b"license=GPL\0depends=a,b-c\0name=x\0")
    assert modinfo(blob) == {"license": "GPL", "depends": "a,b-c", "name": "x"}


def test_modinfo_refuses_what_is_not_elf64_le() -> None:
    with pytest.raises(ValueError):
        modinfo(b"\x7fELF\x01\x01" + b"\0" * 80)


def test_names_are_canonical() -> None:
    assert canonical("xen-netback.ko") == canonical("xen_netback") == "xen_netback"


def _tree(tmp_path: Path, mods: dict[str, str], builtin: tuple[str, ...] = ()) -> ModuleTree:
    root = tmp_path / "lib/modules/6.1.0-test"
    for name, deps in mods.items():
        path = root / "kernel" / f"{name}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_elf_with_modinfo(f"depends={deps}\0".encode()))
    root.mkdir(parents=True, exist_ok=True)
    (root / "modules.builtin").write_text("".join(f"kernel/{b}.ko\n" for b in builtin))
    return ModuleTree(root)


def test_dependencies_load_first_and_once(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"a": "b,c", "b": "c", "c": "", "d": "c,core"}, builtin=("core",))
    order = [p.stem for p in tree.load_order(["a", "d"])]
    assert order == ["c", "b", "a", "d"]


def test_unknown_modules_and_cycles_are_errors(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {"a": "b", "b": "a"})
    with pytest.raises(XenkitError, match="cycle"):
        tree.load_order(["a"])
    with pytest.raises(XenkitError, match="nope"):
        tree.load_order(["nope"])


@pytest.mark.debian
def test_debian_kernel_toolstack_modules(module_tree: ModuleTree) -> None:
    """On Debian's real kernel: netback needs nothing else, the bridge needs stp and llc,
    ext4 needs jbd2 and mbcache, and each comes before its user."""
    order = [canonical(p.name) for p in module_tree.load_order(["xen-netback", "bridge", "ext4"])]
    for before, after in (("llc", "stp"), ("stp", "bridge"), ("jbd2", "ext4"), ("mbcache", "ext4")):
        assert order.index(before) < order.index(after)
    assert len(order) == len(set(order))
    assert "xen_netback" in order
