"""Shared state in the embedded engine: the latest value of each key, in SQLite.

A write takes the channel's next sequence number from the broker's own counter (so
its version is a message id in the channel's one order), is stored in the same
group commit as messages, and is delivered before `write` returns, as a publish is.
Nothing here suspends, so a compare-and-set, the limits and the write are one step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ... import frames
from ...models import ChannelKey, StateEntry
from ..base import EngineEvents, StateConflict, StateLimitExceeded, StateLimits, StateSnapshot
from ..ids import delta_after, message_id

if TYPE_CHECKING:
    from .engine import MemoryBroker
    from .store import Store


class MemoryState:
    def __init__(self, store: Store, broker: MemoryBroker) -> None:
        self.store = store
        self.broker = broker
        self.events: EngineEvents | None = None

    async def write(
        self,
        key: ChannelKey,
        entry_key: str,
        value: Any,
        sender: dict[str, Any] | None,
        now: float,
        if_version: str | None,
        limits: StateLimits,
    ) -> StateEntry:
        sequence = self.broker.sequence(key)
        row = self.store.state_row(key, entry_key)
        current = _entry(row) if row is not None and row[1] is not None else None
        if if_version is not None and if_version != (current.version if current else ""):
            raise StateConflict(current)
        encoded = None if value is None else orjson.dumps(value)
        size = 0 if encoded is None else len(entry_key.encode()) + len(encoded)
        if encoded is not None:
            count, total = self.store.state_totals(key)
            if current is None and count >= limits.max_keys:
                raise StateLimitExceeded("max_state_keys")
            if total - (row[5] if current is not None else 0) + size > limits.max_bytes:  # type: ignore[index]
                raise StateLimitExceeded("max_state_bytes")
        epoch, seq = sequence[0], sequence[1] + 1
        entry = StateEntry(entry_key, value, message_id(epoch, seq), sender)
        frame = frames.state_changed(key.name, entry)
        self.store.put_state(
            key,
            epoch,
            seq,
            now,
            entry_key,
            encoded.decode() if encoded is not None else None,
            sender,
            size,
            # Deletions are kept to tell resubscribers; as many as there may be keys.
            max(limits.max_keys, 1),
        )
        sequence[1] = seq
        if self.events is not None:
            self.events.deliver_state(key, frame, entry.version)
        return entry

    async def read(self, key: ChannelKey, since: str | None = None) -> StateSnapshot:
        epoch, last_seq = self.broker.sequence(key)
        rows = self.store.state_rows(key)
        after = delta_after(since, epoch, last_seq, self.store.state_floor(key))
        if after is None:
            entries = [_entry(row) for row in rows if row[1] is not None]
            return StateSnapshot(entries, True, epoch, last_seq)
        changed = [_entry(row) for row in rows if row[2] == epoch and row[3] > after]
        return StateSnapshot(changed, False, epoch, last_seq)


def _entry(row: tuple[Any, ...]) -> StateEntry:
    entry_key, value, epoch, seq, sender, _ = row
    return StateEntry(
        entry_key,
        orjson.loads(value) if value is not None else None,
        message_id(epoch, seq),
        orjson.loads(sender) if sender else None,
    )
