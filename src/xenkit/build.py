"""The build pipeline: spec -> artifacts -> boot files, scripts and the SD card image.

Everything is written into a temporary directory beside the output, renamed into place at
the end: a failed build leaves the previous output (or nothing) behind, never half of one.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xenkit import __version__, binaries, dt, initramfs, layout, media, uboot
from xenkit.apt import sha256
from xenkit.artifacts import Artifacts, gather, gzipped
from xenkit.errors import XenkitError
from xenkit.sizes import format_size
from xenkit.spec import SystemSpec

log = logging.getLogger("xenkit")

MANIFEST = "manifest.json"
# File names on the boot partition.
XEN, KERNEL, RAMDISK = "xen", "Image.gz", "initrd.cpio.gz"


@dataclass(frozen=True)
class BootSet:
    """One boot script with the DTB it edits: for hardware, or for the emulator."""

    dtb: bytes
    script: str
    placements: tuple[layout.Placement, ...]


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(64)


def plan_loads(spec: SystemSpec, sizes: dict[str, tuple[int, int]]) -> list[layout.Placement]:
    """sizes: name -> (loaded size, file size), in load order. The same card also boots the
    emulator, so loads fit whichever first RAM bank is smaller."""
    board = spec.board
    banks = min(spec.ram_banks, board.emulated_ram(spec.ram), key=lambda b: b[0][1])
    win = layout.window(banks, board.load_limit, board.top_reserve, board.reserved)
    return layout.plan([layout.Item(n, s, f) for n, (s, f) in sizes.items()], win)


def boot_set(
    spec: SystemSpec, files: dict[str, Path], dtb: bytes, dom0_cmdline: str, title: str
) -> BootSet:
    sizes = {
        "xen": (
            layout.image_size(_head(files[XEN]), files[XEN].stat().st_size),
            files[XEN].stat().st_size,
        ),
        "kernel": (files[KERNEL].stat().st_size,) * 2,
        "ramdisk": (files[RAMDISK].stat().st_size,) * 2,
        "dtb": (uboot.fdt_size_at_boot(dtb), len(dtb)),
    }
    placements = plan_loads(spec, sizes)
    names = {"xen": XEN, "kernel": KERNEL, "ramdisk": RAMDISK, "dtb": spec.board.dtb_name}
    script = uboot.xen_boot_script(names, placements, spec.xen_cmdline, dom0_cmdline, title)
    return BootSet(dtb, script, tuple(placements))


# Xen's names for the modules it registers (BOOTMOD_*), by placement name.
MODULE_KINDS = {"xen": "xen", "dtb": "fdt", "kernel": "kernel", "ramdisk": "ramdisk"}


def xen_modules(bs: BootSet) -> list[dict[str, Any]]:
    """The boot modules as Xen registers them: its own image by the Image header's size,
    the DTB by its size after U-Boot, the /chosen modules by their reg."""
    out = []
    for p in bs.placements:
        size = p.file_size if p.name in ("kernel", "ramdisk") else p.size
        out.append({"kind": MODULE_KINDS[p.name], "start": p.addr, "size": size})
    return out


def hardware_dtb(spec: SystemSpec, art: Artifacts) -> bytes:
    tree = dt.DeviceTree.load(art.files["dtb"])
    if spec.board.xen_console:
        dt.console_uart(tree, spec.board.xen_console)
    return tree.to_bytes()


def emulation_dtb(spec: SystemSpec, dtb: bytes) -> bytes:
    tree = dt.DeviceTree(dtb, spec.board.dtb_name)
    disabled = tree.disable_compatible(spec.board.emulate.disable)
    log.info("emulation DTB: disabled %d nodes QEMU does not model", len(disabled))
    return tree.to_bytes()


def _write_boot_set(bs: BootSet, where: Path, dtb_name: str) -> None:
    (where / dtb_name).write_bytes(bs.dtb)
    (where / "boot.source").write_text(bs.script)
    (where / "boot.scr").write_bytes(uboot.script_image(bs.script))


def _manifest(
    spec: SystemSpec, art: Artifacts, out: Path, hw: BootSet, emu: BootSet, elapsed: float
) -> dict[str, Any]:
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            files[str(path.relative_to(out))] = {
                "size": path.stat().st_size,
                "sha256": sha256(path),
            }
    return {
        "xenkit": __version__,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(elapsed, 2),
        "board": spec.board.name,
        "description": spec.board.description,
        "ram": spec.ram,
        "ram_banks": [list(b) for b in spec.ram_banks],
        "emulated_ram_banks": [list(b) for b in spec.board.emulated_ram(spec.ram)],
        "xen_version": str(binaries.xen_version(out / "boot" / XEN)),
        "linux_version": str(binaries.linux_version(out / "boot" / KERNEL)),
        "kernel_isize": gzip_isize(out / "boot" / KERNEL),
        "dom0_mem": format_size(spec.dom0_mem),
        "xen_cmdline": spec.xen_cmdline,
        "dom0_cmdline": spec.dom0_cmdline,
        "emulator_dom0_cmdline": spec.emu_dom0_cmdline,
        "packages": [
            {"name": p.name, "version": p.version, "arch": p.arch, "sha256": p.sha256}
            for p in art.packages
        ],
        "local_files": {role: str(p) for role, p in art.overrides.items()},
        "layout": [
            {
                "name": p.name,
                "address": f"{p.addr:#x}",
                "end": f"{p.end:#x}",
                "size": p.size,
                "file_size": p.file_size,
            }
            for p in hw.placements
        ],
        "xen_modules": {"hardware": xen_modules(hw), "emulator": xen_modules(emu)},
        "files": files,
    }


def gzip_isize(path: Path) -> int | None:
    """A gzip file's uncompressed size mod 2^32 (its last four bytes); None if not gzip."""
    with path.open("rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return None
        f.seek(-4, 2)
        return int.from_bytes(f.read(4), "little")


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise XenkitError(f"output {out} exists and is not a directory: pick another -o")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise XenkitError(
            f"output {out} is a non-empty directory xenkit did not build: "
            "pick another -o or empty it"
        )
    parent = out.parent if out.parent != Path("") else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".xenkit-probe-"):
            pass
    except OSError as exc:
        raise XenkitError(f"cannot write to {parent} ({exc.strerror}): pick another -o") from None


