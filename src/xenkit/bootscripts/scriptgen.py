"""`xenkit uboot-script`: boot scripts from an ImageBuilder config or xenkit's TOML."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path

from xenkit import xen
from xenkit.bootscripts import bootscript, imagebuilder, uimage
from xenkit.config import bootconfig
from xenkit.config.bootconfig import BootConfig
from xenkit.core import files, log
from xenkit.errors import XenkitError
from xenkit.formats import binaries, dt, kernel


def read_config(path: Path, load_cmd: str | None) -> BootConfig:
    if path.suffix == ".toml":
        from xenkit.config import boottoml  # here: an ImageBuilder config never needs it

        cfg = boottoml.load(path)
        if load_cmd:
            cfg = replace(cfg, load_cmd=imagebuilder.LOAD_ALIASES.get(load_cmd, load_cmd))
        if not cfg.load_cmd.strip():
            raise XenkitError(f"{path}: no boot.load command: set it or pass -t")
        return cfg
    cfg, _ = imagebuilder.load(path, load_cmd)
    return cfg


def _cpu_count(tree: dt.DeviceTree) -> int:
    return sum(
        1
        for p, _ in tree.nodes()
        if p.startswith("/cpus/cpu@") and tree.string(p, "device_type") == "cpu"
    )


@dataclass(frozen=True)
class Plan:
    """A generated boot script, with what it was made from and where its files go."""

    config: BootConfig
    loads: list[bootscript.Load]
    script: str
    address: int
    tree: dt.DeviceTree
    reserved: list[tuple[int, int]]


def output_names(cfg: BootConfig, name: str | None) -> tuple[str, str]:
    """(source, script) file names: -o NAME wins, then UBOOT_SOURCE/UBOOT_SCRIPT, then boot."""
    if name:
        return f"{name}.source", f"{name}.scr"
    source = cfg.source_name or "boot.source"
    return source, cfg.script_name or f"{source.removesuffix('.source')}.scr"


def generate(config: Path, root: Path, load_cmd: str | None, name: str | None) -> Plan:
    """Write the script's text and image into `root`; returns what was planned."""
    if not root.is_dir():
        raise XenkitError(f"-d {root}: not a directory")
    cfg = read_config(config, load_cmd)
    for warning in cfg.warnings:
        log.warning("warning: %s", warning)
    bootconfig.validate(cfg, root)
    tree = dt.DeviceTree.load(root / cfg.device_tree)
    if cpus := _cpu_count(tree):
        bootconfig.check_vcpus(cfg, cpus)
    bootconfig.check_memory(cfg, dt.AddressMap(tree).memory())
    nodes = {p for p, _ in tree.nodes()}
    for i, d in enumerate(cfg.domains):
        # Passed through to a guest: the node must be the board's (it only showed as a
        # "fdt set on missing node" in --explain's dry run).
        if missing := [p for p in d.passthrough_paths if p not in nodes]:
            raise XenkitError(
                f"DOMU_PASSTHROUGH_PATHS[{i}]: {missing[0]} is no node of {cfg.device_tree}"
            )
    for i, pool in enumerate(cfg.cpupools):
        # A path the tree lacks failed inside libfdt (FdtException BADPATH, exit 3).
        if missing := [c for c in pool.cpus if c not in nodes]:
            raise XenkitError(
                f"CPUPOOL[{i}]: {missing[0]} is no node of {cfg.device_tree}: name the "
                "board's CPU nodes (cpu@1, or /cpus/cpu@1)"
            )
    for warning in init_dom0less_warnings(cfg, root):
        log.warning("warning: %s", warning)
    reserved = [(a, n) for a, n, _ in dt.AddressMap(tree).reserved()]
    resize = bootscript.resize_for(cfg)
    blob = tree.to_bytes()
    fdt_room = uimage.fdt_size_at_boot(blob, resize) - len(blob)
    outputs: dict[Path, bytes] = {}
    if cfg.boot_cmd == "bootm":
        cfg, outputs = _wrap_xen(cfg, root, reserved, fdt_room)
    loads = bootscript.plan_imagebuilder(cfg, root, reserved, fdt_room)
    text = bootscript.generate(cfg, loads, tree, fdt_resize=resize, extra_cmds=_extra(cfg, root))
    addr = bootscript.script_address(cfg)
    source, script = output_names(cfg, name)
    _check_outputs(cfg, root, source, script)
    outputs[root / source] = text.encode()
    outputs[root / script] = uimage.script_image(text, load=addr, entry=addr)
    files.write_atomically(outputs)
    return Plan(cfg, loads, text, addr, tree, reserved)


