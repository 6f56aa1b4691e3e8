"""Application hooks in the hub: each one's success and failure, sync and async."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from nyo_realtime_ext.hooks import Client, HookFailed, Refused
from nyo_realtime_ext.models import ChannelKey
from nyo_realtime_ext.protocol import ProtocolError

from .support.hooks import stubborn
from .support.httpclient import api_of
from .support.hub_world import Peer, World
from .support.tokens import make_token


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
    world = World(on_publish="tests.support.hooks:refuse_everything")
    ada, peer = await world.join("ada")
    await world.subscribe_all("room", [(ada, peer)])
    await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "ref": 1})
    assert peer.frames("error")[0]["code"] == "forbidden"


async def test_a_refusing_hook_leaves_no_channel_behind() -> None:
    world = World(
        on_subscribe=lambda client, channel: False,
        on_publish="tests.support.hooks:refuse_everything",
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


# -- a hook's every failure is contained (issue 23, findings 11 and 19) ----------------


def contained(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run `scenario` in an event loop of its own in a forked process, so that a
    KeyboardInterrupt or SystemExit escaping the hub fails this test instead of ending
    the test run. (Not a thread: on Python 3.11.7 one escaping a task leaves the
    interpreter's AST state askew, and pytest's report of the next failure crashes.)"""
    receiver, sender = multiprocessing.Pipe(duplex=False)

    def run() -> None:
        try:
            asyncio.run(scenario())  # type: ignore[arg-type]
            sender.send(None)
        except (KeyboardInterrupt, SystemExit) as exc:
            sender.send(f"{type(exc).__name__} escaped the hook: it would stop the server")
        except BaseException as exc:  # noqa: B036 - reported to the test's process
            sender.send("".join(traceback.format_exception(exc)))

    child = multiprocessing.get_context("fork").Process(target=run)
    child.start()
    try:
        assert receiver.poll(60), "the scenario did not end"
        failure = receiver.recv()
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    if failure is not None:
        pytest.fail(failure, pytrace=False)


UNRULY = {
    "CancelledError": asyncio.CancelledError,
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": lambda: SystemExit(3),
}


def unruly_hooks(raised: str, kind: str) -> dict[str, Any]:
    """on_connect, on_subscribe and on_publish that raise `raised`: callables, sync or
    async, or tests.support.hooks' import strings (an async on_subscribe, a sync on_publish)."""
    if kind == "import":
        return {
            "on_subscribe": "tests.support.hooks:unruly_subscribe",
            "on_publish": "tests.support.hooks:unruly_publish",
            "on_connect": "tests.support.hooks:unruly_publish",  # raises on nobody's events
        }

    def sync_hook(*args: Any) -> bool:
        if "room" in args or "e" in args:  # subscribing to `room`, publishing `e`
            raise UNRULY[raised]()
        return True

    async def async_hook(*args: Any) -> bool:
        await asyncio.sleep(0)
        return sync_hook(*args)

    hook = sync_hook if kind == "sync" else async_hook
    return {"on_subscribe": hook, "on_publish": hook, "on_connect": hook}


@pytest.mark.parametrize("kind", ["sync", "async", "import"])
@pytest.mark.parametrize("raised", list(UNRULY))
def test_a_hook_raising_cancelled_interrupt_or_exit_costs_one_internal_error(
    raised: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    word = {"CancelledError": "cancel", "KeyboardInterrupt": "interrupt", "SystemExit": "exit"}
    room = f"{word[raised]}:room" if kind == "import" else "room"
    event = word[raised] if kind == "import" else "e"

    async def scenario() -> None:
        world = World(**unruly_hooks(raised, kind))
        ada, peer = await world.join("ada")
        bob, bob_peer = await world.join("bob")
        await world.subscribe_all("lobby", [(ada, peer), (bob, bob_peer)])
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="nyo_realtime_ext"):
            await world.send(ada, {"type": "subscribe", "channel": room, "ref": 1})
            (failed,) = peer.take()
            assert (failed["type"], failed["code"], failed["ref"]) == ("error", "internal", 1)
            (record,) = caplog.records
            assert f"hook on_subscribe failed: {raised}" in record.getMessage()
            assert await world.hub.find_channel(ChannelKey("acme", room)) is None
            # The publish hook too, and over HTTP the same: HookFailed, the API's 500.
            await world.send(
                ada, {"type": "broadcast", "channel": "lobby", "event": event, "ref": 2}
            )
            assert [(f["type"], f.get("code")) for f in peer.take()] == [("error", "internal")]
            identity = world.hub.auth.identify(make_token("bob", tenant="acme"))
            with pytest.raises(HookFailed):
                await world.hub.publish_http(identity, ChannelKey("acme", "lobby"), event, 1)
            with pytest.raises(HookFailed):
                await world.hub.http_presence(identity, ChannelKey("acme", room), None, None)
        assert len(caplog.records) == 4
        # Everyone else, ada too, is served as before; nothing was published.
        await world.send(bob, {"type": "ping", "ref": "b"})
        await world.send(ada, {"type": "ping", "ref": "a"})
        assert bob_peer.frames("pong") and peer.frames("pong") and not bob_peer.frames("message")
        assert ada.closed is False and peer.closed_with is None

    contained(scenario)


