"""The package's shape, checked: no import cycles, stages import only what comes before
them, no module too long to read at once."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests import bootfiles

SRC = Path(__file__).resolve().parent.parent / "src"
PKG = SRC / "xenkit"
MAX_LINES = 500


def _module(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PKG.rglob("*.py")}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[str]:
    """Every module imported anywhere in the tree (functions included: a lazy import is a
    dependency all the same), except under `if TYPE_CHECKING:`, which never runs."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.append(sub if sub in MODULES else node.module)
        for sub_node in ast.iter_child_nodes(node):
            visit(sub_node)

    visit(tree)
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for imported in _imports(ast.parse(path.read_text())):
            # Importing a.b.c runs a/__init__ and a/b/__init__ too, except those already
            # running: the importer's own packages (a package re-exporting its modules).
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                dep = ".".join(parts[:i])
                if dep in MODULES and dep != name and not name.startswith(dep + "."):
                    deps.add(dep)
        edges[name] = deps
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycles() -> None:
    assert find_cycle(graph()) == []


# What each stage may not import: later stages, and the build or emulator machinery.
FORBIDDEN = {
    "xenkit.analysis": ("xenkit.pipeline.build", "xenkit.run", "xenkit.targets", "xenkit.serve"),
    "xenkit.config": ("xenkit.pipeline", "xenkit.run", "xenkit.targets", "xenkit.system"),
    "xenkit.core": (
        "xenkit.config",
        "xenkit.debian",
        "xenkit.pipeline",
        "xenkit.run",
        "xenkit.system",
    ),
    "xenkit.formats": ("xenkit.config", "xenkit.pipeline", "xenkit.run", "xenkit.system"),
    "xenkit.debian": ("xenkit.config", "xenkit.pipeline", "xenkit.run", "xenkit.system"),
    "xenkit.system": ("xenkit.pipeline", "xenkit.targets", "xenkit.run.emulate"),
    "xenkit.xen": ("xenkit.pipeline", "xenkit.run", "xenkit.targets", "xenkit.system"),
}


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_stages_import_only_what_comes_before_them(stage: str) -> None:
    edges = graph()
    bad = [
        f"{m} imports {d}"
        for m, deps in edges.items()
        if m == stage or m.startswith(stage + ".")
        for d in deps
        if any(d == f or d.startswith(f + ".") for f in FORBIDDEN[stage])
    ]
    assert bad == []


def test_the_pipeline_names_no_board_or_target() -> None:
    """Boards are data and targets plug-ins: the pipeline and runner never branch on a
    board's or a target's name."""
    names = ("rpi4", "qemu-virt", '"rpi"', '"uboot"', "raspi")
    for module in ("xenkit.pipeline.build", "xenkit.run.emulate", "xenkit.config.spec"):
        text = MODULES[module].read_text()
        assert not [n for n in names if n in text], module


def test_no_module_is_too_long_to_read() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


# Loaded only by the steps that use them (a download, the map's PNG), never by a build's
# start: each costs tens of milliseconds that a no-op build or a small rebuild would pay.
# xml.sax.saxutils, for one escape(), once brought in urllib.request, email and ssl (80 ms).
NOT_AT_START = ("urllib.request", "http.client", "ssl", "email", "xml.sax", "PIL")


def test_a_builds_start_imports_nothing_only_some_steps_need() -> None:
    modules = ("xenkit.cli", "xenkit.cli.build", "xenkit.pipeline.build", "xenkit.targets.rpi")
    probe = f"import sys, {', '.join(modules)}; print(' '.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert modules[-1] in loaded
    heavy = [m for m in loaded if m.split(".")[0] in NOT_AT_START or m in NOT_AT_START]
    assert not heavy, heavy


def test_a_build_found_up_to_date_imports_no_check() -> None:
    """A no-op build (issue 17: under 0.3 s) never checks what it kept: the checks and the
    address map were 40 ms of its imports."""
    probe = "import sys, xenkit.cli.build, xenkit.pipeline.build; print(' '.join(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "xenkit.pipeline.stamp" in loaded
    assert not [m for m in loaded if m.startswith("xenkit.analysis")]


def test_help_imports_argparse_and_little_else() -> None:
    """`xenkit --help` is the CLI's start-up (issue 17: under 60 ms with the interpreter's
    own 25): the settings table, dataclasses, typing, pathlib and shutil cost 60 ms."""
    probe = (
        "import sys; from xenkit.cli import main\n"
        "try: main(['--help'])\n"
        "except SystemExit: print(' '.join(sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = proc.stderr.split()
    assert "argparse" in loaded and "usage: xenkit" in proc.stdout
    slow = ("xenkit.config.settings", "dataclasses", "typing", "pathlib", "shutil")
    assert not [m for m in slow if m in loaded]


def test_uboot_script_for_one_guest_imports_what_it_uses(tmp_path: Path) -> None:
    """`xenkit uboot-script` writes its script in milliseconds, so its start is most of its
    time (issue 17: under 60 ms beside ImageBuilder's bash): logging, tempfile, subprocess,
    hashlib and typing, none of which a script without warnings, overlays or --explain
    uses, were 25 ms of it."""
    root = bootfiles.populate(tmp_path)
    (root / "config").write_text(
        'MEMORY_START="0x40000000"\nMEMORY_END="0xC0000000"\nDEVICE_TREE="board.dtb"\n'
        'XEN="xen"\nDOM0_KERNEL="Image"\nNUM_DOMUS=1\nDOMU_KERNEL[0]="Image"\n'
    )
    probe = (
        "import sys; from xenkit.cli import main\n"
        "main(['uboot-script', '-c', 'config', '-d', '.', '-t', 'tftp'])\n"
        "print(*sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, check=True
    )
    assert "wrote boot.source and boot.scr" in proc.stdout
    unused = ("logging", "tempfile", "subprocess", "hashlib", "typing")
    assert not [m for m in proc.stderr.split() if m in unused]
