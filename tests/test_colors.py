"""The shared colour function: the Python side of tests/scenarios/colors.json, which
the JupyterLab extension's tests check with the TypeScript implementation, so that a
person has one colour in every client (docs/protocol.md, "Colours")."""

from __future__ import annotations

import colorsys
import json
import re
from pathlib import Path

import pytest

from nyo_realtime_ext.colors import fnv1a_32, user_color

VECTORS = json.loads((Path(__file__).parent / "scenarios" / "colors.json").read_text("utf-8"))


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: repr(v["userId"][:12]))
def test_python_gives_the_colour_of_every_test_vector(vector):
    assert user_color(vector["userId"]) == vector["color"]


def test_the_vectors_cover_what_implementations_get_wrong():
    ids = [v["userId"] for v in VECTORS]
    assert len(ids) == len(set(ids)) >= 20
    assert "" in ids
    assert any(not i.isascii() and len(i.encode()) > len(i) for i in ids)  # UTF-8, not UTF-16
    assert any(ord(c) > 0xFFFF for i in ids for c in i)  # outside the BMP: surrogates in JS
    assert any(len(i) > 200 for i in ids)  # the hash wraps mod 2**32 many times
    assert {"user-1", "user-2"} <= set(ids)  # one character apart
    assert all(re.fullmatch(r"#[0-9a-f]{6}", v["color"]) for v in VECTORS)


def test_fnv1a_is_the_standard_one():
    # Published FNV-1a 32-bit values.
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_it_is_the_css_hsl_colour_of_the_hashed_hue():
    for vector in VECTORS:
        hue = fnv1a_32(vector["userId"].encode()) % 360
        expected = colorsys.hls_to_rgb(hue / 360, 0.42, 0.55)
        channels = [int(vector["color"][i : i + 2], 16) for i in (1, 3, 5)]
        assert all(abs(c - e * 255) <= 0.5 + 1e-9 for c, e in zip(channels, expected, strict=True))


def test_people_one_character_apart_get_colours_far_apart():
    # What the user notices: user-1 and user-2 are not two shades of one colour.
    a, b = (user_color(u) for u in ("user-1", "user-2"))
    assert a != b
    distance = sum(abs(int(a[i : i + 2], 16) - int(b[i : i + 2], 16)) for i in (1, 3, 5))
    assert distance > 60
