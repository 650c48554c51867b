"""The xenkit command line. Every failure the user can fix is one line on stderr."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from xenkit import __version__, targets
from xenkit.analysis import check, memmap
from xenkit.config import boards, settings, spec
from xenkit.core import files
from xenkit.core.sizes import format_size, human
from xenkit.errors import XenkitError
from xenkit.pipeline import build, manifest
from xenkit.pipeline.manifest import Manifest
from xenkit.run import emulate, qemu
from xenkit.system import baremetal, dtbs, rootfs
from xenkit.system.artifacts import gather

log = logging.getLogger("xenkit")


def _default_out(board: str) -> Path:
    return Path("out") / Path(board).name.removesuffix(".toml")


# Where commands look for a build when none is named: the default board's build.
DEFAULT_OUT = str(_default_out(settings.DEFAULT_BOARD))


def cmd_build(args: argparse.Namespace) -> int:
    file_values = settings.load_file(Path(args.config)) if args.config else {}
    values = settings.resolve(file_values, vars(args))
    system = spec.resolve(values)
    out = Path(args.output) if args.output else _default_out(system.board.name)
    m = build.build(system, out)
    print(f"built {system.board.description} into {out}/ in {m.build_seconds} s")
    for image in m.media:
        print(f"  image: {out}/{image} ({human(files.size(out / image))})")
    print(f"  Xen: {system.xen_cmdline}")
    print(f"  Dom0: {system.dom0_cmdline}")
    drawn = f", map in {out}/map.svg" if (out / "map.svg").exists() else ""
    print(f"  check: {m.check['worst']} (report in {out}/check.txt{drawn})")
    print(f"  boot it: xenkit run {out}    write it: xenkit write {out} /dev/sdX")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.entry is not None and not args.check:
        raise XenkitError("--entry types the choice for --check; without it, pick in the menu")
    build_dir = Path(args.dir)
    m = manifest.read(build_dir)
    board = manifest.board(build_dir)
    from xenkit.serve import netboot

    given = settings.http_urls(",".join(args.mirror or ()), "--mirror")
    with netboot.store_for_run(build_dir, given) as mirrors:
        choices = qemu.Choices(
            args.firmware or "",
            args.media or "",
            args.nic or "",
            args.entry,
            args.cpu or "",
            mirrors,
            args.cache_disk or "",
        )
        return _run(args, build_dir, m, board, choices)


def _run(
    args: argparse.Namespace,
    build_dir: Path,
    m: Manifest,
    board: boards.Board,
    choices: qemu.Choices,
) -> int:
    from xenkit.pipeline import guest

    if shortfall := guest.emulator_shortfall(m):
        log.warning("warning: %s", shortfall)
    plan = emulate.prepare(board, m.ram, build_dir, build_dir / "run", choices=choices)
    if not args.check:
        return emulate.interactive(plan)
    echo = None if args.quiet else sys.stdout
    result = emulate.check(plan, args.timeout, echo, [*emulate.banners(m), *(args.wait_for or ())])
    print()
    print(f"xenkit run --check: {board.description}: {result.reason}")
    if result.banner:
        print(f"  {result.banner}")
    print(result.table())
    print(f"console log: {plan.console_log}")
    status = result.banners.get(rootfs.AUTORUN_DONE, (0.0, f"{rootfs.AUTORUN_DONE} 0"))[1]
    if result.ok and status.split()[-1] != "0":
        print(f"  Dom0's autorun script failed: {status}")
        return 1
    return 0 if result.ok else 1


def _info(m: Manifest, build_dir: Path) -> str:
    lines = [
        f"board      {m.board} ({m.description}), RAM {m.ram}, boots through {m.target}",
        f"built      {m.built} by xenkit {m.xenkit}",
        f"Xen        {m.xen_version}: {m.xen_cmdline}",
        f"Dom0       Linux {m.linux_version}: {m.dom0_cmdline}",
        "packages",
    ]
    lines += [f"  {p.name:<32} {p.version:<36} {p.sha256[:16]}" for p in m.packages]
    lines += [f"  {role:<32} {path} (local file)" for role, path in m.local_files.items()]
    if m.layout:
        lines.append("load layout (hardware boot script)")
        lines += [
            f"  {p.name:<8} {p.address:>#12x} - {p.end:>#12x}  {human(p.file_size)}"
            for p in m.layout
        ]
    lines += targets.get(m.target).describe(build_dir)
    lines.append("files")
    lines += [f"  {name:<40} {human(f.size):>10}  {f.sha256[:16]}" for name, f in m.files.items()]
    return "\n".join(lines)


def cmd_write(args: argparse.Namespace) -> int:
    from xenkit.images import writer

    build_dir = Path(args.dir)
    m = manifest.read(build_dir)
    image = writer.medium(build_dir, m.media)
    hint = "use a bigger one, or rebuild with a smaller --persist"
    done = writer.write(image, Path(args.device), hint)
    print(f"wrote {image.name} ({human(done)}) to {args.device}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    m = manifest.read(Path(args.dir))
    print(manifest.to_json(m).rstrip() if args.json else _info(m, Path(args.dir)))
    return 0


def _target(args: argparse.Namespace) -> check.Target:
    """A build directory, or a board with a DTB and command lines given piece by piece
    (defaulting to the board's packaged DTB, Xen and kernel)."""
    if args.dir:
        return check.from_build(Path(args.dir), args.emulated)
    args.board = args.board or settings.DEFAULT_BOARD
    board = boards.load(args.board)
    if not board.dtb_name:
        raise XenkitError(
            f"{board.name} has no device tree to check piece by piece: check a build of it "
            f"(xenkit build --board {board.name}; xenkit check out/{board.name})"
        )
    banks = check.ram_banks(board, args.ram, args.emulated)
    # Command lines and packaged files are the board's whatever the RAM: a size that is no
    # model of the board takes its default model's.
    model = args.ram if args.ram in board.ram else ""
    system = spec.resolve(settings.resolve({}, {"board": args.board, "ram": model}))
    art = None if args.dtb and args.xen and args.kernel else gather(system)
    files = art.files if art else {}
    dom0_default = system.emu_dom0_cmdline if args.emulated else system.dom0_cmdline
    with tempfile.TemporaryDirectory(prefix="xenkit-check-") as tmp:
        dtb = Path(args.dtb) if args.dtb else files["dtb"]
        if args.emulated and art and not args.dtb:
            # The emulator's copy, with the blocks QEMU does not model disabled, as a build
            # has it; from_parts reads it at once.
            dtb = Path(tmp) / board.dtb_name
            dtb.write_bytes(dtbs.emulation(board, dtbs.hardware(board, art)))
        target = check.from_parts(
            board,
            dtb,
            banks,
            args.xen_cmdline if args.xen_cmdline is not None else system.xen_cmdline,
            args.dom0_cmdline if args.dom0_cmdline is not None else dom0_default,
            Path(args.xen) if args.xen else files.get("xen"),
            Path(args.kernel) if args.kernel else files.get("kernel"),
            Path(args.config_txt) if args.config_txt else None,
            label=(args.ram or board.default_ram) + (" (emulator)" if args.emulated else ""),
        )
        return replace(target, checks=targets.for_board(board).checks)


def cmd_check(args: argparse.Namespace) -> int:
    target = _target(args)
    findings = check.run_checks(target)
    if args.json:
        print(json.dumps(check.as_json(target, findings), indent=2))
    else:
        print(check.report(target, findings))
    return int(check.worst(findings))


def cmd_map(args: argparse.Namespace) -> int:
    target = _target(args)
    print(memmap.render_text(target))
    if args.output:
        for path in memmap.render_files(target, Path(args.output)):
            print(f"wrote {path}")
    return 0


def cmd_uboot_script(args: argparse.Namespace) -> int:
    from xenkit.bootscripts import bootscript, scriptgen

    root = Path(args.dir)
    if args.first_stage:
        if not (args.server and args.ip):
            raise XenkitError("--first-stage needs --server IP and --ip IP")
        name = args.output or "boot"
        text = scriptgen.first_stage(root, name, args.server, args.ip, args.next)
        print(text, end="")
        print(f"wrote {root / name}.scr: put it on the SD card's boot partition")
        return 0
    if not args.config:
        raise XenkitError("-c CONFIG is required (an ImageBuilder config or a xenkit .toml)")
    plan = scriptgen.generate(Path(args.config), root, args.type, args.output)
    cfg = plan.config
    source, script = scriptgen.output_names(cfg, args.output)
    print(f"wrote {root / source} and {root / script}; load it with:")
    print(f"  {scriptgen.hint(cfg, script, plan.address)}")
    if not args.explain:
        return 0
    print()
    print(bootscript.explain(plan.loads, plan.address))
    ram = [(cfg.memory_start, cfg.memory_end - cfg.memory_start)]
    run = bootscript.dry_run(plan.script, root, ram, plan.reserved)
    print()
    print("dry run: the script's fdt edits applied to the DTB give")
    print(scriptgen.chosen_dts(run.tree))
    for problem in run.problems:
        print(f"problem: {problem}")
    print("dry run: " + ("no problems" if not run.problems else f"{len(run.problems)} problems"))
    return 1 if run.problems else 0


def cmd_guest_add(args: argparse.Namespace) -> int:
    from xenkit.pipeline import guest

    table = {
        "name": args.name,
        "memory": args.memory,
        "vcpus": args.vcpus,
        "bridge": args.bridge,
    }
    for key, value in (
        ("kernel", args.kernel),
        ("ramdisk", args.initramfs),
        ("maxmem", args.maxmem),
        ("maxvcpus", args.maxvcpus),
        ("ip", args.ip),
        ("ping", args.ping),
        ("type", args.type),
        ("pv_drivers", args.pv_drivers),
        ("disk", args.disk),
        ("cmdline", args.cmdline),
    ):
        if value is not None:
            table[key] = str(Path(value).resolve()) if key in ("kernel", "ramdisk") else value
    g = guest.add(Path(args.dir), table)
    print(f"added {g.type} guest {g.name} to {args.dir}: in Dom0, xenkit-start {g.name}")
    print(
        f"  memory {format_size(g.memory)} (up to {format_size(max(g.memory, g.maxmem))}),"
        f" vCPUs {g.vcpus} (up to {max(g.vcpus, g.maxvcpus)}), address {g.ip or 'none'}"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from xenkit.serve import netboot

    build_dir = Path(args.dir)
    manifest.require(build_dir)
    watch = None
    if args.config:
        config = Path(args.config)

        def inputs() -> spec.SystemSpec:
            values = settings.resolve(settings.load_file(config), {"netboot": True})
            return spec.resolve(values)

        system = inputs()
        paths = [config, *(p for p in (system.xen_image, system.kernel_image) if p)]
        paths += [
            Path(f)
            for d in system.domains
            for f in (d.kernel, d.ramdisk)
            if f and not baremetal.is_builtin(f)
        ]
        watch = netboot.Watch(paths, lambda: build.build(inputs(), build_dir))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            netboot.serve(
                build_dir,
                args.bind,
                args.port,
                args.emulated,
                args.proxy_dhcp or "",
                watch,
                http_port=args.http_port,
            )
        )
    return 0


def _target_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", nargs="?", help="a build directory (else the parts below)")
    p.add_argument(
        "--emulated",
        action="store_true",
        help="the emulator's copy: its RAM, DTB and Dom0 command line",
    )
    p.add_argument(
        "--ram",
        default="",
        help="a RAM model of the board (e.g. 4G) or any size, as one bank (default: the board's)",
    )
    p.add_argument("--dtb", help="device tree blob (default: the board's, from Debian)")
    # The names build uses; --xen-cmd and --dom0-cmd are what check and map called them once.
    settings.add_arguments(p, ("board", "xen_cmdline", "dom0_cmdline"))
    p.add_argument("--xen-cmd", dest="xen_cmdline", help=argparse.SUPPRESS)
    p.add_argument("--dom0-cmd", dest="dom0_cmdline", help=argparse.SUPPRESS)
    p.add_argument("--xen", help="Xen binary, for its version (default: Debian's)")
    p.add_argument("--kernel", help="Dom0 kernel Image, for its version (default: Debian's)")
    p.add_argument("--config-txt", help="the Pi firmware's config.txt")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="xenkit", description=__doc__)
    top.add_argument("--version", action="version", version=f"xenkit {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    top.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="build a bootable Xen system and its boot image")
    p.add_argument("-o", "--output", help="output directory (default: out/BOARD)")
    p.add_argument("-c", "--config", help="TOML file with settings (keys as the options below)")
    settings.add_arguments(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("run", help="boot a build on the emulated board")
    p.add_argument("dir", nargs="?", default=DEFAULT_OUT, help="build directory")
    p.add_argument(
        "--check",
        action="store_true",
        help="wait for the Dom0 banner, print phase timings, exit 0 if it came",
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds --check waits")
    p.add_argument("-q", "--quiet", action="store_true", help="with --check: no console echo")
    p.add_argument("--firmware", help="the PC's firmware: bios (SeaBIOS, default) or uefi (OVMF)")
    p.add_argument("--media", help="the PC's image as a cd (default), usb stick, virtio disk, sata")
    p.add_argument("--nic", help="the PC's network card: e1000 (default) or virtio")
    p.add_argument(
        "--cpu",
        help="QEMU's -cpu in place of the board's (e.g. qemu64: a PC without VT-x/AMD-V)",
    )
    p.add_argument(
        "--entry",
        type=int,
        help="with --check: the boot menu entry to pick, from 0, typed on the serial line",
    )
    for flag, meta, text in (
        ("--wait-for", "TEXT", "with --check: also wait for a console line containing TEXT"),
        ("--mirror", "URL", "a network root's store, tried in turn (default: the build's own)"),
    ):
        p.add_argument(flag, action="append", metavar=meta, help=f"{text}; repeat it for more")
    p.add_argument("--cache-disk", metavar="FILE", help="a network root's cache disk image")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="catch memory, DMA, console and layout pitfalls before boot")
    _target_arguments(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("map", help="the address spaces side by side (terminal, SVG, PNG)")
    _target_arguments(p)
    p.add_argument("-o", "--output", help="also write OUTPUT.svg and OUTPUT.png")
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("uboot-script", help="boot scripts from an ImageBuilder or xenkit config")
    p.add_argument("-c", "--config", help="ImageBuilder config, or a xenkit .toml")
    p.add_argument("-d", "--dir", default=".", help="directory holding the files (and outputs)")
    p.add_argument("-t", "--type", help="tftp, sd, scsi, usb, virtio, or a load command")
    p.add_argument(
        "-o", "--output", help="output name: NAME.source, NAME.scr (default: UBOOT_SOURCE, or boot)"
    )
    p.add_argument("--explain", action="store_true", help="print the plan and dry-run it")
    p.add_argument(
        "--first-stage",
        action="store_true",
        help="write the small SD script that fetches the real one over TFTP",
    )
    p.add_argument("--server", help="with --first-stage: the TFTP server's address")
    p.add_argument("--ip", help="with --first-stage: the board's address")
    p.add_argument("--next", default="boot2.scr", help="with --first-stage: script to fetch")
    p.set_defaults(func=cmd_uboot_script)

    p = sub.add_parser("serve", help="netboot a build over TFTP, or serve its network root")
    p.add_argument("dir", nargs="?", default=DEFAULT_OUT, help="a --netboot or --net-root build")
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (:: for IPv6)")
    p.add_argument("--port", type=int, default=69, help="UDP port (69 needs root)")
    p.add_argument("--http-port", type=int, help="TCP port for a network root's store (8080)")
    p.add_argument(
        "--emulated",
        action="store_true",
        help="serve the emulator's script and DTB (for xenkit's own QEMU boards)",
    )
    p.add_argument(
        "--proxy-dhcp",
        metavar="SERVER_IP",
        help="answer PXE DHCP requests (Pi 4, PC) naming SERVER_IP as the TFTP server",
    )
    p.add_argument(
        "-c", "--config", help="the build's config: rebuild when it or the files it names change"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("guest", help="run-time guests Dom0 starts with xl")
    gsub = p.add_subparsers(dest="guest_command", required=True)
    g = gsub.add_parser("add", help="write a guest's xl.cfg (and files) into a build's card")
    g.add_argument("name", help="the guest's name (xl create /etc/xen/NAME.cfg in Dom0)")
    g.add_argument("-d", "--dir", default=DEFAULT_OUT, help="build directory (--toolstack)")
    g.add_argument("--kernel", help="guest kernel Image (default: Dom0's kernel)")
    g.add_argument("--initramfs", help="guest initramfs (default: xenkit's busybox guest)")
    g.add_argument("--memory", default="128M", help="memory at start (default: 128M)")
    g.add_argument("--maxmem", help="memory ceiling for xl mem-set (default: --memory)")
    g.add_argument("--vcpus", type=int, default=1, help="vCPUs at start (default: 1)")
    g.add_argument("--maxvcpus", type=int, help="vCPU ceiling for xl vcpu-set")
    g.add_argument("--bridge", default="xenbr0", help="Dom0 bridge for its vif ('' for none)")
    g.add_argument(
        "--ip",
        help="its address/prefix, or dhcp (default: the next free on xenkit's bridge; dhcp "
        "where Dom0 bridges the machine's network, as on the pc)",
    )
    g.add_argument(
        "--ping", help="addresses it pings once up, comma-separated (gateway: its router's)"
    )
    g.add_argument(
        "--type",
        help="pv (the default), pvh or hvm on the pc; on Arm guests are all one kind: leave out",
    )
    g.add_argument(
        "--no-pv-drivers",
        dest="pv_drivers",
        action="store_false",
        default=None,
        help="an HVM guest with the emulated NIC and disk instead of Xen's PV drivers",
    )
    g.add_argument("--disk", help="a disk image of this size for it (made in Dom0 at first start)")
    g.add_argument("--cmdline", help="words added to its kernel command line")
    g.set_defaults(func=cmd_guest_add)

    p = sub.add_parser("write", help="write a build's image to a USB stick, card or disk")
    p.add_argument("dir", help="build directory")
    p.add_argument("device", help="the stick's block device (e.g. /dev/sdb), or an image file")
    p.set_defaults(func=cmd_write)

    p = sub.add_parser("info", help="versions, layout and files of a build")
    p.add_argument("dir", nargs="?", default=DEFAULT_OUT, help="build directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="xenkit: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except XenkitError as exc:
        print(f"xenkit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xenkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (xenkit info | head): as cat does, stop without a word.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes it at exit
        return 141
    except Exception as exc:
        # The last line of defence: a bug is one line and a way to report it, not a wall of
        # Python; the traceback is there for whoever asks.
        if args.debug or os.environ.get("XENKIT_DEBUG", "0") not in ("", "0"):
            raise
        where = f" ({exc})" if str(exc) else ""
        print(
            f"xenkit: internal error: {type(exc).__name__}{where}; rerun with --debug "
            "(or XENKIT_DEBUG=1) for the traceback and report it",
            file=sys.stderr,
        )
        return 3
