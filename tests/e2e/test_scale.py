"""Issue 13, scaled down for CI: a thousand clients of the Python client on one
server, a publish that reaches them all, and a reconnect storm after SIGTERM.

The full-size runs (5,000 in a storm, 10,000 held) are bench/connections.py's.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from typing import Any

import pytest

from nyo_realtime_ext.client import ConnectionState, RealtimeClient

from ..support.tokens import make_token

CLIENTS = 1000
CHANNELS = 20
AWAY = 50  # clients whose token lapses before the restart: they miss messages
LAPSE = 5  # seconds their token lasts: time enough to subscribe, even on a slow machine
DEADLINE = 120.0  # seconds for any one phase; far beyond what it takes


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> None:
    """This process holds a socket per client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = CLIENTS + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the open-file hard limit ({hard}) is below {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def until(condition: Callable[[], bool], what: Callable[[], str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {DEADLINE:.0f} s: {what()}")
        await asyncio.sleep(0.2)


async def test_a_thousand_clients_come_back_after_a_restart_missing_nothing_twice(standalone):
    t0 = time.monotonic()

    def said(what: str) -> None:  # progress, printed by pytest when the test fails
        print(f"{time.monotonic() - t0:6.1f} s  {what}", flush=True)

    server = standalone()
    names = [f"presence-crowd-{i}" for i in range(CHANNELS)]
    gate = asyncio.Event()  # the absent clients' next token waits for this

    def token_for(user: str, lapsing: bool) -> Any:
        if not lapsing:
            return make_token(user)
        issued = []

        async def provider() -> str:
            if issued:  # a refresh or a reconnect: not before the gate opens
                await gate.wait()
                return make_token(user)
            issued.append(True)
            return make_token(user, exp=int(time.time()) + LAPSE)

        return provider

    # Users u0..u{AWAY-1} get a token that lapses in ~LAPSE s: they are cut (4401)
    # and cannot come back until the gate opens, after the restart.
    def client(i: int) -> RealtimeClient:  # it starts connecting at once
        return RealtimeClient(server.url, token_for(f"u{i}", i < AWAY), request_timeout=60.0)

    clients: list[Any] = [None] * AWAY + [client(i) for i in range(AWAY, CLIENTS)]
    publisher = RealtimeClient(server.url, make_token("publisher"), request_timeout=60.0)
    channels: list[Any] = [None] * CLIENTS
    try:
        pub_channels = [await publisher.channel(name) for name in names]
        admission = asyncio.Semaphore(100)

        async def join(i: int) -> Any:
            async with admission:
                return await clients[i].channel(names[i % CHANNELS], timeout=DEADLINE)

        async def publish(tag: str) -> None:
            for channel in pub_channels:
                await channel.send("note", {"tag": tag}, timeout=DEADLINE)

        def payloads(channel: Any) -> list[str]:
            return [m["payload"]["tag"] for m in channel.messages]

        members = CLIENTS // CHANNELS + 1  # and the publisher
        channels[AWAY:] = await asyncio.gather(*(join(i) for i in range(AWAY, CLIENTS)))
        said(f"{CLIENTS - AWAY} clients subscribed")

        # Fan-out: one publish per channel reaches every subscriber.
        await publish("m0")
        await until(
            lambda: all(payloads(c) == ["m0"] for c in channels[AWAY:]),
            lambda: f"{sum(payloads(c) == ['m0'] for c in channels)} have m0",
        )
        said("fan-out reached everyone")
        # The last ones in, with tokens about to lapse, find m0 in the history.
        clients[:AWAY] = [client(i) for i in range(AWAY)]
        channels[:AWAY] = await asyncio.gather(*(join(i) for i in range(AWAY)))
        assert all(payloads(c) == ["m0"] for c in channels[:AWAY])
        said(f"{AWAY} more subscribed, with m0 from the history")

        # The lapsing clients are cut; a message is published while they are away.
        # (Their state stays "open" while the provider holds back a fresh token:
        # the channel's `subscribed` is what says they are gone.)
        away = channels[:AWAY]
        await until(
            lambda: not any(c.subscribed.is_set() for c in away),
            lambda: f"{sum(c.subscribed.is_set() for c in away)} still subscribed",
        )
        await publish("while-away")
        await until(
            lambda: all(payloads(c) == ["m0", "while-away"] for c in channels[AWAY:]),
            lambda: "the clients present did not all get while-away",
        )

        said("the absent clients missed while-away")
        # SIGTERM: everyone is closed with 1001; the same database comes back.
        server.stop()
        await until(
            lambda: not any(c.subscribed.is_set() for c in channels),
            lambda: "some clients did not notice the server going",
        )
        said("SIGTERM: every client noticed")
        server.start()
        # Published while the storm of reconnects is on: some get these live,
        # the rest in their recovery.
        for tag in ("m1", "m2", "m3"):
            await publish(tag)
        gate.set()
        said("restarted; m1..m3 published; the absent may come back")

        everything = ["m0", "while-away", "m1", "m2", "m3"]
        await until(
            lambda: all(
                c.state == ConnectionState.OPEN and ch.subscribed.is_set()
                for c, ch in zip(clients, channels, strict=True)
            ),
            lambda: (
                f"{sum(c.state == ConnectionState.OPEN for c in clients)} of {CLIENTS} are back"
            ),
        )
        said("every client is back and subscribed")
        await until(
            lambda: all(payloads(c) == everything for c in channels),
            lambda: f"{sum(payloads(c) == everything for c in channels)} of {CLIENTS} have all",
        )
        # Every id once, in order, and every recovery was complete.
        for channel in channels:
            ids = [m["id"] for m in channel.messages]
            assert len(set(ids)) == len(everything), ids
            assert channel.recovered, channel.name
        # Presence is whole again: everyone rejoined their channel.
        await until(
            lambda: all(len(c.members) == members for c in channels),
            lambda: f"member counts {sorted({len(c.members) for c in channels})}",
        )
        said("every client has every message once and its members")
    finally:
        everyone = [c for c in [*clients, publisher] if c is not None]
        await asyncio.gather(*(c.close() for c in everyone), return_exceptions=True)
