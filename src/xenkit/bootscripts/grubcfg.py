"""GRUB's menu for the PC's boot medium and PXE tree: Xen (and Xen with Dom0's memory
capped, and a safe mode), or plain Linux, on the serial line and the screen alike."""

from __future__ import annotations

from xenkit.config import arch
from xenkit.config.spec import SystemSpec
from xenkit.core.sizes import format_size

# Xen's conservative options, as XCP-ng's installer offers them for machines where a normal
# boot fails: one CPU, no reboot on a crash (the message stays on screen), no boot-time
# memory scrub, no machine-check handling, no deep C-states, no NUMA.
SAFE = ("nosmp", "noreboot", "bootscrub=false", "mce=false", "max_cstate=0", "numa=off")
# Words that only mean something under Xen, dropped from Dom0's line for plain Linux.
XEN_ONLY = ("console=hvc0", "earlyprintk=xen")


def _capped(xen_cmdline: str, dom0_mem: int) -> str:
    """Xen's line with Dom0's memory fixed: it cannot balloon above its start size."""
    size = format_size(dom0_mem)
    words = [w for w in xen_cmdline.split() if not w.startswith("dom0_mem=")]
    return " ".join([*words, f"dom0_mem={size},max:{size}"])


def menu(spec: SystemSpec, timeout: int, dom0_cmdline: str) -> str:
    """grub.cfg: on the serial line and the screen alike, Xen by default. A network root's
    initramfs is a gzip'd archive with the pinned indexes appended uncompressed: GRUB
    must pass it as it is (it would inflate the first member only)."""
    nounzip = "--nounzip " if spec.net_root else ""
    a = arch.get(spec.board.arch)
    xen, kernel, initrd = (f"/boot/{n}" for n in (a.xen_file, a.kernel_file, arch.RAMDISK_FILE))
    linux = [w for w in dom0_cmdline.split() if w not in XEN_ONLY]
    speed = spec.board.xen_console.split(",")[0] or "115200"

    def xen_entry(title: str, xen_cmdline: str) -> list[str]:
        return [
            f'menuentry "{title}" {{',
            f"    multiboot2 {xen} {xen_cmdline}",
            f"    module2 {kernel} {dom0_cmdline}",
            f"    module2 {nounzip}{initrd}",
            "}",
        ]

    lines = [
        "# Written by xenkit.",
        f"serial --unit=0 --speed={speed}",
        "terminal_input serial console",
        "terminal_output serial console",
        f"set timeout={timeout}",
        "set default=0",
        "",
        *xen_entry("Xen", spec.xen_cmdline),
        *xen_entry(
            f"Xen, Dom0 memory capped at {format_size(spec.dom0_mem)}",
            _capped(spec.xen_cmdline, spec.dom0_mem),
        ),
        'menuentry "Linux without Xen" {',
        f"    linux {kernel} {' '.join([f'console=ttyS0,{speed}', *linux])}",
        f"    initrd {initrd}",
        "}",
        *xen_entry("Xen safe mode", " ".join([spec.xen_cmdline, *SAFE])),
        "",
    ]
    return "\n".join(lines)
