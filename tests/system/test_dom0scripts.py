"""The toolstack Dom0's scripts, checked without booting."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest

from xenkit.system import dom0scripts, initramfs


def test_dom0s_init_and_dhcp_hook_are_plain_sh() -> None:
    for text in (dom0scripts.DOM0_INIT, initramfs.UDHCPC_SCRIPT):
        subprocess.run(["sh", "-n"], input=text.encode(), check=True)


def test_dom0s_init_serves_xen_only_where_xen_runs() -> None:
    """The boot menu's "Linux without Xen" runs the same root: no Xen services there."""
    init = dom0scripts.DOM0_INIT
    assert '[ "$(cat /sys/hypervisor/type 2>/dev/null)" = xen ] && xen=true' in init
    assert init.index("if $xen; then") < init.index("xenstored --pid-file")
    assert "command -v init-dom0less" in init  # Arm's Xen only


def test_xenkit_start_and_the_guest_library_are_plain_sh() -> None:
    for text in (dom0scripts.GUESTS_LIB, dom0scripts.GUEST_TOOL_SCRIPT):
        subprocess.run(["sh", "-n"], input=text.encode(), check=True)


def _ask(tmp_path: Path, caps: str, command: str) -> str:
    """Run the guest library's `command` with an `xl` whose `xl info` reports `caps` (the
    real xl needs a running Xen; its output format is what is under test)."""
    xl = tmp_path / "bin" / "xl"
    xl.parent.mkdir(exist_ok=True)
    xl.write_text(f'#!/bin/sh\n[ "$1" = info ] && echo "virt_caps              : {caps}"\n')
    xl.chmod(0o755)
    script = dom0scripts.GUESTS_LIB + command
    env = {"PATH": f"{xl.parent}:/usr/bin:/bin"}
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the x86 rule; Arm runs its one kind")
@pytest.mark.parametrize(
    ("caps", "runs"),
    [
        ("pv hvm hap vmtrace", "pv pvh hvm"),  # Xen 4.17's words with AMD-V + NPT
        ("pv hvm", "pv"),  # VT-x/AMD-V without HAP: Debian's Xen has no shadow paging
        ("pv", "pv"),
    ],
)
def test_which_guest_types_a_machine_runs(tmp_path: Path, caps: str, runs: str) -> None:
    assert _ask(tmp_path, caps, "runnable_types") == runs


def test_a_guest_the_machine_cannot_run_gets_one_line_suggesting_pv(tmp_path: Path) -> None:
    cfg = tmp_path / "g2.cfg"
    cfg.write_text('name = "g2"\ntype = "hvm"\n')
    why = _ask(tmp_path, "pv", f"cannot_run g2 {cfg}")
    assert why == (
        "xenkit: guest g2 is hvm, but this machine's Xen runs only PV guests (virt_caps: pv; "
        'hvm needs VT-x or AMD-V with nested paging): make it type = "pv"'
    )
    assert _ask(tmp_path, "pv hvm hap", f"cannot_run g2 {cfg}") == ""
    cfg.write_text('type = "pv"\n')
    assert _ask(tmp_path, "pv", f"cannot_run g2 {cfg}") == ""
