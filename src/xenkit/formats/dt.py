"""Device trees: read, query and edit flattened DTBs through libfdt (pylibfdt)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libfdt

from xenkit.errors import XenkitError

# UART drivers Xen on Arm has, by compatible (xen/drivers/char/*-uart.c, ns16550.c).
XEN_UARTS = {
    "arm,pl011": "pl011",
    "arm,sbsa-uart": "pl011",
    "brcm,bcm2835-aux-uart": "ns16550",
    "ns16550": "ns16550",
    "ns16550a": "ns16550",
    "snps,dw-apb-uart": "ns16550",
    "cdns,uart-r1p8": "cadence",
    "xlnx,xuartps": "cadence",
    "samsung,exynos4210-uart": "exynos4210",
    "ti,omap4-uart": "omap",
    "renesas,scif": "scif",
    "mediatek,mt6577-uart": "mt6577",
    "amlogic,meson-uart": "meson",
    "fsl,imx8qm-lpuart": "imx-lpuart",
}

_QUIET = (libfdt.NOTFOUND,)


class DeviceTree:
    def __init__(self, blob: bytes, source: str = "DTB", *, check: bool = True) -> None:
        """`check`: walk every node and property now. False only for a blob xenkit wrote
        itself from a tree that was checked: each walk of the Pi 4's tree is 4 ms, five of
        them a rebuild."""
        self.source = source
        # path -> offset of every node, depth first; made on first use, dropped on any edit
        # (an edit moves the offsets after it). Asking libfdt for a path per node per query
        # was 0.14 s of a Pi 4 build's checks.
        self._index: dict[str, int] | None = None
        try:
            self.fdt = libfdt.Fdt(bytearray(blob))
            if self.fdt.totalsize() > len(blob):
                raise libfdt.FdtException(-libfdt.TRUNCATED)
            if check:
                self._walk_all()
        except libfdt.FdtException as exc:
            raise XenkitError(
                f"{source} is not a valid device tree blob ({exc}): give a .dtb built by dtc"
            ) from None

    def _walk_all(self) -> None:
        """Touch every node and property, so a damaged blob fails here and not mid-edit."""
        off, depth = 0, 0
        while depth >= 0:
            prop = self.fdt.first_property_offset(off, _QUIET)
            while prop >= 0:
                self.fdt.get_property_by_offset(prop)
                prop = self.fdt.next_property_offset(prop, _QUIET)
            if prop != -libfdt.NOTFOUND:
                raise libfdt.FdtException(prop)
            try:
                off, depth = self.fdt.next_node(off, depth)
            except libfdt.FdtException as exc:
                if exc.err == -libfdt.NOTFOUND:
                    return
                raise

    @classmethod
    def load(cls, path: Path, what: str = "") -> DeviceTree:
        """The blob at `path`; errors name it (after `what`, the setting, if given)."""
        try:
            return cls(path.read_bytes(), f"{what} {path}" if what else str(path))
        except OSError as exc:
            raise XenkitError(f"cannot read {path}: {exc.strerror}") from None

    def blob(self) -> bytes:
        """The tree's bytes as they are (not packed: the node index stays)."""
        return bytes(self.fdt.as_bytearray())

    def to_bytes(self) -> bytes:
        self._index = None
        self.fdt.pack()
        return bytes(self.fdt.as_bytearray())

    # -- queries ----------------------------------------------------------------------------
    def offset(self, path: str) -> int:
        found = self._index.get(path) if self._index is not None else None
        if found is not None:
            return found
        try:
            return int(self.fdt.path_offset(path))
        except libfdt.FdtException:
            raise XenkitError(f"{self.source} has no node {path}") from None

    def has_node(self, path: str) -> bool:
        return int(self.fdt.path_offset(path, _QUIET)) >= 0

    def nodes(self) -> Iterator[tuple[str, int]]:
        """Every node as (path, offset), depth first, root included."""
        yield from list(self._nodes().items())

    def _nodes(self) -> dict[str, int]:
        if self._index is not None:
            return self._index
        index: dict[str, int] = {}
        stack: list[str] = []  # the path's names, by depth
        off, depth = 0, 0
        while True:
            del stack[depth:]
            stack.append(self.fdt.get_name(off))
            index["/" + "/".join(stack[1:])] = off
            try:
                off, depth = self.fdt.next_node(off, depth)
            except libfdt.FdtException:
                break
            if depth <= 0:
                break
        self._index = index
        return index

    def prop(self, path: str, name: str) -> bytes | None:
        off = self.offset(path)
        value = self.fdt.getprop(off, name, _QUIET)
        return None if isinstance(value, int) else bytes(value)

    def strings(self, path: str, name: str) -> list[str]:
        raw = self.prop(path, name)
        if not raw:
            return []
        return [s.decode() for s in raw.rstrip(b"\0").split(b"\0")]

    def string(self, path: str, name: str) -> str | None:
        found = self.strings(path, name)
        return found[0] if found else None

    def compatible(self, path: str) -> list[str]:
        return self.strings(path, "compatible")

    def enabled(self, path: str) -> bool:
        return self.string(path, "status") in (None, "okay", "ok")

    def find_compatible(self, compatible: str) -> list[str]:
        return [p for p, _ in self.nodes() if compatible in self.compatible(p)]

    def alias(self, name: str) -> str | None:
        if not self.has_node("/aliases"):
            return None
        return self.string("/aliases", name)

    def resolve_path(self, ref: str) -> str:
        """A node path from an alias ("serial1"), an absolute path, or "alias:options"."""
        ref = ref.split(":", 1)[0]
        path = ref if ref.startswith("/") else self.alias(ref)
        if path is None or not self.has_node(path):
            raise XenkitError(f"{self.source}: {ref!r} is neither a node nor an alias")
        return path

    def mem_reserve(self) -> list[tuple[int, int]]:
        """The /memreserve/ entries as (address, size)."""
        out = []
        for i in range(self.fdt.num_mem_rsv()):
            # pylibfdt returns (address, size), older releases (status, address, size).
            *_, addr, size = self.fdt.get_mem_rsv(i)
            out.append((int(addr), int(size)))
        return out

    # -- edits ------------------------------------------------------------------------------
    def _room(self, extra: int) -> None:
        self._index = None
        self.fdt.resize(self.fdt.totalsize() + extra + 1024)

    def set_string(self, path: str, name: str, value: str) -> None:
        self._room(len(value) + len(name) + 64)
        self.fdt.setprop_str(self.offset(path), name, value)

    def set_bytes(self, path: str, name: str, value: bytes) -> None:
        self._room(len(value) + len(name) + 64)
        self.fdt.setprop(self.offset(path), name, value)

    def add_node(self, parent: str, name: str) -> str:
        """Create parent/name (like U-Boot's `fdt mknod`: an existing node is fine)."""
        path = parent.rstrip("/") + "/" + name
        if not self.has_node(path):
            self._room(len(name) + 64)
            self.fdt.add_subnode(self.offset(parent), name)
        return path

    def phandle(self, path: str) -> int:
        raw = self.prop(path, "phandle")
        return int.from_bytes(raw, "big") if raw else 0

    def delete_prop(self, path: str, name: str) -> None:
        self._index = None
        self.fdt.delprop(self.offset(path), name, _QUIET)

    def disable(self, path: str) -> None:
        self.set_string(path, "status", "disabled")

    def disable_compatible(self, compatibles: tuple[str, ...] | list[str]) -> list[str]:
        """Set status = "disabled" on every node matching one of `compatibles`."""
        wanted = set(compatibles)
        paths = [p for p, _ in self.nodes() if wanted & set(self.compatible(p))]
        for path in paths:
            self.disable(path)
        return paths


