"""The PC's boot: the firmware (SeaBIOS, or UEFI) starts GRUB from one hybrid live image, and
GRUB's menu loads Xen with multiboot2 and Dom0's kernel and initramfs as its modules.

grub-mkrescue writes the image from a directory, without root or loop mounts: an ISO 9660
filesystem with El Torito entries for BIOS and UEFI and an MBR, so the same file boots from a
CD, and written to a USB stick or used as a disk (../shared/field-notes.md: verified with
SeaBIOS from CD, OVMF from CD and SeaBIOS as a USB stick). Under QEMU it boots from a CD
drive, on the pc machine with a CPU model that gives Xen SVM and nested paging under TCG.

Dom0's root is live: two squashfs layers on the image under a tmpfs. The lower one is the
toolstack tree with the drivers for any PC, the same for every build of one package set and
so made once into the cache; the upper one holds what this build adds (init, settings,
guests), so a rebuild compresses megabytes, not the whole root.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import struct
import time
from pathlib import Path
from typing import ClassVar

from xenkit.bootscripts import grubcfg
from xenkit.bootscripts.grubcfg import menu
from xenkit.config import arch
from xenkit.config.boards import Board
from xenkit.config.spec import SystemSpec
from xenkit.core import files, hostdeps
from xenkit.core.proc import need, run
from xenkit.core.sizes import human
from xenkit.errors import XenkitError
from xenkit.images import layers, netdir, persistence
from xenkit.images.media import cache_disk
from xenkit.pipeline.manifest import BootFiles
from xenkit.run import qemu
from xenkit.run.qemu import RunPlan
from xenkit.system import netroot
from xenkit.system.initramfs import Live, RootSource
from xenkit.targets import Job, Staged, Target

ISO = "live.iso"
# With net_root: the boot medium alone; Dom0's root is in netroot/ beside it.
NET_ISO = "net.iso"
NETROOT = layers.NETROOT
# With netboot as well: the PXE tree xenkit serve gives PCs over TFTP.
TFTP = "tftp"
# With persist: the image for a USB stick, with the writable partition behind it.
USB = "live-usb.img"
VOLUME = "XENKIT"
LAYER, BASE = layers.LAYERS
# What xenkit puts on the image besides the layers (grub-mkrescue adds GRUB itself).
_AMD64 = arch.get("amd64")
OURS = (
    "boot/grub/grub.cfg",
    *(f"boot/{n}" for n in (_AMD64.xen_file, _AMD64.kernel_file, arch.RAMDISK_FILE)),
)
# 1980-01-01: the earliest date FAT (the UEFI boot image) can hold.
FAT_EPOCH = 315532800
# The volume serial number in a FAT12/16 boot sector's extended BIOS parameter block.
FAT_SERIAL = 0x27
# UEFI for QEMU's PC (the hostdeps table installs it).
OVMF = Path("/usr/share/ovmf/OVMF.fd")
# Where the image goes besides a CD drive: a stick on an xHCI controller, a virtio disk, a
# SATA disk on an AHCI controller.
MEDIA = {
    "usb": ["-device", "qemu-xhci,id=xhci", "-device", "usb-storage,bus=xhci.0,drive=medium"],
    "disk": ["-device", "virtio-blk-pci,drive=medium"],
    "sata": ["-device", "ahci,id=ahci", "-device", "ide-hd,drive=medium,bus=ahci.0"],
}
NICS = {"e1000": "e1000", "virtio": "virtio-net-pci"}
# GRUB draws its menu on the serial line with this hint under it; arrow keys move down it.
MENU_PROMPT = "Use the ^ and v keys to select which entry is highlighted"
DOWN = b"\x1b[B"
TIMEOUT = 3


def extract(iso: Path, paths: list[str], dest: Path) -> None:
    """Files xenkit put on the image, back out of it, to the same paths under `dest`."""
    picks = [a for p in paths for a in ("-extract", f"/{p}", str(dest / p))]
    run([need("xorriso"), "-osirrox", "on", "-indev", iso, *picks])


def epoch() -> int:
    """The one date the image carries: SOURCE_DATE_EPOCH when the caller sets it (the
    reproducible-builds.org convention), else FAT's first day, 1980-01-01."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return FAT_EPOCH
    if not value.isdigit():
        raise XenkitError(f"SOURCE_DATE_EPOCH={value!r}: give whole seconds since 1970")
    return max(int(value), FAT_EPOCH)


