"""The embedded engine: one process, durable in SQLite (`store.py`).

Each channel has an epoch (random, made when the channel is created) and a
sequence number; a message id is `epoch-seq`. Ids from another epoch, say after
the database was reset, are recognised as unknown instead of being mistaken
for ids of the new history.

Nothing here suspends: the coroutines of the engine interface complete at
once, and delivery happens inside `publish`, before it returns. Messages are
group-committed (see `store.py`): `commit` runs once per burst of the
event loop, before any frame of that burst leaves the process.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ... import frames
from ...lograte import Occasional
from ...models import ChannelKey, ChannelRecord, Identity, Member, Message, Profile
from ...profiles import changed, effective
from ..base import Engine, EngineEvents, History, ProfileChange, Timer
from ..ids import message_id, parse_message_id
from .state import MemoryState
from .store import Store
from .tracker import PresenceTracker

log = logging.getLogger(__name__)

# How often the WAL is copied into the database file, in a worker thread (see
# `Store.checkpoint`): at ~4 KB a message, 1 s of a busy server is a few MB of WAL.
CHECKPOINT_SECONDS = 1.0
EXPIRE_HISTORY_SECONDS = 60.0


class _NoEvents:
    def deliver(self, *args: Any) -> None:
        pass

    def deliver_state(self, *args: Any) -> None:
        pass

    def channel_changed(self, key: ChannelKey) -> None:
        pass

    def resync_failed(self, key: ChannelKey) -> None:
        pass


class MemoryBroker:
    def __init__(self, store: Store, history_size: int, history_ttl: float) -> None:
        self.store = store
        self.history_size = history_size
        self.history_ttl = history_ttl
        self.events: EngineEvents = _NoEvents()
        self._sequences: dict[ChannelKey, list[Any]] = {}  # key -> [epoch, last_seq]
        # The seqs of the retained messages of the channels listened to, oldest first:
        # where history is cut after each publish is found here, not by a query.
        self._retained: dict[ChannelKey, deque[int]] = {}

    def sequence(self, key: ChannelKey) -> list[Any]:
        """[epoch, last_seq] of the channel, shared with its state writes (`MemoryState`)."""
        return self._sequence(key)

    def _sequence(self, key: ChannelKey) -> list[Any]:
        """[epoch, last_seq]: kept in memory while the channel is listened to, read
        from the store otherwise (where each append also records it), so nothing
        stale outlives a channel that was collected and made again."""
        sequence = self._sequences.get(key)
        if sequence is None:
            found = self.store.get_channel(key)
            if found is None:
                raise KeyError(f"no channel {key}")  # the hub creates channels first
            sequence = [found[1], found[2]]
        return sequence

    async def listen(self, key: ChannelKey) -> None:
        self._sequences.setdefault(key, self._sequence(key))
        if key not in self._retained:
            self._retained[key] = self.store.retained_seqs(key, self.history_size)

    async def unlisten(self, key: ChannelKey) -> None:
        self._sequences.pop(key, None)
        self._retained.pop(key, None)

    async def publish(
        self,
        key: ChannelKey,
        event: str,
        payload: Any,
        sender: dict[str, Any] | None,
        now: float,
        skip: str | None = None,
    ) -> str:
        sequence = self._sequence(key)
        seq = sequence[1] + 1
        message = Message(key.name, message_id(sequence[0], seq), event, payload, sender, now)
        frame = message.encoded()  # first: what cannot be encoded is refused before it is stored
        self.store.append_message(key, seq, message, self.history_size, self._retained.get(key))
        sequence[1] = seq
        self.events.deliver(key, frame, message.id, skip)
        return message.id

    async def history(
        self,
        key: ChannelKey,
        since: str | None,
        limit: int,
        now: float,
        max_bytes: int | None = None,
    ) -> History:
        epoch, last_seq = self._sequence(key)
        not_before = now - self.history_ttl
        if since is None:
            messages, more = self.store.read_messages(
                key, epoch, 0, not_before, limit, max_bytes, newest=True
            )
            return History([m for _, m in messages], True, more)
        # "" is "I have seen nothing": everything since the channel began.
        parsed = (epoch, 0) if since == "" else parse_message_id(since)
        if parsed is None or parsed[0] != epoch or parsed[1] > last_seq:
            # Unknown id: send what is still there and let the client reload.
            messages, more = self.store.read_messages(key, epoch, 0, not_before, limit, max_bytes)
            return History([m for _, m in messages], False, more)
        after = parsed[1]
        messages, more = self.store.read_messages(key, epoch, after, not_before, limit, max_bytes)
        # State writes leave gaps in the seqs of messages: what tells whether one is
        # missing is where history was cut.
        complete = self.store.history_cut(key, not_before) <= after
        return History([m for _, m in messages], complete, more)


class MemoryPresence:
    """`PresenceTracker` plus leases, the store's presence records, and events."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: EngineEvents = _NoEvents()
        self.tracker = PresenceTracker()
        self._leases: dict[tuple[ChannelKey, str, str], float] = {}  # -> expiry

    def emit(self, key: ChannelKey, type_: str, member: Member, skip: str | None = None) -> None:
        frame = frames.presence_event(type_, key.name, member)
        self.events.deliver(key, frame, None, skip)

    async def join(
        self,
        key: ChannelKey,
        identity: Identity,
        connection_id: str,
        now: float,
        status: str = "online",
        meta: dict[str, Any] | None = None,
        lease: float | None = None,
    ) -> tuple[Member, bool]:
        # Nothing suspends here, so the profile read is in the same step as the join.
        shown = effective(identity, self.store.get_profile(identity.tenant_id, identity.user_id))
        member, joined = self.tracker.join(key, shown, connection_id, now, status, meta)
        if lease is not None:
            self._leases[(key, identity.user_id, connection_id)] = now + lease
        self.store.save_presence(key, member, online=True)
        if joined:
            self.emit(key, "user:joined", member, skip=connection_id)
        return member, joined

    async def leave(
        self, key: ChannelKey, user_id: str, connection_id: str, now: float
    ) -> Member | None:
        self._leases.pop((key, user_id, connection_id), None)
        member = self.tracker.leave(key, user_id, connection_id, now)
        if member is not None:
            # Tell the others first: the record is secondary to what they see.
            self.emit(key, "user:left", member)
            self.store.save_presence(key, member, online=False)
        return member

    async def update(
        self,
        key: ChannelKey,
        user_id: str,
        now: float,
        status: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Member | None:
        member = self.tracker.update(key, user_id, now, status, meta)
        if member is not None:
            self.store.save_presence(key, member, online=True)
            self.emit(key, "presence:updated", member)
        return member

    async def members(self, key: ChannelKey) -> list[Member]:
        return sorted(self.tracker.members(key), key=lambda m: m.user_id)

    async def offline(self, key: ChannelKey) -> list[Member]:
        here = {m.user_id for m in self.tracker.members(key)}
        return [m for m in self.store.presence_records(key, online=False) if m.user_id not in here]

    async def maintain(self, now: float) -> None:
        expired = [lease for lease, expiry in self._leases.items() if expiry < now]
        for key, user_id, connection_id in expired:
            await self.leave(key, user_id, connection_id, now)


class MemoryProfiles:
    def __init__(self, store: Store, presence: MemoryPresence) -> None:
        self.store = store
        self.presence = presence

    async def get(self, tenant: str, user_id: str) -> Profile:
        return self.store.get_profile(tenant, user_id)

    async def names(self, tenant: str) -> list[tuple[str, str]]:
        return self.store.shown_names(tenant)

    async def update(
        self, identity: Identity, changes: dict[str, str | None], now: float
    ) -> ProfileChange:
        tenant, user_id = identity.tenant_id, identity.user_id
        profile = changed(self.store.get_profile(tenant, user_id), changes)
        self.store.save_profile(tenant, user_id, profile, now)
        shown = effective(identity, profile)
        name = shown.name or user_id
        presence = self.presence
        channels = list(presence.tracker.channels_of(tenant, user_id))
        for key in channels:
            member = presence.tracker.show_as(key, user_id, name, shown.color)
            if member is not None:
                presence.store.save_presence(key, member, online=True)
                presence.emit(key, "presence:updated", member)
        return ProfileChange(profile, len(channels))


class MemoryRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: EngineEvents = _NoEvents()

    async def get(self, key: ChannelKey) -> ChannelRecord | None:
        found = self.store.get_channel(key)
        return found[0] if found is not None else None

    async def create(self, channel: ChannelRecord) -> tuple[ChannelRecord, bool]:
        created = self.store.create_channel(channel, secrets.token_hex(4))
        return self.store.get_channel(channel.key)[0], created  # type: ignore[index]

    async def list(
        self, tenant: str, after: str = "", limit: int | None = None
    ) -> list[ChannelRecord]:
        return self.store.list_channels(tenant, after, -1 if limit is None else limit)

    async def count_created(self, tenant: str, user_id: str) -> int:
        return self.store.count_created(tenant, user_id)

    async def collect_idle(self, not_used_since: float, live: set[ChannelKey]) -> int:
        return self.store.collect_idle(not_used_since, live)

    # `builtins.list`: inside this class, `list` names the method above.
    async def set_members(self, key: ChannelKey, user_ids: builtins.list[str]) -> ChannelRecord:
        self.store.set_channel_members(key, user_ids)
        self.events.channel_changed(key)
        return self.store.get_channel(key)[0]  # type: ignore[index]


class MemoryEngine(Engine):
    broker: MemoryBroker
    presence: MemoryPresence
    channels: MemoryRegistry
    state: MemoryState

    def __init__(self, store: Store, history_size: int, history_ttl: float) -> None:
        self.store = store
        self.history_ttl = history_ttl
        self.broker = MemoryBroker(store, history_size, history_ttl)
        self.presence = MemoryPresence(store)
        self.channels = MemoryRegistry(store)
        self.profiles = MemoryProfiles(store, self.presence)
        self.state = MemoryState(store, self.broker)

        self._checkpointing: asyncio.Future[None] | None = None
        # Once a second it may fail for as long as its cause lasts (at the open-file
        # limit it cannot open the file): a warning a minute, not a traceback a second.
        self._checkpoint_failures = Occasional(
            log,
            "SQLite checkpoint failed %d time(s) since the last report (%s); the WAL "
            "keeps everything meanwhile, and it is tried again every second",
            every=60.0,
        )

    @classmethod
    def from_config(cls, config: Any) -> MemoryEngine:
        store = Store(config.db_path)
        store.mark_all_offline(time.time())  # nobody is connected to a fresh process
        return cls(store, config.history_size, config.history_ttl)

    def bind(self, events: EngineEvents) -> None:
        self.broker.events = self.presence.events = self.channels.events = events
        self.state.events = events

    def on_commit_due(self, book: Callable[[], None]) -> None:
        self.store.on_append = book

    def timers(self) -> list[Timer]:
        return [
            (CHECKPOINT_SECONDS, self._checkpoint),
            (EXPIRE_HISTORY_SECONDS, self._expire_history),
        ]

    def commit(self) -> None:
        self.store.commit()

    def rollback(self) -> None:
        self.store.rollback()

    async def close(self) -> None:
        # Nobody is connected to this process any more; nobody else shares it.
        self.store.mark_all_offline(time.time())
        if self._checkpointing is not None:  # the store closes next: let it finish
            await asyncio.wait([self._checkpointing], timeout=30)

    def release(self) -> None:
        self.store.close()

    def _checkpoint(self) -> None:
        if self._checkpointing is not None and not self._checkpointing.done():
            return  # the last one is still copying: no queue of them
        loop = asyncio.get_running_loop()
        self._checkpointing = loop.run_in_executor(None, self.store.checkpoint)
        self._checkpointing.add_done_callback(self._checkpointed)

    def _checkpointed(self, done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            self._checkpoint_failures.note(done.exception())

    def _expire_history(self) -> None:
        self.store.drop_expired(time.time() - self.history_ttl)
