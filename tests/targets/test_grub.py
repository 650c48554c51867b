"""The PC's boot target: GRUB's menu from the settings, and one hybrid live image that boots
Xen and a self-configuring Dom0 with Xen's toolstack from a CD drive."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import scenarios
from tests.conftest import edited_board, make_spec
from xenkit import targets
from xenkit.bootscripts import grubcfg
from xenkit.config import boards
from xenkit.errors import XenkitError
from xenkit.images import netdir
from xenkit.pipeline import build
from xenkit.run import emulate, qemu
from xenkit.targets import grub


@pytest.mark.parametrize(
    ("board", "choices", "message"),
    [
        ("pc", qemu.Choices(media="floppy"), "--media floppy: choose one of cd, usb, disk, sata"),
        ("pc", qemu.Choices(entry=4), "--entry 4: give 0 to 3"),
        ("rpi4", qemu.Choices(firmware="uefi"), "boots through rpi, which offers no choice"),
        ("qemu-virt", qemu.Choices(entry=0), "boots through uboot, no menu"),
    ],
)
def test_run_choices_a_target_does_not_offer_are_refused(
    board: str, choices: qemu.Choices, message: str
) -> None:
    b = boards.load(board)
    with pytest.raises(XenkitError, match=message):
        targets.for_board(b).check_choices(b, choices)


@pytest.mark.debian  # the pc board's QEMU is bookworm's, from the cache
def test_each_medium_and_firmware_is_the_device_a_user_would_use(tmp_path: Path) -> None:
    """The QEMU command lines: the build's image read-only in a CD drive, a writable copy as
    a USB stick or virtio disk; OVMF for UEFI; a menu entry typed as arrow keys and Enter."""
    board = boards.load("pc")
    # An image whose grub.cfg has the emulator's slot, as the build writes it.
    slot = ("\n" + grubcfg.slot_line() + "\n").encode()
    (tmp_path / grub.ISO).write_bytes(b"\0" * 2048 + slot + b"\0" * (2048 - len(slot)))
    plans = {
        media: grub.TARGET.run_plan(
            board, "2G", tmp_path, tmp_path / media, choices=qemu.Choices(media=media)
        )
        for media in ("cd", "usb", "disk")
    }
    # The emulator boots a copy carrying the board's emulator-only Xen words.
    cd = f"file={tmp_path / 'cd' / 'cd.iso'},media=cdrom,readonly=on,format=raw"
    assert cd in [a.removesuffix(",aio=io_uring") for a in plans["cd"].argv]
    assert "usb-storage,bus=xhci.0,drive=medium" in plans["usb"].argv
    assert "virtio-blk-pci,drive=medium" in plans["disk"].argv
    assert (tmp_path / "usb" / "usb.img").stat().st_size == 4096
    for copy in (tmp_path / "cd" / "cd.iso", tmp_path / "usb" / "usb.img"):
        assert b'set xenkit_emulator="bootscrub=off ' in copy.read_bytes()
    assert b"bootscrub" not in (tmp_path / grub.ISO).read_bytes()
    assert "-bios" not in plans["cd"].argv and "-nodefaults" in plans["cd"].argv
    uefi = grub.TARGET.run_plan(
        board, "2G", tmp_path, tmp_path / "u", choices=qemu.Choices("uefi", nic="virtio", entry=2)
    )
    assert uefi.argv[uefi.argv.index("-bios") + 1] == str(grub.OVMF)
    assert "virtio-net-pci,netdev=net0" in uefi.argv
    assert uefi.answers == ((grub.MENU_PROMPT, b"\x1b[B\x1b[B\r"),)


@pytest.mark.debian  # the pc board's QEMU is bookworm's, from the cache
def test_a_pxe_boot_on_qemus_own_network_gets_the_mirrors_in_its_copy_of_the_menu(
    tmp_path: Path,
) -> None:
    """--media net without a tap device: QEMU's DHCP names GRUB's image as the boot file, so
    the mirrors go on Dom0's command line in the emulator's grub.cfg; the rest is linked."""
    board = boards.load("pc")
    (tmp_path / grub.NET_ISO).write_bytes(b"\0" * 4096)
    with pytest.raises(XenkitError, match="has no PXE tree: build it with --net-root --netboot"):
        grub.TARGET.run_plan(
            board, "2G", tmp_path, tmp_path / "r", choices=qemu.Choices(media="net")
        )
    tree = tmp_path / grub.TFTP / "default"
    (tree / netdir.SUBDIR / "i386-pc").mkdir(parents=True)
    (tree / netdir.BIOS).write_bytes(b"core")
    (tree / "boot" / "xen.gz").write_bytes(b"xen")
    spec = make_spec(board="pc", net_root=True)
    (tree / netdir.SUBDIR / "grub.cfg").write_text(grubcfg.menu(spec, 3, spec.dom0_cmdline))
    mirror = "http://10.0.2.2:4242/netroot/store/"
    choices = qemu.Choices(media="net", mirrors=(mirror,))
    plan = grub.TARGET.run_plan(board, "2G", tmp_path, tmp_path / "r", choices=choices)
    copy = tmp_path / "r" / "tftp"
    assert f"user,tftp={copy},bootfile={netdir.BIOS},id=net0" in plan.argv
    assert "-boot" in plan.argv and not any("media=cdrom" in a for a in plan.argv)
    assert (copy / netdir.BIOS).read_bytes() == b"core" and (copy / "boot/xen.gz").is_symlink()
    cfg = (copy / netdir.SUBDIR / "grub.cfg").read_text()
    dom0 = [line for line in cfg.splitlines() if "module2 /boot/vmlinuz" in line]
    assert len(dom0) == 3 and all(line.endswith(f" xenkit.mirror={mirror}") for line in dom0)
    assert "xenkit.mirror" not in (tree / netdir.SUBDIR / "grub.cfg").read_text()


@pytest.mark.debian
def test_two_builds_of_the_same_inputs_are_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dates, volume and GPT ids and the UEFI image's FAT serial all come from one epoch,
    so a rebuild, a second apart or a year, writes the same image."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = build.build(make_spec(board="pc"), tmp_path / "a")
    second = build.build(make_spec(board="pc"), tmp_path / "b")
    assert first.files == second.files
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764115200")
    third = build.build(make_spec(board="pc"), tmp_path / "c")
    assert third.files["live.iso"] != first.files["live.iso"]
    iso = (tmp_path / "c" / grub.ISO).read_bytes()
    # The volume's creation date (primary volume descriptor, offset 813) is the epoch's.
    assert iso[16 * 2048 + 813 : 16 * 2048 + 827] == b"20251126000000"


def test_a_bad_source_date_epoch_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(XenkitError, match="SOURCE_DATE_EPOCH='yesterday': give whole seconds"):
        grub.epoch()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "5")
    assert grub.epoch() == grub.FAT_EPOCH


def test_xorriso_listings_give_each_files_size() -> None:
    listing = (
        "\n'/boot':\ntotal 4\ndr-xr-xr-x    1 0        0               0 Jan  1  1980 'grub'\n"
        "-r--r--r--    1 0        0         1178795 Jan  1  1980 'xen.gz'\n\n"
        "'/live':\n-r--r--r--    1 0        0        62398464 Jan  1  1980 'base.sqfs'\n"
    )
    assert grub._listed(listing) == [("boot/xen.gz", 1178795), ("live/base.sqfs", 62398464)]


def test_entry_without_check_is_refused(tmp_path: Path) -> None:
    proc = xenkit("run", "--entry", "1", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("xenkit: error: --entry types the choice")


def _board(tmp_path: Path, old: str, new: str) -> boards.Board:
    return boards.load(str(edited_board(tmp_path, "pc", old, new)))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('arch = "amd64"', 'arch = "arm64"', "for amd64 boards, not arm64"),
        ("timeout = 3", "timeout = -1", "whole seconds"),
        ("timeout = 3", "timeout = 3\nscriptaddr = 1", "unknown \\[boot\\] keys scriptaddr"),
        ("[packages.busybox]", "[packages.shell]", "\\[packages.busybox\\] is missing"),
    ],
)
def test_the_target_refuses_a_board_it_cannot_boot(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    with pytest.raises(XenkitError, match=message):
        targets.for_board(_board(tmp_path, old, new))


def xenkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xenkit", *args], capture_output=True, text=True)


@pytest.mark.debian
def test_dom0less_guests_are_refused_on_the_pc(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('board = "pc"\n[[domain]]\nname = "rtos"\nkernel = "builtin:tick"\n')
    proc = xenkit("build", "-c", str(config), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "which Xen starts only on Arm" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.long
@pytest.mark.qemu
def test_the_live_workbench_boots_from_cd_configures_itself_and_runs_a_pv_guest(
    tmp_path: Path,
) -> None:
    """One boot, several checks: the hybrid image, a Dom0 that finds its live root on the CD,
    its NIC and an address by itself, and a PV guest with a disk driven through xl by
    tests/data/guest_lifecycle.sh, added to the built image with `xenkit guest add`. On a
    CPU without virtualisation (QEMU's qemu64), where Dom0 refuses the HVM guest in one line
    and runs the PV one all the same."""
    out = tmp_path / "pc"
    m = build.build(scenarios.pc_workbench(tmp_path), out)
    assert m.toolstack and m.media == ("live.iso",)
    added = xenkit("guest", "add", "-d", str(out), *scenarios.PC_GUEST)
    assert added.returncode == 0 and "address dhcp" in added.stdout, added.stderr
    iso = out / "live.iso"
    # El Torito entries for BIOS and UEFI, and an MBR for a USB stick or disk.
    torito = subprocess.run(
        ["xorriso", "-indev", str(iso), "-report_el_torito", "plain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    platforms = re.findall(r"^El Torito boot img :\s+\d+\s+(\w+)\s+y", torito, re.M)
    assert sorted(platforms) == ["BIOS", "UEFI"], torito
    assert iso.read_bytes()[510:512] == b"\x55\xaa"
    info = xenkit("info", str(out))
    assert "boots through grub" in info.stdout and "Xen        4.17" in info.stdout, info.stdout
    assert "  2  Linux without Xen" in info.stdout and "/live/base.sqfs" in info.stdout
    check = xenkit("check", "--emulated", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok    virtualisation" in check.stdout and "ok    guest memory" in check.stdout

    ran = xenkit("run", "--check", "--quiet", "--timeout", "900", "--cpu", "qemu64", str(out))
    console = (out / "run" / "console.log").read_text(errors="replace")
    assert ran.returncode == 0, ran.stdout[-2000:] + scenarios.tail(console)
    for phase in ("firmware \\+ GRUB", "Xen", "Dom0 kernel", "Dom0 userspace", "autorun exit"):
        assert re.search(rf"^{phase}\s+\d+\.\d s", ran.stdout, re.M), ran.stdout
    # QEMU's qemu64 has AMD-V but no nested paging, which Debian's Xen (no shadow paging)
    # needs for HVM and PVH guests.
    assert "(HAP) not detected" in console
    assert "xenkit: Dom0 root is live from /dev/sr0" in console
    banner = re.search(
        r"Dom0 ready: Xen (4\.17[.\d]*), memory \d+ MiB, (\d+) vCPUs, .*; guests: pv; "
        r"NICs: (.*); disks: (.*); address: (\S+); virt_caps: (.*)",
        emulate.untangled(console),
    )
    assert banner, console[-3000:]
    # The emulator's Xen words keep Dom0 to one vCPU, on CPU 0 (pc.toml says why).
    assert banner.group(2) == "1"
    assert "dom0_max_vcpus=1 dom0_vcpus_pin" in console
    assert banner.group(3) == "eth0/e1000/uplink"
    assert "sr0" in banner.group(4).split()
    assert banner.group(5) == f"{scenarios.PC_DOM0}/24"
    assert "hap" not in banner.group(6).split(), banner.group(6)
    assert (
        "xenkit: guest h1 is hvm, but this machine's Xen runs only PV guests (virt_caps: "
        f"{banner.group(6)}; hvm needs VT-x or AMD-V with nested paging): make it "
        'type = "pv"' in emulate.untangled(console)
    )

    rows, r = scenarios.results(console)
    assert [row[:2] for row in rows] == [["Domain-0", "0"]]
    assert r["configs"] == ["g1.cfg", "h1.cfg", "spare.cfg"]
    assert r["create"][0] == "0", r["create"]
    assert r["banner"][0] == "0", "the PV guest never printed its banner"
    # Its disk, made by xenkit-start in Dom0 and served by QEMU's PV backend; its NIC Xen's.
    assert r["guest-disks"] == ["xvda"] and r["guest-driver"] == ["vif"], r
    assert "guest-ping2" in r, r  # guest-ping-late says what the guest's console showed
    assert r["guest-ping"][3:6] == ["ping", scenarios.PC_DOM0, "ok"], r["guest-ping"]
    assert r["guest-ping2"][3:6] == ["ping", scenarios.PC_GATEWAY, "ok"], r["guest-ping2"]
    # The guest's address came from the network Dom0 bridged it onto.
    assert r["dom0-ping"][0] == "0" and r["dom0-ping"][1].startswith("10.0.2."), r["dom0-ping"]
    assert r["dom0-ping"][2] == "3"
    assert (r["vcpus-before"], r["vcpus-after"]) == (["1"], ["2"])
    assert r["mem-set"] == ["0", str(96 * 1024)]
    assert int(r["mem-after"][0]) < int(r["mem-before"][0]) == 128
    assert r["console"] == ["answered", "0"], "xl console did not carry a command both ways"
    assert "p" in r["paused"][0] and "p" not in r["unpaused"][0]
    assert r["shutdown"] == ["0", "gone"] and r["recreate"] == ["0"]
    assert r["destroy"] == ["0", "gone"] and "done" in r


# Dom0 starts a PVH and an HVM guest together and reports, for each, its banner, the address
# and NIC driver it came up with, its ping of the gateway and Dom0's ping of it.
HARDWARE_GUESTS = r"""#!/bin/sh
say() { echo "XK $(cut -d' ' -f1 /proc/uptime) $*"; }
log() { echo "/var/log/xen/console/guest-$1.log"; }
# said GUEST WHAT: the rest of the guest's first "xenkit: guest GUEST WHAT ..." line
said() { grep -a -o "xenkit: guest $1 $2 .*" "$(log "$1")" | head -n 1 | cut -d' ' -f5-; }
for g in p1 h1; do
    xenkit-start "$g" >"/tmp/$g.out" 2>&1
    say "create-$g" $? "$(tr '\n' ' ' <"/tmp/$g.out" | tail -c 300)"
done
end=$(($(cut -d. -f1 /proc/uptime) + 600))
until [ -n "$(said p1 ping)" ] && [ -n "$(said h1 ping)" ]; do
    [ "$(cut -d. -f1 /proc/uptime)" -ge "$end" ] && break
    sleep 2
done
xl list | awk 'NR > 1 { print "XK list", $1, $2, $5 }'
# Hard affinity: Dom0's vCPU keeps CPU 0 (dom0_vcpus_pin), xenkit-start gave guests the rest.
for d in 0 p1 h1; do say "affinity-$d" "$(xl vcpu-list "$d" | awk 'NR > 1 { print $7 }')"; done
for g in p1 h1; do
    say "banner-$g" "$(said $g ready:)"
    say "address-$g" "$(said $g address)"
    say "ping-$g" "$(said $g ping | cut -d' ' -f1-3)"
    ip=$(said $g address | cut -d/ -f1)
    ping -c 3 -W 10 "$ip" >/tmp/ping.out 2>&1
    say "dom0-ping-$g" $? "$(grep -o '[0-9]* packets received' /tmp/ping.out)"
    [ -n "$ip" ] || { echo "guest $g console:"; tail -n 20 "$(log $g)"; }
done
say emulation-failed "$(xl dmesg | grep -c 'emulation failed')"
for g in p1 h1; do xl destroy "$g"; say "destroy-$g" $?; done
say done
"""


@pytest.mark.long
@pytest.mark.qemu
def test_pvh_and_hvm_guests_boot_on_the_emulated_pc_and_reach_the_network(
    tmp_path: Path,
) -> None:
    """The guest types that need AMD-V with nested paging, on the board's emulator: a PVH
    guest (Xen boots its kernel straight into a hardware container) and an HVM one
    (hvmloader, SeaBIOS, Dom0's device model), both of Dom0's kernel, started together by
    Dom0 and bridged onto its network, where each asks DHCP for an address and pings. The
    emulator's Xen keeps Dom0 on CPU 0, so xenkit-start puts the guests on CPU 1 (pc.toml
    says why)."""
    script = tmp_path / "guests.sh"
    script.write_text(HARDWARE_GUESTS)
    out = tmp_path / "pc"
    system = make_spec(
        board="pc",
        dom0_autorun=str(script),
        guest=[
            {"name": "p1", "type": "pvh", "memory": "256M"},
            {"name": "h1", "type": "hvm", "memory": "256M"},
        ],
    )
    build.build(system, out)
    ran = xenkit("run", "--check", "--quiet", "--timeout", "1200", str(out))
    console = (out / "run" / "console.log").read_text(errors="replace")
    assert ran.returncode == 0, ran.stdout[-2000:] + scenarios.tail(console)
    assert "version 7.2" in qemu.version(boards.load("pc"))  # bookworm's: pc.toml says why
    rows, r = scenarios.results(console)
    assert r["create-p1"][0] == "0" and r["create-h1"][0] == "0", r
    assert (r["affinity-0"], r["affinity-p1"], r["affinity-h1"]) == (["0"], ["1"], ["1"]), r
    # Each came up on its first start: a guest that crashes is restarted under a new ID.
    assert sorted((row[0], row[1]) for row in rows) == [("Domain-0", "0"), ("h1", "2"), ("p1", "1")]
    assert "Triple fault" not in console and "domain_crash" not in console
    for guest in ("p1", "h1"):
        banner = r[f"banner-{guest}"]
        assert banner[0] == "Xen" and banner[1].startswith("4.17"), r
        address = r[f"address-{guest}"]
        assert address[0].startswith("10.0.2.") and address[1:] == ["driver", "vif"], r
        assert r[f"ping-{guest}"] == ["10.0.2.2", "ok", "3"], r
        assert r[f"dom0-ping-{guest}"][:2] == ["0", "3"], r
        assert r[f"destroy-{guest}"] == ["0"], r
    # QEMU 10's decoder bug shows as Xen failing to emulate the guests' control-register reads.
    assert r["emulation-failed"] == ["0"], r
    assert "done" in r


# Printed by Dom0 on the boots below: its memory as xl and its balloon driver see it
# (low_kb: how far it could still grow), Xen's command line, how / is mounted, and a mark
# it leaves in /root for the next boot of the same medium to find.
REPORT = r"""#!/bin/sh
say() { echo "XK $(cut -d' ' -f1 /proc/uptime) $*"; }
say dom0-mem "$(xl list 0 2>/dev/null | awk 'NR == 2 { print $3 }')"
say balloon-low "$(cat /sys/devices/system/xen_memory/xen_memory0/info/low_kb 2>/dev/null)"
say xen-cmdline "$(xl info 2>/dev/null | sed -n 's/^xen_commandline *: //p')"
say root "$(awk '$2 == "/" { print $3 }' /proc/mounts)"
say mark "$(cat /root/mark 2>/dev/null || echo none)"
echo "boot-at-$(cut -d' ' -f1 /proc/uptime)" >/root/mark
sync
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("pc-live")
    script = work / "report.sh"
    script.write_text(REPORT)
    out = work / "out"
    system = make_spec(
        board="pc", dom0_autorun=str(script), persist="64M", guest=[{"name": "spare"}]
    )
    m = build.build(system, out)
    assert m.media == ("live.iso", "live-usb.img")
    return out


def _boot(
    live: Path, firmware: str, media: str, nic: str, entry: int | None, device: str
) -> tuple[str, dict[str, list[str]]]:
    """One boot of the `live` build; the Dom0 banner's Xen version, and REPORT's lines."""
    args = ["--firmware", firmware, "--media", media, "--nic", nic]
    if entry is not None:
        args += ["--entry", str(entry)]
    ran = xenkit("run", "--check", "--quiet", "--timeout", "600", *args, str(live))
    console = (live / "run" / "console.log").read_text(errors="replace")
    assert ran.returncode == 0, ran.stdout[-2000:] + scenarios.tail(console)
    if firmware == "uefi":
        assert "BdsDxe: starting" in console  # OVMF's boot manager, not SeaBIOS
    assert f"xenkit: Dom0 root is live from /dev/{device}" in console
    banner = re.search(r"Dom0 ready: Xen (.*), memory .*; NICs: (\S+);", ran.stdout)
    assert banner, ran.stdout
    driver = {"e1000": "e1000", "virtio": "virtio_net"}[nic]
    assert banner.group(2) == f"eth0/{driver}/uplink"
    _, r = scenarios.results(console)
    assert r["root"] == ["overlay"]
    if entry == 2:
        # Linux without Xen: no hypervisor line on the console, none for Dom0 to find.
        assert banner.group(1) == "none (Linux without Xen)" and "(XEN)" not in console
        assert "its guests (/etc/xen/*.cfg) need a Xen entry of the boot menu" in console
    else:
        assert banner.group(1).startswith("4.17") and r["dom0-mem"] == ["512"]
    return console, r


# The same image more ways than the PV guest's CD boot, each with a menu entry and a NIC of
# its own: UEFI from a CD with Dom0's memory capped; the image dd'd to a virtio disk and to
# a SATA disk, booting Linux without Xen (the entry for machines where Xen will not start;
# the quickest boot, 15 s).
@pytest.mark.qemu
@pytest.mark.parametrize(
    ("firmware", "media", "nic", "entry", "device"),
    [
        ("uefi", "cd", "e1000", 1, "sr0"),
        ("bios", "disk", "virtio", 2, "vda"),
        ("bios", "sata", "e1000", 2, "sda"),
    ],
)
def test_the_image_boots_from_each_firmware_and_medium_into_the_chosen_entry(
    live: Path, firmware: str, media: str, nic: str, entry: int, device: str
) -> None:
    console, r = _boot(live, firmware, media, nic, entry, device)
    if entry == 1:
        # Capped: Xen was told so, and Dom0's balloon has no room to grow.
        assert "dom0_mem=512M,max:512M" in r["xen-cmdline"] and r["balloon-low"] == ["0"]
        # The board's emulator-only words, from the slot of the emulator's copy of the CD.
        assert r["xen-cmdline"][0] == "bootscrub=off", r["xen-cmdline"]
    assert "changes kept in RAM" in console or media != "cd"


@pytest.mark.qemu
def test_the_live_image_from_trixie_boots_with_its_toolstack(tmp_path: Path) -> None:
    """The PC from Debian 13: Xen 4.20, Linux 6.12 and its xz'd modules on a merged-/usr
    root, found on the CD; Dom0 runs xl and Xen offers every guest type."""
    out = tmp_path / "pc"
    m = build.build(make_spec(board="pc", debian="trixie"), out)
    assert m.debian == "trixie" and m.xen_version.startswith("4.20")
    ran = xenkit("run", "--check", "--quiet", "--timeout", "600", str(out))
    console = (out / "run" / "console.log").read_text(errors="replace")
    assert ran.returncode == 0, ran.stdout[-2000:] + scenarios.tail(console)
    assert "xenkit: Dom0 root is live from /dev/sr0" in console
    banner = re.search(r"Dom0 ready: Xen (4\.20\S*), .*kernel 6\.12\S* \(Debian trixie\), "
                       r"xl sees 1 domains; guests: pv, pvh, hvm;", ran.stdout)  # fmt: skip
    assert banner, ran.stdout


@pytest.mark.qemu
def test_a_usb_stick_keeps_dom0s_changes_across_a_reboot(live: Path) -> None:
    """SeaBIOS boots the stick image (live-usb.img, with its persistence partition) into
    the default entry twice: the second boot finds the mark the first left in /root."""
    for boot in ("first", "second"):
        console, r = _boot(live, "bios", "usb", "virtio", None, "sda")
        assert "xenkit: Dom0 root is live from /dev/sda, changes kept on /dev/sda5" in console
        # The board's CPU (qemu64 with SVM and nested paging under TCG): Xen's HVM machinery.
        assert (
            "HVM: SVM enabled" in console and "Hardware Assisted Paging (HAP) detected" in console
        )
        assert "; guests: pv, pvh, hvm;" in console
        # Uncapped: Dom0 starts at 512M and may balloon up.
        assert "dom0_mem=512M" in r["xen-cmdline"] and int(r["balloon-low"][0]) > 0
        assert r["xen-cmdline"][0] == "bootscrub=off", r["xen-cmdline"]
        if boot == "first":
            assert r["mark"] == ["none"]
        else:
            assert r["mark"][0].startswith("boot-at-"), r["mark"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"netboot": True}, "netboot on the pc board loads Dom0.s root over HTTP: add --net-root"),
        ({"persist": "16M"}, "persist=16M is too small for a writable layer"),
        ({"net_root": True, "toolstack": False}, "net_root is Dom0's toolstack root"),
        ({"net_root": True, "persist": "64M"}, "persist keeps changes on the live USB"),
        (
            {"mirrors": "http://10.0.0.1/"},
            "mirrors does nothing without net_root: set net_root = true .--net-root.",
        ),
        ({"net_fetch": "whole"}, "net_fetch does nothing without net_root"),
    ],
)
def test_what_the_pc_cannot_build_yet_is_refused_before_any_download(
    tmp_path: Path, setting: dict[str, object], message: str
) -> None:
    with pytest.raises(XenkitError, match=message):
        build.build(make_spec(board="pc", **setting), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_check_and_map_say_the_pc_has_no_device_tree_to_check() -> None:
    for command in ("check", "map"):
        proc = xenkit(command, "--board", "pc")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "pc has no device tree" in lines[0]