def mkrescue(tree: Path, dest: Path, when: int) -> None:
    """grub-mkrescue's hybrid image of `tree`, the same bytes for the same tree: every date
    is `when` (mtools and grub-mkrescue take SOURCE_DATE_EPOCH; xorriso is told), the GPT's
    GUIDs come from the volume's date, and the UEFI image's FAT serial, which mformat
    draws at random, is set from it too."""
    stamp = time.strftime("%Y%m%d%H%M%S00", time.gmtime(when))
    xorriso = ["-volid", VOLUME, "-volume_date", "uuid", stamp]
    xorriso += ["-volume_date", "all_file_dates", f"={when}"]
    xorriso += ["-boot_image", "any", "gpt_disk_guid=volume_date_uuid"]
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(when)}
    run([need("grub-mkrescue"), "-o", dest, tree, "--", *xorriso], env=env)
    report = run(
        [need("xorriso"), "-indev", dest, "-report_el_torito", "plain"], capture=True
    ).stdout
    m = re.search(r"^El Torito boot img :\s+\d+\s+UEFI\s.*\s(\d+)\s*$", report, re.M)
    if not m:
        raise XenkitError(f"grub-mkrescue wrote {dest.name} without a UEFI boot image")
    with dest.open("r+b") as f:
        f.seek(int(m.group(1)) * 2048 + FAT_SERIAL)
        f.write(struct.pack("<I", when & 0xFFFFFFFF))


def _listed(listing: str) -> list[tuple[str, int]]:
    """(path, size) from xorriso's -lsl output, which lists each directory after its name."""
    found, folder = [], ""
    for line in listing.splitlines():
        if line.startswith("'/") and line.endswith("':"):
            folder = line[2:-2]
        elif m := re.match(r"^-\S+\s+\d+\s+\d+\s+\d+\s+(\d+)\s+.*'([^']+)'$", line):
            found.append((f"{folder}/{m.group(2)}", int(m.group(1))))
    return found


def _medium(image: Path, copy: Path) -> Path:
    """The emulated stick, disk or CD: a copy of `image` that lives as long as the image does,
    so a second run is a reboot that finds what the first wrote (persistence)."""
    st = image.stat()
    source = f"{image} {st.st_size} {st.st_mtime_ns}\n"
    stamp = copy.with_name(copy.name + ".source")
    if not copy.exists() or not stamp.exists() or stamp.read_text() != source:
        stamp.unlink(missing_ok=True)
        files.copy_sparse_file(image, copy)
        stamp.write_text(source)
    return copy


def _emulator_words(image: Path, words: str) -> Path:
    """Fill the emulator's slot in `image` (the emulator's copy of a medium) with `words`,
    in place: Xen's options for emulated hardware only (grubcfg.SLOT)."""
    with image.open("r+b") as f, mmap.mmap(f.fileno(), 0) as data:
        if not grubcfg.fill_slot(data, words):
            raise XenkitError(f"{image} has no grub.cfg from this xenkit: rebuild it")
    return image


def _cd_copy(image: Path, copy: Path, words: str) -> Path:
    """The emulator's CD: the image itself where the board gives Xen no words of its own,
    else a copy with them in its grub.cfg, made (118 MiB, 0.1-0.3 s) as _medium's copies
    are, once until the image changes."""
    if not words:
        return image
    return _emulator_words(_medium(image, copy), words)


