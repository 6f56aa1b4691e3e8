"""Who is on a channel: one member per user, however many connections it has.

Like Phoenix Presence, a member is keyed by user and holds one entry per
connection; only the first connection in makes a `user:joined` and only the
last one out makes a `user:left`, so a second tab changes nothing others see.
Pure data: no I/O, no clock of its own (callers pass `now`).
"""

from __future__ import annotations

from typing import Any

import orjson

from .models import ChannelKey, Identity, Member


class PresenceTracker:
    def __init__(self) -> None:
        self._channels: dict[ChannelKey, dict[str, Member]] = {}

    def join(
        self,
        key: ChannelKey,
        identity: Identity,
        connection_id: str,
        now: float,
        status: str = "online",
        meta: dict[str, Any] | None = None,
    ) -> tuple[Member, bool]:
        """Add a connection; returns the member and whether the user just joined."""
        members = self._channels.setdefault(key, {})
        member = members.get(identity.user_id)
        joined = member is None
        if member is None:
            member = members[identity.user_id] = Member(
                user_id=identity.user_id,
                name=identity.name or identity.user_id,
                status=status,
                meta=dict(meta or {}),
                joined_at=now,
                color=identity.color,
                avatar_url=identity.avatar_url,
            )
        member.connections.add(connection_id)
        member.last_seen = now
        return member, joined

    def leave(self, key: ChannelKey, user_id: str, connection_id: str, now: float) -> Member | None:
        """Remove a connection; returns the member when it was the user's last one."""
        members = self._channels.get(key)
        member = members.get(user_id) if members else None
        if member is None or connection_id not in member.connections:
            return None
        member.connections.discard(connection_id)
        member.last_seen = now
        if member.connections:
            return None
        member.status = "offline"
        del members[user_id]  # type: ignore[union-attr]
        if not members:
            del self._channels[key]
        return member

    def update(
        self,
        key: ChannelKey,
        user_id: str,
        now: float,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Member | None:
        """Change status and/or meta; returns the member when something changed."""
        member = self.member(key, user_id)
        if member is None:
            return None
        member.last_seen = now
        changed = False
        if status is not None and status != member.status:
            member.status, changed = status, True
        if meta is not None and not same_json(meta, member.meta):
            member.meta, changed = dict(meta), True
        return member if changed else None

    def show_as(self, key: ChannelKey, user_id: str, name: str, color: str | None) -> Member | None:
        """Show the member with another name and colour (a changed profile); returns
        the member when something changed."""
        member = self.member(key, user_id)
        if member is None or (member.name, member.color) == (name, color):
            return None
        member.name, member.color = name, color
        return member

    def channels_of(self, tenant: str, user_id: str) -> list[ChannelKey]:
        """The channels the user is on. A scan of the live channels: it runs when a
        user changes their profile, rarely, and costs nothing the rest of the time."""
        return [
            key
            for key, members in self._channels.items()
            if key.tenant == tenant and user_id in members
        ]

    def member(self, key: ChannelKey, user_id: str) -> Member | None:
        members = self._channels.get(key)
        return members.get(user_id) if members else None

    def members(self, key: ChannelKey) -> list[Member]:
        return list(self._channels.get(key, {}).values())


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
