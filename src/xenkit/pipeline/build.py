"""The build pipeline: spec -> artifacts -> boot files -> the target's scripts and media.

Everything is written into a temporary directory beside the output, renamed into place at
the end: a failed build leaves the previous output (or nothing) behind, never half of one.
How the board boots (its scripts, firmware files, card image, emulator command line) is its
boot target's business (xenkit.targets): the pipeline is the same for every board.
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from xenkit import __version__, targets
from xenkit.config import arch
from xenkit.config.bootconfig import Domain
from xenkit.config.spec import BRIDGE_ADDR, SystemSpec
from xenkit.core import files, memo
from xenkit.core.files import read_text
from xenkit.core.sizes import MiB, format_size
from xenkit.debian.apt import Apt
from xenkit.debian.kmods import ModuleTree
from xenkit.errors import XenkitError
from xenkit.formats import binaries
from xenkit.formats import kernel as kernel_format
from xenkit.pipeline import manifest, stamp
from xenkit.pipeline.manifest import DomainEntry, FileEntry, Manifest, PackageEntry, file_entry
from xenkit.system import artifacts, baremetal, initramfs, netroot, rootfs
from xenkit.system.artifacts import Artifacts, gather, gzipped
from xenkit.system.initramfs import RootSource
from xenkit.xen import xl

# File names on the Arm boards' boot partition (other architectures: config/arch.py).
_ARM = arch.get("arm64")
XEN, KERNEL, RAMDISK = _ARM.xen_file, _ARM.kernel_file, arch.RAMDISK_FILE


# Each file's entry, the size, mtime and inode it had, and when its hashing began.
Hashed = dict[str, tuple[FileEntry, tuple[int, int, int], int]]
# A file's mtime comes from the kernel's coarse clock (a tick of 4-10 ms): one written up to
# this long before its hashing began could be written again with the same size and mtime.
RACY_NS = 20_000_000


def _files(top: Path) -> list[Path]:
    return [p for p in sorted(top.rglob("*")) if p.is_file() and p.name != manifest.NAME]


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _digests(out: Path, paths: list[Path]) -> Callable[[], Hashed]:
    """Start hashing `paths` (files in `out`) on a thread of its own (hashlib lets go of
    the interpreter's lock), beside the build's other work. The returned function waits
    for the result; a file removed meanwhile is left out."""
    done: Hashed = {}
    failed: list[BaseException] = []

    def work() -> None:
        try:
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    st, began = _stat(path), time.time_ns()
                    done[str(path.relative_to(out))] = (file_entry(path), st, began)
        except BaseException as exc:  # raised again in the build's own thread
            failed.append(exc)

    thread = threading.Thread(target=work, name="xenkit-digests", daemon=True)
    thread.start()

    def result() -> Hashed:
        thread.join()
        if failed:
            raise failed[0]
        return done

    return result


def _entries(out: Path, *hashed: Hashed) -> dict[str, FileEntry]:
    """The files hashed that are still in `out`, each as hashed unless it may have changed
    since (its size, mtime or inode differ, or it was written too shortly before): such a
    file is hashed again."""
    entries = {}
    for rel, (entry, st, began) in sorted(dict(i for h in hashed for i in h.items()).items()):
        path = out / rel
        if path.is_file():
            same = _stat(path) == st and st[1] < began - RACY_NS
            entries[rel] = entry if same else file_entry(path)
    return entries


def _manifest(
    spec: SystemSpec,
    art: Artifacts,
    out: Path,
    staged: targets.Staged,
    checks: tuple[str, ...],
    elapsed: float,
) -> Manifest:
    """The build's manifest, its files' digests left for the caller to fill in."""
    kernel = out / staged.boot_files.kernel
    # Read out of the kernel once per version of the file it was copied from: inflating a
    # gzip'd one took 0.17 s of every build, and hashing the copy (a new file each build,
    # 11 MiB) 25 ms.
    packaged = art.files["kernel"]
    facts = memo.cached(
        "linux-version",
        memo.key(memo.source(), memo.digest(packaged)),
        lambda: {"version": str(binaries.linux_version(packaged)).encode()},
    )
    guest_banners = tuple(
        initramfs.GUEST_READY.format(name=d.name) for d in spec.domains if not d.ramdisk
    )
    # What a boot prints once it is fully up: Dom0's banner, each boot-time guest's, and
    # the end of Dom0's autorun script if it has one.
    autorun = spec.dom0_autorun is not None and spec.toolstack
    return Manifest(
        xenkit=__version__,
        built=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        build_seconds=round(elapsed, 2),
        board=spec.board.name,
        target=spec.board.target,
        description=spec.board.description,
        debian=spec.board.release,
        ram=spec.ram,
        ram_banks=spec.ram_banks,
        emulated_ram_banks=spec.board.emulated_ram(spec.ram),
        boot_files=staged.boot_files,
        xen_version=str(binaries.xen_version(out / staged.boot_files.xen)),
        linux_version=facts["version"].decode(),
        kernel_isize=kernel_format.gzip_isize(kernel),
        dom0_mem=format_size(spec.dom0_mem),
        xen_cmdline=spec.xen_cmdline,
        dom0_cmdline=spec.dom0_cmdline,
        emulator_dom0_cmdline=spec.emu_dom0_cmdline,
        emulator_xen_cmdline=spec.emu_xen_cmdline,
        packages=tuple(PackageEntry(p.name, p.version, p.arch, p.sha256) for p in art.packages),
        local_files={role: str(p) for role, p in art.overrides.items()},
        layout=staged.layout,
        guests=tuple(
            DomainEntry(d.name, d.kernel or "dom0's", format_size(d.memory), d.vcpus)
            for d in spec.domains
        ),
        guest_banners=guest_banners,
        banners=(initramfs.READY, *guest_banners, *([rootfs.AUTORUN_DONE] if autorun else [])),
        toolstack=spec.toolstack,
        dom0_root=spec.dom0_root if spec.toolstack else "initramfs",
        autorun=autorun,
        runtime_guests=tuple(manifest.guest_entry(g) for g in spec.guests),
        xen_modules=staged.xen_modules,
        files={},
        media=staged.media,
        checks=checks,
    )


def _boot_name(index: int, path: str) -> str:
    """A user's file as the boot partition holds it: the boot script's load command takes
    the name bare, so "my Image.gz" would load "my" (measured: the script said exactly that)."""
    return f"domU{index}-" + re.sub(r"[^A-Za-z0-9._+-]", "_", Path(path).name)


def _stage_guests(
    spec: SystemSpec, boot: Path, busybox: bytes, dom0_kernel: str
) -> tuple[Domain, ...]:
    """Put each dom0less guest's files on the boot partition; the domains returned name them
    there. A guest without a kernel runs Dom0's (`dom0_kernel` there); one without a ramdisk
    gets a busybox initramfs that prints its own banner. A built-in guest is assembled from
    xenkit's source (through the cache) and runs alone, without a ramdisk."""
    staged = []
    for i, d in enumerate(spec.domains):
        if baremetal.is_builtin(d.kernel):
            name = baremetal.guest_name(d.kernel)
            kernel = f"domU{i}-{name}.Image"
            shutil.copyfile(baremetal.build(name).image, boot / kernel)
            staged.append(replace(d, kernel=kernel))
            continue
        kernel = dom0_kernel
        if d.kernel:
            kernel = _boot_name(i, d.kernel)
            shutil.copyfile(d.kernel, boot / kernel)
        if d.ramdisk:
            ramdisk = _boot_name(i, d.ramdisk)
            shutil.copyfile(d.ramdisk, boot / ramdisk)
        else:
            ramdisk = f"guest-{d.name}.cpio.gz"
            (boot / ramdisk).write_bytes(_initramfs(busybox, guest=d.name))
        staged.append(replace(d, kernel=kernel, ramdisk=ramdisk))
    return tuple(staged)


def _dom0(
    spec: SystemSpec, art: Artifacts, root: Path, source: RootSource
) -> tuple[bytes, rootfs.Tree | None]:
    """Dom0's initramfs; with the toolstack, also its root filesystem in `root` (which
    becomes the card's ext4 partition), or all of it in the initramfs. A live root
    (`source`) gets only this build's layer in `root`; the cached tree it goes over is
    returned for the target to write as its own layer."""
    busybox = art.files["busybox"].read_bytes()
    release = f"{spec.board.release}\n".encode()
    if not spec.toolstack:
        (root / "README").write_text(
            "Root filesystem of a xenkit image: Dom0 runs from its initramfs "
            "(build with --toolstack for Xen's tools here).\n"
        )
        return _initramfs(busybox, files={initramfs.RELEASE_FILE: release}), None
    board = spec.board
    xen_pkg = next(p.name for p in board.packages if p.role == "xen")
    mods = artifacts.modules(art)
    hardware = rootfs.Hardware(mods, board.hardware_modules) if board.hardware_modules else None
    net = isinstance(source, netroot.Net)
    tree = rootfs.assemble(
        Apt(board.arch, board.release),
        rootfs.xen_series(xen_pkg),
        hardware,
        # A network root's first stage runs Debian's casync, taken from Dom0's tree.
        (*arch.get(board.arch).guest_packages, *(("casync",) if net else ())),
    )
    setup = rootfs.Dom0Setup(
        bridge_addr=BRIDGE_ADDR,
        autorun=read_text(spec.dom0_autorun, "dom0_autorun", "give a shell script")
        if spec.dom0_autorun
        else "",
        autoconfig=hardware is not None,
    )
    wanted: tuple[str, ...] = rootfs.TOOLSTACK_MODULES
    if spec.dom0_root == "initramfs":
        wanted = (*rootfs.ROOT_MODULES, *wanted)
    layered = isinstance(source, initramfs.Live | netroot.Net) and spec.dom0_root != "initramfs"
    if not layered:
        rootfs.link(tree, root)
    files = {**_guest_files(spec, art, mods), initramfs.RELEASE_FILE: release}
    rootfs.stage(tree, root, rootfs.module_files(mods, wanted), setup, files, initramfs.READY)
    if spec.dom0_root == "initramfs":
        data = initramfs.from_tree(root, rootfs.INIT)
        shutil.rmtree(root)
        root.mkdir()
        (root / "README").write_text("Dom0 runs from its initramfs (dom0_root = initramfs).\n")
        return data, None
    wanted = (*board.root_modules, *rootfs.ROOT_MODULES, *(board.net_modules if net else ()))
    first = rootfs.module_files(mods, wanted)
    extra: dict[str, bytes] = {}
    if net:
        extra = netroot.casync_files(tree.path)
        extra.update(netroot.front_files(initramfs.UDHCPC_SCRIPT))
    data = _initramfs(busybox, modules=first, root=source, root_init=rootfs.INIT, files=extra)
    return data, tree if layered else None


def _initramfs(busybox: bytes, **inputs: Any) -> bytes:
    """initramfs.build(busybox, **inputs), remembered by its inputs: 0.2 s to 1 s of each
    build, for archives a command line or Xen change leaves alone."""
    parts: list[object] = [memo.source(), busybox]
    for name, value in sorted(inputs.items()):
        if name == "modules":  # .ko files in the cache's unpacked packages
            value = tuple((at, str(p), p.stat().st_size, p.stat().st_mtime_ns) for at, p in value)
        elif name == "files":
            value = tuple((at, memo.key(data)) for at, data in sorted(value.items()))
        parts.append((name, value))
    made = memo.cached(
        "initramfs",
        memo.key(*parts),
        lambda: {"initramfs.cpio.gz": initramfs.build(busybox, **inputs)},
    )
    return made["initramfs.cpio.gz"]


def _guest_files(spec: SystemSpec, art: Artifacts, mods: ModuleTree) -> dict[str, bytes]:
    """What Dom0 needs to start guests with xl: the default guest (Dom0's kernel and a busybox
    initramfs with the PV network and block drivers), and an xl.cfg per [[guest]]."""
    guest_ramdisk = _initramfs(
        art.files["busybox"].read_bytes(),
        guest="guest",
        modules=rootfs.module_files(
            mods, (*rootfs.GUEST_MODULES, *arch.get(spec.board.arch).guest_modules)
        ),
    )
    # As Dom0's: a gzip'd Image on Arm; on x86 the bzImage as it is, which the HVM device
    # model loads itself (QEMU refused a gzip'd one: "linux kernel too old").
    guest_kernel = art.files["kernel"]
    if arch.get(spec.board.arch).gzip_kernel:
        guest_kernel = gzipped(guest_kernel)
    files = {
        xl.DEFAULT_KERNEL.lstrip("/"): guest_kernel.read_bytes(),
        xl.DEFAULT_RAMDISK.lstrip("/"): guest_ramdisk,
    }
    for g in spec.guests:
        files.update(xl.stage(g)[1])
    # Xen numbers dom0less domains from 1 in the order of their /chosen nodes, and U-Boot's
    # `fdt mknode` puts each new node first: the last domain the script makes is domain 1.
    # Only those in xenstore have a dom0less-ID name to replace.
    files["etc/xenkit/dom0less"] = "".join(
        f"{i} {d.name}\n"
        for i, d in enumerate(reversed(spec.domains), start=1)
        if d.enhanced == "enabled"
    ).encode()
    return files


def root_size(spec: SystemSpec, root: Path) -> int:
    """The root partition: as asked, or its content with room for ext4's own structures
    and for guests added later."""
    need = rootfs.content_size(root)
    if spec.root_size:
        if spec.root_size < need * 5 // 4:
            raise XenkitError(
                f"root_size={format_size(spec.root_size)} is too small for Dom0's root "
                f"({format_size(need)} of files): give at least {format_size(need * 5 // 4)}"
            )
        return spec.root_size
    return max(64 * MiB, need * 5 // 4 + 128 * MiB)


def _check_output(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise XenkitError(f"output {out} exists and is not a directory: pick another -o")
    if out.is_dir() and any(out.iterdir()) and not (out / manifest.NAME).exists():
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


def build_if_changed(spec: SystemSpec, out: Path) -> tuple[Manifest, bool]:
    """The build of `spec` in `out`, and whether it had to be made: a build of the same
    inputs, untouched since (pipeline/stamp.py), is kept as it is. --refresh always builds."""
    found = stamp.up_to_date(spec, out)
    if found.manifest is not None:
        return found.manifest, False
    return build(spec, out, found.art, found.key), True


def build(
    spec: SystemSpec, out: Path, art: Artifacts | None = None, key: str | None = None
) -> Manifest:
    """Build `spec` into `out` (`art`: its packages, and `key` its stamp's key, if the
    caller has them)."""
    out = out.absolute()
    _check_output(out)
    files.clean_beside(out)
    started = time.monotonic()
    target = targets.for_board(spec.board)
    target.refuse(spec)
    art = art or gather(spec)
    # Before anything is read: an input replaced during the build makes the next one run.
    key = key or stamp.key(spec, art, out)
    return _build(spec, out, art, key, target, started)


def _build(
    spec: SystemSpec,
    out: Path,
    art: Artifacts,
    key: str,
    target: targets.Target,
    started: float,
) -> Manifest:
    tmp = files.new_dir_beside(out)
    try:
        boot = tmp / "boot"
        boot.mkdir()
        a = arch.get(spec.board.arch)
        kernel = gzipped(art.files["kernel"]) if a.gzip_kernel else art.files["kernel"]
        shutil.copyfile(art.files["xen"], boot / a.xen_file)
        shutil.copyfile(kernel, boot / a.kernel_file)
        root = tmp / "rootfs"
        root.mkdir()
        first_stage, tree = _dom0(spec, art, root, target.root_source(spec))
        (boot / arch.RAMDISK_FILE).write_bytes(first_stage)
        domains = _stage_guests(spec, boot, art.files["busybox"].read_bytes(), a.kernel_file)
        job = targets.Job(
            spec,
            art,
            tmp,
            boot,
            root,
            root_size(spec, root),
            domains,
            a.xen_file,
            a.kernel_file,
            arch.RAMDISK_FILE,
            tree,
        )
        # The pipeline's boot files are final: hashed while the target stages, not waited
        # for after the checks (20-30 ms of a rebuild).
        early = _files(boot)
        first = _digests(tmp, early)
        hashed = set(early)
        staged = target.stage(job)
        shutil.rmtree(root)
        (tmp / manifest.BOARD_FILE).write_text(spec.board.source)
        rest = _digests(tmp, [p for p in _files(tmp) if p not in hashed])
        m = _manifest(spec, art, tmp, staged, target.checks, time.monotonic() - started)
        m = replace(m, check=_check_and_map(tmp, m, out))
        m = replace(m, files=_entries(tmp, first(), rest()))
        manifest.write(tmp, m)
        stamp.write(tmp, spec, key, out)
        files.replace_dir(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _out_of_space(exc):
            free = shutil.disk_usage(out.parent).free
            raise XenkitError(
                f"no space left for the build in {out.parent} ({format_size(free)} free once "
                "the partial build was removed): free some, or build elsewhere with -o"
            ) from None
        raise
    return m


def _out_of_space(exc: BaseException) -> bool:
    """A full disk, met by xenkit itself or by a tool it ran (mksquashfs, xorriso, mkfs)."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return isinstance(exc, XenkitError) and "No space left on device" in str(exc)


def _check_and_map(out: Path, m: Manifest, name: Path) -> dict[str, Any]:
    """The check report and the address map of what was built into `out`, for the hardware
    image, under the build's own `name`."""
    # Here, not at the top: a build that finds its output up to date never checks it, and
    # these imports were 40 ms of that 0.3 s.
    from xenkit.analysis import check, memmap

    target = check.from_build(out, m=m, name=name)
    findings = check.run_checks(target)
    (out / "check.txt").write_text(check.report(target, findings) + "\n")
    if not m.boot_files.dtb:
        return check.as_json(target, findings)  # the address map draws a device tree
    # Drawn once per address map (~0.1 s, mostly the PNG), which a command line change
    # leaves as it was.
    regions = memmap.regions(target)
    drawn = memo.cached(
        "map", memo.key(memo.source(), target.description, regions), lambda: memmap.draw(target)
    )
    memmap.render_files(target, out / "map", drawn)
    (out / "map.txt").write_text(memmap.render_text(target) + "\n")
    return check.as_json(target, findings)