def _pxe_copy(tree: Path, dest: Path, mirrors: tuple[str, ...], words: str) -> Path:
    """The PXE tree for QEMU's own TFTP server: links to `tree`'s files, and a grub.cfg
    naming the mirrors on Dom0's command line (QEMU's DHCP boot file is GRUB's image), with
    the emulator's Xen words, and no HTTP: the host's port 8080 (QEMU's 10.0.2.2) is not
    this tree's server."""
    shutil.rmtree(dest, ignore_errors=True)
    grub_dir = dest / netdir.SUBDIR
    grub_dir.mkdir(parents=True)
    for path in (tree / "boot").iterdir():
        if path.name != "grub":
            (dest / "boot" / path.name).symlink_to(path.resolve())
    for path in (tree / netdir.SUBDIR).iterdir():
        if path.name != "grub.cfg":
            (grub_dir / path.name).symlink_to(path.resolve())
    cfg = grubcfg.without_pxe_http((tree / netdir.SUBDIR / "grub.cfg").read_text())
    if mirrors:
        word = "xenkit.mirror=" + ",".join(mirrors)
        cfg = re.sub(r"^(    module2 /boot/vmlinuz\S* .*)$", rf"\1 {word}", cfg, flags=re.M)
    data = bytearray(cfg.encode())
    if not grubcfg.fill_slot(data, words):
        raise XenkitError(f"{tree} has no grub.cfg from this xenkit: rebuild it")
    (grub_dir / "grub.cfg").write_bytes(data)
    return dest


def need_file(path: Path) -> Path:
    if not path.exists():
        package = hostdeps.FILES.get(str(path), "the package that has it")
        raise XenkitError(
            f"{path} is missing: run scripts/install-system-deps.sh (package {package})"
        )
    return path


