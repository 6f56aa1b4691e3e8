"""Shared state (`state:set`, `state:changed`, the `state` snapshot), through the hub, on
both engines alike: the memory engine with SQLite, and Redis with its pub/sub.

Each test is what clients see: the frames they get, and that a refused write changes
nothing (no `state:changed`, the same snapshot, no version used up).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from .support.state_world import StateWorld

ID = re.compile(r"^([0-9a-f]+)-([0-9]+)$")


def seq(version: str) -> int:
    match = ID.match(version)
    assert match, version
    return int(match.group(2))


# "cluster": the Redis engine on a real Redis Cluster (tests/support/redis_cluster.py).
SERVERS = {"memory": None, "redis": "redis_server", "cluster": "redis_cluster"}


@pytest.fixture(params=list(SERVERS))
def make_world(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Factory of hubs on the engine of the test's parameter (closed at the end, on the
    loop the test ran in: async tests run on a loop of their own here)."""
    server = SERVERS[request.param]
    redis_url = request.getfixturevalue(server).url if server else None
    kind = "memory" if server is None else "redis"
    worlds: list[StateWorld] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def make(**config: Any) -> StateWorld:
        world = StateWorld(kind, redis_url, **config)
        worlds.append(world)
        loops.append(asyncio.get_running_loop())
        return await world.start()

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for world, loop in zip(worlds, loops, strict=True):
        if not world.hub.stopped and not loop.is_closed():
            loop.run_until_complete(world.close())


async def subscribed(world: StateWorld, user: str, channel: str = "room", **fields: Any) -> Any:
    session = await world.join(user)
    answer = await world.ask(session, {"type": "subscribe", "channel": channel, **fields})
    assert answer["type"] == "subscribed", answer
    return session


async def snapshot(world: StateWorld, user: str = "zed", channel: str = "room") -> Any:
    """The whole state as a newcomer gets it."""
    session = await subscribed(world, user, channel, state=True)
    frame = await session.peer.next("state")
    assert frame["complete"] is True
    return {e["key"]: e["value"] for e in frame["entries"]}


async def test_a_write_is_acked_with_its_version_and_reaches_every_state_subscriber(make_world):
    world = await make_world()
    ada = await subscribed(world, "ada", state=True)
    bob = await subscribed(world, "bob", state=True)
    cy = await subscribed(world, "cy")  # messages only
    assert (await ada.peer.next("state"))["entries"] == []

    ack = await world.ask(ada, {"type": "state:set", "channel": "room", "key": "x", "value": 1})
    assert ack["type"] == "ack" and ID.match(ack["id"])
    sender = {"userId": "ada", "connectionId": ada.id}
    expected = {
        "type": "state:changed",
        "channel": "room",
        "key": "x",
        "value": 1,
        "version": ack["id"],
        "from": sender,
    }
    assert await ada.peer.next("state:changed") == expected  # the writer too
    assert await bob.peer.next("state:changed") == expected
    assert list(expected) == ["type", "channel", "key", "value", "version", "from"]

    # Writes and messages share the channel's one sequence: a later message comes after.
    second = await world.ask(
        bob, {"type": "state:set", "channel": "room", "key": "y", "value": {"a": [1, None]}}
    )
    message = await world.ask(cy, {"type": "broadcast", "channel": "room", "event": "e"})
    assert seq(ack["id"]) < seq(second["id"]) < seq(message["id"])
    assert (await ada.peer.next("state:changed"))["version"] == second["id"]
    await cy.peer.next("message", id=message["id"])
    assert cy.peer.left("state:changed") == [] and cy.peer.frames("state:changed") == []
    assert await snapshot(world) == {"x": 1, "y": {"a": [1, None]}}


