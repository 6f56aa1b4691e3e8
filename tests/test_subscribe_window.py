"""Issue 23, finding 14: a message published while a node starts to listen to a
channel (on Redis: after its SUBSCRIBE is confirmed, before it reads where the
channel stands) reaches the subscriber that made it listen, with no `since`."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from .support.state_world import StateWorld

pytestmark = pytest.mark.hardening

SERVERS = {"redis": "redis_server", "cluster": "redis_cluster"}


@pytest.fixture(params=list(SERVERS))
def redis_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(SERVERS[request.param]).url)


async def test_a_message_published_while_a_node_starts_listening_reaches_its_subscriber(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"window-{secrets.token_hex(3)}"
    a = await StateWorld("redis", redis_url, prefix=prefix).start()
    b = await StateWorld("redis", redis_url, prefix=prefix).start()
    try:
        publisher = await a.join("ada")
        assert (await a.ask(publisher, {"type": "subscribe", "channel": "room"}))[
            "type"
        ] == "subscribed"

        # Node b learns of the message from pub/sub (it was subscribed), in the
        # window between the confirmation and its position read.
        broker = b.engine.broker
        plain_position = broker._position
        heard = asyncio.Event()
        plain_deliver = b.hub.channels.deliver

        def deliver(key: Any, frame: bytes, message_id: str | None, skip: str | None) -> None:
            plain_deliver(key, frame, message_id, skip)
            if message_id is not None:
                heard.set()

        async def position(key: Any) -> Any:
            ack = await a.ask(
                publisher,
                {"type": "broadcast", "channel": "room", "event": "e", "payload": "between"},
            )
            assert ack["type"] == "ack", ack
            async with asyncio.timeout(10):
                await heard.wait()
            return await plain_position(key)

        monkeypatch.setattr(broker, "_position", position)
        monkeypatch.setattr(b.hub.channels, "deliver", deliver)
        bob = await b.join("bob")
        answer = await b.ask(bob, {"type": "subscribe", "channel": "room"})
        assert answer["type"] == "subscribed", answer
        monkeypatch.undo()

        message = await bob.peer.next("message")
        assert message["payload"] == "between"
        # And once only, in order with what follows.
        await a.ask(
            publisher, {"type": "broadcast", "channel": "room", "event": "e", "payload": "after"}
        )
        assert (await bob.peer.next("message"))["payload"] == "after"
        assert bob.peer.left("message") == []
    finally:
        await a.close()
        await b.close()