@pytest.mark.parametrize("raised", list(UNRULY))
def test_an_on_connect_raising_them_leaves_the_connection_standing(
    raised: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def on_connect(client: Client) -> None:
        await asyncio.sleep(0)
        raise UNRULY[raised]()

    async def scenario() -> None:
        world = World(on_connect=on_connect, on_disconnect=on_connect)
        with caplog.at_level(logging.ERROR, logger="nyo_realtime_ext"):
            ada, peer = await world.join("ada")
            await world.settle()
            world.hub.close(ada, 1000, "bye")
            await world.settle()
        messages = [r.getMessage() for r in caplog.records]
        assert [m.split(":")[0] for m in messages] == ["hook on_connect failed"] + [
            "hook on_disconnect failed"
        ]
        bob, bob_peer = await world.join("bob")
        await world.send(bob, {"type": "ping"})
        assert bob_peer.frames("pong")
        await world.settle()

    contained(scenario)


@pytest.mark.parametrize("kind", ["callable", "import"])
async def test_a_hook_that_ignores_its_cancellation_is_answered_at_the_timeout(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    ended = asyncio.Event()

    async def stubborn_hook(client: Client, channel: str) -> bool:
        try:
            return await stubborn(after=0.8)
        finally:
            ended.set()

    hook = stubborn_hook if kind == "callable" else "tests.support.hooks:unruly_subscribe"
    world = World(on_subscribe=hook, hook_timeout=0.2)
    ada, peer = await world.join("ada")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.WARNING, logger="nyo_realtime_ext"):
        await world.send(ada, {"type": "subscribe", "channel": "stubborn:room", "ref": 1})
        answered = loop.time() - started
        # Refused at `hook_timeout`, not when the hook (which would allow) is done.
        (failed,) = peer.take()
        assert failed["code"] == "internal" and failed["ref"] == 1
        assert 0.2 <= answered < 0.6, answered
        assert "on_subscribe did not finish within 0.2s" in caplog.text
        assert ChannelKey("acme", "stubborn:room") not in ada.subscriptions
        # It runs on, detached; when it is done, that is logged and nothing else happens.
        if kind == "callable":
            await asyncio.wait_for(ended.wait(), 5)
        await asyncio.sleep(1.0 if kind == "import" else 0.05)
    assert "hook on_subscribe ignored its cancellation and ran on for" in caplog.text
    assert "its answer was not used: True" in caplog.text
    assert peer.take() == [] and world.hub.hooks._detached == set()
    assert await world.hub.members_of(ChannelKey("acme", "stubborn:room")) == []


async def test_the_callers_own_cancellation_cancels_its_hook_and_goes_on(caplog) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(client: Client, channel: str) -> bool:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    world = World(on_subscribe=slow, hook_timeout=30)
    ada, peer = await world.join("ada")
    with caplog.at_level(logging.ERROR, logger="nyo_realtime_ext"):
        request = asyncio.ensure_future(
            world.send(ada, {"type": "subscribe", "channel": "room", "ref": 1})
        )
        await started.wait()
        request.cancel()  # as at shutdown: the request's own task is cancelled
        with pytest.raises(asyncio.CancelledError):
            await request
        await asyncio.wait_for(cancelled.wait(), 5)
    assert peer.take() == [] and caplog.records == []  # nothing the hook did wrong


async def test_a_long_exception_message_is_logged_cut_short(caplog) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no message either")

    def on_publish(client: Client, channel: str, event: str, payload: Any) -> bool:
        if event == "unprintable":
            raise Unprintable
        return True

    world = World(on_subscribe="tests.support.hooks:unruly_subscribe", on_publish=on_publish)
    ada, peer = await world.join("ada")
    await world.subscribe_all("lobby", [(ada, peer)])
    with caplog.at_level(logging.ERROR, logger="nyo_realtime_ext"):
        await world.send(ada, {"type": "subscribe", "channel": "long:room", "ref": 1})
        await world.send(ada, {"type": "broadcast", "channel": "lobby", "event": "unprintable"})
    assert [f["code"] for f in peer.take()] == ["internal", "internal"]
    long, unprintable = caplog.records
    assert "RuntimeError: the application's bug xxx" in long.getMessage()
    assert "... (100022 characters)" in long.getMessage()
    assert len(caplog.text) < 10_000  # the message cut, the traceback innermost frames
    assert "in _unruly" in long.getMessage()  # where it was raised
    assert "Unprintable: ?" in unprintable.getMessage().splitlines()[0]


async def test_a_hook_raising_exit_or_interrupt_leaves_the_standalone_server_serving(
    standalone, connect
) -> None:
    server = standalone(
        "--Realtime.on_subscribe=tests.support.hooks:unruly_subscribe",
        "--Realtime.on_publish=tests.support.hooks:unruly_publish",
        "--Realtime.hook_timeout=0.3",
    )
    ada = await connect(server.url, make_token("ada"))
    bob = await connect(server.url, make_token("bob"))
    await bob.subscribe("room")
    await ada.subscribe("room")
    api = api_of(server, make_token("carol"))
    for word in ("exit", "interrupt", "cancel", "long", "stubborn"):
        failed = await ada.request({"type": "subscribe", "channel": f"{word}:x"})
        assert failed["code"] == "internal", (word, failed)
        failed = await ada.request(
            {"type": "broadcast", "channel": "room", "event": word, "payload": 1}
        )
        assert failed.get("code") == "internal" or word == "stubborn", (word, failed)
        assert (await api.post("channels/room/messages", {"event": word})).status == (
            201 if word == "stubborn" else 500
        ), word
        # Still serving: bob and ada hear each other.
        sent = await bob.request({"type": "broadcast", "channel": "room", "event": "hi"})
        assert (await ada.expect("message", id=sent["id"]))["event"] == "hi"
        assert server.process.poll() is None, server.output()
    log = server.output()
    for raised in ("SystemExit", "KeyboardInterrupt", "CancelledError", "RuntimeError"):
        assert f"hook on_subscribe failed: {raised}" in log
        assert f"hook on_publish failed: {raised}" in log
    assert "hook on_subscribe did not finish within 0.3s" in log
    assert "x" * 1000 not in log


async def test_verify_token_and_authorize_failing_refuse_and_leave_the_server_serving(
    standalone, connect
) -> None:
    """The deployment's `verify_token` and `authorize` are contained like the other hooks:
    whatever they raise (SystemExit too) or answer out of contract is logged and
    refuses: the token, or the one request (`internal`, as for a failed hook)."""
    server = standalone(
        "--Realtime.verify_token=tests.support.hooks:unruly_verify",
        "--Realtime.authorize=tests.support.hooks:unruly_authorize",
    )
    ada = await connect(server.url, "ticket-ada")
    for token in ("exit", "interrupt", "string", "list"):
        refused = await connect(server.url, token, authenticate=False)
        error = await refused.expect("error")
        assert error["code"] == "unauthorized", (token, error)
        assert await refused.closed() == 4401, token
        assert (await api_of(server, token).get("channels")).status == 401, token
    banned = await connect(server.url, "banned", authenticate=False)
    assert "banned until Monday" in (await banned.expect("error"))["message"]
    assert (await ada.subscribe("private-open"))["type"] == "subscribed"
    for word in ("exit", "interrupt", "yes", "untruthful"):
        answer = await ada.request({"type": "subscribe", "channel": f"private-{word}"})
        assert (answer["type"], answer.get("code")) == ("error", "internal"), (word, answer)
    # Still serving: Ada's connection and new ones.
    assert (await ada.request({"type": "ping"}))["type"] == "pong"
    assert (await connect(server.url, "ticket-ada")).connection_id
    assert server.process.poll() is None, server.output()
    log = server.output()
    for raised in ("SystemExit", "KeyboardInterrupt"):
        assert f"hook verify_token failed: {raised}" in log
        assert f"hook authorize failed: {raised}" in log
    assert "hook verify_token answered 'ada' (a str)" in log
    assert "hook authorize answered 'yes' (a str)" in log
    assert "hook authorize answered" in log and "(a Untruthful)" in log
