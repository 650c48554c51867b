from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.manifests import sample, write_build


def xenkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xenkit", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "--board", "rpi5"], "unknown board 'rpi5'"),
        (["build", "--ram", "3G"], "rpi4 has no 3G model"),
        (["build", "--dom0-mem", "9G"], "does not fit"),
        (["build", "--config", "/no/such.toml"], "config /no/such.toml does not exist"),
        (["run", "/no/such/dir"], "/no/such/dir is not a xenkit build"),
        (["info", "/no/such/dir"], "/no/such/dir is not a xenkit build"),
    ],
)
def test_errors_are_one_line_without_traceback(args: list[str], message: str) -> None:
    proc = xenkit(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("command", "name", "kind"),
    [
        ("build", "c.toml", "give a TOML file"),
        ("uboot-script", "c.toml", "give a TOML file"),
        ("uboot-script", "c.cfg", "give an ImageBuilder config"),
    ],
)
def test_a_config_that_is_not_utf8_is_one_line(
    tmp_path: Path, command: str, name: str, kind: str
) -> None:
    config = tmp_path / name
    config.write_bytes(b"\xff\xfe\x00garbage")
    proc = xenkit(
        command, "-c", str(config), *(["-o", str(tmp_path / "out")] * (command == "build"))
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"xenkit: error: config {config} is not UTF-8 text: {kind}")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_internal_error_is_one_line_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (any exception that is not a XenkitError) gets one line, exit 3, and its
    traceback only with --debug or XENKIT_DEBUG."""
    from xenkit import cli
    from xenkit.cli import info

    def broken(args: object) -> int:
        raise KeyError("board")

    monkeypatch.setattr(info, "cmd_info", broken)
    monkeypatch.delenv("XENKIT_DEBUG", raising=False)
    assert cli.main(["info", "somewhere"]) == 3
    assert capsys.readouterr().err == (
        "xenkit: internal error: KeyError ('board'); rerun with --debug (or XENKIT_DEBUG=1) "
        "for the traceback and report it\n"
    )
    with pytest.raises(KeyError):
        cli.main(["--debug", "info", "somewhere"])
    monkeypatch.setenv("XENKIT_DEBUG", "0")  # off, as a user who sets it to 0 means
    assert cli.main(["info", "somewhere"]) == 3
    monkeypatch.setenv("XENKIT_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["info", "somewhere"])


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["bogus"], "argument command: invalid choice: 'bogus'"),
        (["-v", "info", "--bogus"], "unrecognized arguments: --bogus"),
        (["guest"], "required: guest_command"),
        (["build", "--ram"], "argument --ram: expected one argument .a value starting with -"),
        (["build", "--ram", "-1G"], "--ram: expected one argument .a value starting with -: wr"),
        (["run", "--timeout", "nan"], "--timeout: 'nan' is not a number of seconds"),
        (["run", "--timeout", "-5"], "--timeout: '-5' is not a number of seconds"),
    ],
)
def test_command_line_mistakes_are_one_line(argv: list[str], error: str) -> None:
    """argparse's own errors were two lines (its usage, then the error); a NaN timeout
    waited forever."""
    proc = xenkit(*argv)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("xenkit: error: ") and re.search(error, lines[0]), lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "--board", "qemu-virt", "--netboot", "--xen-extra=loglvl=all"],
        ["-v", "run", "out/x", "--check", "--wait-for", "a", "--wait-for", "b"],
        ["--debug", "check", "--board", "rpi4", "--dom0-cmd", "console=hvc0"],
        ["guest", "add", "g1", "--vcpus", "2", "--no-pv-drivers"],
        ["uboot-script", "-c", "x.cfg", "--first-stage"],
        ["serve", "--port", "6969"],
        ["info", "--json"],
    ],
)
def test_the_parser_for_one_command_parses_as_the_parser_of_all(argv: list[str]) -> None:
    """parser(argv) gives only the command argv names its options; it must read argv
    exactly as the parser with every command's options does."""
    from xenkit.cli import arguments

    every = vars(arguments.parser().parse_args(argv))
    one = vars(arguments.parser(argv).parse_args(argv))
    assert callable(every.pop("func")) and callable(one.pop("func"))
    assert one == every


