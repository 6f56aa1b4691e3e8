"""The hub without sockets or an event loop of its own, for tests: a `World` holds a hub
on a memory engine, a clock the test moves, and `Peer`s that record what they are sent."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from nyo_realtime_ext.auth import Authenticator
from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.engines import MemoryEngine
from nyo_realtime_ext.engines.memory import Store
from nyo_realtime_ext.hub import Hub

from .tokens import SECRET, make_token


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Peer:
    """The transport side of one connection, as the hub sees it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed_with: tuple[int, str] | None = None

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    def backlog(self) -> int:
        return 0  # a peer that reads everything at once

    def frames(self, type_: str | None = None) -> list[dict[str, Any]]:
        frames = [orjson.loads(d) for d in self.sent]
        return [f for f in frames if type_ is None or f["type"] == type_]

    def take(self) -> list[dict[str, Any]]:
        frames = self.frames()
        self.sent.clear()
        return frames


class SlowPeer(Peer):
    """A peer that has not read anything it was sent yet."""

    def backlog(self) -> int:
        return sum(len(data) for data in self.sent)


class World:
    def __init__(self, **config: Any) -> None:
        self.clock = Clock()
        self.config = Realtime(jwt_secret=SECRET, **config)
        self.store = Store(":memory:")
        engine = MemoryEngine(self.store, self.config.history_size, self.config.history_ttl)
        self.hub = Hub(self.config, engine, Authenticator(self.config), self.clock)

    async def join(
        self, user: str = "ada", tenant: str = "acme", **claims: Any
    ) -> tuple[Any, Peer]:
        peer = Peer()
        session = self.hub.connect(peer)
        await self.send(
            session, {"type": "auth", "token": make_token(user, tenant=tenant, **claims)}
        )
        assert peer.take()[0]["type"] == "authenticated"
        return session, peer

    async def send(self, session: Any, frame: dict[str, Any] | str | bytes) -> None:
        data = orjson.dumps(frame).decode() if isinstance(frame, dict) else frame
        await self.hub.receive(session, data)

    async def settle(self) -> None:
        """Let the hub's background work (presence ending on disconnect) finish."""
        while self.hub._tasks:
            await asyncio.gather(*self.hub._tasks)

    async def subscribe_all(self, channel: str, joined: list[tuple[Any, Peer]]) -> None:
        """Subscribe every session, then forget the frames that produced."""
        for session, _ in joined:
            await self.send(session, {"type": "subscribe", "channel": channel})
        for _, peer in joined:
            peer.take()
