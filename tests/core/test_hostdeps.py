"""Everything xenkit, its tests and benchmarks take from the host comes from a package the set-up
script installs (or one of those depends on): a machine that kept a hand-installed package
must not pass where a fresh one fails."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from xenkit.core import hostdeps

TOP = Path(__file__).resolve().parents[2]
PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
RUNNERS = {"run", "Popen", "check_output", "check_call", "call", "need", "which", "spawn"}


def _dpkg(*args: str) -> str:
    return subprocess.run(["dpkg-query", *args], capture_output=True, text=True).stdout


def _installed_closure(roots: list[str]) -> set[str]:
    """The named packages and everything they depend on (Depends, Pre-Depends; every installed
    alternative; virtual packages through Provides), as installed on this machine."""
    deps: dict[str, list[str]] = {}
    provides: dict[str, list[str]] = {}
    fmt = "${Package}\t${db:Status-Abbrev}\t${Depends}, ${Pre-Depends}\t${Provides}\n"
    for line in _dpkg("-W", "-f", fmt).splitlines():
        name, status, depends, provided = [*line.split("\t"), "", "", ""][:4]
        if not status.startswith("ii"):
            continue
        deps[name] = [
            re.sub(r"[\s(:].*", "", alt.strip())
            for item in depends.split(",")
            for alt in item.split("|")
            if alt.strip()
        ]
        for p in provided.split(","):
            if p.strip():
                provides.setdefault(re.sub(r"[\s(].*", "", p.strip()), []).append(name)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        for real in [name] if name in deps else provides.get(name, []):
            if real not in seen:
                seen.add(real)
                todo.extend(deps[real])
    return seen


@pytest.fixture(scope="module")
def closure() -> set[str]:
    return _installed_closure(hostdeps.packages())


def _owner(path: Path) -> str:
    """The package that owns `path` (following symlinks, and usrmerge's /bin -> /usr/bin)."""
    candidates = [path, path.resolve()]
    for p in list(candidates):
        for a, b in (("/usr/bin/", "/bin/"), ("/usr/sbin/", "/sbin/")):
            s = str(p)
            if s.startswith(a):
                candidates.append(Path(b + s[len(a) :]))
            elif s.startswith(b):
                candidates.append(Path(a + s[len(b) :]))
    for p in candidates:
        for line in _dpkg("-S", str(p)).splitlines():
            if not line.startswith("diversion by"):
                return re.sub(r"[:,].*", "", line)
    return ""


def _qemu_rom(name: str) -> Path | None:
    dirs = subprocess.run(
        ["qemu-system-aarch64", "-L", "help"], capture_output=True, text=True
    ).stdout.split()
    return next((Path(d) / name for d in dirs if (Path(d) / name).exists()), None)


@pytest.mark.parametrize("program", sorted(hostdeps.PROGRAMS))
def test_each_program_comes_from_an_installed_package(program: str, closure: set[str]) -> None:
    path = shutil.which(program, path=PATH)
    assert path, f"{program} not found: scripts/install-system-deps.sh should install it"
    owner = _owner(Path(path))
    assert owner in closure, (
        f"{path} belongs to {owner or 'no package'}, which the install script does not pull in"
    )


@pytest.mark.parametrize("path", sorted(hostdeps.FILES))
def test_each_file_comes_from_an_installed_package(path: str, closure: set[str]) -> None:
    assert Path(path).exists(), f"{path} missing: install {hostdeps.FILES[path]}"
    owner = _owner(Path(path))
    assert owner in closure, f"{path} belongs to {owner or 'no package'}, not pulled in"


@pytest.mark.parametrize("rom", sorted(hostdeps.QEMU_ROMS))
def test_each_qemu_rom_comes_from_an_installed_package(rom: str, closure: set[str]) -> None:
    path = _qemu_rom(rom)
    assert path, f"QEMU cannot find {rom}: install {hostdeps.QEMU_ROMS[rom]}"
    owner = _owner(path)
    assert owner in closure, f"{path} belongs to {owner or 'no package'}, not pulled in"


def test_the_other_packages_are_pulled_in(closure: set[str]) -> None:
    assert set(hostdeps.OTHER) <= closure


def test_a_dropped_package_is_noticed() -> None:
    # The check above is only worth something if leaving a package out of the list shows.
    # (ipxe-qemu, the first such miss, now comes in as a dependency of qemu-system-x86.)
    without = [p for p in hostdeps.packages() if p != "procps"]
    pgrep = shutil.which("pgrep", path=PATH)
    assert pgrep and _owner(Path(pgrep)) == "procps"
    assert "procps" in _installed_closure(hostdeps.packages())
    assert "procps" not in _installed_closure(without)


def _commands(tree: ast.AST) -> Iterator[str]:
    """Program names in calls like run(["prog", ...]), Popen(["prog", ...]), need("prog"), and
    in lambdas that build such lists."""
    for node in ast.walk(tree):
        first: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args:
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in RUNNERS:
                first = node.args[0]
        elif isinstance(node, ast.Lambda):
            first = node.body
        if isinstance(first, ast.List | ast.Tuple) and first.elts:
            first = first.elts[0]
        if isinstance(first, ast.Call) and getattr(first.func, "id", "") == "need":
            first = first.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield first.value


def test_every_program_the_code_runs_is_in_the_table() -> None:
    found: dict[str, str] = {}
    for folder in ("src", "tests", "benchmarks"):
        for path in (TOP / folder).rglob("*.py"):
            for cmd in _commands(ast.parse(path.read_text())):
                found.setdefault(cmd, str(path.relative_to(TOP)))
    # Commands run inside the emulated Dom0, not on the host, and the Python in use.
    found.pop("python3", None)
    missing = {cmd: where for cmd, where in found.items() if cmd not in hostdeps.PROGRAMS}
    assert not missing, f"add these to xenkit/hostdeps.py: {missing}"
    assert hostdeps.PROGRAMS.keys() >= {"busybox", "curl", "qemu-system-aarch64"}


def test_the_install_script_takes_its_list_from_the_table() -> None:
    script = (TOP / "scripts" / "install-system-deps.sh").read_text()
    assert "src/xenkit/core/hostdeps.py" in script
    installs = [
        line.split("apt-get install", 1)[1]
        for line in script.splitlines()
        if "apt-get install" in line
    ]
    assert len(installs) == 2
    for words in installs:
        named = [w for w in words.split() if w[0] not in "-$" and w != hostdeps.BACKPORTS]
        assert not named, f"packages written into the script rather than the table: {named}"
