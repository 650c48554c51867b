"""What a boot loads and how: Xen, Dom0, dom0less domains, cpupools, overlays, or plain Linux.

One model for two front ends: xenkit's own TOML (`[dom0]`, `[[domain]]` tables, read by
xenkit.config.boottoml) and ImageBuilder's shell-style config
(xenkit.bootscripts.imagebuilder). Paths are relative to a directory (the `-d` of
`xenkit uboot-script`); sizes are bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from xenkit.config import builtin
from xenkit.core import files
from xenkit.core.sizes import MiB
from xenkit.errors import XenkitError
from xenkit.formats import binaries, dt, identify

ENHANCED = ("", "enabled", "no-xenstore")
BOOT_CMDS = ("booti", "bootm", "bootefi", "none")


@dataclass(frozen=True)
class Dom0:
    """Dom0's kernel, ramdisk, command line, memory and vCPUs (0: Xen's choice)."""

    kernel: str
    ramdisk: str = ""
    cmdline: str = ""
    memory: int = 0  # 0: not set (Xen picks)
    vcpus: int = 0


@dataclass(frozen=True)
class Domain:
    """A dom0less guest Xen starts at boot: ImageBuilder's DOMU_*[i] of one index."""

    name: str
    kernel: str
    ramdisk: str = ""
    cmdline: str = ""
    memory: int = 512 * MiB
    vcpus: int = 1
    vpl011: bool = True
    passthrough_dtb: str = ""
    passthrough_paths: tuple[str, ...] = ()
    static_mem: tuple[tuple[int, int], ...] = ()
    direct_map: bool = False
    enhanced: str = ""
    noboot: bool = False
    cpupool: int | None = None


@dataclass(frozen=True)
class Cpupool:
    """A cpupool Xen makes at boot: its CPUs and scheduler."""

    cpus: tuple[str, ...]  # DT paths of the CPU nodes
    scheduler: str = ""


@dataclass(frozen=True)
class Linux:
    """A plain Linux boot, without Xen (ImageBuilder's LINUX)."""

    kernel: str
    ramdisk: str = ""
    cmdline: str = ""


@dataclass(frozen=True)
class BootConfig:
    """What a boot script loads and boots, read from an ImageBuilder config or xenkit's TOML."""

    memory_start: int
    memory_end: int
    device_tree: str
    xen: str = ""
    xen_cmdline: str = ""
    xen_policy: str = ""
    xen_static_heap: tuple[tuple[int, int], ...] = ()
    dom0: Dom0 | None = None
    domains: tuple[Domain, ...] = ()
    cpupools: tuple[Cpupool, ...] = ()
    dt_overlays: tuple[str, ...] = ()
    linux: Linux | None = None
    load_cmd: str = ""  # e.g. "tftpb", "load mmc 0:1"
    boot_cmd: str = "booti"
    append_extra_cmds: str = ""  # a file whose lines go before the boot command
    source_name: str = ""  # where the script text goes (ImageBuilder's UBOOT_SOURCE)
    script_name: str = ""  # where the script image goes (UBOOT_SCRIPT)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def files(self) -> list[tuple[str, str]]:
        """(role, path) of every file the boot loads, in ImageBuilder's load order: guests
        first, Xen after them (the last PE image loaded is the one secure boot checks),
        overlays, the DTB last."""
        out: list[tuple[str, str]] = []
        if self.linux:
            out.append(("linux", self.linux.kernel))
            if self.linux.ramdisk:
                out.append(("linux-ramdisk", self.linux.ramdisk))
        else:
            if self.dom0:
                out.append(("dom0", self.dom0.kernel))
                if self.dom0.ramdisk:
                    out.append(("dom0-ramdisk", self.dom0.ramdisk))
            for i, d in enumerate(self.domains):
                out.append((f"domU{i}", d.kernel))
                if d.ramdisk:
                    out.append((f"domU{i}-ramdisk", d.ramdisk))
                if d.passthrough_dtb:
                    out.append((f"domU{i}-dtb", d.passthrough_dtb))
            out.append(("xen", self.xen))
            if self.xen_policy:
                out.append(("xen-policy", self.xen_policy))
        out += [(f"overlay{i}", p) for i, p in enumerate(self.dt_overlays)]
        out.append(("dtb", self.device_tree))
        return out


