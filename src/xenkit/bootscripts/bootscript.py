"""U-Boot boot scripts for Xen (Dom0, dom0less domains, cpupools, overlays) or plain Linux.

One generator for `xenkit uboot-script` (ImageBuilder's layout and /chosen content) and for
`xenkit build` (its own load planner): a BootConfig plus where each file lands becomes the
script text. `dry_run` reads a script back, applies its `fdt` edits to the DTB with libfdt and
checks its loads, which is what `--explain` shows and what the tests compare.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xenkit.bootscripts import layout
from xenkit.config.bootconfig import BootConfig
from xenkit.core import spans
from xenkit.core.sizes import MiB, human
from xenkit.core.spans import Reserved
from xenkit.errors import XenkitError
from xenkit.formats import dt, kernel

SLOT = 2 * MiB
LOW_SCRIPT = 0xC00000
KERNEL_COMPAT = ("xen,linux-zimage", "xen,multiboot-module", "multiboot,module")
RAMDISK_COMPAT = ("xen,linux-initrd", "xen,multiboot-module", "multiboot,module")
POLICY_COMPAT = ("xen,xsm-policy", "xen,multiboot-module", "multiboot,module")
DOMU_KERNEL = ("multiboot,kernel", "multiboot,module")
DOMU_RAMDISK = ("multiboot,ramdisk", "multiboot,module")
DOMU_DTB = ("multiboot,device-tree", "multiboot,module")


@dataclass(frozen=True)
class Load:
    """One file the script loads: where, and how much room it takes."""

    role: str  # dom0, dom0-ramdisk, domU0, domU0-ramdisk, domU0-dtb, xen, xen-policy,
    #            overlay0, dtb, linux, linux-ramdisk
    path: str  # as written in the load command
    addr: int
    size: int  # what `reg` says: the Image header's size if larger than the file
    file_size: int
    slot: int  # bytes reserved in the layout

    @property
    def end(self) -> int:
        return self.addr + self.slot


def file_sizes(root: Path, path: str, role: str, fdt_room: int = 0) -> tuple[int, int, int]:
    """(reg size, file size, slot size) of one file."""
    file = root / path
    file_size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(64)
    size = kernel.loaded_size(head, file_size)
    slot = size + fdt_room if role == "dtb" else size
    return size, file_size, slot


def script_address(cfg: BootConfig) -> int:
    """Where ImageBuilder expects the script: 2 MiB into RAM, but not below 12 MiB."""
    return max(cfg.memory_start + SLOT, LOW_SCRIPT)


def sized(cfg: BootConfig, root: Path, fdt_room: int) -> list[tuple[str, str, int, int, int]]:
    """(role, path, reg size, file size, slot) for every file, in ImageBuilder's order."""
    return [(role, path, *file_sizes(root, path, role, fdt_room)) for role, path in cfg.files()]


def place(files: Sequence[tuple[str, str, int, int, int]], win: layout.Window,
          fix: str = "") -> list[Load]:  # fmt: skip
    """Lay the files out in the order given."""
    placed = layout.plan([layout.Item(f[0], f[4], f[3]) for f in files], win, fix)
    return [Load(role, path, p.addr, size, fsize, p.size)
            for (role, path, size, fsize, _), p in zip(files, placed, strict=True)]  # fmt: skip


def plan_imagebuilder(cfg: BootConfig, root: Path, reserved: Sequence[tuple[int, int]],
                      fdt_room: int) -> list[Load]:  # fmt: skip
    """ImageBuilder's layout: from 2 MiB above the script, in its order, each file 2 MiB
    aligned, around reserved memory, ending 2 MiB below MEMORY_END."""
    win = layout.Window(
        script_address(cfg) + SLOT,
        cfg.memory_end - SLOT,
        tuple(Reserved(s, n, "reserved memory") for s, n in reserved),
    )
    if win.end <= win.start:
        raise XenkitError(
            f"MEMORY_END {cfg.memory_end:#x} leaves no room for the boot files: they go from "
            f"{win.start:#x} (2 MiB above the script) to 2 MiB below MEMORY_END: raise it"
        )
    fix = f"Raise MEMORY_END (now {cfg.memory_end:#x}) or load fewer or smaller images"
    return place(sized(cfg, root, fdt_room), win, fix)


