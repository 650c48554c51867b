"""Dom0's toolstack root: its init, checked without booting."""

from __future__ import annotations

import subprocess

from xenkit.system import initramfs, rootfs


def test_dom0s_init_and_dhcp_hook_are_plain_sh() -> None:
    for text in (rootfs.DOM0_INIT, initramfs.UDHCPC_SCRIPT):
        subprocess.run(["sh", "-n"], input=text.encode(), check=True)


def test_dom0s_init_serves_xen_only_where_xen_runs() -> None:
    """The boot menu's "Linux without Xen" runs the same root: no Xen services there."""
    init = rootfs.DOM0_INIT
    assert '[ "$(cat /sys/hypervisor/type 2>/dev/null)" = xen ] && xen=true' in init
    assert init.index("if $xen; then") < init.index("xenstored --pid-file")
    assert "command -v init-dom0less" in init  # Arm's Xen only
