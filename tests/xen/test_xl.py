from __future__ import annotations

import pytest

from xenkit.core.sizes import MiB
from xenkit.errors import XenkitError
from xenkit.xen import xl


def _guest(**t: object) -> xl.Guest:
    return xl.guest_from_table({"name": "g1", **t}, 0, 4, "10.99.0.1/24", "10.99.0.1")


def test_config_for_a_guest_on_the_bridge() -> None:
    g = _guest(memory="96M", vcpus=1, maxvcpus=2, maxmem="160M")
    text = xl.config(g)
    lines = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)
    assert lines["name"] == '"g1"'
    assert lines["type"] == '"pvh"'
    assert lines["memory"] == "96" and lines["maxmem"] == "160"
    assert lines["vcpus"] == "1" and lines["maxvcpus"] == "2"
    assert lines["acpi"] == "0"
    assert f"mac={xl.mac('g1')},bridge=xenbr0" in lines["vif"]
    assert "xenkit.ip=10.99.0.10/24" in lines["extra"]
    assert "xenkit.ping=10.99.0.1" in lines["extra"]
    assert lines["kernel"] == f'"{xl.DEFAULT_KERNEL}"'


def test_addresses_follow_the_guest_index() -> None:
    g = xl.guest_from_table({"name": "g3"}, 2, 4, "10.99.0.1/24", "10.99.0.1")
    assert g.ip == "10.99.0.12/24"
    assert xl.config(xl.Guest("x", bridge="")).count("vif") == 0


def test_macs_are_stable_locally_administered_xen_ouis() -> None:
    assert xl.mac("a") == xl.mac("a") != xl.mac("b")
    assert xl.mac("a").startswith("00:16:3e:")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"vcpus": 5}, "vcpus = 5, but the board has 4"),
        ({"vcpus": 2, "maxvcpus": 1}, "maxvcpus = 1 is below"),
        ({"memory": "16M"}, "too small"),
        ({"ip": "10.99.0.300/24"}, "not ADDRESS/PREFIX"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"name": "9lives"}, "must start with a letter"),
        ({"name": "a b"}, "must start with a letter"),
        ({"type": "hvm"}, "type = 'hvm': on this board every guest is the one kind 'arm'"),
        ({"type": "pvh"}, "leave type out"),
    ],
)
def test_bad_guests_are_one_line_errors(table: dict[str, object], message: str) -> None:
    with pytest.raises(XenkitError, match=message) as exc:
        _guest(**table)
    assert "\n" not in str(exc.value)


def test_plain_numbers_are_mib() -> None:
    assert _guest(memory=200).memory == 200 * MiB


def test_on_the_machines_own_network_a_guest_asks_dhcp_and_pings_the_gateway() -> None:
    """A PC's Dom0 bridges its NIC: guests join that network, not a host-only one."""
    g = xl.guest_from_table({"name": "g1"}, 0, 4, "", "", ("pv",))
    assert (g.type, g.ip, g.ping) == ("pv", "dhcp", "gateway")
    text = xl.config(g)
    assert 'type = "pv"' in text
    assert "xenkit.ip=dhcp" in text and "xenkit.ping=gateway" in text
    pinged = xl.guest_from_table({"name": "g1", "ping": "10.0.2.15,gateway"}, 0, 4, "", "")
    assert "xenkit.ping=10.0.2.15,gateway" in xl.config(pinged)


PC_TYPES = ("pv", "pvh", "hvm")


def _pc(**t: object) -> xl.Guest:
    return xl.guest_from_table({"name": "g1", **t}, 0, 2, "", "", PC_TYPES)


def _cfg(g: xl.Guest) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in xl.config(g).splitlines() if " = " in line)


def test_an_hvm_guest_boots_its_kernel_with_pv_drivers_and_a_serial_console() -> None:
    lines = _cfg(_pc(type="hvm", maxvcpus=2, disk="1G"))
    assert lines["type"] == '"hvm"' and lines["maxvcpus"] == "2"
    assert lines["kernel"] == f'"{xl.DEFAULT_KERNEL}"'
    # xl console shows an HVM guest's serial port; hvc0 last gets init's output too.
    assert lines["extra"].startswith('"console=ttyS0 console=hvc0 ')
    assert lines["serial"] == '"pty"' and lines["vga"] == '"none"'
    assert "acpi" not in lines  # vCPU hotplug in an HVM guest is ACPI's
    assert "type=ioemu" not in lines["vif"]  # the PV vif; Linux unplugs the emulated NIC
    assert (
        lines["disk"]
        == f'[ "format=raw,vdev=xvda,access=rw,backendtype=qdisk,target={xl.DISK_DIR}/g1.img" ]'
    )
    assert f"# xenkit-disk: {xl.DISK_DIR}/g1.img {1 << 30}" in xl.config(_pc(disk="1G"))


