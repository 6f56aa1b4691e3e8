"""Display names and colours that people choose: checks, and what they make effective.

A user's profile (`models.Profile`) is what they chose; their identity (token or
Jupyter) is what they are. What others see, in `authenticated.user` and in every
member, is the *effective* value: the chosen one, else the identity's. The user id
never changes and is never chosen; only the caller's own profile can be changed
(the HTTP route has no user in its path), so nobody can take another's id or name
another user. Nobody may choose a name that looks like another known member's
name or user id (`require_distinct_name`, by `names.skeletons`); a name that the
identity provider gives (token, Jupyter) is not refused, and clients show it with
its user id where it collides (`names.labelled`).

Colour: chosen, else the identity's, else nothing on the wire; clients then use
`colors.user_color(user_id)`, the one function every client implements alike.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from .colors import COLOR
from .frames import profile_answer
from .models import Identity, Profile
from .names import look_alikes
from .protocol import ErrorCode, ProtocolError

MAX_NAME_LENGTH = 64
FIELDS = ("name", "color")

# Characters as regular-expression classes, so that the OpenAPI document can publish
# the exact rule (`NAME_PATTERN`). What `str.strip` trims (`str.isspace`):
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# Refused anywhere in a name: control characters (Cc); the line and paragraph
# separators (Zl, Zp), which break a one-line label; and the bidirectional marks,
# embeddings, overrides and isolates, which make a name display as another ("evil"
# shown as "live"). Joiners stay: emoji sequences need them. Lone surrogates are
# refused too, apart: no JSON body gets them past its decoding, and the published
# pattern leaves them out because validators in other languages cannot express them.
_REFUSED = r"\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_REFUSED_CHARACTER = re.compile(f"[{_REFUSED}\\ud800-\\udfff]")
_REFUSED_CHARACTERS = re.compile(f"[{_REFUSED}\\ud800-\\udfff]+")
#: What `check_name` accepts, as one pattern: surrounding whitespace, then 1-64
#: characters that start and end with no whitespace. tests/test_profile.py holds
#: the two to the same answers.
NAME_PATTERN = (
    f"^[{_SPACE}]*[^{_SPACE}{_REFUSED}]"
    f"(?:[^{_REFUSED}]{{0,{MAX_NAME_LENGTH - 2}}}[^{_SPACE}{_REFUSED}])?[{_SPACE}]*$"
)


def check_profile_update(body: dict[str, Any]) -> dict[str, str | None]:
    """The changes a `PUT profile` body asks for: only the keys it has, a value
    checked and normalised (name trimmed, colour lowercase), or None to clear.

    Raises `bad_request` for anything else, before anything is stored.
    """
    changes: dict[str, str | None] = {}
    if "name" in body:
        changes["name"] = None if body["name"] is None else check_name(body["name"])
    if "color" in body:
        changes["color"] = None if body["color"] is None else check_color(body["color"])
    return changes


def check_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "`name` must be a string or null")
    name = value.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"`name` must be 1-{MAX_NAME_LENGTH} characters once trimmed",
        )
    refused = _REFUSED_CHARACTER.search(name)
    if refused is not None:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"`name` must not contain control characters (U+{ord(refused.group()):04X})",
        )
    return name


def require_distinct_name(name: str, user_id: str, known: list[tuple[str, str]]) -> None:
    """`conflict` if the chosen `name` of `user_id` looks like (`names.collide`) the
    name shown for, or the id of, another user of `known` (the tenant's members, as
    `ProfileStore.names` gives them): nobody passes for somebody else by choice."""
    taken = look_alikes(name, user_id, known)
    if taken:
        raise ProtocolError(
            ErrorCode.CONFLICT,
            f"`name` {name!r} looks like the name or user id of another member "
            f"({', '.join('@' + other for other in taken[:3])}); choose another",
        )


def refused_character(text: str) -> str | None:
    """The first character of `text` no name or id may hold (`_REFUSED`), as `U+XXXX`."""
    refused = _REFUSED_CHARACTER.search(text)
    return None if refused is None else f"U+{ord(refused.group()):04X}"


def cleaned_name(text: str) -> str:
    """`text` with the characters a name may not hold taken out, and trimmed; for a
    name nobody here can correct (Jupyter's identity): refused names get `check_name`."""
    return _REFUSED_CHARACTERS.sub("", text).strip()[:MAX_NAME_LENGTH].strip()


def check_color(value: Any) -> str:
    if not isinstance(value, str) or COLOR.fullmatch(value) is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "`color` must be `#rrggbb` (hex) or null")
    return value.lower()


def changed(profile: Profile, changes: dict[str, str | None]) -> Profile:
    """`profile` with `changes` (from `check_profile_update`) applied."""
    return dataclasses.replace(profile, **{k: v for k, v in changes.items() if k in FIELDS})


def effective(identity: Identity, profile: Profile | None) -> Identity:
    """`identity` as others see it: the chosen name and colour over its own."""
    if profile is None or (profile.name is None and profile.color is None):
        return identity
    return dataclasses.replace(
        identity,
        name=profile.name or identity.name or identity.user_id,
        color=profile.color or identity.color,
    )


def profile_wire(identity: Identity, profile: Profile) -> dict[str, Any]:
    """The answer of `GET`/`PUT profile`: effective values, and what was chosen."""
    shown = effective(identity, profile)
    return profile_answer(
        identity.user_id, shown.name or shown.user_id, shown.color, profile.to_wire()
    )
