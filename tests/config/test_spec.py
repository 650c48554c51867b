from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests import bootfiles
from tests.conftest import edited_board, make_spec
from xenkit.config import boards, releases, spec
from xenkit.core.sizes import MiB
from xenkit.errors import XenkitError


def test_rpi4_defaults_follow_the_port_write_up() -> None:
    s = make_spec()
    assert s.xen_cmdline == "console=dtuart dtuart=serial1 sync_console dom0_mem=512M"
    assert s.dom0_cmdline == "console=hvc0 earlycon=xen"
    assert s.emu_dom0_cmdline == "console=hvc0 earlycon=xen clk_ignore_unused"
    assert "clk_ignore_unused" not in s.dom0_cmdline
    assert s.emu_xen_cmdline == "bootscrub=off " + s.xen_cmdline
    assert s.dom0_mem == 512 * MiB and s.ram == "4G"


def test_user_settings_shape_the_command_lines() -> None:
    s = make_spec(dom0_mem="1G", dom0_vcpus=2, xen_extra="loglvl=all", dom0_extra="quiet")
    assert s.xen_cmdline.endswith("dom0_mem=1G dom0_max_vcpus=2 loglvl=all")
    assert s.dom0_cmdline == "console=hvc0 earlycon=xen quiet"
    # The user's word comes after the emulator's, and Xen takes the last.
    s = make_spec(xen_extra="bootscrub=idle")
    assert s.emu_xen_cmdline.split()[0] == "bootscrub=off"
    assert s.emu_xen_cmdline.split()[-1] == "bootscrub=idle"
    s = make_spec(xen_cmdline="console=dtuart dtuart=serial1 dom0_mem=256M")
    assert s.xen_cmdline == "console=dtuart dtuart=serial1 dom0_mem=256M"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"board": "nope"}, "unknown board 'nope'"),
        ({"ram": "3G"}, "rpi4 has no 3G model: choose --ram from 1G, 2G, 4G, 8G"),
        ({"ram": "1G", "dom0_mem": "2G"}, "dom0_mem=2G does not fit in the 1G rpi4"),
        ({"dom0_mem": "lots"}, "dom0_mem: cannot read 'lots' as a size"),
        ({"dom0_vcpus": 9}, "dom0_vcpus=9: rpi4 has 4 CPUs"),
        ({"xen_image": "/no/such/xen"}, "xen_image: /no/such/xen is not a readable file"),
    ],
)
def test_bad_settings_are_one_line_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(XenkitError, match=message) as err:
        make_spec(**overrides)
    assert "\n" not in str(err.value)


def test_guests_need_the_toolstack_and_must_fit() -> None:
    with pytest.raises(XenkitError, match="need Dom0's toolstack"):
        make_spec(board="qemu-virt", guest=[{"name": "g1"}])
    spec = make_spec(board="qemu-virt", toolstack=True, guest=[{"name": "g1", "maxvcpus": 2}])
    assert spec.guests[0].ip == "10.99.0.10/24" and spec.guests[0].maxvcpus == 2
    with pytest.raises(XenkitError, match="the guests want 4G") as exc:
        make_spec(
            board="qemu-virt", ram="4G", toolstack=True, guest=[{"name": "g", "memory": "4G"}]
        )
    assert "\n" not in str(exc.value)


def test_guest_names_are_unique_across_dom0less_and_xl_guests() -> None:
    with pytest.raises(XenkitError, match="name is taken"):
        make_spec(
            board="qemu-virt",
            toolstack=True,
            domain=[{"name": "web", "memory": "128M"}],
            guest=[{"name": "web"}],
        )
    with pytest.raises(XenkitError, match="must start with a letter"):
        make_spec(board="qemu-virt", domain=[{"name": "x y", "memory": "64M"}])


def test_toolstack_makes_dom0less_guests_enhanced_unless_told() -> None:
    spec = make_spec(
        board="qemu-virt",
        toolstack=True,
        domain=[{"name": "a", "memory": "64M"}, {"name": "b", "memory": "64M", "enhanced": ""}],
    )
    assert [d.enhanced for d in spec.domains] == ["enabled", ""]
    assert (
        make_spec(board="qemu-virt", domain=[{"name": "a", "memory": "64M"}]).domains[0].enhanced
        == ""
    )


