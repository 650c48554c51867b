"""Property-based fuzzing of the parsers that read what users write (issue 19, item 2): any
input gives a result or a XenkitError (one line), never another exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from xenkit.bootscripts import imagebuilder
from xenkit.config import settings as xsettings
from xenkit.config import spec
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


# Values of the kinds a TOML file holds.
TOML_VALUE = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.text(max_size=12),
    st.sampled_from(["512M", "0", "4G", "max", "pv", "hvm", "pvh", "dhcp", "10.99.0.5/24"]),
)
GUEST_KEYS = ["name", "type", "memory", "maxmem", "vcpus", "maxvcpus", "ip", "ping", "disk",
              "pv_drivers", "bridge", "colour"]  # fmt: skip
DOMAIN_KEYS = ["name", "memory", "vcpus", "cmdline", "enhanced", "colour"]
NAMES = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


def _tables(keys: list[str]) -> st.SearchStrategy[list[dict[str, object]]]:
    table = st.dictionaries(st.sampled_from(keys), TOML_VALUE, max_size=5)
    named = st.tuples(NAMES, table).map(lambda t: {**t[1], "name": t[0]})
    return st.lists(st.one_of(named, table), max_size=3)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["rpi4", "qemu-virt", "pc"]),
    st.dictionaries(
        st.sampled_from(["dom0_mem", "dom0_vcpus", "ram", "toolstack", "xen_extra", "persist"]),
        TOML_VALUE,
        max_size=4,
    ),
    _tables(GUEST_KEYS),
    _tables(DOMAIN_KEYS),
)
def test_build_settings(
    board: str, values: dict[str, object], guests: list[dict[str, object]], domains: list[object]
) -> None:
    """A config's settings and [[guest]]/[[domain]] tables, through the same coercion and
    resolution as `xenkit build -c`, up to the resolved spec (nothing is built)."""
    try:
        file_values = {
            name: xsettings._coerce(xsettings.BY_NAME[name], value, "fuzz.toml")
            for name, value in {
                **values,
                "board": board,
                "guest": guests,
                "domain": domains,
            }.items()
        }
        spec.resolve(xsettings.resolve(file_values, {}))
    except XenkitError as exc:
        _one_line(exc)