class Grub(Target):
    name = "grub"
    firmware = "firmware + GRUB"
    checks = (
        "xen version",
        "dom0 linux version",
        "pc console",
        "dom0 console",
        "guest memory",
        "virtualisation",
    )
    root = Live(VOLUME, (LAYER, BASE), persistence.LABEL)
    offers: ClassVar[dict[str, tuple[str, ...]]] = {
        "firmware": ("bios", "uefi"),
        "media": ("cd", "usb", "disk", "sata", "net"),
        "nic": ("e1000", "virtio"),
    }
    menu_entries = 4

    def validate(self, board: Board) -> None:
        where = f"board {board.name} (target grub)"
        if board.arch != "amd64":
            raise XenkitError(f"{where}: GRUB live images are for amd64 boards, not {board.arch}")
        media = self.offers["media"]
        if board.emulate.disk not in media:
            raise XenkitError(
                f"{where}: [emulate] disk = {board.emulate.disk!r}: use one of {', '.join(media)}"
            )
        unknown = set(board.boot) - {"timeout"}
        if unknown:
            raise XenkitError(f"{where}: unknown [boot] keys {', '.join(sorted(unknown))}")
        timeout = board.boot.get("timeout", TIMEOUT)
        if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
            raise XenkitError(f"{where}: [boot] timeout is whole seconds, 0 or more")

    def root_source(self, spec: SystemSpec) -> RootSource:
        if spec.net_root:
            return netroot.Net(self.root.layers, mirrors=spec.mirrors, fetch=spec.net_fetch)
        return self.root

    def refuse(self, spec: SystemSpec) -> None:
        super().refuse(spec)
        if spec.net_root and spec.persist:
            raise XenkitError(
                "persist keeps changes on the live USB image, which a network root has not: "
                "drop one of them"
            )
        if spec.persist:
            persistence.check_size(spec.persist)
        grubcfg.slot_line(spec.board.emulate.xen_cmdline)  # fits, or one line now
        if spec.domains:
            raise XenkitError(
                "[[domain]] tables are dom0less guests, which Xen starts only on Arm: "
                "on the PC, start guests with xl (toolstack)"
            )
        if spec.netboot and not spec.net_root:
            raise XenkitError("netboot on the pc board loads Dom0's root over HTTP: add --net-root")

    def stage(self, job: Job) -> Staged:
        spec = job.spec
        self.refuse(spec)
        tree = job.out / "iso"
        (tree / "boot" / "grub").mkdir(parents=True)
        for name in (job.xen, job.kernel, job.ramdisk):
            shutil.copyfile(job.boot / name, tree / "boot" / name)
        timeout = int(spec.board.boot.get("timeout", TIMEOUT))
        (tree / "boot" / "grub" / "grub.cfg").write_text(menu(spec, timeout, spec.dom0_cmdline))
        made: tuple[str, ...] = (ISO,)
        if spec.net_root and job.tree:
            layers.publish(
                job.root, job.tree.path, (LAYER, BASE), spec.net_store, job.out / NETROOT,
                tree / "boot" / job.ramdisk,
            )  # fmt: skip
            made = (NET_ISO, NETROOT)
        elif job.tree:
            (tree / "live").mkdir()
            files.link_or_copy(layers.base_image(job.tree.path), tree / BASE)
            layers.squashfs(job.root, tree / LAYER)
        self._write(tree, job.out / made[0])
        if spec.netboot:
            # PXE: the same files over TFTP, beside net.iso.
            http = None
            if spec.netboot_http_port:
                http = grubcfg.pxe_http(spec.netboot_server, spec.netboot_http_port)
            netdir.make(tree, job.out / TFTP / "default", http)
            made += (TFTP,)
        if spec.persist:
            persistence.add(job.out / ISO, job.out / USB, spec.persist, epoch())
            made = (ISO, USB)
        shutil.rmtree(tree)
        return Staged(
            boot_files=BootFiles(
                xen=f"boot/{job.xen}", kernel=f"boot/{job.kernel}", dtb="", emulator_dtb=""
            ),
            media=made,
            layout=(),
            xen_modules={},
        )

    @staticmethod
    def _write(tree: Path, iso: Path) -> None:
        with files.replacing(iso) as partial:
            mkrescue(tree, partial, epoch())

    def describe(self, build_dir: Path) -> list[str]:
        """The menu as --entry numbers it, and what the image holds, read from the image."""
        iso = build_dir / ISO
        if not iso.exists():
            return []
        listing = run(
            [need("xorriso"), "-indev", iso, "-lsl", "/boot", "/live", "--"],
            capture=True,
            check=False,
        ).stdout
        sizes = dict(_listed(listing))
        work = files.new_dir_beside(build_dir / ".info")
        try:
            extract(iso, [OURS[0]], work)
            titles = re.findall(r'^menuentry "([^"]+)"', (work / OURS[0]).read_text(), re.M)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        lines = ["boot menu (xenkit run --check --entry N)"]
        lines += [f"  {i}  {title}" for i, title in enumerate(titles)]
        lines.append(f"image {ISO} (volume {VOLUME})")
        what = {BASE: "Dom0's root: toolstack and drivers", LAYER: "this build's layer"}
        for path in (*OURS[1:], LAYER, BASE):
            if path in sizes:
                note = f"  {what[path]}" if path in what else ""
                lines.append(f"  /{path:<22} {human(sizes[path]):>10}{note}")
        usb = build_dir / USB
        if usb.exists():
            extra = usb.stat().st_size - iso.stat().st_size
            lines.append(f"{USB}: {ISO} and a persistence partition ({human(extra)})")
        return lines

    def add_to_root(self, build_dir: Path, added: dict[str, bytes]) -> tuple[str, ...]:
        """A new top layer with `added` over the old one, and the image written again from
        what xenkit put in it (GRUB's own files are grub-mkrescue's to add)."""
        iso = build_dir / ISO
        work = files.new_dir_beside(build_dir / ".add")
        try:
            tree, layer = work / "iso", work / "layer"
            extract(iso, [*OURS, LAYER, BASE], tree)
            if not (tree / LAYER).exists():
                raise XenkitError(f"{build_dir} has no live root to add to: build with --toolstack")
            run([need("unsquashfs"), "-q", "-no-progress", "-d", layer, tree / LAYER])
            for path, data in added.items():
                (layer / path).parent.mkdir(parents=True, exist_ok=True)
                (layer / path).write_bytes(data)
            layers.squashfs(layer, tree / LAYER)
            self._write(tree, iso)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return (ISO,)

    def run_plan(
        self,
        board: Board,
        ram: str,
        build_dir: Path,
        workdir: Path,
        netdev: str = "",
        choices: qemu.Choices | None = None,
    ) -> RunPlan:
        """The live image as the user asks: in a CD drive (read-only), or a copy of it as a
        USB stick or a virtio disk, which Dom0 may write; SeaBIOS or OVMF; a NIC on QEMU's
        user network; a menu entry typed on the serial line. Every copy the emulator boots
        (the CD's too, where the board has them) carries the board's emulator-only Xen
        words in grub.cfg's slot."""
        c = choices or qemu.Choices()
        image = build_dir / ISO
        if (build_dir / NET_ISO).exists():
            image = build_dir / NET_ISO
        elif c.mirrors or c.cache_disk:
            raise XenkitError(f"{build_dir} has no network root: build it with --net-root")
        media = c.media or board.emulate.disk
        tree = build_dir / TFTP / "default"
        if media == "net" and not tree.is_dir():
            raise XenkitError(f"{build_dir} has no PXE tree: build it with --net-root --netboot")
        if not image.exists():
            raise XenkitError(f"{build_dir} has no {ISO}: run xenkit build -o {build_dir} first")
        workdir.mkdir(parents=True, exist_ok=True)
        words = board.emulate.xen_cmdline
        # No default devices: only what is asked for (QEMU's pc adds a floppy, a second CD
        # drive and a NIC of its own).
        argv = [*qemu.start(board, ram), "-nodefaults"]
        uefi = (c.firmware or "bios") == "uefi"
        if uefi:
            argv += ["-bios", str(need_file(OVMF))]
        net = netdev or "user"
        if media == "net":
            # PXE: the NIC's iPXE asks DHCP (the LAN's and xenkit serve's proxy, on a tap
            # device; else QEMU's own, serving an emulator's copy of the tree over TFTP).
            image = tree
            argv += ["-boot", "n"]
            if not netdev:
                copy = _pxe_copy(tree, workdir / "tftp", c.mirrors, words)
                net += f",tftp={copy},bootfile={netdir.UEFI if uefi else netdir.BIOS}"
        elif media == "cd":
            cd = _cd_copy(image, workdir / "cd.iso", words)
            argv += qemu.drive(board, f"file={cd},media=cdrom,readonly=on,format=raw")
        else:
            # What a user does with the image: dd it to a stick or a disk (the one with the
            # persistence partition where there is one).
            if (build_dir / USB).exists():
                image = build_dir / USB
            copy = _emulator_words(_medium(image, workdir / f"{media}.img"), words)
            argv += qemu.drive(board, f"if=none,id=medium,format=raw,file={copy}")
            argv += MEDIA[media]
        if c.cache_disk:
            argv += qemu.cache_drive(board, cache_disk(Path(c.cache_disk)), "virtio-blk-pci")
        nic = NICS[c.nic or "e1000"]
        if media != "net":
            net += qemu.mirrors_bootfile(c.mirrors)
        argv += ["-netdev", f"{net},id=net0", "-device", f"{nic},netdev=net0"]
        argv += qemu.serial_args(board, workdir)
        answers: tuple[tuple[str, bytes], ...] = ()
        if c.entry is not None:
            answers = ((MENU_PROMPT, DOWN * c.entry + b"\r"),)
        return RunPlan(argv, image, workdir / "console.log", self.firmware, answers)


TARGET = Grub()
