"""One-process engine: sequences and fans out in memory, keeps history in the store.

Each channel has an epoch (random, made when the channel is created) and a
sequence number; a message id is `epoch-seq`. Ids from another epoch, say after
the database was reset, are recognised as unknown instead of being mistaken
for ids of the new history.
"""

from __future__ import annotations

from typing import Any

from ..models import ChannelKey, Message
from ..presence import PresenceTracker
from ..store import Store, message_id, parse_message_id
from .base import Deliver, History


class MemoryEngine:
    def __init__(self, store: Store, history_size: int, history_ttl: float) -> None:
        self.store = store
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.presence = PresenceTracker()
        self._sequences: dict[ChannelKey, list[Any]] = {}  # key -> [epoch, last_seq]
        self._deliver: Deliver = lambda key, message, echo: None

    def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def ensure_channel(self, key: ChannelKey, epoch: str, last_seq: int) -> None:
        self._sequences.setdefault(key, [epoch, last_seq])

    def forget(self, key: ChannelKey) -> None:
        self._sequences.pop(key, None)

    def publish(
        self,
        key: ChannelKey,
        event: str,
        payload: Any,
        sender: dict[str, str] | None,
        now: float,
        echo: bool = True,
    ) -> Message:
        sequence = self._sequences[key]
        seq = sequence[1] + 1
        message = Message(key.name, message_id(sequence[0], seq), event, payload, sender, now)
        self.store.append_message(key, seq, message, self.history_size)
        sequence[1] = seq
        self._deliver(key, message, echo)
        return message

    def history(self, key: ChannelKey, since: str | None, limit: int, now: float) -> History:
        epoch, last_seq = self._sequences[key]
        not_before = now - self.history_ttl
        if since is None:
            messages = self.store.read_messages(key, epoch, 0, not_before, self.history_size)
            return History([m for _, m in messages][-limit:], True)
        parsed = parse_message_id(since)
        if parsed is None or parsed[0] != epoch or parsed[1] > last_seq:
            # Unknown id: send what is still there and let the client reload.
            messages = self.store.read_messages(key, epoch, 0, not_before, limit)
            return History([m for _, m in messages], False)
        after = parsed[1]
        messages = self.store.read_messages(key, epoch, after, not_before, limit)
        # Complete when nothing is missing at either end: not dropped before the
        # first, nor cut off after the last (say, history_size was lowered).
        complete = after == last_seq or bool(
            messages and messages[0][0] == after + 1 and messages[-1][0] == last_seq
        )
        return History([m for _, m in messages], complete)
