"""`xenkit check` on known-good and known-bad Pi 4 setups: with the model of Debian's DTB in
tests/data and the versions of Debian's Xen and kernel, and (marked debian) with the real
DTB and binaries from Debian's packages."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from xenkit.analysis import check, facts
from xenkit.config import boards
from xenkit.core import memo
from xenkit.errors import XenkitError
from xenkit.formats import dt
from xenkit.formats.binaries import Version
from xenkit.system.artifacts import Artifacts
from xenkit.targets import grub
from xenkit.xen import memory

GOOD_XEN = "console=dtuart dtuart=serial1 sync_console dom0_mem=512M"
MODULES = (
    memory.Module("xen", 0x200000, 0x1360C8),
    memory.Module("kernel", 0x400000, 0xAC09A1),
    memory.Module("ramdisk", 0x1000000, 0xF1322),
    memory.Module("fdt", 0x1200000, 0x70000),
)
# The versions xenkit reads from Debian bookworm's Xen and arm64 kernel (xen-hypervisor-4.17-
# arm64, linux-image-arm64); the kernel is a plain Image, so it has no gzip size.
DEBIAN_XEN = Version(4, 17, "4.17")
DEBIAN_LINUX = Version(6, 1, "6.1")


def _target(
    system: Artifacts | Path,
    ram: str = "4G",
    xen_cmd: str = GOOD_XEN,
    dom0_cmd: str = "console=hvc0",
    config: Path | None = None,
) -> check.Target:
    """The Pi 4 with Debian's packages (their DTB, Xen and kernel), or with a DTB alone and
    Debian's Xen and kernel as their versions."""
    board = boards.load("rpi4")
    files = system.files if isinstance(system, Artifacts) else {"dtb": system}
    t = check.from_parts(
        board,
        files["dtb"],
        check.ram_banks(board, ram),
        xen_cmd,
        dom0_cmd,
        files.get("xen"),
        files.get("kernel"),
        config,
    )
    if not isinstance(system, Artifacts):
        t = dataclasses.replace(t, xen_version=DEBIAN_XEN, linux_version=DEBIAN_LINUX)
    return dataclasses.replace(t, modules=MODULES)


def _verdicts(t: check.Target) -> dict[str, check.Verdict]:
    return {f.check: f.verdict for f in check.run_checks(t)}


@pytest.mark.debian
def test_debians_packages_pass_on_a_4g_pi(rpi4_artifacts: Artifacts, tmp_path: Path) -> None:
    config = tmp_path / "config.txt"
    config.write_text("arm_64bit=1\nenable_uart=1\nkernel=u-boot.bin\n")
    t = _target(rpi4_artifacts, config=config)
    findings = check.run_checks(t)
    assert check.worst(findings) == check.Verdict.OK, check.report(t, findings)
    assert all(s + n <= 1 << 30 for s, n in t.dom0.banks)


def test_xen_413_lowmem_puts_dom0_out_of_dma_reach(pi4_dtb: Path) -> None:
    t = dataclasses.replace(_target(pi4_dtb), xen_version=Version(4, 13, "4.13.5"))
    assert t.lowmem_bits == 32
    v = _verdicts(t)
    assert v["xen version"] == check.Verdict.FAIL
    assert v["dma reach"] == check.Verdict.FAIL
    assert t.dom0.banks[0][0] >= 1 << 30