def test_multi_vcpu_dom0less_guests_stay_out_of_xenstore(caplog: pytest.LogCaptureFixture) -> None:
    # Xen's init-dom0less (4.17 and 4.20) fails on enhanced domains with more than one vCPU.
    spec = make_spec(
        board="qemu-virt",
        toolstack=True,
        domain=[{"name": "a", "memory": "64M", "vcpus": 2}, {"name": "b", "memory": "64M"}],
    )
    assert [d.enhanced for d in spec.domains] == ["", "enabled"]
    assert "domain a has 2 vCPUs, so it stays out of xenstore" in caplog.text
    with pytest.raises(
        XenkitError, match=r"enhanced with 2 vCPUs: Xen.s init-dom0less \(4\.17, 4\.20\)"
    ):
        make_spec(
            board="qemu-virt",
            toolstack=True,
            domain=[{"name": "a", "memory": "64M", "vcpus": 2, "enhanced": "enabled"}],
        )


def test_the_toolstack_is_the_boards_choice_unless_the_user_says() -> None:
    assert make_spec(board="pc").toolstack and not make_spec(board="rpi4").toolstack
    assert not make_spec(board="pc", toolstack=False).toolstack
    assert make_spec(board="rpi4", toolstack=True).toolstack


def test_pc_guests_join_the_network_dom0_bridged_by_dhcp() -> None:
    g = make_spec(board="pc", guest=[{"name": "g1"}]).guests[0]
    assert (g.type, g.ip, g.ping) == ("pv", "dhcp", "gateway")


def test_dom0_root_is_sd_or_initramfs() -> None:
    assert make_spec(toolstack=True, dom0_root="initramfs").dom0_root == "initramfs"
    with pytest.raises(XenkitError, match="choose one of sd, initramfs"):
        make_spec(toolstack=True, dom0_root="nfs")


def test_a_bare_number_is_mib_everywhere() -> None:
    s = make_spec(
        board="qemu-virt",
        dom0_mem="512",
        toolstack=True,
        domain=[{"name": "a", "memory": 128}, {"name": "b", "memory": "96"}],
        guest=[{"name": "g", "memory": 64, "maxmem": "80"}],
    )
    assert s.dom0_mem == 512 * MiB
    assert [d.memory for d in s.domains] == [128 * MiB, 96 * MiB]
    assert (s.guests[0].memory, s.guests[0].maxmem) == (64 * MiB, 80 * MiB)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dom0_mem": "16M"}, "dom0_mem: 16M is too small for Linux to boot in: give at least 64M"),
        (
            {"domain": [{"name": "tiny", "memory": "32M"}]},
            r"\[\[domain\]\] tiny: 32M is too small for Linux",
        ),
        (
            {"toolstack": True, "guest": [{"name": "g", "memory": "100B"}]},
            r"\[\[guest\]\] g: 100B is too small for Linux",
        ),
        ({"domain": [{"name": "x", "memory": True}]}, "is not a size"),
        (
            {"board": "pc", "guest": [{"name": "g", "memory": "64M"}]},
            r"\[\[guest\]\] g: memory = 64M is too small for Dom0's kernel, which it runs: "
            "give at least 80M",
        ),
    ],
)
def test_domains_too_small_to_boot_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(XenkitError, match=message):
        make_spec(**{"board": "qemu-virt", **overrides})


