"""The hub's HTTP-facing methods without sockets: a clock we move, peers that record."""

from __future__ import annotations

from typing import Any

import pytest

from nyo_realtime_ext.models import ChannelKey, Identity
from nyo_realtime_ext.protocol import ErrorCode, ProtocolError

from .support.hub_world import World
from .support.tokens import make_token


def identity(world: World, user: str, tenant: str = "acme", **claims: Any) -> Identity:
    return world.hub.auth.identify(make_token(user, tenant=tenant, **claims))


async def expect_error(code: str, call: Any, *args: Any) -> None:
    with pytest.raises(ProtocolError) as caught:
        await call(*args)
    assert caught.value.code == code


ROOM = ChannelKey("acme", "presence-room")


async def test_http_member_expires_after_heartbeat_timeout_like_a_closed_connection() -> None:
    world = World(heartbeat_timeout=10.0)
    session, peer = await world.join("ada")
    await world.send(session, {"type": "subscribe", "channel": ROOM.name})
    peer.take()
    bob = identity(world, "bob")

    member = await world.hub.http_presence(bob, ROOM, "away", {"k": 1})
    assert member.connections and next(iter(member.connections)).startswith("http-")
    (joined,) = peer.take()
    assert joined["type"] == "user:joined" and joined["member"]["status"] == "away"

    # Leases expire in the engine's periodic maintenance, not in the hub's tick.
    world.clock.now += 9.0
    await world.hub.maintain()
    await world.hub.http_presence(bob, ROOM, None, None)  # heartbeat, nothing to announce
    assert peer.take() == []
    world.clock.now += 9.0
    await world.hub.maintain()
    assert peer.take() == []  # 9 s since the heartbeat: still here

    world.clock.now += 1.5
    await world.hub.maintain()
    (left,) = peer.take()
    assert left["type"] == "user:left" and left["member"]["userId"] == "bob"
    (record,) = [m for m in world.store.presence_records(ROOM, online=False)]
    assert record.user_id == "bob" and record.status == "offline"
    assert [m.user_id for m in await world.hub.http_members(bob, ROOM)] == ["ada"]


async def test_http_and_websocket_connections_of_one_user_make_one_member() -> None:
    world = World(heartbeat_timeout=10.0)
    watcher, peer = await world.join("ada")
    await world.send(watcher, {"type": "subscribe", "channel": ROOM.name})
    bob_session, _ = await world.join("bob")
    await world.send(bob_session, {"type": "subscribe", "channel": ROOM.name})
    peer.take()
    bob = identity(world, "bob")

    assert len((await world.hub.http_presence(bob, ROOM, None, None)).connections) == 2
    assert peer.take() == []  # no second join
    world.hub.disconnect(bob_session)
    await world.settle()
    assert peer.take() == []  # the HTTP connection keeps bob here
    await world.hub.http_leave(bob, ROOM)
    assert [f["type"] for f in peer.take()] == ["user:left"]
    await world.hub.http_leave(bob, ROOM)  # again: harmless
    assert peer.take() == []


async def test_http_presence_rules() -> None:
    world = World()
    ada = identity(world, "ada")
    await world.hub.create_channel(ada, ChannelKey("acme", "plain"), "public", ())
    await expect_error(
        ErrorCode.CONFLICT, world.hub.http_presence, ada, ChannelKey("acme", "plain"), None, None
    )
    await world.hub.create_channel(ada, ChannelKey("acme", "vip"), "private", ())
    await world.hub.change_members(ada, ChannelKey("acme", "vip"), [])
    bob = identity(world, "bob")
    await expect_error(
        ErrorCode.FORBIDDEN, world.hub.http_presence, bob, ChannelKey("acme", "vip"), None, None
    )
    await expect_error(ErrorCode.NOT_FOUND, world.hub.http_leave, bob, ChannelKey("acme", "never"))


async def test_reads_of_an_unknown_channel_never_create_it() -> None:
    world = World()
    ada = identity(world, "ada")
    key = ChannelKey("acme", "ghost")
    await expect_error(ErrorCode.NOT_FOUND, world.hub.read_history, ada, key, None, 10)
    await expect_error(ErrorCode.NOT_FOUND, world.hub.http_members, ada, key)
    await expect_error(ErrorCode.NOT_FOUND, world.hub.readable_channel, ada, key)
    await expect_error(ErrorCode.NOT_FOUND, world.hub.change_members, ada, key, ["bob"])
    assert await world.hub.find_channel(key) is None
    assert world.store.get_channel(key) is None


