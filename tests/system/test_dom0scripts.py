"""The toolstack Dom0's scripts, checked without booting."""

from __future__ import annotations

import platform
import re
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


def _autoconfig(pass_one: str, after: str) -> str:
    """What Dom0's autoconfig asks modprobe for on each pass, run where the sysfs listing
    gives `pass_one`'s lines, then `after`'s (a driver revealed more), by a stand-in
    modprobe that prints its arguments."""
    loop = re.search(
        r"\n    seen=\"\"\n    for pass in 1 2; do\n.*?\n    done\n", dom0scripts.DOM0_INIT, re.S
    )
    assert loop
    listing = re.search(r"all=\$\((cat .*?) 2>/dev/null \| sort -u\)", loop.group(0), re.S)
    assert listing
    body = loop.group(0).replace(listing.group(1), 'sh -c "echo \\"\\$LIST$pass\\""')
    script = f'modprobe() {{ shift 3; echo "pass $pass: $*"; }}\n{body}'
    env = {"PATH": "/usr/bin:/bin", "LIST1": pass_one, "LIST2": after}
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, check=True, env=env
    ).stdout


def test_autoconfig_probes_again_only_what_a_driver_revealed() -> None:
    first = "pci:v00008086d0000100E\nacpi:PNP0303:"
    assert _autoconfig(first, first) == "pass 1: acpi:PNP0303: pci:v00008086d0000100E\n"
    more = first + "\nusb:v0781p5567"
    assert _autoconfig(first, more) == (
        "pass 1: acpi:PNP0303: pci:v00008086d0000100E\npass 2: usb:v0781p5567\n"
    )


def test_autoconfig_lists_every_modalias_a_walk_of_sysfs_finds() -> None:
    """Dom0 reads the modaliases from the buses', classes' and CPU's device lists, not by
    walking /sys/devices (10 s of an emulated PC's boot): on this machine's sysfs the lists
    must hold every alias the walk finds."""
    listing = re.search(r"all=\$\((cat .*?) 2>/dev/null \| sort -u\)", dom0scripts.DOM0_INIT, re.S)
    assert listing
    command = listing.group(1).replace("\\\n", " ")
    ours = subprocess.run(["sh", "-c", f"{command} 2>/dev/null"], capture_output=True, text=True)
    walk = subprocess.run(
        ["sh", "-c", "find /sys/devices -name modalias -exec cat {} + 2>/dev/null"],
        capture_output=True,
        text=True,
    )
    found = set(walk.stdout.split())
    assert found and found <= set(ours.stdout.split()), found - set(ours.stdout.split())


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


@pytest.mark.parametrize(
    ("cmdline", "dom0_vcpus", "cpus"),
    [
        ("bootscrub=off dom0_max_vcpus=1 dom0_vcpus_pin", 1, "1-3"),  # the emulator's words
        ("dom0_max_vcpus=2 dom0_vcpus_pin", 2, "2-3"),
        ("dom0_max_vcpus=4 dom0_vcpus_pin", 4, ""),  # Dom0 has every CPU: guests share
        ("dom0_max_vcpus=1", 1, ""),  # Dom0's vCPUs float: so do the guests'
    ],
)
def test_guests_get_the_cpus_a_pinned_dom0_leaves(
    tmp_path: Path, cmdline: str, dom0_vcpus: int, cpus: str
) -> None:
    xl = tmp_path / "bin" / "xl"
    xl.parent.mkdir()
    xl.write_text(
        "#!/bin/sh\n"
        '[ "$1" = info ] && printf "nr_cpus                : 4\\n'
        f'xen_commandline        : {cmdline}\\n"\n'
        '[ "$1" = list ] && printf "Name ID Mem VCPUs State Time(s)\\n'
        f'Domain-0 0 512 {dom0_vcpus} r----- 1.0\\n"\n'
        "exit 0\n"
    )
    xl.chmod(0o755)
    env = {"PATH": f"{xl.parent}:/usr/bin:/bin"}
    script = dom0scripts.GUESTS_LIB + 'guest_cpus; echo "/"; guest_cpus "$(xl info)"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ([cpus, "/", cpus] if cpus else ["/"])