def test_a_plan_that_fits_the_board_but_not_its_emulator_is_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 19's case: fine on the 4G Pi 4, but the emulated one has 960 MiB, where xl
    create once failed with "can't allocate low memory" and nothing said why."""
    domains = [{"name": "a", "memory": "160M"}, {"name": "t", "kernel": "builtin:tick"}]
    with caplog.at_level(logging.WARNING, logger="xenkit"):
        s = make_spec(
            board="rpi4", dom0_mem="640M", toolstack=True, domain=domains, guest=[{"name": "g"}]
        )
    assert s.guests and len(caplog.records) == 1
    assert caplog.records[0].getMessage() == (
        "warning: the emulator has 960M of RAM: beside Dom0 (640M) and the dom0less guests "
        "about 80M is free, but the run-time guests want 128M (g 128M), so xenkit run cannot "
        "start them "
        "all (give them less memory, or lower dom0_mem)"
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xenkit"):
        make_spec(board="rpi4", dom0_mem="384M", toolstack=True, guest=[{"name": "g"}])
    assert not caplog.records


def test_the_emulator_shortfall_is_empty_when_it_fits() -> None:
    assert spec.emulator_shortfall(960 << 20, 384 << 20, 0, {"g": 128 << 20}) == ""
    short = spec.emulator_shortfall(960 << 20, 384 << 20, 0, {"a": 300 << 20, "b": 300 << 20})
    assert "want 600M (a 300M, b 300M)" in short


def test_dom0_and_dom0less_guests_that_alone_overflow_the_emulator_say_so() -> None:
    short = spec.emulator_shortfall(960 << 20, 768 << 20, 400 << 20, {})
    assert short == (
        "the emulator has 960M of RAM: Dom0 (768M) and the dom0less guests (400M) alone do "
        "not fit it, so xenkit run cannot boot this (lower dom0_mem or the dom0less guests' "
        "memory)"
    )


def test_a_guest_disk_needs_the_qdisk_backend_only_the_pc_dom0_has() -> None:
    guest = [{"name": "g", "disk": "64M"}]
    with pytest.raises(XenkitError, match="drop disk on qemu-virt"):
        make_spec(board="qemu-virt", toolstack=True, guest=guest)
    assert make_spec(board="pc", guest=guest).guests[0].disk == 64 * MiB


def test_a_xen_image_for_the_other_architecture_is_refused_at_the_edge(tmp_path: Path) -> None:
    x86 = bootfiles.x86_xen(tmp_path / "xen.gz")
    with pytest.raises(XenkitError, match=rf"xen_image \(--xen-image\) {x86} is Xen for amd64"):
        make_spec(board="rpi4", xen_image=str(x86))
    assert make_spec(board="pc", xen_image=str(x86)).xen_image == x86


def test_a_run_time_guests_kernel_must_be_linux_not_xen(tmp_path: Path) -> None:
    """Xen's own binary has an arm64 Image header too: it was taken as a guest kernel."""
    xen = bootfiles.image(tmp_path / "xen", 4096, 4096, bootfiles.XEN_MARKS)
    linux = bootfiles.image(tmp_path / "Image", 4096, 0x2000000, bootfiles.LINUX_BANNER)
    with pytest.raises(XenkitError, match=rf"\[\[guest\]\] g: kernel {xen} does not look like"):
        make_spec(board="qemu-virt", toolstack=True, guest=[{"name": "g", "kernel": str(xen)}])
    guest = [{"name": "g", "kernel": str(linux)}]
    assert make_spec(board="qemu-virt", toolstack=True, guest=guest).guests[0].kernel == str(linux)


@pytest.mark.parametrize("debian", ["bookworm", "trixie"])
def test_each_release_names_its_own_xen_packages(debian: str) -> None:
    board = make_spec(board="rpi4", debian=debian).board
    xen = next(p for p in board.packages if p.role == "xen")
    series = releases.get(debian).xen
    assert board.release == debian
    assert (xen.name, xen.files["xen"]) == (
        f"xen-hypervisor-{series}-arm64",
        f"boot/xen-{series}-arm64",
    )


def test_an_unknown_release_is_one_line() -> None:
    with pytest.raises(XenkitError, match=r"^debian='buster' is not a Debian release xenkit"):
        make_spec(board="rpi4", debian="buster")


def test_a_board_file_release_must_be_known(tmp_path: Path) -> None:
    bad = edited_board(tmp_path, "rpi4", 'release = "bookworm"', 'release = "sarge"')
    with pytest.raises(XenkitError, match=r"release = 'sarge': choose one of bookworm, trixie"):
        boards.load(str(bad))
