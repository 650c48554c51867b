"""Read ImageBuilder configs (the shell-style files `uboot-script-gen -c` takes) into the one
boot model, with ImageBuilder's defaults.

ImageBuilder sources the file with bash; real configs are assignments (`NAME=value`,
`NAME[i]=value`), quoting and comments, which is what is read here (plus `$NAME` and
`${NAME}` of earlier assignments). Anything else is a one-line error naming the line.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from xenkit.config.bootconfig import BootConfig, Cpupool, Dom0, Domain, Linux
from xenkit.core import files
from xenkit.core.sizes import MiB
from xenkit.errors import XenkitError

# `-t` aliases (anything else is a load command used as given).
LOAD_ALIASES = {
    "tftp": "tftpb",
    "sd": "load mmc 0:1",
    "scsi": "load scsi 0:1",
    "usb": "fatload usb 0:1",
    "virtio": "load virtio 0:1",
}

SCALARS = {
    "MEMORY_START",
    "MEMORY_END",
    "DEVICE_TREE",
    "XEN",
    "XEN_CMD",
    "XEN_POLICY",
    "XEN_STATIC_HEAP",
    "XEN_COLORS",
    "DOM0_KERNEL",
    "DOM0_RAMDISK",
    "DOM0_CMD",
    "DOM0_MEM",
    "DOM0_VCPUS",
    "DOM0_COLORS",
    "DOM0_ROOTFS",
    "NUM_DOMUS",
    "NUM_CPUPOOLS",
    "NUM_DT_OVERLAY",
    "LINUX",
    "LINUX_CMD",
    "LINUX_RAMDISK",
    "LINUX_ROOTFS",
    "LOAD_CMD",
    "BOOT_CMD",
    "UBOOT_SOURCE",
    "UBOOT_SCRIPT",
    "APPEND_EXTRA_CMDS",
    "DBG_FDT_PRINT_CHOSEN",
    "FDTEDIT",
}
ARRAYS = {
    "DOMU_KERNEL",
    "DOMU_RAMDISK",
    "DOMU_CMD",
    "DOMU_MEM",
    "DOMU_VCPUS",
    "DOMU_NAME",
    "DOMU_PASSTHROUGH_DTB",
    "DOMU_PASSTHROUGH_PATHS",
    "DOMU_STATIC_MEM",
    "DOMU_DIRECT_MAP",
    "DOMU_ENHANCED",
    "DOMU_VPL011",
    "DOMU_NOBOOT",
    "DOMU_CPUPOOL",
    "DOMU_ROOTFS",
    "CPUPOOL",
    "DT_OVERLAY",
}
# Read by ImageBuilder but not modelled by xenkit: warned about, not silently dropped.
UNSUPPORTED = {
    "FIT",
    "FIT_ENC_KEY_DIR",
    "FIT_ENC_UB_DTB",
    "BITSTREAM",
    "PASSTHROUGH_DTS_REPO",
    "LOPPER_PATH",
    "LOPPER_CMD",
    "DOMU_SHARED_MEM",
    "DOMU_COLORS",
    "DOMU_NR_SPIS",
    "DOMU_GRANT_VER",
    "DOMU_GRANT_FRAMES",
    "DOMU_MAPTRACK_FRAMES",
    "DOMU_CAPS",
    "DOMU_VCPU_HARD_AFFINITY",
}

DEFAULT_DOM0_CMD = "console=hvc0 earlycon=xenboot earlyprintk clk_ignore_unused"
_ASSIGN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?=(.*)", re.S)
_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
# What bash would run or compute rather than read: $(...), `...`, $((...)), ${X:-y} and
# kin. Kept as text they reach the board as a file name or command line.
_SUBSTITUTION = re.compile(r"`|\$\(|\$\{(?![A-Za-z_][A-Za-z0-9_]*\})")


class Raw:
    """Variables as assigned: scalars and arrays (index -> value)."""

    def __init__(self) -> None:
        self.scalars: dict[str, str] = {}
        self.arrays: dict[str, dict[int, str]] = {}
        self.warnings: list[str] = []

    def get(self, name: str, default: str = "") -> str:
        return self.scalars.get(name, default)

    def at(self, name: str, i: int, default: str = "") -> str:
        return self.arrays.get(name, {}).get(i, default)


# Bounds on the NUM_ counts: far beyond any real board (and the boot script's size).
MAX_DOMUS = 256
MAX_OVERLAYS = 64


def parse(text: str, source: str = "config") -> Raw:
    raw = Raw()
    for lineno, line in _logical_lines(text, source):
        try:
            words = shlex.split(line, comments=True, posix=True)
        except ValueError as exc:
            raise XenkitError(f"{source}:{lineno}: {exc}: fix the quoting") from None
        for word in words:
            m = _ASSIGN.fullmatch(word)
            if not m:
                raise XenkitError(
                    f"{source}:{lineno}: {word!r} is not an assignment; "
                    "an ImageBuilder config holds NAME=value lines"
                )
            if _SUBSTITUTION.search(m.group(3)):
                raise XenkitError(
                    f"{source}:{lineno}: {m.group(1)} uses a shell substitution ($(...), `...` "
                    "or ${X:-y}), which xenkit does not run: write the value out"
                )
            name, index, value = m.group(1), m.group(2), _expand(m.group(3), raw)
            if name not in SCALARS | ARRAYS | UNSUPPORTED:
                raw.warnings.append(f"{source}:{lineno}: unknown variable {name} (ignored)")
            elif name in UNSUPPORTED:
                raw.warnings.append(
                    f"{source}:{lineno}: {name} is not supported by xenkit (ignored)"
                )
            if index is None:
                raw.scalars[name] = value
            else:
                raw.arrays.setdefault(name, {})[int(index)] = value
    return raw


def _logical_lines(text: str, source: str) -> list[tuple[int, str]]:
    """Lines joined where a quote stays open or a line ends in a backslash."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not pending:
            start = lineno
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        try:
            shlex.split(pending, comments=True, posix=True)
        except ValueError:
            continue
        out.append((start, pending))
        pending = ""
    if pending:
        raise XenkitError(f"{source}:{start}: unterminated quote: close it")
    return out