def test_without_pv_drivers_an_hvm_guest_keeps_the_emulated_nic_and_disk() -> None:
    lines = _cfg(_pc(type="hvm", pv_drivers=False, disk="64M"))
    assert "xen_emul_unplug=never" in lines["extra"]
    assert "type=ioemu,model=e1000" in lines["vif"]
    assert "vdev=hda" in lines["disk"]


def test_pv_and_pvh_guests_have_only_pv_devices() -> None:
    for kind in ("pv", "pvh"):
        lines = _cfg(_pc(type=kind))
        assert lines["type"] == f'"{kind}"'
        assert lines["extra"].startswith('"console=hvc0 ')
        assert "serial" not in lines and "ioemu" not in lines["vif"]
    assert _cfg(_guest())["type"] == '"pvh"'  # Arm's one kind, as xl.cfg names it


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"type": "kvm"}, "type = 'kvm' is not a guest type here: give 'pv', 'pvh', 'hvm'"),
        ({"type": "pv", "pv_drivers": False}, "pv_drivers = false is for HVM guests"),
        ({"type": "hvm", "pv_drivers": "no"}, "must be true or false"),
        ({"disk": "lots"}, "disk: cannot read 'lots' as a size"),
    ],
)
def test_bad_pc_guests_are_one_line_errors(table: dict[str, object], message: str) -> None:
    with pytest.raises(XenkitError, match=message) as exc:
        _pc(**table)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cmdline", 'quiet" b'),
        ("cmdline", "a\nmemory = 4096"),
        ("kernel", "/x\\y"),
        ("ping", "a\tb"),
    ],
)
def test_what_xl_cfg_strings_cannot_hold_is_refused(key: str, value: str) -> None:
    with pytest.raises(XenkitError, match=rf"\[\[guest\]\] g1: {key} = .* xl.cfg's strings"):
        _guest(**{key: value})


@pytest.mark.parametrize(
    ("ip", "message"),
    [
        ("10.99.0.1/24", "is Dom0's own address on xenbr0"),
        ("10.99.0.0/24", "is the network address of 10.99.0.0/24"),
        ("10.99.0.255/24", "is the broadcast address of 10.99.0.0/24"),
        ("fe80::1/64", "set up over IPv4 only"),
        # On the host-only bridge Dom0 is the only peer: another network reaches nothing.
        ("192.168.1.5/24", "is not on xenbr0's network 10.99.0.0/24"),
        ("10.99.0.20/16", "give an address of it with /24"),
    ],
)
def test_addresses_no_guest_can_have_on_the_bridge_are_refused(ip: str, message: str) -> None:
    with pytest.raises(XenkitError, match=message) as exc:
        _guest(ip=ip)
    assert "\n" not in str(exc.value)


def test_on_the_machines_own_network_any_host_address_goes() -> None:
    """Only xenkit's host-only bridge has a known network; a point-to-point /31 has no
    network or broadcast address to refuse."""
    for ip in ("192.168.1.5/24", "192.168.1.0/31", "10.99.0.20/24"):
        assert xl.guest_from_table({"name": "g1", "ip": ip}, 0, 4, "", "").ip == ip
    with pytest.raises(XenkitError, match=r"is the broadcast address of 192\.168\.1\.0/24"):
        xl.guest_from_table({"name": "g1", "ip": "192.168.1.255/24"}, 0, 4, "", "")
    # Another bridge is the user's own: its network is theirs to choose.
    assert _guest(bridge="br1", ip="192.168.1.5/24").ip == "192.168.1.5/24"


@pytest.mark.parametrize("ping", ["not an ip", "gateway,10.99.0.300", "10.99.0.1,,gateway", "::1"])
def test_ping_targets_are_ipv4_addresses_or_the_gateway(ping: str) -> None:
    """They go onto the kernel command line, split at spaces, and to busybox ping."""
    with pytest.raises(XenkitError, match="is not an IPv4 address or gateway") as exc:
        _guest(ping=ping)
    assert "\n" not in str(exc.value)
    assert _guest(ping="gateway,10.99.0.11").ping == "gateway,10.99.0.11"


@pytest.mark.parametrize("bridge", ["br 0", "a" * 16, "br/0", "br:0", "br,0", ".", ".."])
def test_a_bridge_linux_cannot_name_is_refused(bridge: str) -> None:
    with pytest.raises(XenkitError, match="is no Linux interface name") as exc:
        _guest(bridge=bridge)
    assert "\n" not in str(exc.value)
    assert _guest(bridge="a" * 15).bridge == "a" * 15
    assert _guest(bridge="").bridge == ""  # no vif


def test_maxmem_below_memory_is_refused_not_raised_to_it() -> None:
    """xl.cfg took the larger of the two: the ceiling asked for was silently lost."""
    with pytest.raises(XenkitError, match="maxmem = 128M is below memory = 256M"):
        _guest(memory="256M", maxmem="128M")
    assert _guest(memory="256M", maxmem="256M").maxmem == 256 * MiB
