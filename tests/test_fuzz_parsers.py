"""Property-based fuzzing of the parsers that read what users write (issue 19, item 2): any
input gives a result or a XenkitError (one line), never another exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from xenkit.bootscripts import imagebuilder
from xenkit.core.sizes import parse_size
from xenkit.errors import XenkitError
from xenkit.pipeline import manifest

# Characters a config line is made of, weighted toward the ones with meaning to the parsers.
CONFIG_TEXT = st.text(
    alphabet=st.sampled_from([*"ABCDEFGHIJKLMNOPQRSTUVWXYZ_[]0123456789=\"'\\ $#\n\tx.-+", "é"]),
    max_size=200,
)


def _one_line(exc: XenkitError) -> None:
    assert "\n" not in str(exc), str(exc)


@given(st.one_of(st.text(max_size=30), st.integers(), st.booleans()))
def test_sizes(value: str | int) -> None:
    try:
        assert parse_size(value, "memory") >= 0 or isinstance(value, int)
    except XenkitError as exc:
        _one_line(exc)


@settings(max_examples=300)
@given(CONFIG_TEXT)
def test_imagebuilder_configs(text: str) -> None:
    try:
        imagebuilder.to_config(imagebuilder.parse(text, "fuzz.cfg"), "tftp")
    except XenkitError as exc:
        _one_line(exc)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=20,
    )
)
def test_manifests(data: object) -> None:
    """Arbitrary JSON, and JSON with the right schema but anything inside."""
    for doc in (data, {"schema": manifest.SCHEMA, **(data if isinstance(data, dict) else {})}):
        try:
            manifest.from_json(json.dumps(doc), "fuzz.json")
        except XenkitError as exc:
            _one_line(exc)