async def test_the_snapshot_follows_subscribed_sorted_by_key_without_deleted_keys(make_world):
    world = await make_world()
    ada = await subscribed(world, "ada")
    versions = {}
    for key, value in [("b", 2), ("a", "one"), ("c", [3]), ("b", 22), ("c", None)]:
        answer = await world.ask(
            ada, {"type": "state:set", "channel": "room", "key": key, "value": value}
        )
        versions[key] = answer["id"]
    bob = await world.join("bob")
    await world.send(bob, {"type": "subscribe", "channel": "room", "state": True, "ref": 1})
    frames = [orjson.loads(f) for f in bob.peer.sent[1:3]]
    assert [f["type"] for f in frames] == ["subscribed", "state"]  # right after it
    assert frames[1] == {
        "type": "state",
        "channel": "room",
        "entries": [
            {"key": "a", "value": "one", "version": versions["a"],
             "from": {"userId": "ada", "connectionId": ada.id}},
            {"key": "b", "value": 22, "version": versions["b"],
             "from": {"userId": "ada", "connectionId": ada.id}},
        ],
        "complete": True,
    }  # fmt: skip


async def test_a_delete_is_broadcast_and_the_key_leaves_the_snapshot(make_world):
    world = await make_world()
    ada = await subscribed(world, "ada", state=True)
    await world.ask(ada, {"type": "state:set", "channel": "room", "key": "k", "value": "v"})
    deleted = await world.ask(
        ada, {"type": "state:set", "channel": "room", "key": "k", "value": None}
    )
    await ada.peer.next("state:changed", value="v")
    change = await ada.peer.next("state:changed", version=deleted["id"])
    assert change["value"] is None and change["key"] == "k"
    assert await snapshot(world) == {}


async def test_a_resubscription_with_since_gets_only_what_changed_and_every_message(make_world):
    world = await make_world(history_size=5)
    ada = await subscribed(world, "ada", state=True)
    bob = await subscribed(world, "bob", state=True)
    for key in ("keep", "change", "drop"):
        await world.ask(ada, {"type": "state:set", "channel": "room", "key": key, "value": 0})
    last = await world.ask(ada, {"type": "broadcast", "channel": "room", "event": "e"})
    await bob.peer.next("message", id=last["id"])
    await world.ask(bob, {"type": "unsubscribe", "channel": "room"})

    # While Bob is away: state writes and a message, in one sequence.
    changed = await world.ask(
        ada, {"type": "state:set", "channel": "room", "key": "change", "value": 1}
    )
    dropped = await world.ask(
        ada, {"type": "state:set", "channel": "room", "key": "drop", "value": None}
    )
    missed = await world.ask(
        ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 2}
    )
    added = await world.ask(
        ada, {"type": "state:set", "channel": "room", "key": "new", "value": [1]}
    )

    back = await world.ask(
        bob, {"type": "subscribe", "channel": "room", "state": True, "since": last["id"]}
    )
    assert back["recovered"] is True  # the state writes' numbers are no gap in history
    delta = await bob.peer.next("state")
    sender = {"userId": "ada", "connectionId": ada.id}
    assert delta == {
        "type": "state",
        "channel": "room",
        "entries": [
            {"key": "change", "value": 1, "version": changed["id"], "from": sender},
            {"key": "drop", "value": None, "version": dropped["id"], "from": sender},
            {"key": "new", "value": [1], "version": added["id"], "from": sender},
        ],
        "complete": False,
    }
    assert (await bob.peer.next("message"))["id"] == missed["id"]
    assert bob.peer.left("state:changed") == []  # nothing twice

    # An id it cannot tell (another epoch, or nonsense): the whole state.
    carl = await subscribed(world, "carl", state=True, since="ffff-3")
    whole = await carl.peer.next("state")
    assert whole["complete"] is True
    assert [e["key"] for e in whole["entries"]] == ["change", "keep", "new"]


