"""Artifacts from Debian's packages through the cache, as builds sharing one cache use it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from xenkit.system import artifacts
from xenkit.system.artifacts import Artifacts


@pytest.mark.debian
def test_builds_starting_together_on_an_empty_cache_unpack_the_modules_once(
    rpi4_artifacts: Artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds at once on a fresh cache (two CI workers did it): both get the one tree.
    Without the lock the second one's rename onto the first one's tree failed (ENOTEMPTY)."""
    monkeypatch.setattr(artifacts, "cache_home", lambda: tmp_path)
    go = threading.Barrier(3)
    trees: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        go.wait()
        try:
            trees.append(artifacts.modules(rpi4_artifacts).root)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=build) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == [] and len(trees) == 3 and len(set(trees)) == 1
    # tmp_path/files/<the package's digest>: the tree, its lock, no half-unpacked leftover.
    digest = next(p for p in trees[0].parents if p.parent.parent == tmp_path)
    assert sorted(p.name for p in digest.iterdir()) == ["modules", "modules.lock"]