def _expand(value: str, raw: Raw) -> str:
    return _REF.sub(lambda m: raw.scalars.get(m.group(1) or m.group(2), ""), value)


def _number(raw: Raw, name: str, value: str, default: int = 0) -> int:
    if value == "":
        return default
    try:
        n = int(value, 0)
    except ValueError:
        raise XenkitError(f"{name}={value!r} is not a number: write e.g. 0x40000000") from None
    # Addresses, sizes and counts: none is negative, and the device tree holds 64 bits.
    if not 0 <= n < 1 << 64:
        raise XenkitError(f"{name}={value!r} is out of range: give 0 to 0xFFFFFFFFFFFFFFFF")
    return n


def _count(raw: Raw, name: str, limit: int) -> int:
    """NUM_...: how many entries follow, 0 to `limit` (a bigger count is a typo, not a
    plan: ImageBuilder would loop over it)."""
    n = _number(raw, name, raw.get(name))
    if not 0 <= n <= limit:
        raise XenkitError(f"{name}={raw.get(name)!r}: give 0 to {limit}")
    return n


def _positive(raw: Raw, name: str, unit: str) -> int:
    """DOM0_MEM or DOM0_VCPUS: a whole number above 0 (of `unit`), or 0 if not set."""
    value = raw.get(name)
    if value and (not value.isdigit() or int(value) == 0):
        raise XenkitError(f"{name}={value!r}: give a whole number of {unit} above 0")
    return int(value or 0)


def _pairs(name: str, value: str) -> tuple[tuple[int, int], ...]:
    words = value.split()
    if len(words) % 2:
        raise XenkitError(f"{name}={value!r}: give base and size pairs")
    try:
        nums = [int(w, 0) for w in words]
    except ValueError:
        raise XenkitError(f"{name}={value!r}: base and size must be numbers") from None
    return tuple(zip(nums[::2], nums[1::2], strict=True))