async def test_compare_and_set_refuses_a_stale_version_with_the_current_entry(make_world):
    world = await make_world()
    ada = await subscribed(world, "ada", state=True)
    bob = await subscribed(world, "bob", state=True)
    first = await world.ask(ada, {"type": "state:set", "channel": "room", "key": "n", "value": 1})
    second = await world.ask(
        bob,
        {"type": "state:set", "channel": "room", "key": "n", "value": 2, "ifVersion": first["id"]},
    )
    assert second["type"] == "ack"
    stale = await world.ask(
        ada,
        {"type": "state:set", "channel": "room", "key": "n", "value": 3, "ifVersion": first["id"]},
    )
    current = {
        "key": "n",
        "value": 2,
        "version": second["id"],
        "from": {"userId": "bob", "connectionId": bob.id},
    }
    assert stale == {
        "type": "error",
        "code": "conflict",
        "message": "`ifVersion` is not the entry's version: nothing changed",
        "ref": stale["ref"],
        "channel": "room",
        "entry": current,
    }
    exists = await world.ask(
        ada, {"type": "state:set", "channel": "room", "key": "n", "value": 4, "ifVersion": ""}
    )
    assert exists["code"] == "conflict" and exists["entry"] == current
    absent = await world.ask(
        ada,
        {"type": "state:set", "channel": "room", "key": "fresh", "value": 0, "ifVersion": "x-1"},
    )
    assert absent["code"] == "conflict" and absent["entry"] is None
    created = await world.ask(
        ada, {"type": "state:set", "channel": "room", "key": "fresh", "value": 0, "ifVersion": ""}
    )
    assert created["type"] == "ack"
    # Nothing of the refused writes happened, nor took a number.
    assert seq(created["id"]) == seq(second["id"]) + 1
    changes = [await ada.peer.next("state:changed") for _ in range(3)]
    assert [c["value"] for c in changes] == [1, 2, 0]
    assert ada.peer.left("state:changed") == []
    assert await snapshot(world) == {"n": 2, "fresh": 0}


async def test_per_user_keys_are_written_only_by_their_user(make_world):
    world = await make_world()
    ada = await subscribed(world, "ada", state=True)
    bob = await subscribed(world, "bob", state=True)
    mine = await world.ask(
        bob, {"type": "state:set", "channel": "room", "key": "~bob/vote", "value": "yes"}
    )
    assert mine["type"] == "ack"
    for key in ("~bob/vote", "~bob", "~bo/vote", "~"):
        forged = await world.ask(
            ada, {"type": "state:set", "channel": "room", "key": key, "value": "no"}
        )
        assert forged["code"] == "forbidden" and forged["channel"] == "room", forged
        assert "`~ada/`" in forged["message"]
    await ada.peer.next("state:changed", key="~bob/vote")
    assert ada.peer.left("state:changed") == []
    assert await snapshot(world) == {"~bob/vote": "yes"}


async def test_limits_each_have_their_error_and_change_nothing(make_world):
    world = await make_world(max_state_keys=2, max_state_value_size=100, max_state_bytes=150)
    ada = await subscribed(world, "ada", state=True)

    async def write(key: str, value: Any) -> dict[str, Any]:
        return await world.ask(
            ada, {"type": "state:set", "channel": "room", "key": key, "value": value}
        )

    too_large = await write("a", "x" * 99)  # 101 bytes encoded
    assert too_large["code"] == "payload_too_large"
    assert "max_state_value_size" in too_large["message"]
    assert (await write("a", "x" * 60))["type"] == "ack"  # a + 62 bytes
    assert (await write("b", 1))["type"] == "ack"
    third = await write("c", 1)
    assert third["code"] == "limit_exceeded" and "max_state_keys" in third["message"]
    full = await write("b", "y" * 90)  # 63 + 93 > 150
    assert full["code"] == "limit_exceeded" and "max_state_bytes" in full["message"]
    assert (await write("b", 2))["type"] == "ack"  # an existing key may change
    assert (await write("a", None))["type"] == "ack"  # a deleted key frees its place
    assert (await write("c", "z" * 80))["type"] == "ack"
    assert await snapshot(world) == {"b": 2, "c": "z" * 80}
    values = [(await ada.peer.next("state:changed"))["value"] for _ in range(5)]
    assert values == ["x" * 60, 1, 2, None, "z" * 80]
    assert ada.peer.left("state:changed") == []


