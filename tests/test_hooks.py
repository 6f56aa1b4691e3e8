"""Application hooks in the hub: each one's success and failure, sync and async."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from nyo_realtime_ext.hooks import Client, Refused
from nyo_realtime_ext.models import ChannelKey
from nyo_realtime_ext.protocol import ProtocolError

from .hub_world import Peer, World
from .tokens import make_token


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


async def test_connect_and_disconnect_are_told_with_the_client_and_close_code() -> None:
    connected, disconnected = Recorder(), Recorder()
    world = World(on_connect=connected, on_disconnect=disconnected)
    ada, peer = await world.join("ada")
    await world.settle()
    (client,) = connected.calls[0]
    assert client == Client("ada", "acme", ada.id, "Ada")
    await world.send(ada, {"type": "auth", "token": make_token("ada", tenant="acme")})
    await world.settle()
    assert len(connected.calls) == 1  # a refreshed token is not a new connection
    world.hub.close(ada, 4408, "heartbeat timeout")
    await world.settle()
    assert disconnected.calls == [(client, 4408)]
    # A connection that never authenticated is nobody: no hook.
    world.hub.disconnect(world.hub.connect(Peer()))
    await world.settle()
    assert len(disconnected.calls) == 1


async def test_subscribe_hook_may_refuse_and_then_nothing_happens() -> None:
    async def on_subscribe(client: Client, channel: str) -> bool:
        await asyncio.sleep(0)
        return not channel.startswith("secret")

    world = World(on_subscribe=on_subscribe)
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "open", "ref": 1})
    await world.send(ada, {"type": "subscribe", "channel": "secret-plans", "ref": 2})
    ok, refused = peer.frames()
    assert ok["type"] == "subscribed"
    assert refused["code"] == "forbidden" and refused["ref"] == 2
    members = await world.hub.engine.presence.members(ChannelKey("acme", "secret-plans"))
    assert members == []


async def test_publish_hook_sees_the_message_and_may_refuse_over_both_transports() -> None:
    seen: list[tuple[str, str, Any]] = []

    def on_publish(client: Client, channel: str, event: str, payload: Any) -> bool:
        seen.append((client.connection_id, event, payload))
        if event == "spam":
            raise Refused
        return True

    world = World(on_publish=on_publish)
    ada, peer = await world.join("ada")
    await world.subscribe_all("room", [(ada, peer)])
    await world.send(
        ada, {"type": "broadcast", "channel": "room", "event": "hi", "payload": 1, "ref": 1}
    )
    await world.send(ada, {"type": "broadcast", "channel": "room", "event": "spam", "ref": 2})
    frames = peer.take()
    assert [f["type"] for f in frames] == ["message", "ack", "error"]
    assert frames[2]["code"] == "forbidden"
    identity = world.hub.auth.identify(make_token("bob", tenant="acme"))
    await world.hub.publish_http(identity, ChannelKey("acme", "room"), "hi", 2)
    assert seen == [(ada.id, "hi", 1), (ada.id, "spam", None), (None, "hi", 2)]
    assert [f["payload"] for f in peer.frames("message")] == [2]


async def test_a_failing_or_slow_hook_costs_one_internal_error_and_nothing_else(caplog) -> None:
    async def slow(client: Client, channel: str) -> bool:
        await asyncio.sleep(60)
        return True

    def broken(*args: Any) -> None:
        raise RuntimeError("the application's bug")

    world = World(on_subscribe=slow, on_publish=broken, on_connect=broken, hook_timeout=0.2)
    with caplog.at_level(logging.ERROR):
        ada, peer = await world.join("ada")  # on_connect fails: the connection stands
        bob, bob_peer = await world.join("bob")
        slow_subscribe = asyncio.ensure_future(
            world.send(ada, {"type": "subscribe", "channel": "room", "ref": 1})
        )
        # While ada's hook hangs, bob is served.
        await world.send(bob, {"type": "ping", "ref": "b"})
        assert bob_peer.frames("pong")
        await slow_subscribe
        (timed_out,) = peer.take()
        assert timed_out["code"] == "internal" and timed_out["ref"] == 1
        await world.settle()
    assert ada.closed is False and peer.closed_with is None
    assert "on_subscribe did not finish" in caplog.text and "hook on_connect failed" in caplog.text


async def test_hooks_can_be_import_strings() -> None:
    world = World(on_publish="tests.hooks:refuse_everything")
    ada, peer = await world.join("ada")
    await world.subscribe_all("room", [(ada, peer)])
    await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "ref": 1})
    assert peer.frames("error")[0]["code"] == "forbidden"


async def test_a_refusing_hook_leaves_no_channel_behind() -> None:
    world = World(
        on_subscribe=lambda client, channel: False, on_publish="tests.hooks:refuse_everything"
    )
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "fresh", "ref": 1})
    assert peer.frames("error")[0]["code"] == "forbidden"
    identity = world.hub.auth.identify(make_token("ada", tenant="acme"))
    with pytest.raises(ProtocolError) as caught:
        await world.hub.publish_http(identity, ChannelKey("acme", "also-fresh"), "e", 1)
    assert caught.value.code == "forbidden"
    for name in ("fresh", "also-fresh"):
        assert await world.hub.find_channel(ChannelKey("acme", name)) is None


async def test_a_connection_refused_for_its_users_quota_is_never_connected() -> None:
    connected = Recorder()
    world = World(max_connections_per_user=1, on_connect=connected)
    first, _ = await world.join("ada")
    second_peer = Peer()
    second = world.hub.connect(second_peer)
    await world.send(second, {"type": "auth", "token": make_token("ada", tenant="acme"), "ref": 5})
    (refused,) = second_peer.frames()
    assert refused["code"] == "limit_exceeded" and refused["ref"] == 5
    assert second_peer.closed_with[0] == 4429
    await world.settle()
    assert len(connected.calls) == 1  # the refused one never was
    world.hub.close(first, 1000, "bye")
    third, _ = await world.join("ada")  # its place is free again
    assert third.identity is not None