def test_dom0s_memory_is_replayed_once_per_set_of_inputs(
    pi4_dtb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild after a command line change leaves the prediction's inputs as they were:
    it is read back, not replayed; any other input gives its own prediction."""
    replays = []
    real = memory.predict

    def counted(*args: object) -> memory.Dom0Memory:
        replays.append(args)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(memory, "predict", counted)
    first = _target(pi4_dtb).dom0
    before = len(replays)
    assert _target(pi4_dtb, xen_cmd=GOOD_XEN + " loglvl=all").dom0 == first
    assert len(replays) == before
    for ram, mem in (("1G", "256M"), ("4G", "768M")):
        t = _target(pi4_dtb, ram=ram, xen_cmd=GOOD_XEN.replace("512M", mem))
        direct = real(t.ram, t.modules, t.reserved, t.dom0_mem or 0, t.lowmem_bits, t.kernel_isize)
        assert t.dom0 == direct != first


def test_the_trees_devices_are_translated_once_per_tree(
    pi4_dtb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    translated = []
    real = dt.AddressMap.devices

    def counted(self: dt.AddressMap) -> list[dt.Device]:
        translated.append(1)
        return real(self)

    monkeypatch.setattr(dt.AddressMap, "devices", counted)
    first = _target(pi4_dtb).devices
    before = len(translated)
    t = _target(pi4_dtb, xen_cmd=GOOD_XEN + " loglvl=all")
    assert t.devices == first == tuple(real(t.addresses))
    assert len(translated) == before
    assert any(d.dma for d in first)  # the Pi 4's DMA-limited devices are among them


class _Planted:
    """A kept value's entry written by someone else: unpickled, it would create a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.touch, (self.path,))


def test_a_cache_entry_that_is_not_a_kept_value_is_made_again_not_run(
    pi4_dtb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XENKIT_CACHE", str(tmp_path / "cache"))
    t = _target(pi4_dtb)
    planted = tmp_path / "ran"
    k = memo.key(memo.source(), t.devicetree.blob())
    for entry in (pickle.dumps(_Planted(planted)), b"not a pickle"):
        memo.forget("devices", k)
        memo.store("devices", k, {"value.pickle": entry})
        assert _target(pi4_dtb).devices == tuple(t.addresses.devices())
        assert not planted.exists()
    # Made again and kept: the next read is the value.
    assert memo.load("devices", k) == {"value.pickle": pickle.dumps(t.devices)}


def test_dom0_mem_over_ram_fails(pi4_dtb: Path) -> None:
    t = _target(pi4_dtb, ram="1G", xen_cmd=GOOD_XEN.replace("512M", "2G"))
    findings = {f.check: f for f in check.run_checks(t)}
    assert findings["dom0 memory"].verdict == check.Verdict.FAIL
    assert "board has" in findings["dom0 memory"].detail


def test_dom0_mem_that_cannot_be_mapped_fails(pi4_dtb: Path) -> None:
    t = _target(pi4_dtb, ram="1G", xen_cmd=GOOD_XEN.replace("512M", "900M"))
    finding = next(f for f in check.run_checks(t) if f.check == "dom0 memory")
    assert finding.verdict == check.Verdict.FAIL and "panics" in finding.detail


def test_missing_dom0_mem_warns(pi4_dtb: Path) -> None:
    t = _target(pi4_dtb, xen_cmd="console=dtuart dtuart=serial1")
    assert _verdicts(t)["dom0 memory"] == check.Verdict.WARN


def test_bluetooth_pl011_as_console_fails(pi4_dtb: Path) -> None:
    t = _target(pi4_dtb, xen_cmd=GOOD_XEN.replace("serial1", "serial0"))
    finding = next(f for f in check.run_checks(t) if f.check == "xen console")
    assert finding.verdict == check.Verdict.FAIL
    assert "bluetooth" in finding.detail and "serial1" in finding.fix


def test_dom0_on_the_uart_fails(pi4_dtb: Path) -> None:
    t = _target(pi4_dtb, dom0_cmd="console=ttyS1,115200")
    assert _verdicts(t)["dom0 console"] == check.Verdict.FAIL


def test_missing_enable_uart_fails(pi4_dtb: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.txt"
    config.write_text("arm_64bit=1\n# enable_uart=1\n")
    assert _verdicts(_target(pi4_dtb, config=config))["config.txt enable_uart"] == (
        check.Verdict.FAIL
    )


def test_overlapping_modules_fail(pi4_dtb: Path) -> None:
    bad = (*MODULES[:2], memory.Module("ramdisk", 0x800000, 0x100000), MODULES[3])
    t = dataclasses.replace(_target(pi4_dtb), modules=bad)
    finding = next(f for f in check.run_checks(t) if f.check == "boot modules")
    assert finding.verdict == check.Verdict.FAIL
    assert "kernel 0x400000-0xec09a1 overlaps ramdisk 0x800000-0x900000" in finding.detail


def test_module_on_the_emulator_dtb_slot_fails(pi4_dtb: Path) -> None:
    bad = (*MODULES[:3], memory.Module("fdt", 0x8000000, 0x70000))
    t = dataclasses.replace(_target(pi4_dtb), modules=bad)
    finding = next(f for f in check.run_checks(t) if f.check == "boot modules")
    assert finding.verdict == check.Verdict.FAIL and "QEMU raspi4b" in finding.detail


def test_xen_size_reads_like_xen() -> None:
    assert check.xen_size("512M") == 512 << 20
    assert check.xen_size("1g") == 1 << 30
    assert check.xen_size("524288k") == 512 << 20
    with pytest.raises(
        XenkitError, match=r"dom0_mem=524288 has no unit, which Xen reads as KiB \(512M\)"
    ):
        check.xen_size("524288")
    with pytest.raises(XenkitError, match="not a size Xen reads"):
        check.xen_size("lots")


def _xenkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xenkit", *args], capture_output=True, text=True)


@pytest.mark.debian
def test_cli_exit_code_and_json_reflect_the_worst_verdict() -> None:
    proc = _xenkit(
        "check", "--json", "--xen-cmdline", "console=dtuart dtuart=serial0 dom0_mem=512M"
    )
    assert proc.returncode == 2, proc.stderr
    data = json.loads(proc.stdout)
    assert data["worst"] == "fail"
    assert {f["check"] for f in data["findings"]} >= {"dma reach", "xen console", "gic"}
    assert data["dom0_bank_lines"][0].startswith("BANK[0] 0x")


@pytest.mark.debian
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--board", "rpi9"], "unknown board 'rpi9'"),
        (["--dtb", "/etc/hostname"], "is not a valid device tree blob"),
        (["--xen", "/etc/hostname"], "does not look like a Xen hypervisor image"),
        (["--kernel", "/no/such/Image"], "--kernel /no/such/Image does not exist"),
        (["/no/such/build"], "is not a xenkit build"),
    ],
)
def test_bad_inputs_are_one_line_errors(args: list[str], message: str) -> None:
    proc = _xenkit("check", *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in lines[-1], proc.stderr
    assert all(line.startswith("xenkit:") for line in lines)


@pytest.mark.debian
def test_truncated_dtb_is_a_one_line_error(rpi4_artifacts: Artifacts, tmp_path: Path) -> None:
    cut = tmp_path / "cut.dtb"
    cut.write_bytes(rpi4_artifacts.files["dtb"].read_bytes()[:5000])
    proc = _xenkit("check", "--dtb", str(cut))
    assert proc.returncode == 2 and "not a valid device tree blob" in proc.stderr


@pytest.mark.debian
def test_any_ram_size_and_the_emulated_board_from_parts() -> None:
    # The emulated Pi 4's 960 MiB as one bank from 0, and the emulator's own copy of the
    # board (its RAM, DTB and Dom0 command line) without a build directory.
    sized = _xenkit("check", "--json", "--ram", "960M")
    emulated = _xenkit("check", "--json", "--emulated")
    for proc in (sized, emulated):
        assert proc.returncode in (0, 1), proc.stderr
    for data in (json.loads(sized.stdout), json.loads(emulated.stdout)):
        bank0 = data["dom0_bank_lines"][0]
        assert bank0.startswith("BANK[0] 0x"), bank0
        start, end = (int(x, 16) for x in bank0.split()[1].split("-"))
        assert 0 <= start < end
        assert end <= 0x3C000000, bank0  # inside the 960 MiB
    assert "emulator" in json.loads(emulated.stdout)["target"]
    assert "clk_ignore_unused" in json.loads(emulated.stdout)["dom0_cmdline"]


@pytest.mark.debian
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ram", "lots"], "--ram: cannot read 'lots' as a size"),
        (["--ram", "1M"], "--ram 1M: give a board model (1G, 2G, 4G, 8G) or a size"),
        (["--xen-cmd", "console=dtuart dtuart=serial1 dom0_mem=512"], "has no unit"),
    ],
)
def test_bad_ram_and_sizes_are_one_line_errors(args: list[str], message: str) -> None:
    proc = _xenkit("check", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert message in proc.stderr.strip().splitlines()[-1], proc.stderr


# -- the PC -----------------------------------------------------------------------------------
def _pc(xen: str = "console=com1 com1=115200,8n1 dom0_mem=512M", **kw: object) -> check.Target:
    fields: dict[str, object] = {
        "board": boards.load("pc"),
        "tree": None,
        "ram": ((0, 2 << 30),),
        "xen_cmdline": xen,
        "dom0_cmdline": "console=hvc0",
        "config_txt": None,
        "checks": grub.TARGET.checks,
        "cpu_flags": frozenset({"svm", "npt"}),
        **kw,
    }
    return check.Target(**fields)  # type: ignore[arg-type]


def _found(t: check.Target) -> dict[str, check.Finding]:
    return {f.check: f for f in check.run_checks(t)}


def test_a_pc_with_a_serial_console_room_for_guests_and_hap_passes() -> None:
    found = _found(_pc(guests_memory=512 << 20))
    assert list(found) == [
        "xen version",
        "dom0 linux version",
        "dom0 console",
        "pc console",
        "guest memory",
        "virtualisation",
    ]
    assert found["pc console"].verdict == check.Verdict.OK
    assert found["guest memory"].detail == (
        "Dom0 512M; guests up to 512M; 1472M for guests in a 2G PC"
    )
    assert "AMD-V with nested paging" in found["virtualisation"].detail


@pytest.mark.parametrize(
    ("target", "name", "verdict", "words"),
    [
        (_pc("console=dtuart dom0_mem=512M"), "pc console", "fail", "console=dtuart is Arm's"),
        (_pc("console=com1 dom0_mem=512M"), "pc console", "warn", "without com1="),
        (_pc("console=vga dom0_mem=512M"), "pc console", "warn", "no serial line"),
        (_pc("console=com1 com1=115200,8n1"), "guest memory", "warn", "no dom0_mem"),
        (_pc(guests_memory=2 << 30), "guest memory", "fail", "want 2G, but a 2G PC has 1472M"),
        (_pc(cpu_flags=frozenset({"sse2"})), "virtualisation", "warn", "no VT-x or AMD-V"),
        (_pc(cpu_flags=frozenset({"vmx"})), "virtualisation", "warn", "without nested paging"),
    ],
)
def test_pc_pitfalls_are_named_with_the_fix(
    target: check.Target, name: str, verdict: str, words: str
) -> None:
    f = _found(target)[name]
    assert str(f.verdict) == verdict and words in f.detail, f


def test_the_emulated_pc_has_hap_from_its_qemu_cpu() -> None:
    f = _found(_pc(emulated=True, cpu_flags=None))["virtualisation"]
    assert f.verdict == check.Verdict.OK and "AMD-V with nested paging" in f.detail


@pytest.mark.parametrize(
    ("cpu", "flags"),
    [
        ("max", {"svm", "npt"}),
        ("max,fsgsbase=off", {"svm", "npt", "fsgsbase"} - {"fsgsbase"}),
        ("max,svm=off", {"npt"}),
        ("max,-npt", {"svm"}),
        ("qemu64", {"svm"}),
        ("qemu64,-svm", set()),
        ("qemu64,+svm,+npt", {"svm", "npt"}),
        ("qemu64,svm=on,npt=on", {"svm", "npt"}),
    ],
)
def test_qemus_cpu_option_says_what_virtualisation_xen_gets(cpu: str, flags: set[str]) -> None:
    assert check.emulated_cpu_flags(cpu) & {"svm", "npt", "vmx", "ept"} == flags


def _emulated_pc(cpu: str, guests: tuple[tuple[str, str], ...]) -> check.Target:
    board = boards.load("pc")
    board = replace(board, emulate=replace(board.emulate, cpu=cpu))
    return _pc(board=board, emulated=True, cpu_flags=None, guest_types=guests)


def test_guests_the_emulated_pc_cannot_run_fail_with_the_fix() -> None:
    guests = (("g1", "pv"), ("g2", "hvm"), ("g3", "pvh"))
    f = _found(_emulated_pc("qemu64", guests))["virtualisation"]
    assert f.verdict == check.Verdict.FAIL
    assert f.detail == (
        "the emulated PC (QEMU -cpu qemu64) has AMD-V without nested paging, and Debian's "
        "Xen has no shadow paging: PV guests only; g2 (hvm), g3 (pvh) cannot run"
    )
    assert f.fix.startswith('give them type = "pv", or emulate')
    assert str(_found(_emulated_pc("qemu64", guests[:1]))["virtualisation"].verdict) == "warn"
    assert str(_found(_emulated_pc("qemu64,+svm,+npt", guests))["virtualisation"].verdict) == "ok"
    # On hardware a live image may boot on another PC: a warning, not a failure.
    host = _pc(cpu_flags=frozenset({"sse2"}), guest_types=guests)
    assert str(_found(host)["virtualisation"].verdict) == "warn"


def test_host_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu vmx ept sse2\n\nprocessor\t: 1\n")
    assert facts.host_cpu_flags(cpuinfo) == frozenset({"fpu", "vmx", "ept", "sse2"})
    assert facts.host_cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize("ram", ["32M", "2T", "256T"])
def test_a_ram_size_the_model_cannot_walk_is_one_line(ram: str) -> None:
    from xenkit.analysis import facts
    from xenkit.config import boards

    with pytest.raises(XenkitError, match=rf"--ram {ram}: .* a size from 64M to 1T"):
        facts.ram_banks(boards.load("rpi4"), ram)