async def test_explicit_channels_have_an_owner_who_alone_changes_members() -> None:
    world = World()
    ada = identity(world, "ada", channels=["private-team"])
    bob = identity(world, "bob")
    key = ChannelKey("acme", "private-team")
    channel = await world.hub.create_channel(ada, key, "private", ("bob",))
    assert channel.owner == "ada" and channel.members == ("bob",)
    granted_bob = identity(world, "bob", channels=["private-*"])
    await expect_error(
        ErrorCode.CONFLICT, world.hub.create_channel, granted_bob, key, "private", ()
    )
    await expect_error(ErrorCode.FORBIDDEN, world.hub.change_members, bob, key, ["bob", "eve"])
    assert (await world.hub.change_members(ada, key, ["eve"])).members == ("eve",)
    await expect_error(ErrorCode.FORBIDDEN, world.hub.read_history, bob, key, None, 10)
    assert [c.key.name for c in (await world.hub.visible_channels(bob))[0]] == []
    eve = identity(world, "eve")
    assert [c.key.name for c in (await world.hub.visible_channels(eve))[0]] == [key.name]
    # Another tenant sees none of it.
    assert await world.hub.visible_channels(identity(world, "ada", tenant="globex")) == ([], None)


async def test_http_publish_reaches_subscribers_and_wakes_watchers_naming_no_connection() -> None:
    world = World()
    session, peer = await world.join("ada")
    await world.send(session, {"type": "subscribe", "channel": "room"})
    peer.take()
    woken: list[Any] = []
    key = ChannelKey("acme", "room")
    cancel = await world.hub.channels.observe(key, woken.append)
    message_id = await world.hub.publish_http(identity(world, "bob"), key, "chat", {"t": 1})
    (frame,) = peer.take()
    # Over HTTP the publisher is named, without a connection (docs/protocol.md).
    assert frame["id"] == message_id
    assert frame["from"] == {"userId": "bob", "connectionId": None}
    assert woken == [message_id]
    cancel()  # after the wake: a no-op


async def test_a_subscriber_removed_from_the_member_list_is_put_out_at_once() -> None:
    world = World()
    key = ChannelKey("acme", "private-team")
    owner = identity(world, "owner", channels=["private-team"])
    await world.hub.create_channel(owner, key, "private", ("bob", "carl"))
    bob, bob_peer = await world.join("bob")
    carl, carl_peer = await world.join("carl")
    for session in (bob, carl):
        await world.send(session, {"type": "subscribe", "channel": key.name})
    bob_peer.take(), carl_peer.take()
    await world.hub.change_members(identity(world, "owner"), key, ["carl"])
    await world.settle()  # the hub reloads the channel when the engine says it changed
    assert bob_peer.take() == [{"type": "unsubscribed", "channel": key.name, "reason": "forbidden"}]
    await world.hub.publish_http(identity(world, "owner"), key, "e", "after")
    assert bob_peer.take() == []
    assert [f["payload"] for f in carl_peer.frames("message")] == ["after"]


async def test_private_names_cannot_be_squatted_and_prefixes_match_types() -> None:
    """Nobody creates `private-…` without the right to subscribe to it, as any type;
    `presence-…` is a presence channel. A refused creation leaves nothing behind."""
    world = World()
    mallory = identity(world, "mallory")
    payroll = ChannelKey("acme", "private-payroll")
    await expect_error(
        ErrorCode.FORBIDDEN, world.hub.create_channel, mallory, payroll, "private", ()
    )
    await expect_error(
        ErrorCode.BAD_REQUEST, world.hub.create_channel, mallory, payroll, "public", ()
    )
    lobby = ChannelKey("acme", "presence-lobby")
    await expect_error(
        ErrorCode.BAD_REQUEST, world.hub.create_channel, mallory, lobby, "public", ()
    )
    assert await world.hub.find_channel(payroll) is None
    assert await world.hub.find_channel(lobby) is None
    # With a grant for it, the name can be created (and owned) as what it says it is.
    hr = identity(world, "hr", channels=["private-payroll"])
    created = await world.hub.create_channel(hr, payroll, "private", ("ada",))
    assert created.type == "private" and created.owner == "hr"
    assert (await world.hub.create_channel(mallory, lobby, "presence", ())).type == "presence"
    # Names without a prefix may be of any type.
    plain = await world.hub.create_channel(mallory, ChannelKey("acme", "notes"), "private", ())
    assert plain.type == "private" and plain.owner == "mallory"
