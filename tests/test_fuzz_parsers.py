"""Property-based fuzzing of the parsers that read what users write (issue 19, item 2): any
input gives a result or a XenkitError (one line), never another exception."""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from xenkit.bootscripts import imagebuilder, uimage
from xenkit.config import boards, spec
from xenkit.config import settings as xsettings
from xenkit.core.sizes import parse_size
from xenkit.errors import XenkitError
from xenkit.formats import binaries, dt
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


# ImageBuilder configs made of its real variables (random text rarely spells one), with
# values of the kinds they take, so the checks behind each name are reached.
IB_VALUE = st.one_of(
    st.sampled_from(
        [
            "0",
            "1",
            "2",
            "-1",
            "3",
            "0x40000000",
            "1.5",
            "lots",
            "99999999999999999999",
            "Image",
            "xen",
            '"a b"',
            "",
            "tftpb",
            "booti",
            "/dev/mmcblk0p2",
        ]
    ),
    st.text(alphabet="0123456789abcdefx -", max_size=12),
)
IB_NAME = st.one_of(
    st.sampled_from(sorted(imagebuilder.SCALARS)),
    st.tuples(st.sampled_from(sorted(imagebuilder.ARRAYS)), st.integers(0, 3)).map(
        lambda t: f"{t[0]}[{t[1]}]"
    ),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(IB_NAME, IB_VALUE), max_size=14))
def test_imagebuilder_configs_of_real_variables(assignments: list[tuple[str, str]]) -> None:
    text = "".join(f"{name}={value}\n" for name, value in assignments)
    try:
        imagebuilder.to_config(imagebuilder.parse(text, "fuzz.cfg"))
    except XenkitError as exc:
        _one_line(exc)


@given(st.binary(max_size=300))
def test_config_and_board_files_of_any_bytes(data: bytes) -> None:
    path = Path(tempfile.mkdtemp()) / "f.toml"
    path.write_bytes(data)
    for read in (xsettings.load_file, lambda p: boards.load(str(p))):
        try:
            read(path)
        except XenkitError as exc:
            _one_line(exc)


@given(st.binary(max_size=200))
def test_a_u_boot_script_image_of_any_bytes(data: bytes) -> None:
    """The reader of xenkit's own script images: a script or ValueError, also for a header
    whose checksums are right around any payload."""
    for image in (data, uimage.script_image(data.decode("latin-1"))[:64] + data):
        with contextlib.suppress(ValueError):
            uimage.script_text(image)


@given(st.binary(max_size=400), st.sampled_from([b"", b"\x1f\x8b", b"\x7fELF"]))
def test_binaries_of_any_bytes(data: bytes, head: bytes) -> None:
    path = Path(tempfile.mkdtemp()) / "bin"
    path.write_bytes(head + data)
    for read in (binaries.xen_version, binaries.linux_version):
        try:
            read(path)
        except XenkitError as exc:
            _one_line(exc)


@given(st.binary(max_size=300))
def test_device_trees_of_any_bytes(data: bytes) -> None:
    blob = b"\xd0\x0d\xfe\xed" + data
    for candidate in (data, blob):
        try:
            dt.DeviceTree(candidate, "fuzz.dtb")
        except XenkitError as exc:
            _one_line(exc)
