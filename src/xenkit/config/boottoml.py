"""xenkit's own TOML boot config (`xenkit uboot-script -c boot.toml`), and the `[[domain]]`
tables a build config shares with it, read into bootconfig's model: every key known, every
value the type its place needs, or one line saying which and how to fix it."""

from __future__ import annotations

from pathlib import Path

from xenkit.config.bootconfig import ENHANCED, BootConfig, Cpupool, Dom0, Domain, Linux
from xenkit.core import files
from xenkit.core.sizes import parse_count, parse_size
from xenkit.errors import XenkitError

# typing is 5 ms of a command's start; mypy reads this name as typing's.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _int(value: Any, what: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        n = parse_size(value, what, bare=1)  # an address or byte count
    else:
        raise XenkitError(f"{what}: {value!r} is not a number or size")
    # The device tree holds 64-bit cells: a negative one was written as 0x-1.
    if not 0 <= n < 1 << 64:
        raise XenkitError(f"{what}: {value!r} is out of range: give 0 to 0xFFFFFFFFFFFFFFFF")
    return n


def _text(value: Any, what: str) -> str:
    """A string the TOML must hold: str() made ['tftpb'] a load command and a table a
    command line."""
    if not isinstance(value, str):
        raise XenkitError(f"{what} = {value!r} must be a string")
    return value


# The keys xenkit's TOML boot config takes, by table (a typo was ignored).
TOML_KEYS = {
    "boot": {"memory_start", "memory_end", "device_tree", "dt_overlays", "load", "boot_cmd",
             "append_extra_cmds"},
    "xen": {"image", "cmdline", "policy", "static_heap"},
    "dom0": {"kernel", "ramdisk", "cmdline", "memory", "vcpus"},
    "linux": {"kernel", "ramdisk", "cmdline"},
    "cpupool": {"cpus", "scheduler"},
    "domain": set(),  # domain_from_table names its own
}  # fmt: skip


def _known(data: dict[str, Any], source: str) -> None:
    for key, value in data.items():
        if key not in TOML_KEYS:
            raise XenkitError(
                f"{source}: unknown table or key {key!r}; known: {', '.join(TOML_KEYS)}"
            )
        for item in value if isinstance(value, list) and key != "domain" else [value]:
            if isinstance(item, dict) and key != "domain":
                unknown = set(item) - TOML_KEYS[key]
                if unknown:
                    raise XenkitError(
                        f"{source}: unknown key {sorted(unknown)[0]!r} in [{key}]; known: "
                        f"{', '.join(sorted(TOML_KEYS[key]))}"
                    )


def _static(raw: Any, what: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple((_int(a, what), _int(b, what)) for a, b in raw)
    except (TypeError, ValueError):
        raise XenkitError(f"{what}: give a list of [start, size] pairs") from None


def domain_from_table(t: dict[str, Any], index: int, require_kernel: bool = True) -> Domain:
    """A [[domain]] table; `xenkit build` lets the kernel default to Dom0's."""
    where = f"[[domain]] #{index + 1}"
    known = {f for f in Domain.__dataclass_fields__}
    unknown = set(t) - known
    if unknown:
        raise XenkitError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}"
        )
    if require_kernel and "kernel" not in t:
        raise XenkitError(f'{where} has no kernel: add kernel = "PATH"')
    for key in ("vpl011", "direct_map", "noboot"):
        if key in t and not isinstance(t[key], bool):
            raise XenkitError(f"{where} {key} = {t[key]!r}: write true or false")
    enhanced = t.get("enhanced", "")
    if enhanced not in ENHANCED:
        raise XenkitError(f'{where} enhanced = {enhanced!r}: use "enabled" or "no-xenstore"')
    cpupool = t.get("cpupool")
    if cpupool is not None and (not isinstance(cpupool, int) or isinstance(cpupool, bool)):
        raise XenkitError(f"{where} cpupool = {cpupool!r}: give the pool's number (0, 1, ...)")
    paths = t.get("passthrough_paths", ())
    if not isinstance(paths, list | tuple) or not all(isinstance(p, str) for p in paths):
        raise XenkitError(f'{where} passthrough_paths = {paths!r}: give a list of "/path"s')
    if t.get("direct_map") and not t.get("static_mem"):
        raise XenkitError(f"{where} direct_map needs static_mem: give its [start, size] pairs")
    memory = parse_size(t.get("memory", "512M"), f"{where} memory")
    if memory <= 0:
        raise XenkitError(f"{where} memory = {t.get('memory')!r}: give a size above 0")
    return Domain(
        name=_text(t.get("name", f"domU{index}"), f"{where} name"),
        kernel=_text(t.get("kernel", ""), f"{where} kernel"),
        ramdisk=_text(t.get("ramdisk", ""), f"{where} ramdisk"),
        # As ImageBuilder: a guest with a virtual PL011 gets it as its console.
        cmdline=_text(
            t.get("cmdline", "console=ttyAMA0" if t.get("vpl011", True) else ""), f"{where} cmdline"
        ),
        memory=memory,
        vcpus=parse_count(t.get("vcpus", 1), f"{where} vcpus"),
        vpl011=bool(t.get("vpl011", True)),
        passthrough_dtb=_text(t.get("passthrough_dtb", ""), f"{where} passthrough_dtb"),
        passthrough_paths=tuple(paths),
        static_mem=_static(t.get("static_mem", ()), f"{where} static_mem"),
        direct_map=bool(t.get("direct_map", False)),
        enhanced=enhanced,
        noboot=bool(t.get("noboot", False)),
        cpupool=cpupool,
    )


