"""The Python client against a real standalone server: delivery across restarts,
backoff, authentication failures, token refresh, the threaded face, discovery."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from tornado.websocket import WebSocketClosedError

from nyo_realtime_ext import client as client_module
from nyo_realtime_ext.client import (
    ClientClosed,
    ConnectionLost,
    ConnectionState,
    RealtimeClient,
    RequestError,
    ThreadedClient,
    backoff_delay,
    backoff_window,
    connect,
    use_realtime_channel,
)

from .support.standalone_server import StandaloneServer, free_port
from .support.tokens import make_token

FAST = {"reconnect_delay": 0.05, "max_reconnect_delay": 0.5, "max_reconnect_attempts": 50}


async def eventually(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def record_states(client: RealtimeClient) -> list[tuple[ConnectionState, dict[str, Any]]]:
    states: list[tuple[ConnectionState, dict[str, Any]]] = []
    client.on("state", lambda state, info: states.append((state, info)))
    return states


# -- delivery across server restarts ---------------------------------------------------


async def test_restart_mid_stream_delivers_every_acked_message_once_in_order(
    standalone: Callable[..., StandaloneServer],
) -> None:
    # History long enough for any gap: the publisher, back first by the luck of
    # the jitter, may send hundreds while the subscriber waits (seen under load
    # with the default 100). What is past retention is test_unrecoverable_gap's.
    server = standalone("--Realtime.history_size=100000")
    subscriber = RealtimeClient(server.url, make_token("sub"), **FAST)
    publisher = RealtimeClient(server.url, make_token("pub"), **FAST)
    states = record_states(subscriber)
    received: list[dict[str, Any]] = []
    inbox = await subscriber.channel("feed")
    inbox.on("tick", received.append)
    outbox = await publisher.channel("feed")

    acked: list[str] = []
    unknown = 0  # sends cut off before their ack: they may or may not exist
    stop = asyncio.Event()

    async def publish() -> None:
        nonlocal unknown
        n = 0
        while not stop.is_set():
            n += 1
            try:
                acked.append(await outbox.send("tick", {"n": n}, timeout=20))
            except (ConnectionLost, asyncio.TimeoutError):
                unknown += 1

    task = asyncio.ensure_future(publish())

    # Kill (no goodbye), then stop cleanly (1001), each while the stream runs.
    def reconnections() -> int:
        return [s for s, _ in states].count(ConnectionState.RECONNECTING)

    for cut in (server.kill, lambda: server.stop(signal.SIGTERM)):
        before, cuts_seen = len(acked), reconnections()
        await eventually(lambda before=before: len(acked) >= before + 30)
        cut()
        server.start()
        # The subscriber notices this cut and is back before the next one.
        await eventually(
            lambda cuts_seen=cuts_seen: (
                reconnections() > cuts_seen and subscriber.state is ConnectionState.OPEN
            )
        )
        await eventually(lambda before=before: len(acked) >= before + 60)
    stop.set()
    await task

    await eventually(lambda: set(acked) <= {m["id"] for m in received})
    received_ids = [m["id"] for m in received]
    assert len(received_ids) == len(set(received_ids)), "a message arrived twice"
    position = {message_id: i for i, message_id in enumerate(received_ids)}
    assert all(message_id in position for message_id in acked), "an acked message was lost"
    assert [position[i] for i in acked] == sorted(position[i] for i in acked)
    numbers = [m["payload"]["n"] for m in received]
    assert numbers == sorted(numbers)
    assert inbox.recovered is True
    assert [s for s, _ in states].count(ConnectionState.RECONNECTING) >= 2
    assert states[-1][0] is ConnectionState.OPEN, states
    await subscriber.close()
    await publisher.close()
    assert subscriber.state is ConnectionState.CLOSED


async def test_unrecoverable_gap_is_surfaced(standalone: Callable[..., StandaloneServer]) -> None:
    server = standalone("--Realtime.history_size=3")
    gate = asyncio.Event()
    gate.set()

    async def token_when_allowed() -> str:
        await gate.wait()  # holds the reconnect until the test has published
        return make_token("sub")

    subscriber = RealtimeClient(server.url, token_when_allowed, **FAST)
    channel = await subscriber.channel("feed")
    subscribed: list[dict[str, Any]] = []
    channel.on("subscribed", subscribed.append)
    publisher = RealtimeClient(server.url, make_token("pub"), **FAST)
    out = await publisher.channel("feed")
    first = await out.send("n", 0)
    await eventually(lambda: channel.last_id == first)

    gate.clear()
    server.kill()
    await publisher.close()
    server.start()
    publisher = RealtimeClient(server.url, make_token("pub"), **FAST)
    out = await publisher.channel("feed", history=False)
    sent = [await out.send("n", n) for n in range(1, 6)]
    gate.set()

    await eventually(lambda: bool(subscribed))
    assert subscribed[-1]["recovered"] is False and channel.recovered is False
    await eventually(lambda: channel.last_id == sent[-1])
    # What the server still had arrives, once; messages 1 and 2 are gone for good.
    assert [m["payload"] for m in channel.messages] == [0, 3, 4, 5]
    await subscriber.close()
    await publisher.close()


async def test_history_on_open_then_live(server: StandaloneServer, connect: Any) -> None:
    raw = await connect(server.url, make_token("pub"))
    await raw.subscribe("room")
    for n in range(3):
        await raw.request({"type": "broadcast", "channel": "room", "event": "e", "payload": n})
    client = RealtimeClient(server.url, make_token("ada"))
    with_history = await client.channel("room")
    assert [m["payload"] for m in with_history.messages] == [0, 1, 2]
    other = RealtimeClient(server.url, make_token("bob"))
    without = await other.channel("room", history=False)
    await raw.request({"type": "broadcast", "channel": "room", "event": "e", "payload": 3})
    await eventually(lambda: len(with_history.messages) == 4 and len(without.messages) == 1)
    assert without.messages[0]["payload"] == 3
    assert without.messages[0]["from"]["userId"] == "pub"
    await client.close()
    await other.close()


# -- channel API -------------------------------------------------------------------------


async def test_channel_events_presence_and_unsubscribe(server: StandaloneServer) -> None:
    ada = RealtimeClient(server.url, make_token("ada"))
    bob = RealtimeClient(server.url, make_token("bob"))
    room = await ada.channel("room:1")
    events: list[tuple[str, Any]] = []
    for name in ("user:joined", "user:left", "presence:updated", "chat:message", "message"):
        room.on(name, lambda value, name=name: events.append((name, value)))
    bobs_room = await bob.channel("room:1")
    await eventually(lambda: {m["userId"] for m in room.members} == {"ada", "bob"})

    members = await bobs_room.update_status("busy", {"cell": 3})
    assert {m["userId"]: m["status"] for m in members} == {"ada": "online", "bob": "busy"}
    await eventually(lambda: any(n == "presence:updated" for n, _ in events))
    assert [m for m in room.members if m["userId"] == "bob"][0]["meta"] == {"cell": 3}

    message_id = await bobs_room.send("chat:message", {"text": "hello"})
    await eventually(lambda: any(n == "chat:message" for n, _ in events))
    chat = [v for n, v in events if n == "chat:message"][0]
    assert chat["id"] == message_id and chat["payload"] == {"text": "hello"}
    assert ("message", chat) in events

    with pytest.raises(RequestError) as refused:
        await bobs_room.update_status("sleeping")
    assert refused.value.code == "bad_request"

    await bobs_room.unsubscribe()
    await eventually(lambda: [m["userId"] for m in room.members] == ["ada"])
    assert events[-1][0] == "user:left"
    await ada.close()
    await bob.close()


async def test_forbidden_channel_raises(server: StandaloneServer) -> None:
    client = RealtimeClient(server.url, make_token("eve"))
    with pytest.raises(RequestError) as refused:
        await client.channel("private-board")
    assert refused.value.code == "forbidden"
    await client.close()


async def test_a_channel_whose_rights_are_withdrawn_is_left_and_says_so(
    server: StandaloneServer,
) -> None:
    from .support.httpclient import Api, ch

    owner = Api(server.http_url + "/api/", make_token("owner", channels=["private-ops"]))
    await owner.post("channels", {"name": "private-ops", "type": "private", "members": ["eve"]})
    client = RealtimeClient(server.url, make_token("eve"))
    channel = await client.channel("private-ops")
    ended: list[dict[str, Any]] = []
    channel.on("unsubscribed", ended.append)
    await owner.patch(f"channels/{ch('private-ops')}", {"members": []})
    await eventually(lambda: bool(ended))
    assert ended[0]["reason"] == "forbidden" and channel.active is False
    with pytest.raises(RequestError) as refused:
        await channel.send("e", 1, timeout=2)
    assert refused.value.code == "forbidden"
    await client.close()


# -- backoff and giving up ----------------------------------------------------------------


def test_backoff_windows_double_up_to_the_cap() -> None:
    # docs/protocol.md, "Client behaviour" (was: a 60 s cap and `rate_limited_delay`).
    windows = [backoff_delay(n, 3.0, 30.0, rand=lambda: 1.0) for n in range(1, 10)]
    assert windows == [3.0, 6.0, 12.0, 24.0, 30.0, 30.0, 30.0, 30.0, 30.0]
    assert backoff_delay(4, 3.0, 30.0, rand=lambda: 0.0) == 0.0
    assert all(0 <= backoff_delay(n, 3.0, 30.0) <= 30.0 for n in range(1, 200))
    assert backoff_window(10_000, 3.0, 30.0) == 30.0  # never gives up: no overflow
    client = RealtimeClient("ws://127.0.0.1:1/ws", auto_connect=False)
    assert (client.reconnect_delay, client.max_reconnect_delay) == (3.0, 30.0)
    assert (client.max_reconnect_attempts, client.request_timeout) == (10, 10.0)
    assert ConnectionState.AUTHENTICATED is ConnectionState.OPEN  # the old name


async def test_gives_up_after_max_reconnect_attempts() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"  # nothing listens there
    client = RealtimeClient(
        url, make_token(), reconnect_delay=0.01, max_reconnect_delay=0.04,
        max_reconnect_attempts=4, auto_connect=False,
    )  # fmt: skip
    states = record_states(client)
    with pytest.raises(ClientClosed, match="gave up after 4"):
        await client.connect(timeout=30)
    reconnects = [info for state, info in states if state is ConnectionState.RECONNECTING]
    assert [info["attempt"] for info in reconnects] == [1, 2, 3, 4]
    assert [info["window"] for info in reconnects] == [0.01, 0.02, 0.04, 0.04]
    assert all(0 <= info["delay"] <= info["window"] <= 0.04 for info in reconnects)
    assert states[0][0] is ConnectionState.CONNECTING
    assert states[-1][0] is ConnectionState.CLOSED
    assert client.close_reason is not None and "gave up" in client.close_reason


async def test_no_reconnect_after_4401_without_a_new_token(server: StandaloneServer) -> None:
    bad = make_token("ada", secret="not-the-secret-but-long-enough-for-hs256")
    client = RealtimeClient(server.url, bad, **FAST)
    states = record_states(client)
    with pytest.raises(ClientClosed):
        await client.connect(timeout=30)
    assert ConnectionState.RECONNECTING not in [s for s, _ in states]
    assert states[-1] == (
        ConnectionState.CLOSED,
        {"reason": states[-1][1]["reason"], "code": 4401},
    )
    assert "unauthorized" in (client.close_reason or "")

    # A provider that keeps returning the refused token gets no retry either.
    calls: list[int] = []

    def same_bad_token() -> str:
        calls.append(1)
        return bad

    stubborn = RealtimeClient(server.url, same_bad_token, **FAST)
    with pytest.raises(ClientClosed):
        await stubborn.connect(timeout=30)
    assert len(calls) == 2  # the connection, then the check for a fresh one

    # A provider with a fresh token is tried again, and gets in.
    tokens = iter([bad, make_token("ada")])
    fresh = RealtimeClient(server.url, lambda: next(tokens), **FAST)
    await fresh.connect(timeout=30)
    assert fresh.user is not None and fresh.user["userId"] == "ada"
    await fresh.close()


async def test_longer_backoff_after_4429(standalone: Callable[..., StandaloneServer]) -> None:
    server = standalone("--Realtime.rate_limit=5")
    client = RealtimeClient(
        server.url, make_token(), reconnect_delay=0.05, max_reconnect_delay=1.0,
        random=lambda: 1.0,
    )  # fmt: skip
    states = record_states(client)
    await client.connect(timeout=30)
    ws = client._ws
    assert ws is not None
    for _ in range(100):  # flood far past the burst: the server cuts us with 4429
        try:
            await ws.write_message('{"type": "ping"}')
        except WebSocketClosedError:
            break
    await eventually(lambda: any(s is ConnectionState.RECONNECTING for s, _ in states))
    info = next(i for s, i in states if s is ConnectionState.RECONNECTING)
    assert info["code"] == 4429
    # The first attempt after it, in the window of attempt 4 (was: 30 s added).
    assert info["attempt"] == 1
    assert info["window"] == info["delay"] == backoff_window(4, 0.05, 1.0) == 0.4
    await eventually(lambda: client.state is ConnectionState.OPEN)
    await client.close()


async def test_token_is_refreshed_in_band_before_it_expires(server: StandaloneServer) -> None:
    issued: list[str] = []

    def provider() -> str:
        issued.append(make_token("ada", exp=int(time.time()) + 3))
        return issued[-1]

    client = RealtimeClient(
        server.url, provider, token_refresh_margin=2.0, auto_connect=False, **FAST
    )
    states = record_states(client)
    channel = await client.channel("room")
    await asyncio.sleep(6)  # two lifetimes of a token: it would have expired twice
    assert len(issued) >= 3
    assert [s for s, _ in states] == [ConnectionState.CONNECTING, ConnectionState.OPEN]
    assert await channel.send("still", "here")
    await client.close()


# -- the threaded face and discovery ----------------------------------------------------


def test_threaded_client_calls_and_callbacks(server: StandaloneServer) -> None:
    with (
        ThreadedClient(server.url, make_token("ada")) as ada,
        ThreadedClient(server.url, make_token("bob")) as bob,
    ):
        room = ada.channel("room")
        seen: list[tuple[str, str]] = []
        got = threading.Event()

        def on_chat(message: dict[str, Any]) -> None:
            seen.append((threading.current_thread().name, message["payload"]["text"]))
            got.set()

        room.on("chat:message", on_chat)
        bobs = bob.channel("room")
        message_id = bobs.send("chat:message", {"text": "hi"})
        assert got.wait(15)
        assert seen == [("nyo-realtime-client", "hi")]
        assert room.wait_for(lambda c: len(c.members) == 2).messages[-1]["id"] == message_id
        assert bobs.send_nowait("chat:message", {"text": "again"}).result(15)
        assert ada.state is ConnectionState.OPEN
        room.unsubscribe()
    assert ada.state is ConnectionState.CLOSED and ada.closed
    with pytest.raises(ClientClosed):
        ada.channel("room")  # a closed client fails at once instead of hanging


def test_connect_reads_the_environment(
    server: StandaloneServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NYO_REALTIME_URL", server.url)
    monkeypatch.setenv("NYO_REALTIME_TOKEN", make_token("grace"))
    with connect() as client:
        client.connect()
        assert client.user is not None and client.user["userId"] == "grace"
    # Explicit arguments win over the environment.
    with connect(server.url, make_token("hopper")) as client:
        client.connect()
        assert client.user is not None and client.user["userId"] == "hopper"


def test_connect_without_anything_to_go_on_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("NYO_REALTIME_URL", "NYO_REALTIME_TOKEN", "JPY_PARENT_PID"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(client_module.RealtimeError, match="no realtime server found"):
        connect()


def test_use_realtime_channel_shares_one_client(server: StandaloneServer) -> None:
    options = {"url": server.url, "token": make_token("ada")}
    first = use_realtime_channel(options, "a")
    second = use_realtime_channel(options, "b")
    try:
        assert first.client is second.client
        first.send("e", 1)
        first.wait_for(lambda c: len(c.messages) == 1)
    finally:
        first.client.close()


async def test_a_server_that_goes_silent_is_left_and_found_again(
    standalone: Callable[..., StandaloneServer],
) -> None:
    """A frozen server keeps the TCP connection open but answers nothing: only
    the client's heartbeat can tell, and it must move on by itself. The client
    pings at the server's advertised interval and gives up on it after the
    advertised timeout (was: its own `2 x interval + 5 s`)."""
    server = standalone("--heartbeat-interval", "0.3", "--heartbeat-timeout", "1")
    client = RealtimeClient(server.url, make_token("ada"), connect_timeout=2.0, **FAST)
    states = record_states(client)
    channel = await client.channel("room")
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        # Recorded, not polled: the state is the client's to change at any time.
        await eventually(lambda: any(s is ConnectionState.RECONNECTING for s, _ in states))
    finally:
        server.process.send_signal(signal.SIGCONT)
    await eventually(lambda: client.state is ConnectionState.OPEN)
    assert await channel.send("back", 1)
    first = next(info for state, info in states if state is ConnectionState.RECONNECTING)
    assert first["code"] == 4408  # closed by our own heartbeat check
    await client.close()


async def test_a_resubscription_answered_unavailable_is_tried_again_with_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 23: after a reconnect, a resubscription the server answers `unavailable`
    (its engine busy, or away for a moment) is not the end of the channel: the
    client tries it again, after a jittered delay that grows, until it is subscribed."""
    import orjson
    from tornado.httpserver import HTTPServer
    from tornado.web import Application
    from tornado.websocket import WebSocketHandler

    from nyo_realtime_ext.client import aio

    base = 0.2
    monkeypatch.setattr(aio, "RESUBSCRIBE_DELAY", base, raising=False)
    asked: list[tuple[int, float]] = []  # (connection, when) of each subscribe
    refusals = 2  # of the resubscription, on the second connection
    left = {"refusals": refusals}
    handlers: list[WebSocketHandler] = []

    class Server(WebSocketHandler):
        def open(self, *args: Any) -> None:
            handlers.append(self)
            self.number = len(handlers)
            # The token came in the handshake's Authorization header.
            self.write_message(
                {"type": "authenticated", "user": {"userId": "ada"}, "connectionId": "c"}
            )

        def on_message(self, message: str | bytes) -> None:
            frame = orjson.loads(message)
            ref = frame.get("ref")
            if frame["type"] == "ping":
                self.write_message({"type": "pong", "ref": ref})
            elif frame["type"] == "subscribe":
                asked.append((self.number, time.monotonic()))
                if self.number == 1:
                    self.write_message({"type": "subscribed", "ref": ref, "channel": "room"})
                elif left["refusals"] > 0:
                    left["refusals"] -= 1
                    self.write_message(
                        {"type": "error", "code": "unavailable", "message": "busy", "ref": ref}
                    )
                else:
                    self.write_message(
                        {"type": "subscribed", "ref": ref, "channel": "room", "recovered": True}
                    )

    port = free_port()
    http = HTTPServer(Application([("/ws", Server)]))
    http.listen(port, "127.0.0.1")
    # The jitter at its widest, so that the growing windows show whole.
    client = RealtimeClient(
        f"ws://127.0.0.1:{port}/ws", "token", reconnect_delay=0.05, random=lambda: 1.0
    )
    errors: list[dict[str, Any]] = []
    try:
        channel = await client.channel("room", history=False)
        channel.on("error", errors.append)
        handlers[0].close(1001, "going away")  # the client comes back, and resubscribes
        await eventually(lambda: len(asked) == 1 + refusals + 1 and channel.subscribed.is_set())
        assert [number for number, _ in asked] == [1, 2, 2, 2]
        assert [e["code"] for e in errors] == ["unavailable"] * refusals
        gaps = [
            later - earlier for (_, earlier), (_, later) in zip(asked[1:], asked[2:], strict=False)
        ]
        assert gaps[0] >= 0.9 * base and gaps[1] >= 1.9 * base, gaps  # doubled
        assert client.state is ConnectionState.OPEN
        assert client._channels["room"] is channel  # still followed
    finally:
        await client.close()
        http.stop()
