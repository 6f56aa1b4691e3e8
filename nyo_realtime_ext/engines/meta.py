"""Presence meta compared the same way by every engine: as JSON values.

A `presence` update that changes nothing sends no `presence:updated`, so whether
two metas are "the same" is something each engine decides; they must agree.
"""

from __future__ import annotations

from typing import Any

import orjson


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values, not as Python ones: `1 == True` in Python, yet a client
    sees a number and a boolean, so a change between them is a change. (1 and 1.0
    are one JSON number.)"""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def json_key(value: Any) -> bytes:
    """A text of `value` that two values share exactly when `same_json` holds of them:
    for a store that compares texts (the Redis engine) to agree with `same_json`."""
    return orjson.dumps(_canonical(value), option=orjson.OPT_SORT_KEYS)


def _canonical(value: Any) -> Any:
    # 1.0 and -0.0 are the integers 1 and 0 as JSON numbers; orjson would write
    # "1.0" and "-0.0". (Beyond 64 bits orjson writes no integer: left as floats.)
    if isinstance(value, float) and value.is_integer() and -(2**63) <= value < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value