async def test_bad_state_frames_are_bad_requests_that_change_nothing(make_world):
    world = await make_world()
    ada = await subscribed(world, "ada", state=True)
    bad = [
        ({"key": 1, "value": 1}, "bad_request"),
        ({"key": "", "value": 1}, "bad_request"),
        ({"key": "k" * 257, "value": 1}, "bad_request"),
        ({"key": "a\nb", "value": 1}, "bad_request"),
        ({"key": "k"}, "bad_request"),  # no value: null is how to delete
        ({"key": "k", "value": 1, "ifVersion": 3}, "bad_request"),
        ({"key": "k", "value": 1, "ifVersion": None}, "bad_request"),
    ]
    for fields, code in bad:
        answer = await world.ask(ada, {"type": "state:set", "channel": "room", **fields})
        assert answer["type"] == "error" and answer["code"] == code, (fields, answer)
    # Deeper than the encoder goes: refused before anything is stored.
    head = '{"type":"state:set","channel":"room","key":"k","ref":"d","value":'
    deep = head + "[" * 300 + "1" + "]" * 300 + "}"
    await world.hub.receive(ada.session, deep)
    assert (await ada.peer.next("error", ref="d"))["code"] == "bad_request"
    not_bool = await world.ask(ada, {"type": "subscribe", "channel": "other", "state": "yes"})
    assert not_bool["code"] == "bad_request"
    elsewhere = await world.ask(
        ada, {"type": "state:set", "channel": "other", "key": "k", "value": 1}
    )
    assert elsewhere["code"] == "not_subscribed"
    assert ada.peer.left("state:changed") == []
    assert await snapshot(world) == {}


async def test_writing_needs_the_publish_right_and_reading_the_subscribe_right(make_world):
    world = await make_world(authorize="tests.support.hooks.readers_all_writers_ada")
    ada = await subscribed(world, "ada", "private-notes", state=True)
    bob = await subscribed(world, "bob", "private-notes", state=True)
    assert (
        await world.ask(
            ada, {"type": "state:set", "channel": "private-notes", "key": "k", "value": 1}
        )
    )["type"] == "ack"
    refused = await world.ask(
        bob, {"type": "state:set", "channel": "private-notes", "key": "k", "value": 2}
    )
    assert refused["code"] == "forbidden"
    assert (await bob.peer.next("state:changed"))["value"] == 1
    assert bob.peer.left("state:changed") == []
    # Another tenant's channel of that name is another channel, with a state of its own.
    outsider = await world.join("eve", tenant="globex")
    await world.ask(outsider, {"type": "subscribe", "channel": "private-notes", "state": True})
    assert (await outsider.peer.next("state"))["entries"] == []
    assert await snapshot(world, "cy", "private-notes") == {"k": 1}


