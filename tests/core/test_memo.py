from __future__ import annotations

import os
from pathlib import Path

import pytest

from xenkit.core import memo


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XENKIT_CACHE", str(tmp_path))
    return tmp_path


def test_a_result_is_made_once_per_key_and_read_back_whole() -> None:
    made: list[int] = []

    def make() -> dict[str, bytes]:
        made.append(1)
        return {"a": b"1", "b": b"\0" * 10}

    k = memo.key(memo.source(), b"input", ("x", 1))
    assert memo.cached("t", k, make) == {"a": b"1", "b": b"\0" * 10}
    assert memo.cached("t", k, make) == {"a": b"1", "b": b"\0" * 10}
    assert len(made) == 1
    assert memo.cached("t", memo.key(memo.source(), b"input", ("x", 2)), make)
    assert len(made) == 2


def test_keys_tell_apart_what_a_plain_join_would_not() -> None:
    assert memo.key(b"ab", b"c") != memo.key(b"a", b"bc")
    assert memo.key("1") != memo.key(1)
    assert memo.key(b"x") == memo.key(b"x")


def test_two_builds_storing_one_entry_keep_one(cache: Path) -> None:
    memo.store("t", "k", {"a": b"first"})
    memo.store("t", "k", {"a": b"second"})  # the rename loses to the entry already there
    assert memo.load("t", "k") == {"a": b"first"}
    assert [p.name for p in (cache / "derived" / "memo").iterdir()] == ["t-k"]


def test_only_the_newest_entries_of_a_kind_stay(cache: Path) -> None:
    for i in range(memo.KEPT):
        memo.store("t", f"k{i}", {"a": b"x"})
        os.utime(cache / "derived" / "memo" / f"t-k{i}", ns=(i * 10**9, i * 10**9))
    assert memo.cached("t", "k0", lambda: {"a": b"y"}) == {"a": b"x"}  # used: now the newest
    memo.store("t", "new", {"a": b"x"})  # one too many: the least recently used goes
    memo.store("other", "k", {"a": b"x"})
    names = {p.name for p in (cache / "derived" / "memo").iterdir()}
    assert len([n for n in names if n.startswith("t-")]) == memo.KEPT
    assert {"t-k0", "t-new", "other-k"} <= names and "t-k1" not in names


def test_the_source_hash_follows_code_and_data_but_not_bytecode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "pkg"  # beside the test's cache
    (pkg / "sub" / "__pycache__").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.toml").write_text("y = 2\n")
    monkeypatch.setattr(memo, "PACKAGE", pkg)
    source = memo.source.__wrapped__
    first = source()
    (pkg / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"\0compiled")
    (pkg / ".#a.py").symlink_to("nowhere")  # an editor's lock file
    assert source() == first
    (pkg / "sub" / "b.toml").write_text("y = 3\n")
    changed = source()
    assert changed != first
    (pkg / "sub" / "c.py").write_text("")
    assert source() not in (first, changed)
