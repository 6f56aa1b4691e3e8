"""A client's burst of publishes on the Redis engine shares round trips
(engines/redis/pipeline.py), and every client still gets its answers in the order
it asked, on both engines (hub/dispatch.py `Dispatch.receive`)."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .support.embedded import count_writes, embedded, messages, subscribed
from .support.rawclient import Raw, text
from .support.redis_server import RedisServer


def broadcast(n: int, channel: str = "feed") -> dict[str, Any]:
    return {"type": "broadcast", "channel": channel, "event": "e", "payload": n, "ref": f"b{n}"}


async def subscriber(server: Any, user: str) -> Raw:
    """`user`, connected and subscribed to "feed"."""
    client = await Raw.open(server.port, user)
    assert (await client.json())["type"] == "authenticated"
    await subscribed(client, "feed")
    return client


async def answers(client: Raw, count: int) -> list[dict[str, Any]]:
    """The next `count` frames that answer a request (those with a ref)."""
    received: list[dict[str, Any]] = []
    while len(received) < count:
        frame = await client.json()
        if "ref" in frame:
            received.append(frame)
    return received


@pytest.fixture(params=["memory", "redis", "cluster"])
def engine_options(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    options: dict[str, Any] = {"default_channel_type": "public"}
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        options["redis_url"] = redis.url
    elif request.param == "cluster":
        # The session's cluster (a pipeline per master), under a prefix of this test's.
        options["redis_url"] = request.getfixturevalue("redis_cluster").url
        options["redis_prefix"] = f"pipe-{secrets.token_hex(3)}"
    return options


async def test_answers_come_in_the_order_of_the_requests(
    tmp_path: Path, engine_options: dict[str, Any]
) -> None:
    # Publishes answered by the engine later, a refusal decided at once, and a ping
    # at the end: the client reads them back in the order it sent them.
    async with embedded(tmp_path, **engine_options) as server:
        ada = await subscriber(server, "ada")
        requests = [
            *(broadcast(n) for n in range(10)),
            {**broadcast(99, "not-subscribed"), "ref": "refused"},
            *(broadcast(n) for n in range(10, 20)),
            {"type": "ping", "ref": "ping"},
            {"type": "unsubscribe", "channel": "feed", "ref": "bye"},
        ]
        ada.writer.write(b"".join(text(r) for r in requests))  # read in one go
        got = await answers(ada, len(requests))
        assert [f["ref"] for f in got] == [r["ref"] for r in requests]
        kinds = [f["type"] for f in got]
        assert kinds == ["ack"] * 10 + ["error"] + ["ack"] * 10 + ["pong", "unsubscribed"]
        ids = [f["id"] for f in got if f["type"] == "ack"]
        seqs = [int(i.rpartition("-")[2]) for i in ids]
        assert seqs == sorted(seqs) and len(set(seqs)) == 20  # numbered in the order sent
        ada.close()


async def test_a_burst_of_publishes_reaches_a_subscriber_in_a_few_writes_on_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # Awaited one by one, 100 publishes would be 100 round trips, and pub/sub would
    # bring them one per read: 100 writes to bob. Pipelined, Redis runs them
    # together and the node reads them back together.
    options = {"redis_url": redis_server.url, "default_channel_type": "public"}
    async with embedded(tmp_path, **options) as server:
        ada, bob = await subscriber(server, "ada"), await subscriber(server, "bob")
        writes = count_writes(server, "bob")
        ada.writer.write(b"".join(text({**broadcast(n), "echo": False}) for n in range(100)))
        assert await messages(bob, 100) == list(range(100))
        acks = await answers(ada, 100)
        assert [f["ref"] for f in acks] == [f"b{n}" for n in range(100)]
        assert len(writes) <= 10
        ada.close()
        bob.close()


async def test_publishes_go_on_after_redis_forgets_its_scripts(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # A restarted Redis has no scripts: a pipeline of them is loaded and run again,
    # in order, and nobody is told anything went wrong.
    options = {"redis_url": redis_server.url, "default_channel_type": "public"}
    async with embedded(tmp_path, **options) as server:
        ada = await subscriber(server, "ada")
        ada.writer.write(text(broadcast(0)))
        assert (await answers(ada, 1))[0]["type"] == "ack"
        flush = ["redis-cli", "-p", str(redis_server.port), "SCRIPT", "FLUSH"]
        subprocess.run(flush, check=True, timeout=10)
        ada.writer.write(b"".join(text(broadcast(n)) for n in range(1, 30)))
        got = await answers(ada, 29)
        assert [f["type"] for f in got] == ["ack"] * 29
        assert [f["ref"] for f in got] == [f"b{n}" for n in range(1, 30)]
        ada.close()
