"""Application hooks in the hub: each one's success and failure, sync and async."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from nyo_realtime_ext.hooks import Client, HookFailed, Refused
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


# -- on_subscribe decides every read, over both transports (issue 23) -----------------


async def test_on_subscribe_decides_every_way_to_read_a_channel_or_be_on_it() -> None:
    asked: list[tuple[str | None, str]] = []

    def keep_mallory_out(client: Client, channel: str) -> bool:
        asked.append((client.connection_id, channel))
        return not (client.user_id == "mallory" and "admin" in channel)

    world = World(on_subscribe=keep_mallory_out)
    admin, admin_peer = await world.join("admin")
    await world.subscribe_all("admin:payroll", [(admin, admin_peer)])
    await world.send(
        admin, {"type": "broadcast", "channel": "admin:payroll", "event": "pay", "payload": "$$"}
    )
    admin_peer.take()
    hub, key = world.hub, ChannelKey("acme", "admin:payroll")
    mallory = hub.auth.identify(make_token("mallory", tenant="acme", channels=["private-*"]))
    asked.clear()

    refusals = [
        (hub.read_history, (mallory, key, None, 10)),
        (hub.read_history, (mallory, key, "", 10)),
        (hub.http_members, (mallory, key)),
        (hub.http_members, (mallory, key, True)),
        (hub.readable_channel, (mallory, key)),
        (hub.change_members, (mallory, key, ["mallory"])),
        (hub.http_presence, (mallory, key, None, None)),
        (hub.http_presence, (mallory, key, "online", {"k": 1})),
        (hub.http_presence, (mallory, ChannelKey("acme", "admin:new"), None, None)),
        (hub.create_channel, (mallory, ChannelKey("acme", "private-admin"), "private", ())),
    ]
    for call, args in refusals:
        with pytest.raises(ProtocolError) as caught:
            await call(*args)
        assert caught.value.code == "forbidden", call
        assert caught.value.message == "refused by the application"
    # Each was the hook's decision, asked as over HTTP: no connection.
    assert len(asked) == len(refusals) and {c for c, _ in asked} == {None}
    names = [c.key.name for c in (await hub.visible_channels(mallory))[0]]
    assert names == []
    # And over the WebSocket, the same decision.
    session, peer = await world.join("mallory")
    await world.send(session, {"type": "subscribe", "channel": key.name, "since": "", "ref": 1})
    (refused,) = peer.take()
    assert refused["code"] == "forbidden" and refused["ref"] == 1
    # Nothing changed: the admin saw nobody join, nobody else is a member, nothing was made.
    await world.settle()
    assert admin_peer.take() == []
    assert [m.user_id for m in await hub.members_of(key)] == ["admin"]
    for name in ("admin:new", "private-admin"):
        assert await hub.find_channel(ChannelKey("acme", name)) is None
    # Whoever the hook lets in reads as before.
    bob = hub.auth.identify(make_token("bob", tenant="acme"))
    history = await hub.read_history(bob, key, None, 10)
    assert [m.payload for m in history.messages] == ["$$"]
    assert [c.key.name for c in (await hub.visible_channels(bob))[0]] == [key.name]


class Truthless:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth in me")

    def __repr__(self) -> str:
        raise RuntimeError("nor a repr")


UNEXPECTED = ["no", "", 0, 1, object(), Truthless(), [], {"allow": True}]
UNEXPECTED_IDS = ["no", "empty", "zero", "one", "object", "truthless", "list", "dict"]


@pytest.mark.parametrize("answer", UNEXPECTED, ids=UNEXPECTED_IDS)
async def test_an_unexpected_on_subscribe_answer_fails_closed_once_logged(
    answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def hook(client: Client, channel: str) -> Any:
        return answer if channel.startswith("room") else True

    world = World(on_subscribe=hook)
    admin, admin_peer = await world.join("admin")
    await world.subscribe_all("lobby", [(admin, admin_peer)])
    ada, peer = await world.join("ada")
    key = ChannelKey("acme", "room")
    with caplog.at_level(logging.ERROR, logger="nyo_realtime_ext"):
        await world.send(ada, {"type": "subscribe", "channel": "room", "ref": 1})
    (failed,) = peer.take()
    assert failed["type"] == "error" and failed["code"] == "internal" and failed["ref"] == 1
    (record,) = caplog.records
    assert "hook on_subscribe answered" in record.getMessage()
    assert await world.hub.find_channel(key) is None  # refused before anything was made
    # Over HTTP: the same failure (the API's 500), once logged, and no member.
    await world.hub.publish_from_server(key, "e", "secret")
    bob = world.hub.auth.identify(make_token("bob", tenant="acme"))
    for call, args in [
        (world.hub.read_history, (bob, key, None, 10)),
        (world.hub.http_presence, (bob, key, None, None)),
        (world.hub.http_members, (bob, key)),
    ]:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="nyo_realtime_ext"):
            with pytest.raises(HookFailed):
                await call(*args)
        assert len(caplog.records) == 1
    assert await world.hub.members_of(key) == []
    await world.settle()
    assert admin_peer.take() == [] and ada.closed is False


@pytest.mark.parametrize("answer", UNEXPECTED[:6], ids=UNEXPECTED_IDS[:6])
async def test_an_unexpected_on_publish_answer_fails_closed(answer: Any, caplog) -> None:
    world = World(on_publish=lambda client, channel, event, payload: answer)
    ada, peer = await world.join("ada")
    await world.subscribe_all("room", [(ada, peer)])
    with caplog.at_level(logging.ERROR, logger="nyo_realtime_ext"):
        await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "ref": 1})
    assert [(f["type"], f.get("code")) for f in peer.take()] == [("error", "internal")]
    assert len(caplog.records) == 1
    identity = world.hub.auth.identify(make_token("ada", tenant="acme"))
    with pytest.raises(HookFailed):
        await world.hub.publish_http(identity, ChannelKey("acme", "room"), "e", 1)
    assert (
        await world.hub.read_history(identity, ChannelKey("acme", "room"), None, 10)
    ).messages == []


@pytest.mark.parametrize(("answer", "allowed"), [(True, True), (None, True), (False, False)])
async def test_true_and_none_allow_and_false_refuses(answer: Any, allowed: bool) -> None:
    world = World(on_subscribe=lambda client, channel: answer)
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "room", "ref": 1})
    (frame,) = peer.take()
    assert frame["type"] == ("subscribed" if allowed else "error")
    bob = world.hub.auth.identify(make_token("bob", tenant="acme"))
    key = ChannelKey("acme", "room")
    if allowed:
        assert (await world.hub.http_presence(bob, key, None, None)).user_id == "bob"
    else:
        with pytest.raises(ProtocolError) as caught:
            await world.hub.http_presence(bob, key, None, None)
        assert caught.value.code == "forbidden"
