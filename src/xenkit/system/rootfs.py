"""Dom0's root filesystem with the Xen toolstack, assembled from Debian arm64 packages.

The packages are unpacked, never configured: their maintainer scripts are written for a
running Debian on the target and would need the foreign CPU. The few things they would do
that Dom0 needs (accounts, the merged /usr links, runtime directories) are done here, and
xenkit's own init starts Xen's services (xenstored, xenconsoled) instead of an init system.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from xenkit.core import files, log
from xenkit.core.cachedir import cache_home
from xenkit.core.files import link_or_copy
from xenkit.core.proc import need, run
from xenkit.debian import deb, kmods
from xenkit.debian.apt import Apt, Package
from xenkit.debian.kmods import ModuleTree
from xenkit.errors import XenkitError
from xenkit.system import netroot
from xenkit.system.dom0scripts import DOM0_INIT, GUEST_TOOL_SCRIPT, GUESTS_LIB
from xenkit.system.initramfs import UDHCPC_SCRIPT

# Bumped whenever the tree's layout or setup steps change, so cached trees are rebuilt.
FORMAT = 2

# What Dom0 runs besides the kernel: xl and the daemons, ip for the bridge, bash for Xen's
# hotplug scripts, busybox for everything small (mount, ping, findfs, switch_root ...).
# util-linux for flock and mountpoint, which the hotplug scripts and init use and Debian's
# busybox leaves out.
PACKAGES = (
    "xen-utils-{xen}",
    "xenstore-utils",
    "iproute2",
    "bash",
    "util-linux",
    "busybox-static",
)

# With hardware modules, Dom0 loads drivers by modalias: kmod's modprobe reads the index
# depmod writes at build time.
HARDWARE_PACKAGES = ("kmod",)

# Kernel modules Dom0 loads for the toolstack and guest networking; storage for the root
# filesystem comes from the board.
TOOLSTACK_MODULES = (
    "xen-evtchn",
    "xen-privcmd",
    "xenfs",
    "xen-gntdev",
    "xen-gntalloc",
    "xen-blkback",
    "xen-netback",
    "bridge",
    "tun",
)
# The ext4 root needs crc32c, which ext4 asks the crypto API for rather than depending on.
ROOT_MODULES = ("crc32c_generic", "ext4")
GUEST_MODULES = ("xen-netfront", "xen-blkfront")

# Documentation and translations are a third of the unpacked size and nothing reads them.
_SKIP = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/lintian/",
    "usr/share/bug/",
)

LABEL = "root"
# Dom0 prints this and the script's exit status once its autorun script has finished.
AUTORUN_DONE = "xenkit: autorun exit"
BUSYBOX_APPLETS = "usr/libexec/busybox"
INIT = "usr/lib/xenkit/init"
UDHCPC = "usr/lib/xenkit/udhcpc"
GUEST_TOOL = "usr/sbin/xenkit-start"
GUEST_TOOL_LIB = "usr/lib/xenkit/guests.sh"


def xen_series(package: str) -> str:
    """ "xen-hypervisor-4.17-arm64" -> "4.17": the toolstack must match the hypervisor."""
    m = re.search(r"xen-hypervisor-(\d+\.\d+)", package)
    if not m:
        raise XenkitError(
            f"cannot tell the Xen version from the package name {package}: "
            "the toolstack needs xen-hypervisor-X.Y"
        )
    return m.group(1)


def _keep(path: str) -> bool:
    # The merged-/usr links themselves are made here: Debian 13's base-files ships them,
    # and unpacking one over the directory it names failed (IsADirectoryError).
    return not path.startswith(_SKIP) and path not in deb.MERGED


@dataclass(frozen=True)
class Tree:
    """An assembled root directory in the cache, shared by every build that wants it."""

    path: Path
    xen: str
    packages: tuple[Package, ...]

    @property
    def toolstack_bin(self) -> str:
        return f"/usr/lib/xen-{self.xen}/bin"


@dataclass(frozen=True)
class Hardware:
    """Drivers for a machine xenkit cannot know in advance: every module under `dirs`
    (paths in the kernel's module tree, or single modules by name) and what they need,
    with depmod's index, so that Dom0 loads what fits the devices it finds."""

    modules: ModuleTree
    dirs: tuple[str, ...]

    def files(self) -> list[tuple[str, Path]]:
        names = []
        for d in self.dirs:
            if "/" not in d:
                names.append(d)  # one module, by name
                continue
            top = self.modules.root / d
            if not top.is_dir():
                raise XenkitError(
                    f"hardware module directory {d} is not in {self.modules.release}'s "
                    "modules: check [dom0] hardware_modules in the board file"
                )
            names += [p.name for p in sorted(top.rglob("*.ko*")) if kmods.is_module(p.name)]
        return module_files(self.modules, (*names, *TOOLSTACK_MODULES))


def _key(packages: list[Package], hardware: Hardware | None) -> str:
    h = hashlib.sha256(f"rootfs-{FORMAT}".encode())
    for p in packages:
        h.update(f"{p.name} {p.sha256}\n".encode())
    if hardware:
        # The module tree's cache path names the kernel package by its hash.
        h.update(f"{hardware.modules.root} {' '.join(hardware.dirs)}\n".encode())
    return h.hexdigest()[:24]


def _add_hardware(root: Path, hw: Hardware) -> int:
    """The hardware modules, hard-linked from the module cache, and depmod's index."""
    found = hw.files()
    for path, src in found:
        dst = root / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(src, dst)
    base = root / "usr/lib/modules" / hw.modules.release
    for f in hw.modules.root.iterdir():
        # modules.builtin and its modinfo: modprobe must know what needs no loading.
        if f.is_file():
            shutil.copyfile(f, base / f.name)
    run([need("depmod"), "-b", root, hw.modules.release])
    return len(found)


def assemble(
    apt: Apt, xen: str, hardware: Hardware | None = None, extra: tuple[str, ...] = ()
) -> Tree:
    """The toolstack root for Xen `xen`, from the cache or unpacked into it; with
    `hardware`, also the drivers Dom0 loads for the machine it finds; `extra` packages
    besides (the architecture's guest_packages)."""
    names = [p.format(xen=xen) for p in PACKAGES] + list(extra)
    if hardware:
        names += HARDWARE_PACKAGES
    packages = apt.closure(names)
    dest = cache_home() / "derived" / f"rootfs-{_key(packages, hardware)}"
    if not (dest / ".complete").exists():
        with files.locked(dest.with_name(dest.name + ".lock")):
            _unpack(apt, packages, hardware, dest)
    return Tree(dest, xen, tuple(packages))


def _unpack(apt: Apt, packages: list[Package], hardware: Hardware | None, dest: Path) -> None:
    """The tree at `dest`, unless another process made it while this one waited."""
    if not (dest / ".complete").exists():
        debs = [apt.fetch(p) for p in packages]
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".rootfs-"))
        try:
            for name in deb.MERGED:
                (tmp / "usr" / name).mkdir(parents=True, exist_ok=True)
                os.symlink(f"usr/{name}", tmp / name)
            for path in debs:
                deb.unpack(path, tmp, keep=_keep, rename=deb.usr_merged)
            _setup(tmp)
            if hardware:
                log.info("Dom0 root: %d hardware modules", _add_hardware(tmp, hardware))
            (tmp / ".complete").write_text(
                json.dumps([f"{p.name} {p.version}" for p in packages], indent=0) + "\n"
            )
            tmp.chmod(0o755)
            shutil.rmtree(dest, ignore_errors=True)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("Dom0 root: %d packages unpacked", len(packages))


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def _setup(root: Path) -> None:
    """What the maintainer scripts would have done that Dom0 relies on."""
    for d, mode in (
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("var/log/xen", 0o755),
        ("var/lib/xen", 0o755),
        ("var/lib/xenstored", 0o755),
        ("etc/xen/auto", 0o755),
        ("mnt", 0o755),
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d).chmod(mode)
    for link, target in (("var/run", "/run"), ("var/lock", "/run/lock")):
        p = root / link
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        if not p.is_symlink():
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, p)
    # base-passwd and dash are Essential, so nothing in the closure pulls them in.
    _write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    _write(root / "etc/group", "root:x:0:\ntty:x:5:\ndisk:x:6:\n")
    _write(root / "etc/shadow", "root::19000:0:99999:7:::\n", 0o640)
    _write(root / "etc/hostname", "xenkit-dom0\n")
    _write(root / "etc/hosts", "127.0.0.1 localhost\n127.0.1.1 xenkit-dom0\n")
    if not (root / "usr/bin/sh").exists():
        os.symlink("bash", root / "usr/bin/sh")
    # Debian's tools come first in PATH; busybox's applets fill the gaps (ping, findfs ...).
    applets = root / BUSYBOX_APPLETS
    applets.mkdir(parents=True, exist_ok=True)
    for name in busybox_applets((root / "usr/bin/busybox").read_bytes()):
        os.symlink("/usr/bin/busybox", applets / name)


