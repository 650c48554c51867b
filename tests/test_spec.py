from __future__ import annotations

import pytest

from tests.conftest import make_spec
from xenkit.errors import XenkitError
from xenkit.sizes import MiB


def test_rpi4_defaults_follow_the_port_write_up() -> None:
    s = make_spec()
    assert s.xen_cmdline == "console=dtuart dtuart=serial1 sync_console dom0_mem=512M"
    assert s.dom0_cmdline == "console=hvc0 earlycon=xen"
    assert s.emu_dom0_cmdline == "console=hvc0 earlycon=xen clk_ignore_unused"
    assert "clk_ignore_unused" not in s.dom0_cmdline
    assert s.dom0_mem == 512 * MiB and s.ram == "4G"


def test_user_settings_shape_the_command_lines() -> None:
    s = make_spec(dom0_mem="1G", dom0_vcpus=2, xen_extra="loglvl=all", dom0_extra="quiet")
    assert s.xen_cmdline.endswith("dom0_mem=1G dom0_max_vcpus=2 loglvl=all")
    assert s.dom0_cmdline == "console=hvc0 earlycon=xen quiet"
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
