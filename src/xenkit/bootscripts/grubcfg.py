"""GRUB's menu for the PC's boot medium and PXE tree: Xen (and Xen with Dom0's memory
capped, and a safe mode), or plain Linux, on the serial line and the screen alike."""

from __future__ import annotations

import mmap
import re

from xenkit.config import arch
from xenkit.config.spec import SystemSpec
from xenkit.core.sizes import format_size
from xenkit.errors import XenkitError

# Xen's conservative options, as XCP-ng's installer offers them for machines where a normal
# boot fails: one CPU, no reboot on a crash (the message stays on screen), no boot-time
# memory scrub, no machine-check handling, no deep C-states, no NUMA.
SAFE = ("nosmp", "noreboot", "bootscrub=false", "mce=false", "max_cstate=0", "numa=off")
# Words that only mean something under Xen, dropped from Dom0's line for plain Linux.
XEN_ONLY = ("console=hvc0", "earlyprintk=xen")

# Xen's words for the emulator only (the board's [emulate] xen_cmdline): a blank slot of fixed
# width in grub.cfg, which the emulator fills in its own copy of the medium, byte for byte in
# place, so the image for a real PC never carries them.
SLOT = 64
SLOT_VAR = "xenkit_emulator"
_SLOT = re.compile(rb'^set %s="[^"\n]{%d}"$' % (SLOT_VAR.encode(), SLOT), re.M)


def slot_line(words: str = "") -> str:
    if len(words) > SLOT or '"' in words:
        raise XenkitError(
            f"the emulator's Xen words {words!r} do not fit grub.cfg's slot: at most {SLOT} "
            "characters, no quotes (the board's [emulate] xen_cmdline)"
        )
    return f'set {SLOT_VAR}="{words:<{SLOT}}"'


def fill_slot(data: bytearray | mmap.mmap, words: str) -> bool:
    """Write `words` into the emulator's slot of the grub.cfg found in `data` (a grub.cfg,
    or a whole image holding one); False if there is none."""
    found = _SLOT.search(data)
    if found is None:
        return False
    data[found.start() : found.end()] = slot_line(words).encode()
    return True


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
            f"    multiboot2 {xen} ${SLOT_VAR} {xen_cmdline}",
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
        "# Blank on this image: xenkit's emulator writes Xen's words for it into its own copy.",
        slot_line(),
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


# The first line of pxe_http's header, and where it ends.
PXE_HTTP = "# Written by xenkit: over PXE"
_PXE_HTTP_BLOCK = re.compile(rf"^{re.escape(PXE_HTTP)}.*?^fi\n\n", re.M | re.S)
# The PXE tree's file that switches GRUB's root to HTTP: fetched from the HTTP server itself,
# so it is only read where that server answers and serves this tree.
HTTP_CFG = "boot/grub/http.cfg"
HTTP_SAID = "xenkit: Xen, Dom0's kernel and initramfs over HTTP from"


def pxe_http(server: str, port: int) -> tuple[str, str]:
    """The PXE tree's header for grub.cfg and its http.cfg: the big files over HTTP from
    `server` (else the one GRUB booted from, $net_default_server) on `port`, TFTP when no
    server answers there. GRUB's `[ -e ]` cannot probe an HTTP path (its net filesystem
    lists nothing), so the probe is `source`: a refused port costs GRUB 2.06 about 16 s
    (measured under QEMU) and leaves root on TFTP."""
    host = server or "${net_default_server}"
    header = "\n".join(
        [
            f"{PXE_HTTP}, the big files come over HTTP where the server",
            f"# answers on port {port}; else over TFTP, as GRUB itself came.",
            'if [ -n "$net_default_server" ]; then',
            "    insmod http",
            f"    set xenkit_http=(http,{host}:{port})",
            f"    source $xenkit_http/{HTTP_CFG}",
            "fi",
            "",
            "",
        ]
    )
    http_cfg = f'set root=$xenkit_http\necho "{HTTP_SAID} $xenkit_http"\n'
    return header, http_cfg


def without_pxe_http(cfg: str) -> str:
    """grub.cfg without pxe_http's header: for QEMU's own TFTP server, where HTTP would
    find whatever listens on the host's port."""
    return _PXE_HTTP_BLOCK.sub("", cfg, count=1)
