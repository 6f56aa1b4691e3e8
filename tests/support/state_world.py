"""A hub on either engine (memory, or Redis with its pub/sub), with peers that can be
awaited: the Redis engine delivers later and from another task, so a test waits for
the frames a peer records instead of reading them at once."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, NamedTuple

import orjson

from nyo_realtime_ext.auth import Authenticator
from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.engines import Engine, MemoryEngine
from nyo_realtime_ext.engines.memory import Store
from nyo_realtime_ext.hub import Hub

from .hub_world import Peer
from .tokens import SECRET, make_token

WAIT = 10.0  # seconds what Redis delivers may take


class AsyncPeer(Peer):
    """A peer whose frames can be awaited, each frame taken once, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()
        self.taken = 0  # frames before this index were handed to the test

    def send(self, data: bytes) -> None:
        super().send(data)
        self.arrived.set()

    async def next(self, type_: str, **fields: Any) -> dict[str, Any]:
        """The next frame of `type_` (with `fields` equal) not taken yet; frames of
        other types before it are passed over."""
        async with asyncio.timeout(WAIT):
            while True:
                for index in range(self.taken, len(self.sent)):
                    frame = orjson.loads(self.sent[index])
                    if frame["type"] == type_ and all(frame.get(k) == v for k, v in fields.items()):
                        self.taken = index + 1
                        return frame
                self.arrived.clear()
                await self.arrived.wait()

    def left(self, type_: str) -> list[dict[str, Any]]:
        """Frames of `type_` not taken yet."""
        return [f for f in (orjson.loads(d) for d in self.sent[self.taken :]) if f["type"] == type_]


class Joined(NamedTuple):
    """A connection of a test: the hub's session and the peer that records its frames."""

    session: Any
    peer: AsyncPeer

    @property
    def id(self) -> str:
        return str(self.session.id)


class StateWorld:
    """One hub, on the memory engine (a SQLite file, when `db_path` is given) or on Redis."""

    def __init__(
        self, kind: str, redis_url: str | None = None, prefix: str | None = None, **config: Any
    ) -> None:
        self.kind = kind
        self.prefix = prefix or f"state-{secrets.token_hex(3)}"
        self.config = Realtime(
            jwt_secret=SECRET,
            redis_url=redis_url or "",
            redis_prefix=self.prefix,
            heartbeat_timeout=2.0,
            **config,
        )
        self.store: Store | None = None
        engine: Engine
        if kind == "memory":
            self.store = Store(config.get("db_path", ":memory:"))
            engine = MemoryEngine(self.store, self.config.history_size, self.config.history_ttl)
        else:
            from nyo_realtime_ext.engines.redis import RedisEngine

            engine = RedisEngine(self.config)
        self.engine = engine
        self.hub = Hub(self.config, engine, Authenticator(self.config))

    async def start(self) -> StateWorld:
        await self.hub.start()
        return self

    async def close(self) -> None:
        await self.hub.shutdown()
        if self.store is not None:
            self.store.close()

    async def join(self, user: str = "ada", tenant: str = "acme", **claims: Any) -> Joined:
        peer = AsyncPeer()
        session = self.hub.connect(peer)
        await self.send(
            Joined(session, peer),
            {"type": "auth", "token": make_token(user, tenant=tenant, **claims)},
        )
        await peer.next("authenticated")
        return Joined(session, peer)

    async def send(self, joined: Joined, frame: dict[str, Any]) -> None:
        await self.hub.receive(joined.session, orjson.dumps(frame).decode())

    async def ask(self, joined: Joined, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a request with a fresh ref; its answer (`ack`, `subscribed`, `error`...)."""
        ref = secrets.token_hex(4)
        await self.send(joined, {**frame, "ref": ref})
        peer = joined.peer
        async with asyncio.timeout(WAIT):
            while True:
                for index in range(len(peer.sent)):
                    answer = orjson.loads(peer.sent[index])
                    if answer.get("ref") == ref:
                        return answer
                peer.arrived.clear()
                await peer.arrived.wait()
