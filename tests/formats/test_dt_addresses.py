"""Address translation on DTBs Debian's kernel ships: models of them in tests/data, each with
the buses and windows a test reads, and the Pi 4 family's real ones."""

from __future__ import annotations

import pytest

from xenkit.errors import XenkitError
from xenkit.formats import dt

PI4_FAMILY = ["broadcom/bcm2711-rpi-4-b", "broadcom/bcm2711-rpi-400", "broadcom/bcm2711-rpi-cm4-io"]


def _map(request: pytest.FixtureRequest, name: str) -> dt.AddressMap:
    """NAME: vendor/board, a DTB of Debian's kernel package; or board, its model in tests/data."""
    if "/" in name:
        path = request.getfixturevalue("kernel_dtbs")[name]
    else:
        path = request.getfixturevalue("dts")(name)
    return dt.AddressMap(dt.DeviceTree.load(path))


# Debian's three Pi 4 DTBs (from its package), and the model the other Pi 4 tests use.
@pytest.mark.parametrize(
    "name", [*(pytest.param(n, marks=pytest.mark.debian) for n in PI4_FAMILY), "bcm2711-rpi-4-b"]
)
def test_pi4_soc_devices_reach_the_first_gib_at_bus_0xc0000000(
    request: pytest.FixtureRequest, name: str
) -> None:
    m = _map(request, name)
    for path in ("/soc/serial@7e215040", "/emmc2bus/mmc@7e340000", "/soc/mmc@7e300000"):
        dev = m.device(path)
        assert dev.dma == (dt.Mapping(child=0xC0000000, parent=0, size=1 << 30),), path
        assert dev.dma[0].offset == 0xC0000000
    assert m.device("/soc/serial@7e215040").regs == ((0xFE215040, 0x40),)
    assert m.device("/emmc2bus/mmc@7e340000").regs == ((0xFE340000, 0x100),)


def test_pi4_genet_is_unconstrained_and_pcie_reaches_3_gib(request: pytest.FixtureRequest) -> None:
    m = _map(request, "bcm2711-rpi-4-b")
    assert m.device("/scb/ethernet@7d580000").dma is None
    assert m.device("/scb/ethernet@7d580000").regs == ((0xFD580000, 0x10000),)
    assert m.dma_windows("/scb/pcie@7d500000") == (dt.Mapping(0, 0, 0xC0000000),)


def test_pi4_gic_400_translates_through_the_arm_local_window(
    request: pytest.FixtureRequest,
) -> None:
    m = _map(request, "bcm2711-rpi-4-b")
    gic = m.device("/soc/interrupt-controller@40041000")
    assert [a for a, _ in gic.regs] == [0xFF841000, 0xFF842000, 0xFF844000, 0xFF846000]
    assert m.reserved() == [(0, 0x1000, "/memreserve/")]


def test_imx8mq_soc_window_starts_at_1_gib_one_to_one(request: pytest.FixtureRequest) -> None:
    m = _map(request, "imx8mq-evk")
    assert m.dma_windows("/soc@0") == (dt.Mapping(0x40000000, 0x40000000, 0xC0000000),)
    assert m.memory()[0][0] == 0x40000000


def test_juno_pcie_has_two_identity_windows(request: pytest.FixtureRequest) -> None:
    m = _map(request, "juno")
    assert m.dma_windows("/pcie@40000000") == (
        dt.Mapping(0x80000000, 0x80000000, 0x80000000),
        dt.Mapping(0x800000000, 0x800000000, 0x200000000),
    )


def test_rk3399_has_no_dma_limits(request: pytest.FixtureRequest) -> None:
    m = _map(request, "rk3399-rockpro64")
    assert all(d.dma is None for d in m.devices())
    assert any(d.regs for d in m.devices())


def test_nested_dma_ranges_compose() -> None:
    # A child bus at bus address 0x1000_0000 + cpu, inside a parent that adds 0x8000_0000.
    src = """/dts-v1/;
    / { #address-cells = <1>; #size-cells = <1>;
      outer { compatible = "simple-bus"; #address-cells = <1>; #size-cells = <1>; ranges;
        dma-ranges = <0x80000000 0x0 0x40000000>;
        inner { compatible = "simple-bus"; #address-cells = <1>; #size-cells = <1>; ranges;
          dma-ranges = <0x10000000 0x80000000 0x20000000>;
          dev@100 { compatible = "x,dev"; reg = <0x100 0x10>; };
        };
      };
    };"""
    import subprocess

    blob = subprocess.run(
        ["dtc", "-q", "-I", "dts", "-O", "dtb"], input=src.encode(), capture_output=True, check=True
    ).stdout
    m = dt.AddressMap(dt.DeviceTree(blob))
    assert m.device("/outer/inner/dev@100").dma == (dt.Mapping(0x10000000, 0x0, 0x20000000),)
    assert m.device("/outer/inner/dev@100").regs == ((0x100, 0x10),)


def test_malformed_ranges_are_an_error() -> None:
    import subprocess

    src = """/dts-v1/; / { #address-cells = <1>; #size-cells = <1>;
      bus { #address-cells = <1>; #size-cells = <1>; dma-ranges = <1 2>;
        d { compatible = "x"; }; }; };"""
    blob = subprocess.run(
        ["dtc", "-q", "-I", "dts", "-O", "dtb"], input=src.encode(), capture_output=True, check=True
    ).stdout
    with pytest.raises(XenkitError, match="malformed dma-ranges"):
        dt.AddressMap(dt.DeviceTree(blob)).device("/bus/d")