def variable(role: str) -> str:
    """The ImageBuilder variable that names a file, for messages: domU1-ramdisk ->
    DOMU_RAMDISK[1]."""
    fixed = {
        "dom0": "DOM0_KERNEL",
        "dom0-ramdisk": "DOM0_RAMDISK",
        "xen": "XEN",
        "xen-policy": "XEN_POLICY",
        "dtb": "DEVICE_TREE",
        "linux": "LINUX",
        "linux-ramdisk": "LINUX_RAMDISK",
    }
    if role in fixed:
        return fixed[role]
    if role.startswith("overlay"):
        return f"DT_OVERLAY[{role.removeprefix('overlay')}]"
    index, _, kind = role.removeprefix("domU").partition("-")
    name = {"": "DOMU_KERNEL", "ramdisk": "DOMU_RAMDISK", "dtb": "DOMU_PASSTHROUGH_DTB"}[kind]
    return f"{name}[{index}]"


def _check_kind(role: str, path: Path) -> None:
    """The file a variable names is what the variable needs (ImageBuilder is for arm64)."""
    if role == "xen":
        binaries.xen_version(path, "arm64", "XEN")
    elif role == "xen-policy":
        identify.require(path, identify.POLICIES, variable(role))
    elif role.endswith("ramdisk"):
        identify.require(path, identify.RAMDISKS, variable(role))
    elif role == "dtb" or role.endswith("-dtb") or role.startswith("overlay"):
        identify.require(path, identify.DTBS, variable(role))
        # Past the magic: the whole blob walks (a truncated or garbled one fails here, not
        # in U-Boot's fdt apply), and an overlay is one (dtc -@ gives it __overlay__ nodes).
        tree = dt.DeviceTree.load(path, variable(role))
        is_overlay = any(p.endswith("/__overlay__") for p, _ in tree.nodes())
        if role.startswith("overlay") and not is_overlay:
            raise XenkitError(
                f"{variable(role)} {path} is a whole device tree, not an overlay: build the "
                "overlay with dtc -@ from a /plugin/; source"
            )
        if not role.startswith("overlay") and is_overlay:
            raise XenkitError(
                f"{variable(role)} {path} is an overlay, not a whole device tree: give the "
                "board's .dtb here (overlays go in DT_OVERLAY)"
            )
    elif role in ("dom0", "linux") or role.startswith("domU"):
        identify.require(path, identify.KERNELS["arm64"], variable(role))
        if role in ("dom0", "linux"):
            # Dom0 and a plain Linux boot are Linux (a domU may be any kernel, an RTOS).
            binaries.linux_version(path, variable(role))
        else:
            binaries.whole(path, variable(role))


# A file name goes bare into U-Boot's load command (`load mmc 0:1 ADDR NAME`), as
# ImageBuilder writes it: a space splits it into two words, the others are U-Boot syntax.
UNSAFE_NAME = re.compile(r"[\s;\"'$\\`]")
# Command lines go into quoted `fdt set` values: quotes and $ are escaped, but a line break
# ends the command inside the script.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _lines(cfg: BootConfig) -> list[tuple[str, str]]:
    """(variable, value) of every command line the script writes."""
    out = [("XEN_CMD", cfg.xen_cmdline)]
    if cfg.dom0:
        out.append(("DOM0_CMD", cfg.dom0.cmdline))
    if cfg.linux:
        out.append(("LINUX_CMD", cfg.linux.cmdline))
    out += [(f"DOMU_CMD[{i}]", d.cmdline) for i, d in enumerate(cfg.domains)]
    return out


