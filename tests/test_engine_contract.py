"""One contract for every engine (engines/base.py): the memory engine and the Redis
engine run the same tests, so that the hub cannot tell which one it talks to.

The Redis engine delivers through pub/sub, that is later and from another task;
`Harness.wait_for` polls for what must arrive, and `Harness.settle` publishes a
marker and waits for it, so that "nothing else arrived" can be asserted (the
frames of one channel arrive in the channel's one order).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import orjson
import pytest

from nyo_realtime_ext import frames
from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.engines import Engine, EngineUnavailable, History, MemoryEngine
from nyo_realtime_ext.engines.memory import Store
from nyo_realtime_ext.engines.redis import RedisEngine
from nyo_realtime_ext.engines.redis import engine as redis_engine_module
from nyo_realtime_ext.models import ChannelKey, ChannelRecord, Identity, Message, Profile

WAIT = 10.0  # seconds anything asynchronous (Redis pub/sub) may take
SETTLE_EVENT = "test:settle"
ID = re.compile(r"^([0-9A-Za-z]+)-([0-9]+)$")
MEMBER_KEYS = {"userId", "name", "status", "meta", "joinedAt", "lastSeen", "connections"}

ADA = Identity("ada", "acme", name="Ada")
BOB = Identity("bob", "acme", name="Bob", color="#f00")
CY = Identity("cy", "acme")


def clock() -> float:
    """Whole seconds: both engines keep times in milliseconds at least."""
    return float(int(time.time()))


def seq_of(message_id: str) -> int:
    match = ID.match(message_id)
    assert match, f"{message_id!r} is not epoch-seq"
    return int(match.group(2))


def epoch_of(message_id: str) -> str:
    match = ID.match(message_id)
    assert match, f"{message_id!r} is not epoch-seq"
    return match.group(1)


def published(history: History) -> list[Message]:
    """The messages of `history` that the test published (not `settle`'s markers)."""
    return [m for m in history.messages if m.event != SETTLE_EVENT]


class Delivery(NamedTuple):
    key: ChannelKey
    frame: dict[str, Any]
    message_id: str | None
    skip: str | None


class Recorder:
    """The hub's side of the engine (`EngineEvents`): keeps everything it is told."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.raw: list[tuple[ChannelKey, bytes, str | None]] = []  # the frames as delivered
        self.changed: list[ChannelKey] = []
        self.resyncs: list[ChannelKey] = []

    def deliver(
        self, key: ChannelKey, frame: bytes, message_id: str | None, skip: str | None
    ) -> None:
        self.deliveries.append(Delivery(key, orjson.loads(frame), message_id, skip))
        self.raw.append((key, frame, skip))

    def channel_changed(self, key: ChannelKey) -> None:
        self.changed.append(key)

    def resync_failed(self, key: ChannelKey) -> None:
        self.resyncs.append(key)

    def of(self, key: ChannelKey, type_: str | None = None) -> list[Delivery]:
        """What `key` got (markers of `settle` left out), of one frame type if given."""
        return [
            d
            for d in self.deliveries
            if d.key == key
            and d.frame.get("event") != SETTLE_EVENT
            and (type_ is None or d.frame["type"] == type_)
        ]


class Harness:
    """One engine of one kind, its recorder, and the helpers the tests share."""

    def __init__(self, kind: str, redis_url: str | None) -> None:
        self.kind = kind
        self.redis_url = redis_url
        self.events = Recorder()
        self.engine: Engine | None = None
        self.store: Store | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def open(self, *, history_size: int = 100, history_ttl: float = 3600.0) -> Engine:
        engine: Engine
        if self.kind == "memory":
            self.store = Store(":memory:")
            engine = MemoryEngine(self.store, history_size, history_ttl)
        else:
            config = Realtime(
                redis_url=self.redis_url,
                redis_prefix=f"contract-{secrets.token_hex(3)}",
                history_size=history_size,
                history_ttl=history_ttl,
                # The shortest node lease (MIN_NODE_LEASE): leases are reaped soonest.
                heartbeat_timeout=2.0,
            )
            engine = RedisEngine(config)
        engine.bind(self.events)
        self.loop = asyncio.get_running_loop()
        await engine.start()
        self.engine = engine
        return engine

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await engine.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    async def channel(
        self, name: str = "room", tenant: str = "acme", owner: str | None = "ada"
    ) -> ChannelKey:
        """A new channel that this node listens to."""
        assert self.engine is not None
        key = ChannelKey(tenant, name)
        _, created = await self.engine.channels.create(
            ChannelRecord(key, "presence", owner, clock())
        )
        assert created
        await self.engine.broker.listen(key)
        return key

    async def wait_for(self, predicate: Callable[[], Any], what: str = "") -> Any:
        deadline = time.monotonic() + WAIT
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {WAIT} s: {what or predicate}")
            await asyncio.sleep(0.01)

    async def settle(self, key: ChannelKey) -> None:
        """Everything published on `key` before now has been delivered."""
        assert self.engine is not None
        marker = secrets.token_hex(4)
        await self.engine.broker.publish(key, SETTLE_EVENT, marker, None, clock())
        await self.wait_for(
            lambda: any(
                d.key == key and d.frame.get("payload") == marker for d in self.events.deliveries
            ),
            f"the marker of {key}",
        )


# "cluster": the Redis engine on a real Redis Cluster (three masters, sharded pub/sub),
# started once for the session.
SERVERS = {"memory": None, "redis": "redis_server", "cluster": "redis_cluster"}


@pytest.fixture(params=list(SERVERS))
def engine(request: pytest.FixtureRequest) -> Iterator[Harness]:
    server = SERVERS[request.param]
    redis_url = request.getfixturevalue(server).url if server else None
    harness = Harness("memory" if server is None else "redis", redis_url)
    yield harness
    # The test's loop is not running any more: close on it what the test opened.
    if harness.loop is not None and not harness.loop.is_closed():
        harness.loop.run_until_complete(harness.close())


async def frames_of(engine: Harness, key: ChannelKey, type_: str, count: int) -> list[Delivery]:
    """Wait for `count` frames of `type_` on `key`; then, once the channel has
    settled, that there are no more than that."""
    await engine.wait_for(
        lambda: len(engine.events.of(key, type_)) >= count, f"{count} {type_} on {key}"
    )
    await engine.settle(key)
    frames = engine.events.of(key, type_)
    assert len(frames) == count, frames
    return frames


# -- the broker: ids, delivery, history ------------------------------------------


async def test_publish_gives_ids_in_one_order_and_delivers_them_as_published(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    sent = [
        ("chat", {"text": "héllo", "n": [1, 2.5, None, True]}, {"userId": "ada", "connectionId": "c1"}, "c1"),
        ("chat", "plain", {"userId": "bob", "connectionId": "c2"}, None),
        ("cursor", [1, 2], None, None),
        ("chat", None, {"userId": "ada", "connectionId": "c1"}, "c1"),
    ]  # fmt: skip
    ids = [
        await e.broker.publish(key, event, payload, sender, now + i, skip=skip)
        for i, (event, payload, sender, skip) in enumerate(sent)
    ]
    assert len(set(ids)) == len(ids)
    assert len({epoch_of(i) for i in ids}) == 1
    seqs = [seq_of(i) for i in ids]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    delivered = await frames_of(engine, key, "message", len(sent))
    assert [d.message_id for d in delivered] == ids
    for i, (d, (event, payload, sender, skip)) in enumerate(zip(delivered, sent, strict=True)):
        assert d.frame == {
            "type": "message",
            "channel": "room",
            "id": ids[i],
            "event": event,
            "payload": payload,
            "from": sender,
            "ts": int((now + i) * 1000),
        }
        assert d.skip == skip  # echo: false passes through; None otherwise

    # History gives back the same messages, and frames equal to the live ones.
    history = await e.broker.history(key, None, 100, now + 10)
    assert history.recovered
    assert [m.id for m in published(history)] == ids
    for m, d, (event, payload, sender, _) in zip(published(history), delivered, sent, strict=True):
        assert (m.channel, m.event, m.payload, m.sender) == ("room", event, payload, sender)
        assert orjson.loads(m.encoded()) == d.frame


async def test_concurrent_publishes_are_delivered_in_the_order_of_their_ids(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    ids = await asyncio.gather(*(e.broker.publish(key, "n", i, None, now) for i in range(30)))
    assert len(set(ids)) == 30
    by_seq = sorted(ids, key=seq_of)
    delivered = await frames_of(engine, key, "message", 30)
    assert [d.message_id for d in delivered] == by_seq
    assert [d.frame["id"] for d in delivered] == by_seq
    history = await e.broker.history(key, "", 100, now)
    assert [m.id for m in published(history)] == by_seq and history.recovered


async def test_history_since_none_gives_the_newest_limit(engine):
    e = await engine.open(history_size=10)
    key = await engine.channel()
    now = clock()
    empty = await e.broker.history(key, None, 3, now)
    assert empty.messages == [] and empty.recovered
    ids = [await e.broker.publish(key, "n", i, None, now) for i in range(5)]
    newest = await e.broker.history(key, None, 3, now)
    assert [m.id for m in newest.messages] == ids[2:]
    assert [m.payload for m in newest.messages] == [2, 3, 4]
    assert newest.recovered
    everything = await e.broker.history(key, None, 100, now)
    assert [m.id for m in everything.messages] == ids and everything.recovered


async def test_history_since_an_id_gives_exactly_what_follows_it(engine):
    e = await engine.open(history_size=10)
    key = await engine.channel()
    now = clock()
    nothing_yet = await e.broker.history(key, "", 100, now)
    assert nothing_yet.messages == [] and nothing_yet.recovered
    ids = [await e.broker.publish(key, "n", i, None, now) for i in range(5)]

    after_second = await e.broker.history(key, ids[1], 100, now)
    assert [m.id for m in after_second.messages] == ids[2:] and after_second.recovered
    after_last = await e.broker.history(key, ids[-1], 100, now)
    assert after_last.messages == [] and after_last.recovered
    since_start = await e.broker.history(key, "", 100, now)
    assert [m.id for m in since_start.messages] == ids and since_start.recovered
    # At most `limit` after `since`, the oldest first.
    limited = await e.broker.history(key, ids[0], 2, now)
    assert [m.id for m in limited.messages] == ids[1:3]


async def test_history_beyond_history_size_is_not_recovered(engine):
    e = await engine.open(history_size=3)
    key = await engine.channel()
    now = clock()
    ids = [await e.broker.publish(key, "n", i, None, now) for i in range(5)]
    retained = ids[2:]

    newest = await e.broker.history(key, None, 100, now)
    assert [m.id for m in newest.messages] == retained and newest.recovered
    # ids[0] is older than the window: ids[1] is gone, and the client must know.
    too_old = await e.broker.history(key, ids[0], 100, now)
    assert [m.id for m in too_old.messages] == retained and not too_old.recovered
    from_start = await e.broker.history(key, "", 100, now)
    assert [m.id for m in from_start.messages] == retained and not from_start.recovered
    # ids[1] is just before the window: nothing after it is missing.
    just_before = await e.broker.history(key, ids[1], 100, now)
    assert [m.id for m in just_before.messages] == retained and just_before.recovered


async def test_history_since_an_unknown_id_is_not_recovered(engine):
    e = await engine.open(history_size=10)
    key = await engine.channel()
    now = clock()
    ids = [await e.broker.publish(key, "n", i, None, now) for i in range(3)]
    epoch = epoch_of(ids[0])
    for since in ("nope-1", "zzz-5", f"{epoch}-99", "garbage"):
        history = await e.broker.history(key, since, 100, now)
        assert not history.recovered, since
        assert [m.id for m in history.messages] == ids, since


async def test_history_forgets_messages_older_than_history_ttl(engine):
    ttl = 60.0
    e = await engine.open(history_size=10, history_ttl=ttl)
    key = await engine.channel()
    now = clock()
    old = await e.broker.publish(key, "n", "old", None, now - 50)
    new = await e.broker.publish(key, "n", "new", None, now - 10)

    both = await e.broker.history(key, None, 100, now)
    assert [m.id for m in both.messages] == [old, new]
    later = now + 15  # `old` is 65 s old, `new` 25 s
    assert [m.id for m in (await e.broker.history(key, None, 100, later)).messages] == [new]
    after_old = await e.broker.history(key, old, 100, later)
    assert [m.id for m in after_old.messages] == [new] and after_old.recovered
    from_start = await e.broker.history(key, "", 100, later)
    assert [m.id for m in from_start.messages] == [new] and not from_start.recovered

    gone = now + ttl + 1
    assert (await e.broker.history(key, None, 100, gone)).messages == []
    expired = await e.broker.history(key, "", 100, gone)
    assert expired.messages == [] and not expired.recovered
    up_to_date = await e.broker.history(key, new, 100, gone)
    assert up_to_date.messages == [] and up_to_date.recovered


# -- presence -----------------------------------------------------------------------


async def test_a_user_is_one_member_however_many_connections(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    member, joined = await e.presence.join(key, ADA, "c1", now, meta={"tab": "notes"})
    assert joined
    assert (member.user_id, member.name, member.status, member.meta) == (
        "ada", "Ada", "online", {"tab": "notes"},
    )  # fmt: skip
    member, joined = await e.presence.join(key, ADA, "c2", now + 1, status="away")
    assert not joined and member.user_id == "ada" and member.status == "online"
    _, joined = await e.presence.join(key, ADA, "c1", now + 2)  # the same connection again
    assert not joined
    _, joined = await e.presence.join(key, BOB, "c3", now + 3)
    assert joined

    members = await e.presence.members(key)
    assert [m.user_id for m in members] == ["ada", "bob"]
    ada, bob = members
    assert ada.connections == {"c1", "c2"} and bob.connections == {"c3"}
    assert ada.to_wire() == {
        "userId": "ada",
        "name": "Ada",
        "status": "online",
        "meta": {"tab": "notes"},
        "joinedAt": int(now * 1000),
        "lastSeen": int((now + 2) * 1000),
        "connections": 2,
    }
    assert set(ada.to_wire()) == MEMBER_KEYS
    assert bob.to_wire() == {
        "userId": "bob",
        "name": "Bob",
        "status": "online",
        "meta": {},
        "joinedAt": int((now + 3) * 1000),
        "lastSeen": int((now + 3) * 1000),
        "connections": 1,
        "color": "#f00",
    }

    joins = await frames_of(engine, key, "user:joined", 2)
    assert [(d.skip, d.message_id) for d in joins] == [("c1", None), ("c3", None)]
    assert joins[0].frame == {
        "type": "user:joined",
        "channel": "room",
        "member": {
            "userId": "ada",
            "name": "Ada",
            "status": "online",
            "meta": {"tab": "notes"},
            "joinedAt": int(now * 1000),
            "lastSeen": int(now * 1000),
            "connections": 1,
        },
    }
    assert joins[1].frame["member"]["userId"] == "bob"


async def test_members_are_listed_by_user_id(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    for identity, connection in ((CY, "c1"), (BOB, "c2"), (ADA, "c3")):
        await e.presence.join(key, identity, connection, now)
    assert [m.user_id for m in await e.presence.members(key)] == ["ada", "bob", "cy"]


async def test_join_and_update_give_the_member_with_its_connections(engine):
    # The HTTP API answers a presence POST with this member (`connections`).
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    member, _ = await e.presence.join(key, ADA, "c1", now)
    assert member.connections == {"c1"} and member.to_wire()["connections"] == 1
    member, _ = await e.presence.join(key, ADA, "c2", now)
    assert member.connections == {"c1", "c2"} and member.to_wire()["connections"] == 2
    member = await e.presence.update(key, "ada", now, status="busy")
    assert member is not None
    assert member.connections == {"c1", "c2"} and member.to_wire()["connections"] == 2


async def test_the_last_connection_out_makes_the_user_leave_once(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    await e.presence.join(key, ADA, "c1", now, meta={"tab": "notes"})
    await e.presence.join(key, ADA, "c2", now)
    await e.presence.join(key, BOB, "c3", now)

    assert await e.presence.leave(key, "ada", "c2", now + 1) is None
    await engine.settle(key)
    assert engine.events.of(key, "user:left") == []
    assert [m.connections for m in await e.presence.members(key)] == [{"c1"}, {"c3"}]

    member = await e.presence.leave(key, "ada", "c1", now + 2)
    assert member is not None and member.user_id == "ada"
    # Gone already, or never there: nothing more happens.
    assert await e.presence.leave(key, "ada", "c1", now + 3) is None
    assert await e.presence.leave(key, "eve", "c9", now + 3) is None

    (left,) = await frames_of(engine, key, "user:left", 1)
    assert left.skip is None and left.message_id is None
    assert left.frame["channel"] == "room"
    assert left.frame["member"] == {
        "userId": "ada",
        "name": "Ada",
        "status": "offline",
        "meta": {"tab": "notes"},
        "joinedAt": int(now * 1000),
        "lastSeen": int((now + 2) * 1000),
        "connections": 0,
    }
    assert [m.user_id for m in await e.presence.members(key)] == ["bob"]

    (offline,) = await e.presence.offline(key)
    assert offline.user_id == "ada" and offline.status == "offline"
    assert offline.last_seen == now + 2
    assert set(offline.to_wire()) == MEMBER_KEYS
    assert offline.to_wire()["connections"] == 0


async def test_a_user_who_comes_back_is_no_longer_offline(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    await e.presence.join(key, ADA, "c1", now)
    await e.presence.leave(key, "ada", "c1", now + 1)
    assert [m.user_id for m in await e.presence.offline(key)] == ["ada"]
    _, joined = await e.presence.join(key, ADA, "c2", now + 2)
    assert joined
    assert [m.user_id for m in await e.presence.members(key)] == ["ada"]
    assert await e.presence.offline(key) == []


async def test_update_delivers_only_changes(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    await e.presence.join(key, ADA, "c1", now, meta={"tab": "notes"})

    member = await e.presence.update(key, "ada", now + 1, status="away")
    assert member is not None and member.user_id == "ada" and member.status == "away"
    assert await e.presence.update(key, "ada", now + 2, status="away") is None
    assert await e.presence.update(key, "ada", now + 2, meta={"tab": "notes"}) is None
    assert await e.presence.update(key, "ada", now + 2) is None
    assert await e.presence.update(key, "eve", now + 2, status="busy") is None
    member = await e.presence.update(key, "ada", now + 3, meta={"tab": "code"})
    assert member is not None and member.meta == {"tab": "code"} and member.status == "away"

    updates = await frames_of(engine, key, "presence:updated", 2)
    assert [(d.skip, d.message_id) for d in updates] == [(None, None), (None, None)]
    assert [d.frame["member"]["status"] for d in updates] == ["away", "away"]
    assert [d.frame["member"]["meta"] for d in updates] == [{"tab": "notes"}, {"tab": "code"}]
    assert all(d.frame["channel"] == "room" for d in updates)
    (ada,) = await e.presence.members(key)
    assert (ada.status, ada.meta) == ("away", {"tab": "code"})


async def test_update_with_equal_meta_changes_nothing(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    await e.presence.join(key, ADA, "c1", now, meta={"tab": "notes", "zoom": 2})
    # The same meta, its keys in another order: nothing changed.
    assert await e.presence.update(key, "ada", now + 1, meta={"zoom": 2, "tab": "notes"}) is None
    await engine.settle(key)
    assert engine.events.of(key, "presence:updated") == []


async def test_meta_compares_as_json_values_on_every_engine(engine):
    """1 and 1.0 (and 0 and -0.0) are one JSON number: no change; 1 and true are not."""
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    meta = {"zoom": 1, "cells": [2, {"x": 0}], "ratio": 0.5}
    await e.presence.join(key, ADA, "c1", now, meta=meta)
    same = {"cells": [2.0, {"x": -0.0}], "ratio": 0.5, "zoom": 1.0}
    assert await e.presence.update(key, "ada", now + 1, meta=same) is None
    await engine.settle(key)
    assert engine.events.of(key, "presence:updated") == []
    other = {"zoom": True, "cells": [2, {"x": 0}], "ratio": 0.5}
    member = await e.presence.update(key, "ada", now + 2, meta=other)
    assert member is not None and member.meta["zoom"] is True
    (updated,) = await frames_of(engine, key, "presence:updated", 1)
    assert updated.frame["member"]["meta"]["zoom"] is True


async def test_a_lease_that_is_not_renewed_ends(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    await e.presence.join(key, ADA, "http-ada", now, lease=1.0)
    await e.presence.join(key, BOB, "http-bob", now, lease=1.0)
    await e.presence.join(key, BOB, "http-bob", now, lease=60.0)  # renewed in time
    await e.presence.join(key, CY, "c1", now)  # no lease: lives as long as this node

    async def present() -> list[str]:
        return [m.user_id for m in await e.presence.members(key)]

    await e.presence.maintain(now + 0.5 if engine.kind == "memory" else time.time())
    assert await present() == ["ada", "bob", "cy"]

    if engine.kind == "memory":
        await e.presence.maintain(now + 2)
    else:
        # Redis leases run on Redis's clock, and a node reaps only once it has
        # been in touch with Redis for a whole node lease (MIN_NODE_LEASE).
        await asyncio.sleep(1.5)
        deadline = time.monotonic() + WAIT
        while "ada" in await present():
            assert time.monotonic() < deadline, "the lease of ada did not end"
            await e.presence.maintain(time.time())
            await asyncio.sleep(0.2)
    assert await present() == ["bob", "cy"]
    # Maintaining again changes nothing: ada left exactly once.
    await e.presence.maintain(now + 3 if engine.kind == "memory" else time.time())
    (left,) = await frames_of(engine, key, "user:left", 1)
    assert left.frame["member"]["userId"] == "ada"
    assert [m.user_id for m in await e.presence.offline(key)] == ["ada"]
    assert await e.presence.leave(key, "ada", "http-ada", time.time()) is None


# -- the registry ---------------------------------------------------------------------


async def test_create_get_and_list_channels(engine):
    e = await engine.open()
    now = clock()
    room = ChannelRecord(ChannelKey("acme", "room"), "private", "ada", now, ("bob", "ada"))
    channel, created = await e.channels.create(room)
    assert created
    assert channel == ChannelRecord(room.key, "private", "ada", now, ("ada", "bob"))
    again, created = await e.channels.create(ChannelRecord(room.key, "public", "eve", now + 5))
    assert not created and again == channel
    assert await e.channels.get(room.key) == channel
    assert await e.channels.get(ChannelKey("acme", "nowhere")) is None

    for name in ("zeta", "alpha"):
        await e.channels.create(ChannelRecord(ChannelKey("acme", name), "public", None, now))
    await e.channels.create(ChannelRecord(ChannelKey("globex", "beta"), "public", None, now))
    listed = await e.channels.list("acme")
    assert [c.key for c in listed] == [ChannelKey("acme", n) for n in ("alpha", "room", "zeta")]
    assert listed[1] == channel
    assert [c.key.name for c in await e.channels.list("globex")] == ["beta"]
    assert await e.channels.list("initech") == []


async def test_set_members_replaces_them_and_tells_every_node(engine):
    e = await engine.open()
    now = clock()
    key = ChannelKey("acme", "room")
    await e.channels.create(ChannelRecord(key, "private", "ada", now, ("ada", "bob")))
    await e.broker.listen(key)

    channel = await e.channels.set_members(key, ["cy", "ada"])
    assert channel == ChannelRecord(key, "private", "ada", now, ("ada", "cy"))
    assert await e.channels.get(key) == channel
    await engine.wait_for(lambda: key in engine.events.changed, "channel_changed")

    emptied = await e.channels.set_members(key, [])
    assert emptied.members == () and (await e.channels.get(key)).members == ()
    await engine.wait_for(lambda: engine.events.changed.count(key) >= 2, "channel_changed")
    await engine.settle(key)
    assert engine.events.changed == [key, key]


async def test_tenants_are_walls(engine):
    e = await engine.open(history_size=10)
    now = clock()
    pairs = [
        (ChannelKey("acme", "room"), ChannelKey("globex", "room")),
        # Keys that a plain "tenant:name" would make equal.
        (ChannelKey("a", "b:c"), ChannelKey("a:b", "c")),
    ]
    for mine, theirs in pairs:
        _, created = await e.channels.create(ChannelRecord(mine, "private", "ada", now, ("ada",)))
        assert created
        _, created = await e.channels.create(ChannelRecord(theirs, "public", "bob", now))
        assert created, theirs
        for key in (mine, theirs):
            await e.broker.listen(key)
        assert (await e.channels.get(mine)).owner == "ada"
        assert (await e.channels.get(theirs)).owner == "bob"

        message_id = await e.broker.publish(mine, "chat", "mine", None, now)
        await e.presence.join(mine, ADA, "c1", now)
        await e.channels.set_members(mine, ["ada", "cy"])
        await frames_of(engine, mine, "message", 1)
        await engine.wait_for(lambda mine=mine: mine in engine.events.changed)

        history = await e.broker.history(mine, "", 10, now)
        assert [m.id for m in published(history)] == [message_id] and history.recovered
        nothing = await e.broker.history(theirs, "", 10, now)
        assert nothing.messages == [] and nothing.recovered
        assert [m.user_id for m in await e.presence.members(mine)] == ["ada"]
        assert await e.presence.members(theirs) == []
        assert (await e.channels.get(theirs)).members == ()

        await engine.settle(theirs)
        assert engine.events.of(theirs) == []
        assert theirs not in engine.events.changed
    assert [c.key for c in await e.channels.list("acme")] == [ChannelKey("acme", "room")]
    assert [c.key for c in await e.channels.list("a")] == [ChannelKey("a", "b:c")]
    assert [c.key for c in await e.channels.list("a:b")] == [ChannelKey("a:b", "c")]


async def test_history_answers_are_bounded_by_limit_and_bytes_and_say_more(engine):
    """Reads are cut by `limit` and `max_bytes` (one message always comes) and say
    so with `more`; paging from the last id returns the rest, without a gap."""
    e = await engine.open(history_size=50)
    key = await engine.channel()
    now = clock()
    big = "x" * 1000
    ids = [await e.broker.publish(key, "n", {"i": i, "pad": big}, None, now) for i in range(10)]

    newest = await e.broker.history(key, None, 10, now, max_bytes=3500)
    assert [m.id for m in newest.messages] == ids[-3:] and newest.more
    oldest = await e.broker.history(key, "", 10, now, max_bytes=3500)
    assert [m.id for m in oldest.messages] == ids[:3] and oldest.more and oldest.recovered
    limited = await e.broker.history(key, ids[1], 2, now)
    assert [m.id for m in limited.messages] == ids[2:4] and limited.more

    paged: list[str] = []
    since = ""
    while True:
        page = await e.broker.history(key, since, 100, now, max_bytes=2500)
        paged += [m.id for m in page.messages]
        if not page.more:
            break
        since = page.messages[-1].id
    assert paged == ids
    one = await e.broker.history(key, ids[4], 10, now, max_bytes=10)
    assert [m.id for m in one.messages] == [ids[5]] and one.more  # one always comes
    everything = await e.broker.history(key, ids[4], 10, now)
    assert [m.id for m in everything.messages] == ids[5:] and not everything.more


async def test_registry_pages_counts_creators_and_collects_idle_channels(engine):
    e = await engine.open()
    now = clock()
    long_ago = now - 10_000
    for name in ("c", "a", "b", "d"):
        made = ChannelRecord(ChannelKey("acme", name), "public", None, long_ago, (), "ada")
        assert (await e.channels.create(made))[1]
    await e.channels.create(ChannelRecord(ChannelKey("acme", "owned"), "public", "bob", long_ago))
    page = await e.channels.list("acme", "", 2)
    assert [c.key.name for c in page] == ["a", "b"]
    assert [c.key.name for c in await e.channels.list("acme", "b", 2)] == ["c", "d"]
    assert await e.channels.count_created("acme", "ada") == 4
    assert await e.channels.count_created("globex", "ada") == 0

    # "b" was used lately, "c" has someone on it, "d" is listened to here.
    await e.broker.publish(ChannelKey("acme", "b"), "e", 1, None, now)
    identity = Identity("eve", "acme")
    await e.presence.join(ChannelKey("acme", "c"), identity, "conn-1", now)
    live = {ChannelKey("acme", "d")}
    e.commit()
    assert await e.channels.collect_idle(now - 100, live) == 1  # only "a"
    names = [c.key.name for c in await e.channels.list("acme")]
    assert names == ["b", "c", "d", "owned"]
    assert await e.channels.count_created("acme", "ada") == 3


# -- profiles ---------------------------------------------------------------------------


async def test_a_profile_is_kept_per_tenant_and_user(engine):
    e = await engine.open()
    now = clock()
    assert await e.profiles.get("acme", "ada") == Profile()
    chosen, channels = await e.profiles.update(ADA, {"name": "Countess", "color": "#abcdef"}, now)
    assert (chosen, channels) == (Profile("Countess", "#abcdef"), 0)  # she is on none
    assert await e.profiles.get("acme", "ada") == chosen
    # Tenants are walls, and users are apart; a tenant with a colon is no other tenant.
    assert await e.profiles.get("globex", "ada") == Profile()
    assert await e.profiles.get("acme", "bob") == Profile()
    assert await e.profiles.get("acme:ada", "") == Profile()
    # Keys left out stay; None clears.
    assert (await e.profiles.update(ADA, {"color": "#000000"}, now)).profile == Profile(
        "Countess", "#000000"
    )
    assert (await e.profiles.update(ADA, {"name": None}, now)).profile == Profile(None, "#000000")
    assert (await e.profiles.update(ADA, {"color": None}, now)).profile == Profile()
    assert await e.profiles.get("acme", "ada") == Profile()


async def test_the_names_of_a_tenant_are_those_shown_and_chosen(engine):
    """What a chosen name must not look like (issue 23, finding 7): every member
    who joined a presence channel of the tenant, by the name shown, and every name
    chosen; other tenants' are not there."""
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    assert await e.profiles.names("acme") == []
    await e.presence.join(key, BOB, "c1", now)
    await e.profiles.update(ADA, {"name": "Countess"}, now)  # never joined: chose one
    other = Identity("eve", "globex", name="Eve")
    await e.presence.join(ChannelKey("globex", key.name), other, "c2", now)
    assert set(await e.profiles.names("acme")) >= {("bob", "Bob"), ("ada", "Countess")}
    assert {user for user, _ in await e.profiles.names("acme")} == {"bob", "ada"}
    assert await e.profiles.names("globex") == [("eve", "Eve")]


async def test_a_member_joins_with_the_chosen_profile(engine):
    e = await engine.open()
    key = await engine.channel()
    now = clock()
    await e.profiles.update(BOB, {"name": "Robert", "color": "#123456"}, now)
    await e.profiles.update(ADA, {"color": "#654321"}, now)  # a colour only: her name stays
    bob, _ = await e.presence.join(key, BOB, "c1", now)
    ada, _ = await e.presence.join(key, ADA, "c2", now)
    cy, _ = await e.presence.join(key, CY, "c3", now)
    assert (bob.name, bob.color) == ("Robert", "#123456")
    assert (ada.name, ada.color) == ("Ada", "#654321")
    assert (cy.name, cy.color) == ("cy", None)
    joins = await frames_of(engine, key, "user:joined", 3)
    assert [(j.frame["member"]["name"], j.frame["member"].get("color")) for j in joins] == [
        ("Robert", "#123456"),
        ("Ada", "#654321"),
        ("cy", None),
    ]
    listed = {m.user_id: (m.name, m.color) for m in await e.presence.members(key)}
    assert listed == {"ada": ("Ada", "#654321"), "bob": ("Robert", "#123456"), "cy": ("cy", None)}


async def test_a_profile_change_updates_each_channel_of_the_user_once(engine):
    e = await engine.open()
    rooms = [await engine.channel(name) for name in ("one", "two", "three", "left")]
    one, two, three, left = rooms
    elsewhere = await engine.channel("room", tenant="globex")
    now = clock()
    await e.presence.join(one, ADA, "c1", now, meta={"doc": "a.ipynb"})
    await e.presence.join(one, ADA, "c2", now)  # a second tab: still one member
    await e.presence.join(two, ADA, "c1", now)
    await e.presence.join(three, ADA, "http-ada", now, lease=60.0)  # an HTTP member
    await e.presence.join(left, ADA, "c1", now)
    await e.presence.leave(left, "ada", "c1", now)
    await e.presence.join(elsewhere, Identity("ada", "globex", name="Other Ada"), "c9", now)
    for key in rooms:
        await e.presence.join(key, BOB, f"b-{key.name}", now)

    change = await e.profiles.update(ADA, {"name": "Countess", "color": "#abcdef"}, now + 1)
    assert change.channels == 3  # what it cost: one, two and three, not `left`
    for key in (one, two, three):
        (updated,) = await frames_of(engine, key, "presence:updated", 1)
        member = updated.frame["member"]
        assert (member["userId"], member["name"], member["color"]) == (
            "ada", "Countess", "#abcdef",
        )  # fmt: skip
        assert updated.skip is None  # her own tabs see it too
        shown = {m.user_id: (m.name, m.color) for m in await e.presence.members(key)}
        assert shown == {"ada": ("Countess", "#abcdef"), "bob": ("Bob", "#f00")}
    assert engine.events.of(one, "presence:updated")[0].frame["member"]["meta"] == {
        "doc": "a.ipynb"
    }  # nothing else about the member changed
    await engine.settle(left)
    await engine.settle(elsewhere)
    assert engine.events.of(left, "presence:updated") == []  # she had left it
    assert engine.events.of(elsewhere, "presence:updated") == []  # another tenant's ada

    # The same values again: nothing to show. Cleared: the identity's values, once more.
    await e.profiles.update(ADA, {"name": "Countess"}, now + 2)
    await e.profiles.update(ADA, {"name": None, "color": None}, now + 3)
    for key in (one, two, three):
        first, second = await frames_of(engine, key, "presence:updated", 2)
        assert (second.frame["member"]["name"], second.frame["member"].get("color")) == (
            "Ada",
            None,
        )
    assert [(m.name, m.color) for m in await e.presence.members(one)][0] == ("Ada", None)


# -- the Redis engine only: races between nodes --------------------------------------


# -- one wire format: both engines send the same bytes ----------------------------------

DEE = Identity("dee", "acme", name='Dee/Ä "D"', color="#0a0b0c", avatar_url="https://x.org/d.png")
EVE = Identity("eve", "acme", name="Eve")


async def _wire_of(engine: Harness) -> tuple[list[tuple[bytes, str | None]], list[bytes]]:
    """The same events on `engine`: every frame it delivered (ids without their random
    epoch, the marker messages of `settle` left out) and the member lists it answered."""
    e = await engine.open()
    key = await engine.channel()
    now, lists = 1795676700.0, []
    sender = {"userId": "ada", "connectionId": "c-1"}
    payload = {"text": "hi / there", "n": 1.5, "big": 2**60, "u": "é\u2028", "l": [None, True]}
    await e.broker.publish(key, "chat:message", payload, sender, now)
    await e.broker.publish(key, "tick", None, None, now + 0.0015)
    await e.profiles.update(EVE, {"name": "Evelyn/E", "color": "#abcdef"}, now)
    await e.presence.join(key, ADA, "c-1", now)
    await e.presence.join(key, BOB, "c-2", now + 1)
    await e.presence.join(key, BOB, "c-3", now + 2)  # a second tab: no event
    await e.presence.join(key, DEE, "c-4", now + 3, "busy", {"file": "a/b.ipynb"})
    await e.presence.join(key, EVE, "c-5", now + 4)  # shown as she chose
    await e.presence.join(key, CY, "c-6", now + 5, lease=30.0)  # an HTTP member
    lists.append(frames.encode(frames.members_wire(await e.presence.members(key))))
    await e.presence.update(key, "ada", now + 6, "away", {"z": [1, 2.5], "a": {"b": "/"}})
    await e.presence.update(key, "ada", now + 7, "away")  # no change: no event
    await e.profiles.update(BOB, {"name": "Robert/R", "color": "#123456"}, now + 8)
    await e.profiles.update(DEE, {"name": "Dee2"}, now + 9)
    await e.profiles.update(DEE, {"color": None}, now + 10)  # hers again: no change
    await e.profiles.update(EVE, {"name": None}, now + 11)
    lists.append(frames.encode(frames.members_wire(await e.presence.members(key))))
    await e.presence.leave(key, "bob", "c-3", now + 12)  # not his last: no event
    await e.presence.leave(key, "bob", "c-2", now + 13)
    await e.presence.leave(key, "dee", "c-4", now + 14)
    lists.append(frames.encode(frames.members_wire(await e.presence.members(key))))
    lists.append(frames.encode(frames.members_wire(await e.presence.offline(key))))
    history = await e.broker.history(key, "", 2, now)
    lists.append(
        re.sub(
            rb'"id":"[0-9A-Za-z]+-', b'"id":"E-', b"\n".join(m.encoded() for m in history.messages)
        )
    )
    await engine.settle(key)
    delivered = [
        (re.sub(rb'"id":"[0-9A-Za-z]+-', b'"id":"E-', frame), skip)
        for k, frame, skip in engine.events.raw
        if k == key and SETTLE_EVENT.encode() not in frame
    ]
    await engine.close()
    return delivered, lists


class _Plain(NamedTuple):
    url: str


@pytest.fixture(params=["redis", "cluster", "cluster-plain"])
def any_redis(request: pytest.FixtureRequest) -> Any:
    """One Redis, or the session's Redis Cluster (with sharded pub/sub, or plain
    PUBLISH/SUBSCRIBE: `sharded=no`): what has a `url`."""
    if request.param == "cluster-plain":
        return _Plain(request.getfixturevalue("redis_cluster").url + "?sharded=no")
    return request.getfixturevalue(SERVERS[request.param])


async def test_both_engines_send_byte_identical_frames(any_redis):
    memory, redis = Harness("memory", None), Harness("redis", any_redis.url)
    memory_frames, memory_lists = await _wire_of(memory)
    redis_frames, redis_lists = await _wire_of(redis)
    types = [orjson.loads(frame)["type"] for frame, _ in memory_frames]
    assert (
        types
        == ["message"] * 2 + ["user:joined"] * 5 + ["presence:updated"] * 4 + ["user:left"] * 2
    )
    assert redis_frames == memory_frames
    assert redis_lists == memory_lists
    # A message read back from history is the frame that was delivered.
    assert redis_lists[-1].split(b"\n") == [frame for frame, _ in memory_frames[:2]]
    message = orjson.loads(memory_frames[0][0])
    assert list(message) == ["type", "channel", "id", "event", "payload", "from", "ts"]
    member = orjson.loads(memory_lists[0])[1]  # bob
    assert list(member) == [
        "userId", "name", "color", "joinedAt", "status", "meta", "lastSeen", "connections"
    ]  # fmt: skip


@pytest.fixture
def redis_engine(any_redis: Any) -> Iterator[Harness]:
    harness = Harness("redis", any_redis.url)
    yield harness
    if harness.loop is not None and not harness.loop.is_closed():
        harness.loop.run_until_complete(harness.close())


@pytest.mark.parametrize("use", ["publish", "join"])
async def test_a_channel_used_while_it_is_being_collected_survives(redis_engine, monkeypatch, use):
    """Another node publishes or joins at the last moment before this node deletes
    an idle channel: the message (its history) and the member are kept."""
    engine = redis_engine
    e = await engine.open()
    assert isinstance(e, RedisEngine)
    now = clock()
    key = ChannelKey("acme", "idle")
    await e.channels.create(ChannelRecord(key, "public", None, now - 10_000, (), "ada"))

    redis = e.redis
    plain_run, plain_call = redis.run, redis.call
    raced: list[str] = []

    async def use_it() -> None:
        # What another node does, through the plain commands.
        raced.append(use)
        if use == "publish":
            await e.broker.publish(key, "e", "late", None, clock())
        else:
            await e.presence.join(key, ADA, "c1", clock())

    async def run(script: str, *args: Any) -> Any:
        if script == "collect" and not raced:
            await use_it()
        return await plain_run(script, *args)

    async def call(*command: Any) -> Any:
        # Whatever deletes the channel's record: the latest moment a racer can land.
        if command[0] in ("HDEL", "DEL") and not raced:
            await use_it()
        return await plain_call(*command)

    monkeypatch.setattr(redis, "run", run)
    monkeypatch.setattr(redis, "call", call)
    gone = await e.channels.collect_idle(now - 100, set())
    monkeypatch.undo()

    assert raced == [use] and gone == 0
    assert await e.channels.get(key) is not None
    assert await e.channels.count_created("acme", "ada") == 1
    if use == "publish":
        history = await e.broker.history(key, "", 10, clock())
        assert [m.payload for m in history.messages] == ["late"] and history.recovered
    else:
        assert [m.user_id for m in await e.presence.members(key)] == ["ada"]


async def test_the_collect_script_refuses_channels_in_use(redis_engine):
    engine = redis_engine
    e = await engine.open()
    assert isinstance(e, RedisEngine)
    now = clock()
    long_ago, cutoff = now - 10_000, now - 100
    names = ("idle", "member", "message", "left", "owned")
    for name in names:
        owner = "bob" if name == "owned" else None
        await e.channels.create(ChannelRecord(ChannelKey("acme", name), "public", owner, long_ago))
    await e.presence.join(ChannelKey("acme", "member"), ADA, "c1", now)
    await e.broker.publish(ChannelKey("acme", "message"), "e", 1, None, now)
    await e.presence.join(ChannelKey("acme", "left"), ADA, "c2", now)
    await e.presence.leave(ChannelKey("acme", "left"), "ada", "c2", now)

    def collect(name: str) -> Any:
        key = ChannelKey("acme", name)
        return e.channels.collect_one(key, cutoff)

    assert [await collect(name) for name in names] == [1, 0, 0, 0, 0]
    assert await collect("idle") == 0  # gone already
    assert [c.key.name for c in await e.channels.list("acme")] == sorted(names[1:])


async def two_nodes(redis_server: Any) -> tuple[RedisEngine, RedisEngine, Recorder, Recorder]:
    """Two Redis engines sharing one prefix: two nodes of one deployment."""
    config = Realtime(
        redis_url=redis_server.url,
        redis_prefix=f"nodes-{secrets.token_hex(3)}",
        heartbeat_timeout=2.0,
    )
    engines, recorders = [], []
    for _ in range(2):
        engine, recorder = RedisEngine(config), Recorder()
        engine.bind(recorder)
        await engine.start()
        engines.append(engine)
        recorders.append(recorder)
    return engines[0], engines[1], recorders[0], recorders[1]


async def eventually(check: Callable[[], Any], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT} s: {what}"
        await asyncio.sleep(0.01)


async def test_concurrent_listens_while_redis_is_unreachable_all_fail_cleanly(
    redis_server, monkeypatch
):
    """Every caller waiting on the same new channel's subscription is told that the
    engine is unavailable (what the hub answers `unavailable` on), none is left
    with a cancellation; once Redis is back, the channel can be listened to."""
    monkeypatch.setattr(redis_engine_module, "SUBSCRIBE_TIMEOUT", 1.0)
    a, b, _, got = await two_nodes(redis_server)
    key = ChannelKey("acme", "fresh")
    await a.channels.create(ChannelRecord(key, "public", None, clock()))
    redis_server.kill()
    await eventually(lambda: not b.broker._connected.is_set(), "the listener saw Redis go")
    try:
        results = await asyncio.gather(
            *(b.broker.listen(key) for _ in range(5)), return_exceptions=True
        )
        assert [type(r) for r in results] == [EngineUnavailable] * 5, results
        redis_server.start()

        async def retried(attempt: Callable[[], Any]) -> Any:
            # As clients do: the first tries may meet connections Redis closed.
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    return await attempt()
                except EngineUnavailable:
                    assert time.monotonic() < deadline, "Redis did not come back"
                    await asyncio.sleep(0.1)

        await retried(lambda: asyncio.gather(*(b.broker.listen(key) for _ in range(5))))
        message_id = await retried(lambda: a.broker.publish(key, "e", "after", None, clock()))
        await eventually(lambda: [d.message_id for d in got.of(key)] == [message_id], "delivery")
    finally:
        for engine in (a, b):
            await engine.close()


async def test_a_listen_cancelled_midway_does_not_break_the_channel(redis_server, monkeypatch):
    a, b, _, got = await two_nodes(redis_server)
    key = ChannelKey("acme", "fresh")
    await a.channels.create(ChannelRecord(key, "public", None, clock()))
    try:
        # The first caller is cancelled while its SUBSCRIBE is on its way.
        pubsub = b.broker._pubsub
        plain_subscribe, sent = pubsub.subscribe, asyncio.Event()

        async def slow_subscribe(*names: Any) -> Any:
            sent.set()
            await asyncio.sleep(0.2)
            return await plain_subscribe(*names)

        monkeypatch.setattr(pubsub, "subscribe", slow_subscribe)
        first = asyncio.ensure_future(b.broker.listen(key))
        await sent.wait()
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        # Every later subscriber of the channel on this node gets its messages.
        await asyncio.wait_for(asyncio.gather(*(b.broker.listen(key) for _ in range(5))), WAIT)
        message_id = await a.broker.publish(key, "e", "hello", None, clock())
        await eventually(lambda: [d.message_id for d in got.of(key)] == [message_id], "delivery")
    finally:
        for engine in (a, b):
            await engine.close()


async def test_a_sequence_that_goes_back_gives_no_id_twice_and_tells_the_listeners(
    any_redis,
):
    """Issue 23, 1b: Redis came back older than its last writes (here its sequence is
    put back by hand, the connections stay). A node that never saw the newer ids (one
    started after) hands one out again, which is the documented limit; the nodes that
    delivered it before deliver nothing under it and tell the channel's subscribers
    (resync_failed). A node that saw them starts a new epoch when it publishes."""
    a, b, got_a, got_b = await two_nodes(any_redis)
    late = RedisEngine(
        Realtime(redis_url=any_redis.url, redis_prefix=a.redis.prefix, heartbeat_timeout=2.0)
    )
    late.bind(Recorder())
    key = ChannelKey("acme", "room")
    await a.channels.create(ChannelRecord(key, "public", None, clock()))
    try:
        for node in (a, b):
            await node.broker.listen(key)
        before = [await a.broker.publish(key, "e", i, None, clock()) for i in range(5)]
        for got in (got_a, got_b):
            await eventually(lambda got=got: [d.message_id for d in got.of(key)] == before, "all")
        # Redis loses the last three writes: its sequence and stream are as after two.
        r, hist = a.redis.client, a.redis.key("hist", key)
        kept = await r.xrange(hist, "-", "0-2")
        await r.delete(hist)
        for entry_id, fields in kept:
            await r.xadd(hist, fields, id=entry_id)
        await r.hset(a.redis.key("meta", key), "seq", 2)

        await late.start()
        reused = await late.broker.publish(key, "e", "late", None, clock())
        assert reused == before[2]  # the limit: this node had seen nothing of the channel
        for got in (got_a, got_b):
            await eventually(lambda got=got: got.resyncs == [key], "the subscribers told")
            assert [d.message_id for d in got.of(key)] == before  # nothing under a used id

        fresh = await b.broker.publish(key, "e", "fresh", None, clock())
        assert fresh not in before and epoch_of(fresh) != epoch_of(before[0])
        for got in (got_a, got_b):
            await eventually(
                lambda got=got: [d.message_id for d in got.of(key)] == [*before, fresh],
                "the new epoch delivered",
            )
        history = await a.broker.history(key, before[-1], 100, clock())
        assert not history.recovered
        assert [m.id for m in history.messages] == [fresh]
        assert (await a.broker.publish(key, "e", "next", None, clock())) not in before
    finally:
        for engine in (a, b, late):
            await engine.close()


async def test_presence_put_back_after_redis_lost_it_keeps_status_and_meta(any_redis):
    """A user who set `away` and a file comes back as they were after Redis lost its
    data, whether they changed it through this node or another one."""
    a, b, _, got = await two_nodes(any_redis)
    here, there = ChannelKey("acme", "here"), ChannelKey("acme", "there")
    try:
        for key in (here, there):
            await a.channels.create(ChannelRecord(key, "presence", None, clock()))
            for node in (a, b):
                await node.broker.listen(key)
        now = clock()
        await b.presence.join(here, ADA, "c1", now)
        await b.presence.join(here, ADA, "c2", now)  # a second tab of hers
        await b.presence.update(here, "ada", now, status="away", meta={"file": "a.ipynb"})
        await b.presence.join(there, BOB, "c3", now)
        # Bob has a tab on node a too, and changes his status there.
        await a.presence.join(there, BOB, "c4", now)
        await a.presence.update(there, "bob", now, status="busy", meta={"file": "b.ipynb"})
        await a.presence.leave(there, "bob", "c4", now)
        await eventually(
            lambda: any(
                d.frame["type"] == "presence:updated" and d.frame["member"]["status"] == "busy"
                for d in got.of(there)
            ),
            "node b saw bob's change",
        )
        await b.redis.client.flushall()  # a Redis restarted without persistence
        await b.presence.maintain(time.time())  # b notices and puts its people back

        (ada,) = await b.presence.members(here)
        assert (ada.status, ada.meta, ada.connections) == (
            "away",
            {"file": "a.ipynb"},
            {"c1", "c2"},
        )
        (bob,) = await a.presence.members(there)
        assert (bob.status, bob.meta, bob.connections) == ("busy", {"file": "b.ipynb"}, {"c3"})
    finally:
        for engine in (a, b):
            await engine.close()


async def test_five_hundred_concurrent_subscribes_on_one_node_are_all_answered(redis_server):
    """Issue 23: with Redis healthy, a crowd of subscribes in flight at once on one
    node queue for the node's Redis connections instead of being told `unavailable`."""
    from nyo_realtime_ext.auth import Authenticator
    from nyo_realtime_ext.hub import Hub

    from .support.hub_world import Peer
    from .support.tokens import SECRET, make_token

    config = Realtime(
        jwt_secret=SECRET,
        redis_url=redis_server.url,
        redis_prefix=f"crowd-{secrets.token_hex(3)}",
        max_connections_per_user=0,
        rate_limit=0,
    )
    engine = RedisEngine(config)
    hub = Hub(config, engine, Authenticator(config), time.time)
    await engine.start()
    try:
        peers = []
        for i in range(500):
            peer = Peer()
            session = hub.connect(peer)
            auth = {"type": "auth", "token": make_token(f"u{i}")}
            await hub.receive(session, orjson.dumps(auth).decode())
            first = peer.take()[0]
            assert first["type"] == "authenticated", first
            peers.append((session, peer))
        # Four presence channels, each new to this node; every subscribe at once.
        await asyncio.gather(
            *(
                hub.receive(
                    s,
                    orjson.dumps(
                        {"type": "subscribe", "channel": f"crowd-{i % 4}", "ref": 1}
                    ).decode(),
                )
                for i, (s, _) in enumerate(peers)
            )
        )
        answers = [next(f for f in p.frames() if f.get("ref") == 1) for _, p in peers]
        refused = [a for a in answers if a["type"] != "subscribed"]
        assert not refused, f"{len(refused)} of 500 refused, e.g. {refused[0]}"
        members = await engine.presence.members(ChannelKey("default", "crowd-0"))
        assert len(members) == 125
    finally:
        await hub.shutdown()


async def test_a_profile_change_between_a_joins_two_steps_is_shown_by_the_join(any_redis):
    """On Redis a join is two steps on two slots (the user's: note the channel, read the
    profile; the channel's: join). A change landing between them reaches the channel
    before the member does, and the join shows it: never the older name."""
    a, b, got, _ = await two_nodes(any_redis)
    key = ChannelKey("acme", "race")
    if not b.redis.cluster:
        for engine in (a, b):
            await engine.close()
        pytest.skip("on one Redis a join is one step (join.lua reads the profile itself)")
    try:
        await a.channels.create(ChannelRecord(key, "presence", None, clock()))
        await a.broker.listen(key)
        plain_run = b.redis.run
        raced: list[str] = []

        async def run(script: str, *args: Any) -> Any:
            answer = await plain_run(script, *args)
            if script == "enter" and not raced:
                raced.append(script)  # node a changes her profile meanwhile
                await a.profiles.update(ADA, {"name": "Countess"}, clock())
            return answer

        b.redis.run = run  # type: ignore[method-assign]
        member, joined = await b.presence.join(key, ADA, "c1", clock())
        assert raced and joined and member.name == "Countess"
        await eventually(lambda: got.of(key, "user:joined"), "the join")
        assert got.of(key, "user:joined")[0].frame["member"]["name"] == "Countess"
        assert [m.name for m in await a.presence.members(key)] == ["Countess"]
        # A later change is shown as usual; it is the channel's first update (frames of
        # a channel arrive in its one order): the race showed nothing twice.
        await a.profiles.update(ADA, {"name": "Ada L."}, clock())
        await eventually(lambda: got.of(key, "presence:updated"), "the update")
        (update,) = got.of(key, "presence:updated")
        assert update.frame["member"]["name"] == "Ada L."
    finally:
        for engine in (a, b):
            await engine.close()


async def test_a_dead_nodes_members_are_gone_from_a_channel_nobody_listens_to(any_redis):
    """Reaping is per channel: a live node visits the channels it listens to or is on.
    A channel no live node visits drops a dead node's members when it is read."""
    a, b, _, _ = await two_nodes(any_redis)
    key = ChannelKey("acme", "unwatched")
    try:
        await b.channels.create(ChannelRecord(key, "presence", None, clock()))
        await b.presence.join(key, ADA, "c1", clock())
        await b.presence.join(key, BOB, "http-bob", clock(), lease=60.0)
        assert [m.user_id for m in await a.presence.members(key)] == ["ada", "bob"]
        await b.broker.stop()  # b dies: no retirement, no more renewals
        b.presence._local.clear()
        b.presence._mine.clear()
        deadline = time.monotonic() + WAIT
        while [m.user_id for m in await a.presence.members(key)] != ["bob"]:
            assert time.monotonic() < deadline, "ada stayed listed"
            await a.presence.maintain(time.time())  # a is healthy; it does not visit `key`
            await asyncio.sleep(0.2)
        assert [m.user_id for m in await a.presence.offline(key)] == ["ada"]
    finally:
        await a.close()
        await b.redis.client.aclose()


async def test_a_redis_pause_longer_than_the_lease_leaves_everyone_present(redis_server):
    """Issue 23, finding 17: Redis stopped (SIGSTOP) for two leases while a node's
    upkeep was asked. That upkeep runs when Redis comes back, when every lease has
    run out, and reaps the other node's people; the nodes put their own back, so
    both people are members again on both nodes, as they were."""
    import signal

    a, b, _, _ = await two_nodes(redis_server)
    key = ChannelKey("acme", "paused")
    lease = a.presence.lease
    try:
        await a.channels.create(ChannelRecord(key, "presence", None, clock()))
        for node in (a, b):
            await node.broker.listen(key)
        await a.presence.join(key, ADA, "c1", clock())
        await b.presence.join(key, BOB, "c2", clock())
        # In touch with Redis for a whole lease: from then on each node reaps.
        for _ in range(3):
            for node in (a, b):
                await node.presence.maintain(time.time())
            await asyncio.sleep(lease / 2)
        assert a.presence._reaping() and b.presence._reaping()

        process = redis_server.process
        process.send_signal(signal.SIGSTOP)
        try:
            late = asyncio.ensure_future(a.presence.maintain(time.time()))
            await asyncio.sleep(lease * 2)
        finally:
            process.send_signal(signal.SIGCONT)
        try:
            await late
        except EngineUnavailable:
            pass  # it timed out; what it sent ran all the same
        # Upkeep on both nodes for two leases: every channel is visited, each node
        # sees what it lost there and puts it back.
        deadline = time.monotonic() + lease * 2
        while time.monotonic() < deadline:
            for node in (a, b):
                try:
                    await node.presence.maintain(time.time())
                except EngineUnavailable:
                    pass  # the pool reconnecting
            await asyncio.sleep(0.2)
        for node in (a, b):
            members = await node.presence.members(key)
            assert sorted(m.user_id for m in members) == ["ada", "bob"], members
    finally:
        for engine in (a, b):
            await engine.close()
