"""The one colour of a user who has none of their own: the same in every client.

A user's colour is, in order: the colour they chose (their profile), the colour
of their identity (the token's `color` claim, or Jupyter's identity), else
`user_color(user_id)`. The last step runs in every client (these widgets, the
JupyterLab extension, third-party clients), so it is specified to the bit and
documented in docs/protocol.md ("Colours"); `tests/scenarios/colors.json` holds
test vectors that the Python and the TypeScript implementations both check.

It hashes the user id, never the display name: names change and two people may
share one, ids do neither. The widgets (client side) import it: like `constants`,
it imports nothing of the package (tests/test_layout.py).
"""

from __future__ import annotations

import math
import re

#: What counts as a user's colour wherever one comes from (a chosen profile, a
#: token's `color` claim, Jupyter's identity): `#rrggbb`, nothing else. Anything
#: else never reaches a client, so no client puts CSS from a token into a style.
COLOR = re.compile(r"#[0-9A-Fa-f]{6}")

FNV_OFFSET_BASIS = 2166136261
FNV_PRIME = 16777619
SATURATION = 0.55
LIGHTNESS = 0.42  # dark enough for white initials on it, light enough on a dark theme


def fnv1a_32(data: bytes) -> int:
    h = FNV_OFFSET_BASIS
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) % 2**32
    return h


def is_color(value: object) -> bool:
    """Whether `value` is a colour as every source of one must give it (`COLOR`)."""
    return isinstance(value, str) and COLOR.fullmatch(value) is not None


def user_color(user_id: str) -> str:
    """`#rrggbb` for `user_id`: a hue from FNV-1a (32 bit) of its UTF-8 bytes, at a
    fixed saturation and lightness (the HSL-to-RGB formula of CSS Color 4).

    Every operation is an IEEE double operation in the order written, so that
    JavaScript, which has no other numbers, gives the same channels.
    """
    hue = fnv1a_32(user_id.encode("utf-8")) % 360
    s, light = SATURATION, LIGHTNESS
    a = s * min(light, 1 - light)

    def channel(n: int) -> str:
        k = (n + hue / 30) % 12
        c = light - a * max(-1, min(k - 3, 9 - k, 1))
        return f"{math.floor(c * 255 + 0.5):02x}"

    return "#" + channel(0) + channel(8) + channel(4)