def validate(cfg: BootConfig, root: Path) -> None:
    """Errors a boot script cannot survive, each naming the variable and the fix."""
    for name, line in _lines(cfg):
        if CONTROL.search(line):
            raise XenkitError(
                f"{name}={line!r}: a command line is one line without control characters: "
                "join it with spaces"
            )
    # Each file's kind once per kind of use: 32 guests on one 31 MiB kernel read it once.
    checked: set[tuple[str, str]] = set()
    for role, path in cfg.files():
        if path and UNSAFE_NAME.search(path):
            raise XenkitError(
                f"{variable(role)}={path!r}: U-Boot's load command takes the name bare, so "
                "it cannot hold spaces, quotes, ;, $ or \\: rename the file"
            )
        if builtin.is_builtin(path):
            raise XenkitError(
                f"{variable(role)}={path}: built-in guests are built by xenkit build; "
                "here give the path of an Image"
            )
        if path:
            files.binary(root / path, f"{variable(role)}:", "fix the path or -d")
        if path and (use := (re.sub(r"\d+", "", role), path)) not in checked:
            checked.add(use)
            _check_kind(role, root / path)
    if not cfg.device_tree:
        raise XenkitError("DEVICE_TREE is not set: name the board's DTB")
    if not cfg.xen and not cfg.linux:
        raise XenkitError("neither XEN nor LINUX is set: say what to boot")
    if cfg.xen and not cfg.dom0 and not cfg.domains:
        raise XenkitError("XEN without DOM0_KERNEL or any DOMU_KERNEL: nothing to run")
    if cfg.boot_cmd not in BOOT_CMDS:
        raise XenkitError(f"BOOT_CMD={cfg.boot_cmd}: use one of {', '.join(BOOT_CMDS)}")
    if cfg.memory_end <= cfg.memory_start:
        raise XenkitError("MEMORY_END must be above MEMORY_START")
    _check_load_cmd(cfg.load_cmd)
    for word in cfg.xen_cmdline.split():
        # Xen reads a size without a unit as KiB: dom0_mem=512 is half a megabyte.
        if re.fullmatch(r"dom0_mem=\d+", word):
            raise XenkitError(f"XEN_CMD {word} has no unit, which Xen reads as KiB: write {word}M")
    names: set[str] = set()
    spans: list[tuple[int, int, str]] = []
    for i, d in enumerate(cfg.domains):
        if d.name in names:
            raise XenkitError(f"DOMU_NAME[{i}]={d.name} is used twice: give each a name")
        names.add(d.name)
        if d.vcpus < 1:
            raise XenkitError(f"DOMU_VCPUS[{i}]={d.vcpus}: give at least 1")
        if d.enhanced not in ENHANCED:
            raise XenkitError(f"DOMU_ENHANCED[{i}]={d.enhanced}: use enabled or no-xenstore")
        if d.cpupool is not None and not 0 <= d.cpupool < len(cfg.cpupools):
            raise XenkitError(
                f"DOMU_CPUPOOL[{i}]={d.cpupool}: there are {len(cfg.cpupools)} cpupools"
            )
        if d.direct_map and not d.static_mem:
            raise XenkitError(f"DOMU_DIRECT_MAP[{i}] needs DOMU_STATIC_MEM[{i}]")
        if d.static_mem:
            total = sum(n for _, n in d.static_mem)
            if total != d.memory:
                raise XenkitError(
                    f"DOMU_STATIC_MEM[{i}] totals {total >> 20} MiB but "
                    f"DOMU_MEM[{i}] is {d.memory >> 20} MiB: make them equal"
                )
            for s, n in d.static_mem:
                for os_, on, other in spans:
                    if s < os_ + on and os_ < s + n:
                        raise XenkitError(
                            f"DOMU_STATIC_MEM[{i}] {s:#x}+{n:#x} overlaps "
                            f"{other}'s static memory: move one"
                        )
                spans.append((s, n, f"DOMU_STATIC_MEM of {d.name}"))


# U-Boot's commands that load a file to an address: LOAD_CMD is one of them and its device.
LOAD_COMMANDS = ("tftpb", "tftpboot", "load", "fatload", "ext2load", "ext4load", "btrload",
                 "sqfsload", "ubifsload", "nfs", "wget")  # fmt: skip


def _check_load_cmd(load_cmd: str) -> None:
    """LOAD_CMD goes into the script as the first words of a line: another command after a
    ; or a line break would run there, and an unknown one fails only on the board."""
    words = load_cmd.split()
    if CONTROL.search(load_cmd) or any(c in load_cmd for c in ";\"'$`&|"):
        raise XenkitError(
            f"LOAD_CMD={load_cmd!r}: one load command, without ; quotes, $ or line breaks"
        )
    if words and words[0] not in LOAD_COMMANDS:
        raise XenkitError(
            f"LOAD_CMD={load_cmd!r}: {words[0]} is not a U-Boot load command: use one of "
            f"{', '.join(LOAD_COMMANDS)} (or -t tftp, sd, scsi, usb, virtio)"
        )


def check_memory(cfg: BootConfig, banks: list[tuple[int, int]]) -> None:
    """Each domain's memory against the board's RAM (the DTB's memory banks; MEMORY_START
    to MEMORY_END is only where U-Boot loads files): a guest bigger than all of it, or
    static memory outside it, exited 0 and failed in Xen."""
    total = sum(n for _, n in banks)
    for i, d in enumerate(cfg.domains):
        if total and d.memory > total:
            raise XenkitError(
                f"DOMU_MEM[{i}]: {d.memory >> 20} MiB is more than the board's RAM "
                f"({total >> 20} MiB in DEVICE_TREE): give less"
            )
        for start, size in d.static_mem:
            if size <= 0 or (
                banks and not any(b <= start and start + size <= b + n for b, n in banks)
            ):
                raise XenkitError(
                    f"DOMU_STATIC_MEM[{i}] {start:#x}+{size:#x} is not inside one of the "
                    "board's memory banks (DEVICE_TREE's /memory): move it there"
                )


def check_vcpus(cfg: BootConfig, cpus: int) -> None:
    """Every domain's vCPUs on the board's `cpus` (from its DTB, read once validate passed)."""
    for i, d in enumerate(cfg.domains):
        if d.vcpus > cpus:
            raise XenkitError(f"DOMU_VCPUS[{i}]={d.vcpus}: the board has {cpus} CPUs")
