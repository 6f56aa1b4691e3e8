"""The engine interface: what the hub needs to publish, recover and track presence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ..models import ChannelKey, Message
from ..presence import PresenceTracker

# Called for every accepted message, in the channel's one order; `echo` False
# means the sending connection must not get its own message back.
Deliver = Callable[[ChannelKey, Message, bool], None]


class History(NamedTuple):
    messages: list[Message]
    recovered: bool  # False when some messages after `since` are gone


class Engine(Protocol):
    presence: PresenceTracker

    def start(self, deliver: Deliver) -> None: ...

    def ensure_channel(self, key: ChannelKey, epoch: str, last_seq: int) -> None:
        """Make the engine aware of a channel's sequence, as loaded from the store."""

    def forget(self, key: ChannelKey) -> None:
        """Drop what is kept in memory for an idle channel; the store keeps the rest."""

    def publish(
        self,
        key: ChannelKey,
        event: str,
        payload: Any,
        sender: dict[str, str] | None,
        now: float,
        echo: bool = True,
    ) -> Message:
        """Give the message its id, keep it in history, deliver it; returns it."""

    def history(self, key: ChannelKey, since: str | None, limit: int, now: float) -> History:
        """Retained messages after `since` (all retained when None), oldest first."""
