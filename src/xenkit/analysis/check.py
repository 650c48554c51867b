"""`xenkit check`: the Pi 4's memory, DMA, console and boot-layout pitfalls, before boot;
on the PC, Xen's console, the guests' memory and the CPU's virtualisation features.

A Target (analysis.facts) gathers what is known about a system (board, DTB, RAM, command
lines, the binaries, the boot modules); each check is a small function from a Target to a
Finding with a verdict and, when something is wrong, the fix.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from xenkit.analysis.facts import Target as Target
from xenkit.analysis.facts import cmdline_value as cmdline_value
from xenkit.analysis.facts import from_build as from_build
from xenkit.analysis.facts import from_parts as from_parts
from xenkit.analysis.facts import ram_banks as ram_banks
from xenkit.analysis.facts import read_given as read_given
from xenkit.analysis.facts import xen_size as xen_size
from xenkit.config.arch import HARDWARE_GUESTS
from xenkit.config.spec import guest_room
from xenkit.core import spans
from xenkit.core.sizes import format_size
from xenkit.errors import XenkitError
from xenkit.formats import dt
from xenkit.formats.binaries import Version


class Verdict(IntEnum):
    OK = 0
    WARN = 1
    FAIL = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Finding:
    check: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "verdict": str(self.verdict),
            "detail": self.detail,
            "fix": self.fix,
        }


# -- the checks -------------------------------------------------------------------------------
def _mb(n: int) -> str:
    return f"{n >> 20} MiB"


def check_dom0_memory(t: Target) -> Finding:
    d = t.dom0
    banks = ", ".join(f"{s:#x}-{s + n:#x}" for s, n in d.banks) or "none"
    if t.dom0_mem is None:
        return Finding(
            "dom0 memory",
            Verdict.WARN,
            f"no dom0_mem on Xen's command line: Xen takes 512M and warns; predicted banks {banks}",
            "add dom0_mem=512M (or what Dom0 needs)",
        )
    total = sum(n for _, n in t.ram)
    if t.dom0_mem >= total:
        return Finding(
            "dom0 memory",
            Verdict.FAIL,
            f"dom0_mem={_mb(t.dom0_mem)} but the board has {_mb(total)} of RAM",
            f"give dom0_mem less than {_mb(total)}",
        )
    if not d.complete:
        return Finding(
            "dom0 memory",
            Verdict.FAIL,
            f"Xen can map only {_mb(d.allocated)} of {_mb(t.dom0_mem)} 1:1 ({banks}) and panics",
            "lower dom0_mem",
        )
    detail = f"{_mb(t.dom0_mem)} in {len(d.banks)} bank(s): {banks}"
    if d.alternatives:
        detail += " (idle scrubbing may change this)"
    return Finding("dom0 memory", Verdict.OK, detail)


def _overlap(windows: Sequence[dt.Mapping], banks: Sequence[tuple[int, int]]) -> int:
    return sum(
        spans.common(w.parent, w.parent + w.size, s, s + n) for w in windows for s, n in banks
    )


def check_dma_reach(t: Target) -> Finding:
    """Every DMA-limited device must reach Dom0 memory; its first bank (where Linux puts
    swiotlb-xen's bounce buffer and CMA) should sit inside the window entirely."""
    d = t.dom0
    groups: dict[tuple[dt.Mapping, ...], list[str]] = {}
    for dev in t.devices:
        if dev.enabled and dev.dma is not None and dev.regs:
            groups.setdefault(dev.dma, []).append(dev.path)
    if not groups:
        return Finding("dma reach", Verdict.OK, "no device has a DMA limit")
    worst, parts = Verdict.OK, []
    for windows, paths in groups.items():
        reach = _overlap(windows, d.banks)
        span = ", ".join(
            f"CPU {w.parent:#x}-{w.parent + w.size:#x} at bus {w.child:#x}" for w in windows
        )
        parts.append(f"{len(paths)} devices ({span}) reach {_mb(reach)} of Dom0")
        if reach == 0:
            worst = Verdict.FAIL
        elif d.banks and _overlap(windows, d.banks[:1]) < d.banks[0][1]:
            worst = max(worst, Verdict.WARN)
    fix = ""
    if worst == Verdict.FAIL:
        fix = "use Xen >= 4.14 (30-bit lowmem) or a smaller dom0_mem so bank 0 lands low"
    elif worst == Verdict.WARN:
        fix = "Dom0's first bank is partly out of DMA reach: lower dom0_mem"
    return Finding("dma reach", worst, "; ".join(parts), fix)


def _version_check(
    name: str, found: Version | None, need: tuple[int, int], what: str, flag: str, why: str
) -> Finding:
    wanted = ".".join(map(str, need))
    if found is None:
        return Finding(
            name,
            Verdict.WARN,
            f"no {what} given: version unknown",
            f"pass {flag} FILE or check a build directory",
        )
    if not found.at_least(*need):
        return Finding(
            name,
            Verdict.FAIL,
            f"{what} {found} is older than {wanted}: {why}",
            f"use {what} >= {wanted}",
        )
    return Finding(name, Verdict.OK, f"{what} {found} (>= {wanted})")


def check_xen_version(t: Target) -> Finding:
    return _version_check(
        "xen version",
        t.xen_version,
        t.board.min_xen,
        "Xen",
        "--xen",
        f"the first release that boots Dom0 correctly on {t.board.name}",
    )


def check_linux_version(t: Target) -> Finding:
    return _version_check(
        "dom0 linux version",
        t.linux_version,
        t.board.min_dom0_linux,
        "Linux",
        "--kernel",
        "it lacks the swiotlb-xen fixes Dom0 needs",
    )


def _xen_console(t: Target) -> str | None:
    if cmdline_value(t.xen_cmdline, "console") not in (None, "dtuart"):
        return None
    return cmdline_value(t.xen_cmdline, "dtuart") or t.devicetree.string("/chosen", "stdout-path")


def check_console(t: Target) -> Finding:
    ref = _xen_console(t)
    if ref is None:
        return Finding(
            "xen console",
            Verdict.WARN,
            "Xen's console is not a dtuart",
            "use console=dtuart dtuart=ALIAS",
        )
    try:
        path, driver = dt.console_uart(t.devicetree, ref)
    except XenkitError as exc:
        return Finding("xen console", Verdict.FAIL, str(exc), "point dtuart= at a UART")
    if any(p.startswith(path + "/") for p, _ in t.devicetree.nodes()):
        child = next(p for p, _ in t.devicetree.nodes() if p.startswith(path + "/"))
        return Finding(
            "xen console",
            Verdict.FAIL,
            f"dtuart={ref} is {path}, wired to {child.rsplit('/', 1)[1]}: "
            "nothing reaches the pin header",
            "use dtuart=serial1 (the mini-UART on the header), or disable Bluetooth",
        )
    return Finding("xen console", Verdict.OK, f"dtuart={ref} is {path} ({driver} driver)")


def check_dom0_console(t: Target) -> Finding:
    consoles = [w.split("=", 1)[1] for w in t.dom0_cmdline.split() if w.startswith("console=")]
    uart = [c for c in consoles if re.match(r"tty(S|AMA|PS|SAC)\d", c)]
    if uart:
        return Finding(
            "dom0 console",
            Verdict.FAIL,
            f"Dom0 is given console={uart[0]}, a UART Xen owns or hides",
            "give Dom0 console=hvc0",
        )
    if "hvc0" not in consoles:
        return Finding(
            "dom0 console",
            Verdict.WARN,
            "Dom0 has no console=hvc0: its messages will not reach Xen's console",
            "add console=hvc0",
        )
    return Finding("dom0 console", Verdict.OK, "Dom0 writes to hvc0 (through Xen)")


def check_enable_uart(t: Target) -> Finding:
    ref = _xen_console(t)
    try:
        path = t.devicetree.resolve_path(ref) if ref else None
    except XenkitError:
        path = None
    if path is None or "brcm,bcm2835-aux-uart" not in t.devicetree.compatible(path):
        return Finding("config.txt enable_uart", Verdict.OK, "console is not the mini-UART")
    if t.config_txt is None:
        return Finding(
            "config.txt enable_uart",
            Verdict.WARN,
            "config.txt not given",
            "make sure it has enable_uart=1 (pass --config-txt to check)",
        )
    lines = [line.split("#", 1)[0].strip() for line in t.config_txt]
    if "enable_uart=1" not in lines:
        return Finding(
            "config.txt enable_uart",
            Verdict.FAIL,
            "the mini-UART's clock follows the VPU unless enable_uart=1 pins it: "
            "garbage or silence on the console",
            "add enable_uart=1 to config.txt",
        )
    return Finding("config.txt enable_uart", Verdict.OK, "enable_uart=1")


GICV2 = ("arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a7-gic", "arm,cortex-a9-gic")


def check_gic(t: Target) -> Finding:
    for path, _ in t.devicetree.nodes():
        compat = t.devicetree.compatible(path)
        if any(c in GICV2 for c in compat):
            regs = t.addresses.device(path).regs
            if len(regs) < 4:
                return Finding(
                    "gic",
                    Verdict.FAIL,
                    f"{path} is a GICv2 without the hypervisor and virtual CPU "
                    f"interfaces ({len(regs)} reg entries, Xen needs 4)",
                    "use a DTB describing GICH and GICV (enable_gic=1 on a Pi 4)",
                )
            hyp = regs[2][0]
            return Finding("gic", Verdict.OK, f"GICv2 {path}, GICH at {hyp:#x}")
        if "arm,gic-v3" in compat:
            return Finding("gic", Verdict.OK, f"GICv3 {path}")
    return Finding(
        "gic",
        Verdict.FAIL,
        "no GICv2 or GICv3 in the DTB",
        "Xen on Arm needs a GIC with virtualization extensions",
    )


def check_modules(t: Target) -> Finding:
    if not t.modules:
        return Finding("boot modules", Verdict.OK, "no load layout given (check a build)")
    others = [(s, s + n, "reserved memory") for s, n in t.reserved]
    others += [(r.start, r.end, r.why) for r in t.board.reserved]
    problems = spans.collisions([(m.start, m.end, m.kind) for m in t.modules], others)
    for m in t.modules:
        if not spans.inside(m.start, m.end, t.ram):
            problems.append(f"{m.kind} {m.start:#x}-{m.end:#x} is outside RAM")
    if problems:
        return Finding(
            "boot modules",
            Verdict.FAIL,
            "; ".join(problems),
            "rebuild: xenkit plans loads clear of these",
        )
    return Finding("boot modules", Verdict.OK, f"{len(t.modules)} modules, no overlaps, inside RAM")


def check_hidden(t: Target) -> Finding:
    tree = t.devicetree
    hidden = [p for c in t.board.xen_hides for p in tree.find_compatible(c) if tree.enabled(p)]
    if not hidden:
        return Finding("devices xen hides", Verdict.OK, "none")
    return Finding(
        "devices xen hides",
        Verdict.OK,
        f"Xen keeps {', '.join(hidden)} from Dom0 (shared with its UART or used "
        "for reset): Dom0 drivers for them will not probe",
    )


# Every check by the name it reports under, in report order. A boot target names the ones
# that apply to its boards (xenkit.targets: Target.checks); a build records them.
# -- the PC -----------------------------------------------------------------------------------
def check_pc_console(t: Target) -> Finding:
    """Xen on x86 writes to com1 and the screen unless told otherwise; a serial console
    needs its line settings, or Xen keeps whatever the firmware left."""
    given = cmdline_value(t.xen_cmdline, "console")
    devices = (given or "com1,vga").split(",")
    if "dtuart" in devices:
        return Finding(
            "pc console",
            Verdict.FAIL,
            "console=dtuart is Arm's: a PC's Xen has no device tree to find it in",
            "use console=com1 com1=115200,8n1 (and vga for the screen)",
        )
    if "com1" not in devices:
        return Finding(
            "pc console",
            Verdict.WARN,
            f"Xen's console is {given}: no serial line keeps a log of a failed boot",
            "add com1: console=com1,vga com1=115200,8n1",
        )
    line = cmdline_value(t.xen_cmdline, "com1")
    if not line:
        return Finding(
            "pc console",
            Verdict.WARN,
            "console=com1 without com1=: Xen keeps the firmware's line settings, often none",
            "add com1=115200,8n1",
        )
    screen = " and the screen" if "vga" in devices or given is None else ""
    return Finding("pc console", Verdict.OK, f"Xen writes to com1 at {line}{screen}")


def check_guest_memory(t: Target) -> Finding:
    total = sum(n for _, n in t.ram)
    where = "the emulated PC" if t.emulated else f"a {format_size(total)} PC"
    if t.dom0_mem is None:
        return Finding(
            "guest memory",
            Verdict.WARN,
            "no dom0_mem: Xen on x86 gives Dom0 nearly all memory, and each guest waits for "
            "Dom0's balloon to hand some back",
            "add dom0_mem=512M (or what Dom0 needs)",
        )
    free = guest_room(total, t.dom0_mem, 0)
    if t.guests_memory > free:
        return Finding(
            "guest memory",
            Verdict.FAIL,
            f"the run-time guests want {format_size(t.guests_memory)}, but {where} has "
            f"{format_size(max(free, 0))} beside Dom0 ({format_size(t.dom0_mem)}) and Xen",
            "give the guests less memory, lower dom0_mem, or build for more RAM (--ram)",
        )
    guests = f"guests up to {format_size(t.guests_memory)}" if t.guests_memory else "no guests yet"
    return Finding(
        "guest memory",
        Verdict.OK,
        f"Dom0 {format_size(t.dom0_mem)}; {guests}; {format_size(free)} for guests in {where}",
    )


def check_virtualisation(t: Target) -> Finding:
    """HVM and PVH guests need VT-x or AMD-V and hardware-assisted paging: Debian's Xen is
    built without shadow paging (../shared/field-notes.md). A guest of a type the emulated
    PC cannot run fails; on hardware it warns, since a live image boots on other PCs too."""
    if t.emulated:
        cpu = t.board.emulate.cpu or "qemu64"
        flags: frozenset[str] | None = emulated_cpu_flags(cpu)
        where = f"the emulated PC (QEMU -cpu {cpu})"
        fix = "emulate a CPU with SVM and nested paging (xenkit run --cpu qemu64,+svm,+npt)"
    else:
        flags = t.cpu_flags
        where = "this machine (the one xenkit runs on; Dom0's banner says it for any other)"
        fix = "turn virtualisation on in the firmware setup (in a VM: nested virtualisation)"
    wanting = [f"{name} ({kind})" for name, kind in t.guest_types if kind in HARDWARE_GUESTS]
    if flags is None:
        return Finding("virtualisation", Verdict.WARN, "cannot read this machine's CPU flags")
    kind = "VT-x" if "vmx" in flags else "AMD-V" if "svm" in flags else ""
    if kind and flags & {"ept", "npt"}:
        return Finding(
            "virtualisation", Verdict.OK, f"{where} has {kind} with nested paging: PV, PVH, HVM"
        )
    if not kind:
        why = f"{where} has no VT-x or AMD-V: PV guests only"
    else:
        why = (
            f"{where} has {kind} without nested paging, and Debian's Xen has no shadow "
            "paging: PV guests only"
        )
    if wanting:
        why += f"; {', '.join(wanting)} cannot run"
        fix = f'give them type = "pv", or {fix}'
    return Finding(
        "virtualisation", Verdict.FAIL if wanting and t.emulated else Verdict.WARN, why, fix
    )


# What QEMU's CPU models give a guest under TCG: "max" (and KVM's "host") carry AMD-V with
# nested paging; qemu64 AMD-V without it (Xen: "HVM: SVM enabled", "HAP not detected");
# other models what is added (+svm,+npt).
_MODELS = {"max": {"svm", "npt"}, "host": {"svm", "npt"}, "qemu64": {"svm"}}


def emulated_cpu_flags(cpu: str) -> frozenset[str]:
    """The virtualisation flags of QEMU's `-cpu` option (model, then +flag/-flag/flag=on|off)."""
    model, *opts = cpu.split(",")
    flags = set(_MODELS.get(model, set()))
    for opt in opts:
        name, _, value = opt.partition("=")
        on = not name.startswith("-") and value not in ("off", "false", "no")
        name = name.lstrip("+-")
        if on:
            flags.add(name)
        else:
            flags.discard(name)
    return frozenset(flags)


CHECKS: dict[str, Callable[[Target], Finding]] = {
    "xen version": check_xen_version,
    "dom0 linux version": check_linux_version,
    "xen console": check_console,
    "dom0 console": check_dom0_console,
    "config.txt enable_uart": check_enable_uart,
    "gic": check_gic,
    "boot modules": check_modules,
    "dom0 memory": check_dom0_memory,
    "dma reach": check_dma_reach,
    "devices xen hides": check_hidden,
    "pc console": check_pc_console,
    "guest memory": check_guest_memory,
    "virtualisation": check_virtualisation,
}


# The PC's own: on a device-tree board's Xen (console=dtuart) the console check would fail.
PC_CHECKS = ("pc console", "guest memory", "virtualisation")
# What a Target that names no checks gets (`xenkit check --board`, given piece by piece).
DEVICE_TREE_CHECKS = tuple(name for name in CHECKS if name not in PC_CHECKS)


def run_checks(t: Target) -> list[Finding]:
    """The checks that apply to `t` (its boot target's, else a device-tree board's), in
    report order."""
    names = t.checks
    unknown = set(names or ()) - set(CHECKS)
    if unknown:
        raise XenkitError(
            f"no check named {', '.join(sorted(unknown))}; known: {', '.join(CHECKS)}"
        )
    if names is None:
        names = DEVICE_TREE_CHECKS
    return [check(t) for name, check in CHECKS.items() if name in names]


def worst(findings: Sequence[Finding]) -> Verdict:
    return max((f.verdict for f in findings), default=Verdict.OK)


def report(t: Target, findings: Sequence[Finding]) -> str:
    width = max((len(f.check) for f in findings), default=0)
    lines = [f"xenkit check: {t.description}"]
    for f in findings:
        lines.append(f"  {f.verdict!s:<4}  {f.check:<{width}}  {f.detail}")
        if f.fix:
            lines.append(f"  {'':<4}  {'':<{width}}  fix: {f.fix}")
    lines.append(f"worst: {worst(findings)}")
    return "\n".join(lines)


def as_json(t: Target, findings: Sequence[Finding]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "target": t.description,
        "worst": str(worst(findings)),
        "xen_cmdline": t.xen_cmdline,
        "dom0_cmdline": t.dom0_cmdline,
        "findings": [f.as_dict() for f in findings],
    }
    if t.tree is not None:
        # Xen on Arm's Dom0 memory model, which reads the device tree's reserved ranges.
        d = t.dom0
        out["dom0_banks"] = [{"start": s, "size": n} for s, n in d.banks]
        out["dom0_bank_lines"] = d.bank_lines()
        out["model_notes"] = list(d.notes)
    return out