def console_uart(tree: DeviceTree, ref: str) -> tuple[str, str]:
    """(node path, Xen driver) of the UART `ref` names; an error if Xen cannot drive it."""
    path = tree.resolve_path(ref)
    compats = tree.compatible(path)
    for c in compats:
        if c in XEN_UARTS:
            if not tree.enabled(path):
                raise XenkitError(f"console {ref} ({path}) is disabled in {tree.source}")
            return path, XEN_UARTS[c]
    raise XenkitError(
        f"console {ref} ({path}, {', '.join(compats) or 'no compatible'}) is not a UART Xen "
        "drives: pick another alias for xen_console"
    )


# -- address translation --------------------------------------------------------------------
# Devicetree spec 0.4, 2.3.5-2.3.9: a node's `reg` is in its parent bus's address space
# (#address-cells/#size-cells of the parent, defaults 2 and 1); `ranges` on a bus maps its
# children's addresses to the bus's parent (absent: not memory-mapped; empty: identity);
# `dma-ranges` maps what bus masters below it emit to the parent's space. As Linux does
# (of_dma_get_range), a bus without dma-ranges inherits the nearest ancestor's.


@dataclass(frozen=True)
class Mapping:
    """One entry of a bus's ranges or dma-ranges."""

    child: int  # address on the child side
    parent: int  # address on the parent side
    size: int

    @property
    def offset(self) -> int:
        """child - parent: what a bus adds to a CPU address (0xC000_0000 on the Pi 4's /soc)."""
        return self.child - self.parent


@dataclass(frozen=True)
class Device:
    """A device node: its registers in CPU physical addresses, and how it reaches RAM."""

    path: str
    compatible: tuple[str, ...]
    enabled: bool
    regs: tuple[tuple[int, int], ...]  # CPU physical (address, size) of each reg entry
    dma: tuple[Mapping, ...] | None  # bus address -> CPU physical; None: unconstrained


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _number(cells: tuple[int, ...]) -> int:
    # PCI addresses are three cells; the first holds flags and the space code.
    if len(cells) == 3:
        cells = cells[1:]
    value = 0
    for c in cells:
        value = value << 32 | c
    return value