def test_check_refuses_piece_by_piece_options_for_a_build(tmp_path: Path) -> None:
    """They were ignored: the report was the build's, not of the --dtb the user gave."""
    write_build(tmp_path, sample())
    for command in ("check", "map"):
        proc = xenkit(command, str(tmp_path), "--dtb", "other.dtb")
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "--dtb is for checking a board piece by piece" in proc.stderr


def test_check_reads_the_users_own_files_before_fetching_anything(tmp_path: Path) -> None:
    """A bad --config-txt came after five lines of package downloads."""
    bad = tmp_path / "config.txt"
    bad.write_bytes(b"\xff\xfe")
    proc = xenkit("check", "--board", "rpi4", "--config-txt", str(bad))
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr
        == f"xenkit: error: config.txt {bad} is not UTF-8 text: give the Pi firmware's config.txt\n"
    )


def test_a_run_that_cannot_boot_says_only_why(tmp_path: Path) -> None:
    """A network-root build run from a medium it lacks: its store was served first, and
    "serving" and "fetched 0 B" stood around the error."""
    write_build(tmp_path, sample("pc"))
    (tmp_path / "netroot" / "store").mkdir(parents=True)
    proc = xenkit("run", str(tmp_path), "--media", "usb")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stdout == ""


def test_an_error_quoting_a_line_break_stays_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file name with a line break in it (append_extra_cmds = "echo hi\\nreset") made the
    error two lines."""
    from xenkit import cli
    from xenkit.cli import info
    from xenkit.errors import XenkitError

    def named(args: object) -> int:
        raise XenkitError("APPEND_EXTRA_CMDS echo hi\nreset does not exist")

    monkeypatch.setattr(info, "cmd_info", named)
    assert cli.main(["info", "somewhere"]) == 2
    assert capsys.readouterr().err == (
        "xenkit: error: APPEND_EXTRA_CMDS echo hi\\nreset does not exist\n"
    )


def test_missing_sd_image_is_reported(tmp_path: Path) -> None:
    write_build(tmp_path, sample())
    proc = xenkit("run", str(tmp_path))
    assert proc.returncode == 2 and "has no sd.img" in proc.stderr, proc.stderr


def test_run_says_first_when_the_guests_do_not_fit_the_emulator(tmp_path: Path) -> None:
    """The sample build's guest fits the 4G Pi 4; give it more than the emulated one has."""
    m = sample()
    big = dataclasses.replace(m.runtime_guests[0], memory="512M")
    write_build(tmp_path, dataclasses.replace(m, runtime_guests=(big,)))
    proc = xenkit("run", str(tmp_path))
    first, *_ = proc.stderr.splitlines()
    assert first.startswith("xenkit: warning: the emulator has 960M of RAM: beside Dom0 (512M)")
    assert "the run-time guests want 512M (g1 512M), so xenkit run cannot start them all" in first
    write_build(tmp_path, m)
    assert "the emulator has" not in xenkit("run", str(tmp_path)).stderr