def build(spec: SystemSpec, out: Path) -> dict[str, Any]:
    started = time.monotonic()
    out = out.absolute()
    _check_output(out)
    art = gather(spec)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    tmp.chmod(0o755)
    try:
        boot = tmp / "boot"
        boot.mkdir()
        shutil.copyfile(art.files["xen"], boot / XEN)
        shutil.copyfile(gzipped(art.files["kernel"]), boot / KERNEL)
        (boot / RAMDISK).write_bytes(initramfs.build(art.files["busybox"].read_bytes()))
        shutil.copyfile(art.files["uboot"], boot / "u-boot.bin")
        for role, path in art.files.items():
            if role.startswith("firmware/"):
                shutil.copyfile(path, boot / role.removeprefix("firmware/"))
        if spec.board.config_txt:
            (boot / "config.txt").write_text(
                "# Written by xenkit: the firmware starts U-Boot, U-Boot runs boot.scr.\n"
                + "\n".join(spec.board.config_txt)
                + "\n"
            )
        files = {XEN: boot / XEN, KERNEL: boot / KERNEL, RAMDISK: boot / RAMDISK}
        title = f"xenkit boot script for {spec.board.description}"
        hw = boot_set(spec, files, hardware_dtb(spec, art), spec.dom0_cmdline, title)
        _write_boot_set(hw, boot, spec.board.dtb_name)
        emu_dir = tmp / "emulate"
        emu_dir.mkdir()
        emu = boot_set(
            spec,
            files,
            emulation_dtb(spec, hw.dtb),
            spec.emu_dom0_cmdline,
            title + " (emulator copy: unmodelled blocks disabled)",
        )
        _write_boot_set(emu, emu_dir, spec.board.dtb_name)
        root = tmp / "rootfs"
        root.mkdir()
        (root / "README").write_text(
            "Root filesystem of a xenkit image; Dom0 runs from its initramfs for now.\n"
        )
        media.sd_image(tmp / "sd.img", {p.name: p for p in boot.iterdir()}, root, spec.root_size)
        shutil.rmtree(root)
        manifest = _manifest(spec, art, tmp, hw, emu, time.monotonic() - started)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        manifest["check"] = _check_and_map(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _check_and_map(out: Path) -> dict[str, Any]:
    """The check report and the address map of what was built, for the hardware image."""
    from xenkit import check, memmap

    target = check.from_build(out)
    findings = check.run_checks(target)
    (out / "check.txt").write_text(check.report(target, findings) + "\n")
    memmap.render_files(target, out / "map")
    (out / "map.txt").write_text(memmap.render_text(target) + "\n")
    return check.as_json(target, findings)


def _replace(new: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        new.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        new.rename(out)


def read_manifest(build_dir: Path) -> dict[str, Any]:
    path = build_dir / MANIFEST
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise XenkitError(
            f"{build_dir} is not a xenkit build (no {MANIFEST}): run xenkit build -o {build_dir}"
        ) from None
    except (OSError, ValueError) as exc:
        raise XenkitError(f"cannot read {path}: {exc}") from None
    return data