class AddressMap:
    """Address translation over a DeviceTree (ranges, dma-ranges, reg)."""

    def __init__(self, tree: DeviceTree) -> None:
        self.tree = tree

    def cells(self, bus: str) -> tuple[int, int]:
        a = self.tree.prop(bus, "#address-cells")
        s = self.tree.prop(bus, "#size-cells")
        return (
            int.from_bytes(a, "big") if a else 2,
            int.from_bytes(s, "big") if s else 1,
        )

    def _u32s(self, path: str, name: str) -> tuple[int, ...] | None:
        raw = self.tree.prop(path, name)
        if raw is None:
            return None
        return tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(0, len(raw), 4))

    def _mappings(self, bus: str, name: str) -> tuple[Mapping, ...] | None:
        """`ranges`/`dma-ranges` of a bus; () for an empty (identity) property."""
        words = self._u32s(bus, name)
        if words is None:
            return None
        ca, cs = self.cells(bus)
        pa, _ = self.cells(_parent(bus)) if bus != "/" else (ca, cs)
        step = ca + pa + cs
        if step == 0 or len(words) % step:
            raise XenkitError(f"{self.tree.source}: {bus} has a malformed {name}")
        out = []
        for i in range(0, len(words), step):
            entry = words[i : i + step]
            out.append(
                Mapping(
                    _number(entry[:ca]),
                    _number(entry[ca : ca + pa]),
                    _number(entry[ca + pa :]),
                )
            )
        return tuple(out)

    def reg(self, path: str) -> list[tuple[int, int]]:
        """`reg` entries in the parent bus's own address space."""
        words = self._u32s(path, "reg") or ()
        ac, sc = self.cells(_parent(path))
        step = ac + sc
        if step == 0:
            return []
        return [
            (_number(words[i : i + ac]), _number(words[i + ac : i + step]))
            for i in range(0, len(words) - step + 1, step)
        ]

    def to_cpu(self, bus: str, addr: int) -> int | None:
        """An address on `bus` (the space of its children) as a CPU physical address."""
        while bus != "/":
            ranges = self._mappings(bus, "ranges")
            if ranges is None:
                return None
            if ranges:
                hit = next((m for m in ranges if m.child <= addr < m.child + m.size), None)
                if hit is None:
                    return None
                addr = hit.parent + (addr - hit.child)
            bus = _parent(bus)
        return addr

    def dma_windows(self, bus: str) -> tuple[Mapping, ...] | None:
        """What masters on `bus` reach: bus address (child) <-> CPU physical (parent).
        None when no bus up to the root constrains DMA."""
        windows: tuple[Mapping, ...] | None = None
        while bus != "/":
            level = self._mappings(bus, "dma-ranges")
            if level:
                if windows is None:
                    windows = level
                else:
                    windows = tuple(_compose(w, level) for w in windows)
                    windows = tuple(w for w in windows if w.size)
            bus = _parent(bus)
        return windows

    def device(self, path: str) -> Device:
        parent = _parent(path)
        regs = []
        for addr, size in self.reg(path):
            cpu = self.to_cpu(parent, addr)
            if cpu is not None:
                regs.append((cpu, size))
        return Device(
            path=path,
            compatible=tuple(self.tree.compatible(path)),
            enabled=self.tree.enabled(path),
            regs=tuple(regs),
            dma=self.dma_windows(parent),
        )

    def devices(self) -> list[Device]:
        """Every node with a compatible string, translated."""
        return [self.device(p) for p, _ in self.nodes_with_compatible()]

    def nodes_with_compatible(self) -> list[tuple[str, int]]:
        return [(p, o) for p, o in self.tree.nodes() if p != "/" and self.tree.compatible(p)]

    def memory(self) -> list[tuple[int, int]]:
        """RAM from every /memory node, in CPU addresses."""
        banks = []
        for path, _ in self.tree.nodes():
            if _parent(path) == "/" and self.tree.string(path, "device_type") == "memory":
                banks += [(a, s) for a, s in self.reg(path) if s]
        return sorted(banks)

    def reserved(self) -> list[tuple[int, int, str]]:
        """/memreserve/ entries and /reserved-memory children with a reg, as (addr, size, why)."""
        out = [(a, s, "/memreserve/") for a, s in self.tree.mem_reserve() if s]
        if self.tree.has_node("/reserved-memory"):
            for path, _ in self.tree.nodes():
                if _parent(path) == "/reserved-memory":
                    for addr, size in self.reg(path):
                        cpu = self.to_cpu("/reserved-memory", addr)
                        if cpu is not None and size:
                            out.append((cpu, size, path))
        return sorted(out)


def _compose(inner: Mapping, outer: tuple[Mapping, ...]) -> Mapping:
    """Map an inner window's parent side through the next bus up (first overlap wins)."""
    for m in outer:
        lo = max(inner.parent, m.child)
        hi = min(inner.parent + inner.size, m.child + m.size)
        if lo < hi:
            return Mapping(inner.child + (lo - inner.parent), m.parent + (lo - m.child), hi - lo)
    return Mapping(inner.child, inner.parent, 0)