def _check_outputs(cfg: BootConfig, root: Path, source: str, script: str) -> None:
    """The script's two files: somewhere to write them, and never over an input (a
    UBOOT_SCRIPT named like DOM0_KERNEL overwrote the kernel, through a symlink its
    target) or over each other."""
    inputs = {(root / p).resolve() for _, p in cfg.files() if p}
    if cfg.append_extra_cmds:
        inputs.add((root / cfg.append_extra_cmds).resolve())
    if source == script:
        raise XenkitError(f"UBOOT_SOURCE and UBOOT_SCRIPT are both {source}: give two names")
    for what, out in (("UBOOT_SOURCE (or -o)", source), ("UBOOT_SCRIPT (or -o)", script)):
        path = root / out
        if not path.parent.is_dir():
            raise XenkitError(f"{what} {out}: {path.parent} is not a directory: create it")
        if path.is_dir():
            raise XenkitError(f"{what} {out} is a directory: name a file")
        if path.resolve() in inputs:
            raise XenkitError(f"{what} {out} is one of the boot's own files: give another name")


def init_dom0less_warnings(cfg: BootConfig, root: Path) -> list[str]:
    """Domains Xen's init-dom0less would fail on (xen.init_dom0less_fails), if this Xen is
    one it was measured on (or older) and a Dom0 is there to run it."""
    if not cfg.dom0 or not cfg.xen:
        return []
    try:
        version = binaries.xen_version(root / cfg.xen)
    except XenkitError:
        return []  # not a Xen we can read: no grounds to warn
    if (version.major, version.minor) > xen.INIT_DOM0LESS_MEASURED:
        return []
    return [
        f"domain {i} ({d.kernel}): enhanced with {d.vcpus} vCPUs: Xen {version.text}'s "
        f"init-dom0less fails on it and every later domain; give it 1 vCPU or "
        f"DOMU_ENHANCED[{i}]=0"
        for i, d in enumerate(cfg.domains)
        if d.enhanced == "enabled" and xen.init_dom0less_fails(d.vcpus)
    ]


def _extra(cfg: BootConfig, root: Path) -> str:
    if not cfg.append_extra_cmds:
        return ""
    return files.read_text(
        root / cfg.append_extra_cmds, "APPEND_EXTRA_CMDS", "give U-Boot commands as text"
    )


def _wrap_xen(
    cfg: BootConfig, root: Path, reserved: list[tuple[int, int]], fdt_room: int
) -> tuple[BootConfig, dict[Path, bytes]]:
    """bootm wants Xen in a legacy uImage: plan with the wrapped size, then wrap it for the
    address it got."""
    data = (root / cfg.xen).read_bytes()
    ub = f"{cfg.xen}.ub"
    (root / ub).write_bytes(b"\0" * (len(data) + 64))
    wrapped = replace(cfg, xen=ub)
    xen = next(
        ld
        for ld in bootscript.plan_imagebuilder(wrapped, root, reserved, fdt_room)
        if ld.role == "xen"
    )
    arch = "arm64" if kernel.is_arm64_image(data) else "arm"
    return wrapped, {root / ub: uimage.kernel_image(data, arch, xen.addr, xen.addr)}


def hint(cfg: BootConfig, script: str, addr: int) -> str:
    return f"{cfg.load_cmd} 0x{addr:X} {script}; source 0x{addr:X}"


def first_stage(
    root: Path, name: str, server: str, ip: str, second: str, addr: int = bootscript.LOW_SCRIPT
) -> str:
    """The blog's small SD-card script: set the addresses, fetch the real script, run it."""
    for what, value in (("--server", server), ("--ip", ip)):
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            # U-Boot's network stack (tftpb, serverip) speaks IPv4 only.
            raise XenkitError(
                f"{what} {value!r} is not an IPv4 address: U-Boot's tftp speaks IPv4 only"
            ) from None
    text = (
        f"setenv serverip {server}\nsetenv ipaddr {ip}\n"
        f"tftpb 0x{addr:X} {second}\nsource 0x{addr:X}\n"
    )
    files.write_atomically(
        {root / f"{name}.source": text.encode(), root / f"{name}.scr": uimage.script_image(text)}
    )
    return text


def chosen_dts(tree: dt.DeviceTree) -> str:
    """/chosen of a tree, as dtc prints it."""
    from xenkit.core.proc import run  # here: only --explain runs dtc; subprocess is 4 ms

    text = run(
        ["dtc", "-q", "-I", "dtb", "-O", "dts", "-"], stdin=tree.to_bytes(), capture=True
    ).stdout
    start = text.find("\tchosen {")
    if start < 0:
        return "(no /chosen)"
    depth, end = 0, start
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                end = text.index("\n", i)
                break
    return text[start:end].replace("\n\t", "\n").lstrip("\t")