def busybox_applets(binary: bytes) -> list[str]:
    """The applet names compiled into a busybox binary: its sorted, NUL-separated name
    table, which starts with "[" and "[[". Read from the file because the binary is for the
    target CPU and cannot be asked."""
    start = binary.find(b"[\0[[\0")
    if start < 0:
        raise XenkitError("busybox binary without an applet table: is it busybox?")
    end = binary.index(b"\0\0", start)
    return [n for n in binary[start:end].decode().split("\0") if "/" not in n]


def module_files(tree: ModuleTree, names: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(path under /, file) for the .ko files `names` need, in load order."""
    base = PurePosixPath("usr/lib/modules") / tree.release
    return [(str(base / p.relative_to(tree.root)), p) for p in tree.load_order(names)]


@dataclass(frozen=True)
class Dom0Setup:
    """Per-build settings of the toolstack Dom0."""

    bridge: str = "xenbr0"
    bridge_addr: str = "10.99.0.1/24"
    autorun: str = ""  # a shell script Dom0 runs once it is up (tests, demos)
    # Load drivers by modalias, bridge the first NIC with a link, DHCP (Board.hardware_modules).
    autoconfig: bool = False


def link(tree: Tree, dest: Path) -> None:
    """The cached tree in `dest`, hard-linked: it is never written through."""
    run(["cp", "-al", f"{tree.path}/.", dest])
    (dest / ".complete").unlink()


def stage(
    tree: Tree,
    dest: Path,
    modules: list[tuple[str, Path]],
    setup: Dom0Setup,
    files: dict[str, bytes],
    ready: str,
) -> None:
    """This build's part of Dom0's root in `dest`, over the cached tree (linked there, or a
    layer below it on a live medium): init, modules, settings and `files`."""
    for path, src in modules:
        if (tree.path / path).exists():
            continue  # the tree has it (hardware modules), linked or as the layer below
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / path)
    _write(dest / "etc/xenkit/modules.order", "".join(f"{p}\n" for p, _ in modules))
    conf = (
        f"XEN_BIN={tree.toolstack_bin}\nBRIDGE={setup.bridge}\n"
        f"BRIDGE_ADDR={setup.bridge_addr}\nAUTOCONFIG={int(setup.autoconfig)}\n"
    )
    _write(dest / "etc/xenkit/dom0.conf", conf)
    init = DOM0_INIT.replace("@READY@", ready).replace("@AUTORUN@", AUTORUN_DONE)
    init = init.replace("@FILL@", netroot.FILL.replace("@FRONT@", netroot.FRONT))
    _write(dest / INIT, init.replace("@UDHCPC@", UDHCPC).replace("@LIB@", GUEST_TOOL_LIB), 0o755)
    _write(dest / GUEST_TOOL_LIB, GUESTS_LIB)
    _write(dest / GUEST_TOOL, GUEST_TOOL_SCRIPT.replace("@LIB@", GUEST_TOOL_LIB), 0o755)
    _write(dest / UDHCPC, UDHCPC_SCRIPT, 0o755)
    if setup.autorun:
        _write(dest / "etc/xenkit/autorun", setup.autorun, 0o755)
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if (dest / rel).exists():
            (dest / rel).unlink()
        (dest / rel).write_bytes(data)


def content_size(root: Path) -> int:
    """Bytes of file data under `root` (hard links counted once)."""
    seen: set[int] = set()
    total = 0
    for p in root.rglob("*"):
        st = p.lstat()
        if st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_size
    return total