def _root_for(load_cmd: str, what: str) -> str:
    """root= for a rootfs partition: the partition after the boot one, on the same disk."""
    target = load_cmd.split()[-1] if load_cmd.split() else ""
    dev, _, part = target.rpartition(":")
    if not dev or not part.isdigit() or not dev.isdigit():
        raise XenkitError(
            f"{what}: cannot tell the root device from LOAD_CMD={load_cmd!r}; "
            "put root= in the command line"
        )
    if "mmc" in load_cmd:
        return f"/dev/mmcblk{dev}p{int(part) + 1}"
    if "scsi" in load_cmd:
        return f"/dev/sd{chr(ord('a') + int(dev))}{int(part) + 1}"
    raise XenkitError(
        f"{what}: only mmc and scsi root devices are derived; put root= in the command line"
    )


def _overlays(raw: Raw) -> tuple[str, ...]:
    found = []
    for i in range(_count(raw, "NUM_DT_OVERLAY", MAX_OVERLAYS)):
        if not raw.at("DT_OVERLAY", i):
            raise XenkitError(f"DT_OVERLAY[{i}] is not set: NUM_DT_OVERLAY counts them")
        found.append(raw.at("DT_OVERLAY", i))
    return tuple(found)


def to_config(raw: Raw, load_cmd: str | None = None) -> BootConfig:
    """ImageBuilder's defaults and derivations, as its uboot-script-gen applies them."""
    load = LOAD_ALIASES.get(load_cmd or "", load_cmd) or raw.get("LOAD_CMD")
    if not load.strip():
        # Blank, U-Boot's script would read `  0x... Image`: the address as a command.
        raise XenkitError("LOAD_CMD is not set: set it in the config or pass -t")
    boot_cmd = raw.get("BOOT_CMD") or "booti"
    common = dict(
        memory_start=_number(raw, "MEMORY_START", raw.get("MEMORY_START")),
        memory_end=_number(raw, "MEMORY_END", raw.get("MEMORY_END")),
        device_tree=raw.get("DEVICE_TREE"),
        dt_overlays=_overlays(raw),
        load_cmd=load,
        boot_cmd=boot_cmd,
        append_extra_cmds=raw.get("APPEND_EXTRA_CMDS"),
        source_name=raw.get("UBOOT_SOURCE"),
        script_name=raw.get("UBOOT_SCRIPT"),
        warnings=tuple(raw.warnings),
    )
    if not raw.get("XEN"):
        if not raw.get("LINUX"):
            raise XenkitError("neither XEN nor LINUX is set: say what to boot")
        cmd = raw.get("LINUX_CMD") or "earlycon console=ttyPS0,115200"
        if "root=" not in cmd:
            cmd += " root=" + (
                _root_for(load, "LINUX_ROOTFS") if raw.get("LINUX_ROOTFS") else "/dev/ram0"
            )
        return BootConfig(linux=Linux(raw.get("LINUX"), raw.get("LINUX_RAMDISK"), cmd), **common)  # type: ignore[arg-type]
    has_dom0 = bool(raw.get("DOM0_KERNEL"))
    num_domus = _count(raw, "NUM_DOMUS", MAX_DOMUS)
    dom0_mem = _positive(raw, "DOM0_MEM", "MiB")
    dom0_vcpus = _positive(raw, "DOM0_VCPUS", "vCPUs")
    xen_cmd = raw.get("XEN_CMD")
    if xen_cmd and (dom0_mem or dom0_vcpus):
        raise XenkitError(
            "XEN_CMD together with DOM0_MEM/DOM0_VCPUS: give either XEN_CMD or those two, not both"
        )
    if not xen_cmd:
        xen_cmd = (
            f"console=dtuart dtuart=serial0 dom0_mem={dom0_mem or 1024}M "
            f"dom0_max_vcpus={dom0_vcpus or 1} bootscrub=0 vwfi=native sched=null"
        )
        for var, key in (("XEN_COLORS", "xen_colors"), ("DOM0_COLORS", "dom0_colors")):
            if raw.get(var):
                xen_cmd += f" {key}={raw.get(var)}"
    dom0 = None
    if has_dom0:
        cmd = raw.get("DOM0_CMD") or DEFAULT_DOM0_CMD
        if "root=" not in cmd:
            cmd += " root=" + (
                _root_for(load, "DOM0_ROOTFS") if raw.get("DOM0_ROOTFS") else "/dev/ram0"
            )
        dom0 = Dom0(
            raw.get("DOM0_KERNEL"),
            raw.get("DOM0_RAMDISK"),
            cmd,
            dom0_mem * MiB,
            dom0_vcpus,
        )
    else:
        if num_domus == 0:
            raise XenkitError("neither DOM0_KERNEL nor any DOMU_KERNEL: nothing to boot")
        stray = [v for v in ("DOM0_MEM", "DOM0_VCPUS", "DOM0_CMD", "DOM0_RAMDISK") if raw.get(v)]
        if stray:
            raise XenkitError(
                f"{stray[0]} is set but there is no DOM0_KERNEL: drop it for a dom0less-only system"
            )
        # Without Dom0, Xen's dom0 options mean nothing: ImageBuilder drops those words.
        xen_cmd = " ".join(w for w in xen_cmd.split() if "dom0" not in w)
    domains = []
    for i in range(num_domus):
        if raw.at("DOMU_NOBOOT", i) or raw.at("DOMU_ROOTFS", i):
            continue
        if not raw.at("DOMU_KERNEL", i):
            raise XenkitError(f"DOMU_KERNEL[{i}] is not set: every booted domU needs a kernel")
        vpl011 = raw.at("DOMU_VPL011", i) in ("", "1")
        static = _pairs(f"DOMU_STATIC_MEM[{i}]", raw.at("DOMU_STATIC_MEM", i))
        mem_mib = _number(raw, f"DOMU_MEM[{i}]", raw.at("DOMU_MEM", i))
        memory = sum(n for _, n in static) if static else (mem_mib or 512) * MiB
        enhanced_raw = raw.at("DOMU_ENHANCED", i)
        if enhanced_raw == "1" or (has_dom0 and enhanced_raw != "0"):
            enhanced = "enabled"
        elif enhanced_raw == "2":
            enhanced = "no-xenstore"
        else:
            enhanced = ""
        pool = raw.at("DOMU_CPUPOOL", i)
        domains.append(
            Domain(
                name=raw.at("DOMU_NAME", i) or f"domU{i}",
                kernel=raw.at("DOMU_KERNEL", i),
                ramdisk=raw.at("DOMU_RAMDISK", i),
                cmdline=raw.at("DOMU_CMD", i) or ("console=ttyAMA0" if vpl011 else ""),
                memory=memory,
                vcpus=_number(raw, f"DOMU_VCPUS[{i}]", raw.at("DOMU_VCPUS", i), 1),
                vpl011=vpl011,
                passthrough_dtb=raw.at("DOMU_PASSTHROUGH_DTB", i),
                passthrough_paths=tuple(raw.at("DOMU_PASSTHROUGH_PATHS", i).split()),
                static_mem=static,
                direct_map=bool(static) and raw.at("DOMU_DIRECT_MAP", i, "1") == "1",
                enhanced=enhanced,
                cpupool=int(pool) if pool.isdigit() else None,
            )
        )
    pools = []
    for n in range(_number(raw, "NUM_CPUPOOLS", raw.get("NUM_CPUPOOLS"))):
        words = raw.at("CPUPOOL", n).split()
        if not words:
            raise XenkitError(f'CPUPOOL[{n}] is not set: give "cpu@1,cpu@2 [scheduler]"')
        cpus = tuple(c if c.startswith("/") else f"/cpus/{c}" for c in words[0].split(",") if c)
        pools.append(Cpupool(cpus, words[1] if len(words) > 1 else ""))
    return BootConfig(
        xen=raw.get("XEN"),
        xen_cmdline=xen_cmd,
        xen_policy=raw.get("XEN_POLICY"),
        xen_static_heap=_pairs("XEN_STATIC_HEAP", raw.get("XEN_STATIC_HEAP")),
        dom0=dom0,
        domains=tuple(domains),
        cpupools=tuple(pools),
        **common,  # type: ignore[arg-type]
    )


def load(path: Path, load_cmd: str | None = None) -> tuple[BootConfig, Raw]:
    text = files.read_text(path, "config", "give an ImageBuilder config (shell variables)")
    raw = parse(text, str(path))
    return to_config(raw, load_cmd), raw
