"""Xen knowledge: command lines for Xen and Dom0, and (in .memory) the Dom0 memory model."""

from __future__ import annotations

from xenkit.core.sizes import format_size


def init_dom0less_fails(vcpus: int) -> bool:
    """Whether Xen's init-dom0less fails on an enhanced dom0less domain with `vcpus`.
    It writes "cpu/N/availability/" for vCPUs 0..N-1; xenstored refuses the trailing
    slash, init-dom0less exits, and that domain and every one after it (by domid) are left
    out of xenstore (`xl list` shows "(null)"). Measured on both releases: bookworm's
    4.17.7+13 and trixie's 4.20.4+63 (2026-12-06, a 2-vCPU domain at domid 1 took the
    1-vCPU one at domid 2 with it)."""
    return vcpus > 1


# The newest Xen series init_dom0less_fails was measured on.
INIT_DOM0LESS_MEASURED = (4, 20)


def xen_cmdline(
    console: str,
    board_extra: str,
    dom0_mem: int,
    dom0_vcpus: int = 0,
    extra: str = "",
    driver: str = "dtuart",
) -> str:
    """Xen's console on the board's UART through the architecture's driver (dtuart=ALIAS
    on Arm), an explicit dom0_mem (without it Xen on Arm silently picks 512M and warns),
    then the board's and the user's words."""
    words = [f"console={driver}"] + ([f"{driver}={console}"] if console else [])
    words += board_extra.split()
    words.append(f"dom0_mem={format_size(dom0_mem)}")
    if dom0_vcpus:
        words.append(f"dom0_max_vcpus={dom0_vcpus}")
    words += extra.split()
    return " ".join(words)


def cmdline(*parts: str) -> str:
    """A command line of `parts`' words, in order: where an option comes twice, Xen and
    Linux take the later one."""
    return " ".join(word for part in parts for word in part.split())
