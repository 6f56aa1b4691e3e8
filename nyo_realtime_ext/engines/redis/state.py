"""Shared state in the Redis engine: one hash per channel, `<prefix>:{<channel part>}:state`.

A write is one script (`state.lua`): the compare-and-set, the limits, the channel's
next sequence number (the `meta` hash that publish.lua numbers messages from), the
entry and `state:changed` on the channel's pub/sub, in one step, so every node sees
writes and messages in one order. Every key the script touches comes in KEYS, and the
state hash carries the channel's hash tag, so that it works on Redis Cluster.

The frames are made by frames.py: the script only puts the version between the
pieces of `frames.state_pieces`. A read is one script (`snapshot.lua`) that reads the
channel's position and its hash together, so that it says where in the sequence it
was made (`StateSnapshot.seq`).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import orjson

from ... import frames
from ...models import ChannelKey, StateEntry
from ..base import StateConflict, StateLimitExceeded, StateLimits, StateSnapshot
from ..ids import delta_after, parse_message_id

if TYPE_CHECKING:
    from .engine import RedisBroker, _Redis


class RedisState:
    def __init__(self, redis: _Redis, broker: RedisBroker) -> None:
        self.redis = redis
        self.broker = broker

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
        redis = self.redis
        head, tail, start = frames.state_pieces(key.name, entry_key, value, sender)
        size = 0 if value is None else len(entry_key.encode()) + len(frames.encode(value))
        seen_epoch, seen_seq = self.broker.seen(key)
        # In the pipeline, in line with this node's publishes: a write whose answer
        # never came is then `OutcomeUnknown`, as a publish is.
        outcome, detail = await redis.pipeline.run(
            "state",
            redis.keys.state(key),
            (
                secrets.token_hex(4),
                seen_epoch,
                seen_seq,
                int(now * 1000),
                entry_key,
                "1" if value is None else "0",
                "0" if if_version is None else "1",
                if_version or "",
                size,
                limits.max_keys,
                limits.max_bytes,
                max(limits.max_keys, 1),  # deletions kept to tell resubscribers
                head,
                tail,
                start,
            ),
            _as_is,
        )
        if outcome == b"conflict":
            raise StateConflict(_entry(detail) if detail else None)
        if outcome == b"limit":
            raise StateLimitExceeded(detail.decode())
        version = detail.decode()
        epoch, seq = parse_message_id(version) or ("", 0)
        self.broker.see(key, epoch.encode(), seq)
        return StateEntry(entry_key, value, version, sender)

    async def read(self, key: ChannelKey, since: str | None = None) -> StateSnapshot:
        epoch_raw, seq, flat = await self.redis.run("snapshot", self.redis.keys.snapshot(key))
        epoch = epoch_raw.decode()
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        floor = fields.get(b"#floor")
        after = delta_after(since, epoch, seq, floor.decode() if floor else None)
        entries = [_entry(raw) for field, raw in fields.items() if field.startswith(b"e:")]
        entries.sort(key=lambda entry: entry.key)
        if after is None:
            live = [entry for entry in entries if entry.value is not None]
            return StateSnapshot(live, True, epoch, seq)
        changed = []
        for entry in entries:
            parsed = parse_message_id(entry.version)
            if parsed is not None and parsed[0] == epoch and parsed[1] > after:
                changed.append(entry)
        return StateSnapshot(changed, False, epoch, seq)


def _entry(raw: bytes) -> StateEntry:
    wire = orjson.loads(raw)
    return StateEntry(wire["key"], wire["value"], wire["version"], wire["from"])


def _as_is(answer: Any) -> Any:
    return answer