# -- the script text --------------------------------------------------------------------------
def _x(n: int) -> str:
    return f"0x{n:X}"


def _cells64(*values: int) -> str:
    return "<" + " ".join(f"{_x(v >> 32)} {_x(v & 0xFFFFFFFF)}" for v in values) + ">"


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def _strings(values: Sequence[str]) -> str:
    return " ".join(_q(v) for v in values)


@dataclass
class _Script:
    """The script's lines as they are written."""

    lines: list[str] = field(default_factory=list)

    def set(self, path: str, prop: str, value: str = "") -> None:
        name = prop.replace("#", "\\#")
        self.lines.append(f"fdt set {path} {name} {value}".rstrip())

    def node(self, parent: str, name: str) -> str:
        self.lines.append(f"fdt mknod {parent} {name}")
        return f"{parent.rstrip('/')}/{name}"

    def module(self, parent: str, name: str, compat: Sequence[str], load: Load) -> str:
        path = self.node(parent, name)
        self.set(path, "compatible", _strings(compat))
        self.set(path, "reg", _cells64(load.addr, load.size))
        return path


def resize_for(cfg: BootConfig) -> int:
    """Bytes `fdt resize` must add for the script's edits: command lines, modules, domains
    (ImageBuilder always asks for 1024, which 30-odd guests outgrow)."""
    text = len(cfg.xen_cmdline) + (len(cfg.dom0.cmdline) if cfg.dom0 else 0)
    text += sum(len(d.cmdline) + 64 * len(d.passthrough_paths) for d in cfg.domains)
    nodes = 3 + 4 * len(cfg.domains) + 2 * len(cfg.cpupools)
    return max(1024, (text + nodes * 160 + 4095) // 4096 * 4096)


def generate(
    cfg: BootConfig,
    loads: Sequence[Load],
    tree: dt.DeviceTree | None = None,
    *,
    load_cmd: str | None = None,
    fdt_resize: int | None = None,
    preamble: Sequence[str] = (),
    extra_cmds: str = "",
    echo: bool = False,
) -> str:
    """The script: load every file, describe it in /chosen, start Xen (or Linux).
    `tree` (the DTB being edited) is needed for cpupools, to find the CPUs' phandles.
    `load_cmd` is a command the address and path follow, or a template with {addr} and
    {path} in it."""
    at = {ld.role: ld for ld in loads}
    prefix = load_cmd if load_cmd is not None else cfg.load_cmd
    s = _Script(list(preamble))
    first: dict[str, Load] = {}
    for ld in loads:
        earlier = first.setdefault(ld.path, ld)
        if earlier is not ld:
            # The same file again (a dom0less guest on Dom0's kernel): a copy in memory
            # takes no time, a second read from the card or the network does.
            if echo:
                s.lines.append(f"echo 'xenkit: copying {ld.path} to {_x(ld.addr)}'")
            s.lines.append(f"cp.b {_x(earlier.addr)} {_x(ld.addr)} {_x(ld.file_size)}")
            continue
        if echo:
            s.lines.append(f"echo 'xenkit: loading {ld.path} at {_x(ld.addr)}'")
        if "{path}" in prefix:  # a template: the address and path go where it says
            line = prefix.replace("{addr}", _x(ld.addr)).replace("{path}", ld.path)
        else:
            line = f"{prefix} {_x(ld.addr)} {ld.path}"
        s.lines.append(line + (" || exit" if echo else ""))
    dtb = at["dtb"]
    s.lines.append(f"fdt addr {_x(dtb.addr)}")
    s.lines.append(f"fdt resize {fdt_resize if fdt_resize is not None else resize_for(cfg)}")
    for i in range(len(cfg.dt_overlays)):
        s.lines.append(f"fdt apply {_x(at[f'overlay{i}'].addr)}")
    if cfg.linux:
        s.set("/chosen", "bootargs", _q(cfg.linux.cmdline))
        if "linux-ramdisk" in at:
            rd = at["linux-ramdisk"]
            s.set("/chosen", "linux,initrd-start", f"<{_x(rd.addr)}>")
            s.set("/chosen", "linux,initrd-end", f"<{_x(rd.addr + rd.file_size)}>")
        kernel = at["linux"]
    else:
        _xen_chosen(cfg, at, s, tree)
        kernel = at["xen"]
    s.lines.append("setenv fdt_high 0xffffffffffffffff")
    if extra_cmds:
        s.lines += extra_cmds.rstrip("\n").splitlines()
    if echo:
        s.lines.append("echo 'xenkit: starting Xen'" if not cfg.linux else "echo 'xenkit: booting'")
    if cfg.boot_cmd == "none":
        s.lines += [
            f"setenv host_kernel_addr {_x(kernel.addr)}",
            f"setenv host_fdt_addr {_x(dtb.addr)}",
        ]
    elif cfg.boot_cmd == "bootefi":
        s.lines.append(f"bootefi {_x(kernel.addr)} {_x(dtb.addr)}")
    else:
        s.lines.append(f"{cfg.boot_cmd} {_x(kernel.addr)} - {_x(dtb.addr)}")
    return "\n".join(s.lines) + "\n"


def _xen_chosen(
    cfg: BootConfig, at: dict[str, Load], s: _Script, tree: dt.DeviceTree | None
) -> None:
    s.set("/chosen", "#address-cells", "<0x2>")
    s.set("/chosen", "#size-cells", "<0x2>")
    s.set("/chosen", "xen,xen-bootargs", _q(cfg.xen_cmdline))
    if "xen-policy" in at:
        s.module(
            "/chosen", f"xen-policy@{at['xen-policy'].addr:X}", POLICY_COMPAT, at["xen-policy"]
        )
    if cfg.dom0:
        s.module("/chosen", f"dom0@{at['dom0'].addr:X}", KERNEL_COMPAT, at["dom0"])
        s.set("/chosen", "xen,dom0-bootargs", _q(cfg.dom0.cmdline))
        if "dom0-ramdisk" in at:
            rd = at["dom0-ramdisk"]
            s.module("/chosen", f"dom0-ramdisk@{rd.addr:X}", RAMDISK_COMPAT, rd)
    for i, d in enumerate(cfg.domains):
        for path in d.passthrough_paths:
            s.set(path, "xen,passthrough")
        node = s.node("/chosen", f"domU{i}")
        s.set(node, "compatible", _q("xen,domain"))
        s.set(node, "#address-cells", "<0x2>")
        s.set(node, "#size-cells", "<0x2>")
        s.set(node, "memory", _cells64(d.memory >> 10))
        s.set(node, "cpus", f"<{d.vcpus}>")
        if d.static_mem:
            cells = " ".join(
                f"{_x(a >> 32)} {_x(a & 0xFFFFFFFF)} {_x(n >> 32)} {_x(n & 0xFFFFFFFF)}"
                for a, n in d.static_mem
            )
            s.set(node, "xen,static-mem", f"<{cells}>")
            if d.direct_map:
                s.set(node, "direct-map")
        if d.vpl011:
            s.set(node, "vpl011")
        if d.enhanced:
            s.set(node, "xen,enhanced", _q(d.enhanced))
        kernel = at[f"domU{i}"]
        mod = s.module(node, f"module@{kernel.addr:X}", DOMU_KERNEL, kernel)
        s.set(mod, "bootargs", _q(d.cmdline))
        if f"domU{i}-ramdisk" in at:
            rd = at[f"domU{i}-ramdisk"]
            s.module(node, f"module@{rd.addr:X}", DOMU_RAMDISK, rd)
        if f"domU{i}-dtb" in at:
            pt = at[f"domU{i}-dtb"]
            s.module(node, f"module@{pt.addr:X}", DOMU_DTB, pt)
    if cfg.cpupools:
        _cpupools(cfg, s, tree)
    if cfg.xen_static_heap:
        s.set("/chosen", "xen,static-heap", _cells64(*[v for p in cfg.xen_static_heap for v in p]))


def _cpupools(cfg: BootConfig, s: _Script, tree: dt.DeviceTree | None) -> None:
    if tree is None:
        raise XenkitError("cpupools need the DTB to find the CPUs' phandles")
    used = {tree.phandle(p) for p, _ in tree.nodes()} - {0}
    fresh = iter(h for h in range(0xFFFFFFFE, 0, -1) if h not in used)
    owner: dict[str, int] = {}
    for n, pool in enumerate(cfg.cpupools):
        handles = []
        for cpu in pool.cpus:
            if not tree.has_node(cpu):
                raise XenkitError(
                    f"CPUPOOL[{n}]: {cpu} does not exist in the DTB; name nodes under /cpus"
                )
            if cpu in owner:
                raise XenkitError(f"CPUPOOL[{n}]: {cpu} is already in CPUPOOL[{owner[cpu]}]")
            owner[cpu] = n
            handle = tree.phandle(cpu)
            if not handle:
                handle = next(fresh)
                s.set(cpu, "phandle", f"<{_x(handle)}>")
            handles.append(handle)
        node = s.node("/chosen", f"cpupool_{n}")
        pool_handle = next(fresh)
        s.set(node, "phandle", f"<{_x(pool_handle)}>")
        s.set(node, "compatible", _q("xen,cpupool"))
        s.set(node, "cpupool-cpus", "<" + " ".join(_x(h) for h in handles) + ">")
        if pool.scheduler:
            s.set(node, "cpupool-sched", _q(pool.scheduler))
        for i, d in enumerate(cfg.domains):
            if d.cpupool == n:
                s.set(f"/chosen/domU{i}", "domain-cpupool", f"<{_x(pool_handle)}>")


# -- reading a script back --------------------------------------------------------------------
LOAD_VERBS = {"load", "tftpb", "tftpboot", "fatload", "ext4load", "ext2load", "tftp"}


@dataclass
class DryRun:
    """A script followed on the host: what it loaded where, the DTB its edits made, and what
    went wrong."""

    tree: dt.DeviceTree
    loads: list[tuple[int, str, int]]  # (address, path, size)
    boot: tuple[str, int, int] | None  # (command, kernel address, dtb address)
    problems: list[str]


def _value(words: list[str]) -> bytes:
    """U-Boot `fdt set` value syntax: <cells>, [bytes], or strings (a string list)."""
    if not words:
        return b""
    text = " ".join(words)
    if text.startswith("<"):
        cells = text.strip("<> ").split()
        return b"".join(int(c, 0).to_bytes(4, "big") for c in cells)
    if text.startswith("["):
        return bytes(int(b, 16) for b in text.strip("[] ").split())
    return b"".join(w.encode() + b"\0" for w in words)


def dry_run(
    script: str,
    root: Path,
    ram: Sequence[tuple[int, int]],
    reserved: Sequence[tuple[int, int]] = (),
) -> DryRun:
    """Follow a script's loads and fdt edits the way U-Boot would, on the host."""
    loads: list[tuple[int, str, int]] = []
    by_addr: dict[int, Path] = {}
    tree: dt.DeviceTree | None = None
    boot = None
    problems: list[str] = []
    for lineno, line in enumerate(script.splitlines(), start=1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            problems.append(f"line {lineno}: cannot parse {line!r}")
            continue
        if not words:
            continue
        if words[0] in LOAD_VERBS and len(words) >= 3:
            path = words[-1]
            try:
                addr = int(words[-2], 16)
            except ValueError:
                continue
            file = root / path
            if not file.is_file():
                problems.append(f"line {lineno}: {path} does not exist")
                continue
            loads.append((addr, path, file.stat().st_size))
            by_addr[addr] = file
        elif words[0] == "cp.b" and len(words) == 4:
            try:
                src, dst, count = (int(w, 16) for w in words[1:])
            except ValueError:
                continue  # not plain addresses (variables, say): nothing to follow
            if src not in by_addr:
                problems.append(f"line {lineno}: cp.b from {words[1]}, where nothing is loaded")
                continue
            copied = next((p, n) for a, p, n in reversed(loads) if a == src)
            if count != copied[1]:
                problems.append(f"line {lineno}: cp.b copies {count:#x} bytes of {copied[0]}")
            loads.append((dst, copied[0], count))
            by_addr[dst] = by_addr[src]
        elif words[:2] == ["fdt", "addr"]:
            addr = int(words[2], 16)
            if addr not in by_addr:
                raise XenkitError(f"line {lineno}: fdt addr {words[2]} but nothing is loaded there")
            tree = dt.DeviceTree.load(by_addr[addr])
        elif words[:2] == ["fdt", "apply"] and tree is not None:
            tree = _apply_overlay(tree, by_addr[int(words[2], 16)])
        elif words[:2] == ["fdt", "mknod"] and tree is not None:
            tree.add_node(words[2], words[3])
        elif words[:2] == ["fdt", "set"] and tree is not None:
            path, prop = words[2], words[3]
            if not tree.has_node(path):
                problems.append(f"line {lineno}: fdt set on missing node {path}")
                continue
            tree.set_bytes(path, prop, _value(words[4:]))
        elif words[0] in ("booti", "bootm", "bootefi"):
            nums = [int(w, 16) for w in words[1:] if w != "-"]
            boot = (words[0], nums[0], nums[-1])
    if tree is None:
        raise XenkitError("the script never says `fdt addr`: it does not edit a DTB")
    problems += _check_loads(loads, ram, reserved)
    return DryRun(tree, loads, boot, problems)


def _apply_overlay(tree: dt.DeviceTree, overlay: Path) -> dt.DeviceTree:
    # Here: only a script with overlays needs them, and tempfile and subprocess were 12 ms
    # of `xenkit uboot-script`'s start.
    import tempfile

    from xenkit.core.proc import run

    with tempfile.TemporaryDirectory() as tmp:
        base, out = Path(tmp) / "base.dtb", Path(tmp) / "out.dtb"
        base.write_bytes(tree.to_bytes())
        proc = run(["fdtoverlay", "-i", base, "-o", out, overlay], check=False)
        if proc.returncode != 0:
            raise XenkitError(f"overlay {overlay.name} does not apply: {proc.stderr.strip()}")
        return dt.DeviceTree.load(out)


def _check_loads(
    loads: Sequence[tuple[int, str, int]],
    ram: Sequence[tuple[int, int]],
    reserved: Sequence[tuple[int, int]],
) -> list[str]:
    problems = [
        f"{path} at {addr:#x}-{addr + size:#x} is outside RAM"
        for addr, path, size in loads
        if not spans.inside(addr, addr + size, ram)
    ]
    return problems + spans.collisions(
        [(addr, addr + size, path) for addr, path, size in loads],
        [(r, r + n, "reserved memory") for r, n in reserved],
    )


def explain(loads: Sequence[Load], script_addr: int | None = None) -> str:
    """The plan as a table: what lands where, sizes, and the gaps between."""
    rows = [("image", "file", "address", "end", "size", "gap after")]
    ordered = sorted(loads, key=lambda ld: ld.addr)
    if script_addr is not None:
        rows.append(("script", "(boot.scr)", _x(script_addr), _x(script_addr + SLOT), "", ""))
    for i, ld in enumerate(ordered):
        end = ld.addr + ld.slot
        gap = ordered[i + 1].addr - end if i + 1 < len(ordered) else 0
        rows.append(
            (ld.role, ld.path, _x(ld.addr), _x(end), human(ld.size), human(gap) if gap else "")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows)