def _cpupool(p: Any, index: int) -> Cpupool:
    """[[cpupool]] cpus = ["cpu@1", ...]: CPU nodes by name under /cpus, or by path."""
    where = f"[[cpupool]] #{index + 1}"
    cpus = p.get("cpus") if isinstance(p, dict) else None
    if not isinstance(cpus, list) or not cpus or not all(isinstance(c, str) and c for c in cpus):
        raise XenkitError(f'{where} cpus = {cpus!r}: give CPU nodes, e.g. ["cpu@1", "cpu@2"]')
    return Cpupool(
        tuple(c if c.startswith("/") else f"/cpus/{c}" for c in cpus),
        _text(p.get("scheduler", ""), f"{where} scheduler"),
    )


def _path(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what}: {value!r} is not a path")
    return value


def from_toml(data: dict[str, Any], source: str) -> BootConfig:
    """A boot config from TOML's parsed tables; `source` names it in errors."""
    _known(data, source)
    try:
        boot = data.get("boot", {})
        xen = data.get("xen", {})
        dom0 = data.get("dom0")
        linux = data.get("linux")
        return BootConfig(
            memory_start=_int(boot.get("memory_start", 0), "boot.memory_start"),
            memory_end=_int(boot["memory_end"], "boot.memory_end"),
            device_tree=_text(boot["device_tree"], "boot.device_tree"),
            xen=_text(xen.get("image", ""), "xen.image"),
            xen_cmdline=_text(xen.get("cmdline", ""), "xen.cmdline"),
            xen_policy=_text(xen.get("policy", ""), "xen.policy"),
            xen_static_heap=_static(xen.get("static_heap", ()), "xen.static_heap"),
            dom0=Dom0(
                kernel=_text(dom0["kernel"], "dom0.kernel"),
                ramdisk=_text(dom0.get("ramdisk", ""), "dom0.ramdisk"),
                cmdline=_text(dom0.get("cmdline", ""), "dom0.cmdline"),
                memory=parse_size(dom0.get("memory", 0), "dom0.memory"),
                vcpus=parse_count(dom0.get("vcpus", 0), "dom0.vcpus"),
            )
            if dom0
            else None,
            domains=tuple(domain_from_table(t, i) for i, t in enumerate(data.get("domain", []))),
            cpupools=tuple(_cpupool(p, i) for i, p in enumerate(data.get("cpupool", []))),
            dt_overlays=tuple(_path(o, "boot.dt_overlays") for o in boot.get("dt_overlays", ())),
            linux=Linux(
                _text(linux["kernel"], "linux.kernel"),
                _text(linux.get("ramdisk", ""), "linux.ramdisk"),
                _text(linux.get("cmdline", ""), "linux.cmdline"),
            )
            if linux
            else None,
            load_cmd=_text(boot.get("load", ""), "boot.load"),
            boot_cmd=_text(boot.get("boot_cmd", "booti"), "boot.boot_cmd"),
            append_extra_cmds=_text(boot.get("append_extra_cmds", ""), "boot.append_extra_cmds"),
        )
    except KeyError as exc:
        raise XenkitError(
            f"{source}: missing {exc.args[0]!r}: see the example in the README"
        ) from None
    except (TypeError, AttributeError, ValueError) as exc:
        # A table where a value belongs, or the other way round: tomllib gives the shape,
        # the fields above assume it.
        raise XenkitError(
            f"{source}: a value or table has the wrong type ({exc}): see the example in the README"
        ) from None


def load(path: Path) -> BootConfig:
    import tomllib  # here: an ImageBuilder config (most) never needs it, 5 ms of start-up

    text = files.read_text(path, "config", "give a TOML file")
    try:
        return from_toml(tomllib.loads(text), str(path))
    except tomllib.TOMLDecodeError as exc:
        raise XenkitError(f"{path}: {exc}") from None
