"""Records that cross layers: who is connected, what was said, who is here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import frames
from .constants import PERSON


class ChannelKey(NamedTuple):
    """A channel is always named inside a tenant: tenants are walls."""

    tenant: str
    name: str


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection or HTTP request is; only a token or Jupyter can make one."""

    user_id: str
    tenant_id: str
    name: str = ""
    color: str | None = None
    avatar_url: str | None = None
    expires_at: float | None = None  # seconds since epoch, from the token's `exp`
    channels: frozenset[str] | None = None  # private channels granted by the token
    kind: str = PERSON  # `person` or `kernel` (the token's `kind` claim)

    def to_wire(self) -> dict[str, Any]:
        return frames.identity_wire(self)

    def same_principal(self, other: Identity) -> bool:
        return self.user_id == other.user_id and self.tenant_id == other.tenant_id


@dataclass(frozen=True, slots=True)
class Profile:
    """What a user chose to be shown as, kept by the engine per (tenant, user).

    None is "not chosen": the identity's own value shows instead (see profiles.py).
    """

    name: str | None = None
    color: str | None = None  # `#rrggbb`, lowercase

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "color": self.color}


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A channel as the registry keeps it: its type, owner and members. (The live
    channel a client subscribes to is `client.Channel`, a different thing.)"""

    key: ChannelKey
    type: str  # public | private | presence
    owner: str | None
    created_at: float
    members: tuple[str, ...] = ()  # user ids allowed in a private channel
    # Who made it exist (explicitly or by a first subscribe or publish), for quotas.
    created_by: str | None = field(default=None, compare=False)

    def to_wire(self) -> dict[str, Any]:
        return frames.channel_wire(self)


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    id: str
    event: str
    payload: Any
    sender: dict[str, Any] | None  # {userId, connectionId}; None from server-side code
    ts: float
    # The frame as the engine already has it encoded (say, read back from Redis).
    wire: bytes | None = field(default=None, compare=False, repr=False)

    def encoded(self) -> bytes:
        return self.wire if self.wire is not None else frames.message_of(self)

    def to_wire(self) -> dict[str, Any]:
        return frames.message_wire(
            self.channel, self.id, self.event, self.payload, self.sender, int(self.ts * 1000)
        )


@dataclass(frozen=True, slots=True)
class StateEntry:
    """The latest value of one key of a channel's shared state.

    `version` is a message id from the channel's own sequence (the write's place in
    the channel's one order); `value` None is a deleted key (a tombstone), kept so
    that a resubscription with `since` learns of the deletion.
    """

    key: str
    value: Any
    version: str
    sender: dict[str, Any] | None  # {userId, connectionId}; None from server-side code

    def to_wire(self) -> dict[str, Any]:
        return frames.state_entry_wire(self)


@dataclass(slots=True)
class Member:
    """One user on one channel, however many connections it has."""

    user_id: str
    name: str
    status: str = "online"
    meta: dict[str, Any] = field(default_factory=dict)
    joined_at: float = 0.0
    last_seen: float = 0.0
    connections: set[str] = field(default_factory=set)
    color: str | None = None
    avatar_url: str | None = None
    kind: str = PERSON  # the identity's: `person` or `kernel`

    def to_wire(self) -> dict[str, Any]:
        return frames.member_wire(self)
