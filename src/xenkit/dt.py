"""Device trees: read, query and edit flattened DTBs through libfdt (pylibfdt)."""

from __future__ import annotations

from collections.abc import Iterator
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
    def __init__(self, blob: bytes, source: str = "DTB") -> None:
        self.source = source
        try:
            self.fdt = libfdt.Fdt(bytearray(blob))
            if self.fdt.totalsize() > len(blob):
                raise libfdt.FdtException(-libfdt.TRUNCATED)
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
    def load(cls, path: Path) -> DeviceTree:
        try:
            return cls(path.read_bytes(), str(path))
        except OSError as exc:
            raise XenkitError(f"cannot read {path}: {exc.strerror}") from None

    def to_bytes(self) -> bytes:
        self.fdt.pack()
        return bytes(self.fdt.as_bytearray())

    # -- queries ----------------------------------------------------------------------------
    def offset(self, path: str) -> int:
        try:
            return int(self.fdt.path_offset(path))
        except libfdt.FdtException:
            raise XenkitError(f"{self.source} has no node {path}") from None

    def has_node(self, path: str) -> bool:
        return int(self.fdt.path_offset(path, _QUIET)) >= 0

    def nodes(self) -> Iterator[tuple[str, int]]:
        """Every node as (path, offset), depth first, root included."""
        off, depth = 0, 0
        while True:
            yield self.fdt.get_path(off), off
            try:
                off, depth = self.fdt.next_node(off, depth)
            except libfdt.FdtException:
                return
            if depth <= 0:
                return

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
        self.fdt.resize(self.fdt.totalsize() + extra + 1024)

    def set_string(self, path: str, name: str, value: str) -> None:
        self._room(len(value) + len(name) + 64)
        self.fdt.setprop_str(self.offset(path), name, value)

    def delete_prop(self, path: str, name: str) -> None:
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