async def test_state_outlives_history_and_a_restart(make_world, tmp_path: Path):
    config: dict[str, Any] = {"history_size": 2}
    if make_world.kind == "memory":
        config["db_path"] = str(tmp_path / "state.db")
    world = await make_world(**config)
    ada = await subscribed(world, "ada")
    kept = await world.ask(
        ada, {"type": "state:set", "channel": "room", "key": "k", "value": "kept"}
    )
    for n in range(5):
        await world.ask(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": n})
    history = await world.engine.broker.history(
        world.hub.channels.states[next(iter(world.hub.channels.states))].channel.key,
        None,
        10,
        world.hub.clock(),
    )
    assert [m.payload for m in history.messages] == [3, 4]
    assert await snapshot(world) == {"k": "kept"}
    await world.close()

    # The same database file, or the same Redis with a new node.
    again = (
        await make_world(**config, prefix=world.prefix)
        if make_world.kind == "redis"
        else await make_world(**config)
    )
    bob = await subscribed(again, "bob", state=True, since=kept["id"])
    delta = await bob.peer.next("state")
    assert delta["complete"] is False and delta["entries"] == []  # nothing new since
    assert await snapshot(again) == {"k": "kept"}
    later = await again.ask(
        bob, {"type": "state:set", "channel": "room", "key": "k", "value": "new"}
    )
    assert seq(later["id"]) > seq(kept["id"])  # the sequence went on, ids never repeat


async def test_a_change_while_a_subscriber_is_set_up_arrives_once(make_world):
    world = await make_world()
    ada = await subscribed(world, "ada")
    for n in range(20):  # subscriptions and writes interleaved, on one loop
        bob = await world.join(f"bob{n}")
        await asyncio.gather(
            world.send(bob, {"type": "subscribe", "channel": "room", "state": True, "ref": 1}),
            world.send(
                ada, {"type": "state:set", "channel": "room", "key": "k", "value": n, "ref": 2}
            ),
        )
        state = await bob.peer.next("state")
        values = [e["value"] for e in state["entries"]]
        assert values == [n] or values == ([n - 1] if n else [])
        if values != [n]:
            assert (await bob.peer.next("state:changed"))["value"] == n
        # Settle with a later message; then nothing more of `k` may be there.
        mark = await world.ask(ada, {"type": "broadcast", "channel": "room", "event": "mark"})
        await bob.peer.next("message", id=mark["id"])
        assert [c["value"] for c in bob.peer.left("state:changed")] == []


async def _state_frames_of(world: StateWorld) -> list[bytes]:
    """What a state subscriber gets for one script of writes, with the run's own
    epoch and connection ids made neutral."""
    ada = await subscribed(world, "ada", state=True)
    bob = await subscribed(world, "bob", state=True)
    writes = [
        (ada, "k", {"n": [1, 2.5, None, True], "s": "héllo"}, None),
        (bob, "~bob/vote", "yes", None),
        (ada, "k", None, None),
        (bob, "list", [1, 2], ""),
    ]
    for session, key, value, if_version in writes:
        frame = {"type": "state:set", "channel": "room", "key": key, "value": value}
        if if_version is not None:
            frame["ifVersion"] = if_version
        assert (await world.ask(session, frame))["type"] == "ack"
    for _ in writes:
        await ada.peer.next("state:changed")
    carl = await subscribed(world, "carl", state=True)
    await carl.peer.next("state")
    sent = [d for d in ada.peer.sent + carl.peer.sent if b'"type":"state' in d]
    epoch = orjson.loads(sent[-1])["entries"][0]["version"].split("-")[0]
    neutral = []
    for data in sent:
        for session, name in ((ada, b"ADA"), (bob, b"BOB")):
            data = data.replace(session.id.encode(), name)
        neutral.append(data.replace(epoch.encode() + b"-", b"EPOCH-"))
    return neutral


async def test_both_engines_send_byte_identical_state_frames(redis_server):
    memory = await StateWorld("memory").start()
    redis = await StateWorld("redis", redis_server.url).start()
    try:
        from_memory = await _state_frames_of(memory)
        from_redis = await _state_frames_of(redis)
    finally:
        await memory.close()
        await redis.close()
    assert [orjson.loads(f)["type"] for f in from_memory] == ["state"] + ["state:changed"] * 4 + [
        "state"
    ]
    assert from_redis == from_memory


# -- Redis: several nodes ---------------------------------------------------------


async def test_state_crosses_redis_nodes_in_order_with_messages(redis_server):
    first = await StateWorld("redis", redis_server.url).start()
    second = await StateWorld("redis", redis_server.url, prefix=first.prefix).start()
    try:
        ada = await subscribed(first, "ada", state=True)
        bob = await subscribed(second, "bob", state=True)
        await bob.peer.next("state")
        written = []
        for n in range(5):
            written.append(
                (
                    await first.ask(
                        ada, {"type": "state:set", "channel": "room", "key": "k", "value": n}
                    )
                )["id"]
            )
            written.append(
                (
                    await first.ask(
                        ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": n}
                    )
                )["id"]
            )
        await bob.peer.next("message", id=written[-1])
        order = [
            orjson.loads(d).get("version") or orjson.loads(d).get("id")
            for d in bob.peer.sent
            if orjson.loads(d)["type"] in ("state:changed", "message")
        ]
        assert order == written  # one order across nodes, state and messages alike

        # The listener of the second node loses Redis: what was written meanwhile
        # arrives once it is back (from the state hash and the stream), once.
        redis = second.engine.redis  # type: ignore[attr-defined]
        await redis.client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        late = await first.ask(
            ada, {"type": "state:set", "channel": "room", "key": "late", "value": 1}
        )
        mark = await first.ask(ada, {"type": "broadcast", "channel": "room", "event": "mark"})
        await bob.peer.next("message", id=mark["id"])
        changes = [
            orjson.loads(d) for d in bob.peer.sent if orjson.loads(d)["type"] == "state:changed"
        ]
        assert [c["version"] for c in changes].count(late["id"]) == 1
    finally:
        await first.close()
        await second.close()


async def test_a_gap_filled_from_redis_brings_the_state_writes_in_it(redis_server):
    world = await StateWorld("redis", redis_server.url).start()
    try:
        ada = await subscribed(world, "ada", state=True)
        await ada.peer.next("state")
        write = await world.ask(
            ada, {"type": "state:set", "channel": "room", "key": "k", "value": 1}
        )
        message = await world.ask(ada, {"type": "broadcast", "channel": "room", "event": "e"})
        await ada.peer.next("state:changed", version=write["id"])
        await ada.peer.next("message", id=message["id"])
        # As if this node had missed both: the fill delivers them again, in order.
        broker = world.engine.broker  # type: ignore[attr-defined]
        key = next(iter(world.hub.channels.states))
        epoch = write["id"].rpartition("-")[0].encode()
        broker._last[key] = (epoch, seq(write["id"]) - 1)
        assert await broker._fill(key, seq(write["id"]) - 1, seq(message["id"]) + 1)
        again = [orjson.loads(d) for d in ada.peer.sent[-2:]]
        assert [(f["type"], f.get("version") or f.get("id")) for f in again] == [
            ("state:changed", write["id"]),
            ("message", message["id"]),
        ]
    finally:
        await world.close()


async def test_asking_for_state_on_a_subscribed_channel_gets_the_whole_of_it(make_world):
    world = await make_world()
    ada = await subscribed(world, "ada")
    bob = await subscribed(world, "bob")  # messages only, for now
    first = await world.ask(ada, {"type": "state:set", "channel": "room", "key": "a", "value": 1})
    again = await world.ask(bob, {"type": "subscribe", "channel": "room", "state": True})
    assert again["type"] == "subscribed" and "recovered" not in again
    whole = await bob.peer.next("state")
    assert whole["complete"] is True and [e["version"] for e in whole["entries"]] == [first["id"]]
    later = await world.ask(ada, {"type": "state:set", "channel": "room", "key": "b", "value": 2})
    assert (await bob.peer.next("state:changed"))["version"] == later["id"]
    assert bob.peer.left("state:changed") == []


async def test_the_applications_on_publish_hook_decides_state_writes_too(make_world):
    world = await make_world(on_publish="tests.support.hooks:keep_mallory_quiet")
    mallory = await subscribed(world, "mallory", "admin:board", state=False)
    ada = await subscribed(world, "ada", "admin:board", state=True)
    await ada.peer.next("state")
    refused = await world.ask(
        mallory, {"type": "state:set", "channel": "admin:board", "key": "k", "value": 1}
    )
    assert refused["code"] == "forbidden" and refused["message"] == "refused by the application"
    allowed = await world.ask(
        ada, {"type": "state:set", "channel": "admin:board", "key": "k", "value": 2}
    )
    assert (await ada.peer.next("state:changed"))["version"] == allowed["id"]
    assert ada.peer.left("state:changed") == []
