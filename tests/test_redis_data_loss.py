"""Issue 23, finding 13: when Redis loses its data (a restart without persistence,
FLUSHALL), a members-only channel stays members-only. The nodes that listen to it
put its record back (type, owner, members), so nobody else can make it anew as an
open channel, or take it over by creating it."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from nyo_realtime_ext.models import ChannelKey

from .support.state_world import Joined, StateWorld

pytestmark = pytest.mark.hardening

SERVERS = {"redis": "redis_server", "cluster": "redis_cluster"}
SECRET_ROOM = ChannelKey("acme", "room:secret")


@pytest.fixture(params=list(SERVERS))
def redis_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(SERVERS[request.param]).url)


async def nodes(redis_url: str) -> tuple[StateWorld, StateWorld, Joined]:
    """Node `a`, where Olivia made `room:secret` for Bob and Bob is subscribed; node `c`,
    which has never heard of it."""
    prefix = f"loss-{secrets.token_hex(3)}"
    a = await StateWorld("redis", redis_url, prefix=prefix).start()
    c = await StateWorld("redis", redis_url, prefix=prefix).start()
    olivia = await a.join("olivia")
    assert olivia.session.identity is not None
    await a.hub.create_channel(olivia.session.identity, SECRET_ROOM, "private", ("bob",))
    bob = await a.join("bob")
    assert (await a.ask(bob, {"type": "subscribe", "channel": SECRET_ROOM.name}))[
        "type"
    ] == "subscribed"
    return a, c, bob


async def flush(world: StateWorld) -> None:
    client: Any = world.engine.redis.client  # type: ignore[attr-defined]
    if hasattr(client, "get_primaries"):
        for node in client.get_primaries():
            await client.execute_command("FLUSHALL", target_nodes=node)
    else:
        await client.flushall()


async def assert_still_secret(a: StateWorld, c: StateWorld, bob: Joined) -> None:
    mallory = await c.join("mallory")
    answer = await c.ask(mallory, {"type": "subscribe", "channel": SECRET_ROOM.name})
    assert (answer["type"], answer.get("code")) == ("error", "forbidden"), answer
    record = await c.hub.find_channel(SECRET_ROOM)
    assert record is not None
    assert (record.type, record.owner, record.members) == ("private", "olivia", ("bob",))
    # Bob, a member, still gets what is sent there; Mallory does not.
    await a.hub.publish_from_server(SECRET_ROOM, "e", "salaries")
    assert (await bob.peer.next("message"))["payload"] == "salaries"
    assert mallory.peer.left("message") == []


async def test_a_node_puts_back_the_records_it_knows_when_redis_lost_its_data(redis_url):
    a, c, bob = await nodes(redis_url)
    try:
        await flush(a)
        # The node's next round of upkeep sees that Redis forgot it, and restores.
        await a.engine.presence.maintain(time.time())
        await assert_still_secret(a, c, bob)
    finally:
        await a.close()
        await c.close()


async def test_a_node_that_finds_a_record_missing_puts_it_back_before_anyone_remakes_it(
    redis_url,
):
    a, c, bob = await nodes(redis_url)
    try:
        await flush(a)
        # Before any upkeep: node a reads the record from Redis (as it does when
        # told the channel changed) and finds none; it puts back the one it knows
        # rather than report none.
        record = await a.engine.channels.get(SECRET_ROOM)
        assert record is not None and record.type == "private"
        await assert_still_secret(a, c, bob)
    finally:
        await a.close()
        await c.close()
