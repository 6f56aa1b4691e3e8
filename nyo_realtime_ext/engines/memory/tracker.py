"""The memory engine's presence: who is on a channel: one member per user, however many connections it has.

Like Phoenix Presence, a member is keyed by user and holds one entry per
connection; only the first connection in makes a `user:joined` and only the
last one out makes a `user:left`, so a second tab changes nothing others see.
Pure data: no I/O, no clock of its own (callers pass `now`).
"""

from __future__ import annotations

from typing import Any

from ...models import ChannelKey, Identity, Member
from ..meta import same_json


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
                kind=identity.kind,
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