def test_a_build_by_an_older_xenkit_asks_for_a_rebuild(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"board": "rpi4"}))
    proc = xenkit("run", str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "rebuild with this version" in lines[0]


@pytest.mark.debian
def test_info_reports_the_build(tmp_path: Path) -> None:
    out = tmp_path / "virt"
    assert xenkit("build", "--board", "qemu-virt", "-o", str(out)).returncode == 0
    info = json.loads(xenkit("info", "--json", str(out)).stdout)
    assert info["board"] == "qemu-virt"
    assert {f for f in info["files"]} >= {"sd.img", "boot/boot.scr", "boot/xen"}
    text = xenkit("info", str(out)).stdout
    assert "xen-hypervisor-4.17-arm64" in text and "load layout" in text
    # The card's digest is not sha256sum's: info says so, with how much it left out.
    card = info["files"]["sd.img"]
    zero = sum(end - start for start, end in card["zero_mib"])
    assert zero > 0 and f"{card['sha256'][:16]}  ({zero} zero MiB left out)" in text
    xen = info["files"]["boot/xen"]
    assert re.search(rf"boot/xen +\S+ \S+  {xen['sha256'][:16]}$", text, re.M)


def test_missing_qemu_is_reported_with_the_package_to_install(tmp_path: Path) -> None:
    write_build(tmp_path, sample())
    (tmp_path / "sd.img").write_bytes(bytes(512))
    proc = subprocess.run(
        [sys.executable, "-m", "xenkit", "run", str(tmp_path)],
        capture_output=True,
        text=True,
        # No QEMU on PATH; the same xenkit (PYTHONPATH, where one is set) as the other tests.
        env={"PATH": str(tmp_path), **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "xenkit: error: qemu-system-aarch64 not found: install qemu-system-arm "
        "(from bookworm-backports) (scripts/install-system-deps.sh does it)"
    )


def test_a_reader_that_goes_away_is_no_error(tmp_path: Path) -> None:
    """`xenkit info | head -1`: the pipe closes under xenkit, which stops without a word."""
    write_build(tmp_path, sample())
    proc = subprocess.run(
        f"{sys.executable} -m xenkit info {tmp_path} --json | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert proc.stdout == "{" and proc.stderr == "", proc.stderr


def test_a_map_written_into_a_missing_directory_is_one_line(tmp_path: Path, pi4_dtb: Path) -> None:
    from tests import bootfiles

    xen = bootfiles.image(tmp_path / "xen", 4096, 4096, bootfiles.XEN_MARKS)
    kernel = bootfiles.image(tmp_path / "Image", 4096, 0x2000000, bootfiles.LINUX_BANNER)
    parts = ["--board", "rpi4", "--dtb", str(pi4_dtb), "--xen", str(xen), "--kernel", str(kernel)]
    proc = xenkit("map", *parts, "-o", str(tmp_path / "no" / "such" / "map"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "is not a directory; create it first" in proc.stderr


def test_check_refuses_binaries_for_the_other_architecture(tmp_path: Path, pi4_dtb: Path) -> None:
    from tests import bootfiles

    x86 = bootfiles.x86_xen(tmp_path / "xen.gz")
    kernel = bootfiles.image(tmp_path / "Image", 4096, 0x2000000, bootfiles.LINUX_BANNER)
    proc = xenkit("check", "--board", "rpi4", "--dtb", str(pi4_dtb), "--xen", str(x86),
                  "--kernel", str(kernel))  # fmt: skip
    assert proc.returncode == 2 and f"--xen {x86} is Xen for amd64, not arm64" in proc.stderr


def test_a_mirror_for_a_build_without_a_network_root_is_one_line(tmp_path: Path) -> None:
    write_build(tmp_path, sample())
    proc = xenkit("run", str(tmp_path), "--mirror", "http://10.0.2.2:8080/")
    assert proc.returncode == 2 and "has no network root for --mirror" in proc.stderr


@pytest.mark.parametrize("kind", ["symlink loop", "FIFO"])
def test_a_guest_kernel_that_is_no_file_is_one_line(tmp_path: Path, kind: str) -> None:
    """A symlink loop was a RuntimeError from Path.resolve (exit 3); a FIFO must not be
    waited on."""
    build = write_build(tmp_path / "build", sample())
    odd = tmp_path / "Image"
    if kind == "FIFO":
        os.mkfifo(odd)
    else:
        odd.symlink_to(odd)
    for flag in ("--kernel", "--initramfs"):
        proc = xenkit("guest", "add", "g5", "-d", str(build), flag, str(odd))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert f"{odd} is a {kind}" in proc.stderr
