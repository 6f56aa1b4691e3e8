"""The broker's pub/sub connections: one, or one per cluster shard.

A `Shard` is one pub/sub connection and the channels subscribed on it. On one Redis,
behind Sentinel, or on a cluster without sharded pub/sub there is one (PUBLISH reaches
every node of a cluster, so any node will do). With sharded pub/sub, a channel's
SPUBLISH reaches only the shard that owns its slot, so the broker keeps one `Shard`
per master and subscribes each channel on its owner (`RedisBroker._shard_for`).

Each shard reconnects on its own with backoff, subscribes again to its channels and
has the broker fill their gaps (`Owner.connected_again`); a lost sharded connection
first asks the broker to re-learn who owns what (`Owner.lost`: a failover promotes a
replica), which moves channels to the shard of their new owner.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Protocol

log = logging.getLogger(__name__)

# Backoff between attempts to reach Redis.
RECONNECT_MIN, RECONNECT_MAX = 0.1, 5.0
# How long `stop` waits for the reader: past the 1 s of its reads, with room to spare.
STOP_WITHIN = 5.0


class Owner(Protocol):
    @property
    def sharded(self) -> bool: ...

    def make_pubsub(self, address: tuple[str, int] | None) -> Any: ...

    async def on_item(self, shard: Shard, item: dict[str, Any]) -> None: ...

    async def connected_again(self, shard: Shard) -> None: ...

    async def lost(self, shard: Shard) -> None: ...


class Shard:
    def __init__(self, owner: Owner, address: tuple[str, int] | None) -> None:
        self.owner = owner
        self.address = address  # the master it listens to; None: the one Redis
        self.names: set[bytes] = set()
        self.pubsub: Any = None
        self.connected = asyncio.Event()
        self.retired = False  # no longer a master: its channels moved
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._read_forever())

    async def stop(self) -> None:
        self.retired = True
        if self.task is not None:
            self.task.cancel()
            # Within a read's timeout once `retired` is seen; never a stop that hangs.
            await asyncio.wait((self.task,), timeout=STOP_WITHIN)
            if not self.task.done():
                log.warning("Redis pub/sub reader did not stop within %g s", STOP_WITHIN)
        if self.pubsub is not None:
            await self.pubsub.aclose()

    async def subscribe(self, *names: bytes) -> None:
        if not self.owner.sharded:
            await self.pubsub.subscribe(*names)
            return
        # SSUBSCRIBE takes channels of one slot: one command each.
        for name in names:
            await self.pubsub.ssubscribe(name)

    async def unsubscribe(self, name: bytes) -> None:
        if self.owner.sharded:
            await self.pubsub.sunsubscribe(name)
        else:
            await self.pubsub.unsubscribe(name)

    async def _read_forever(self) -> None:
        delay = RECONNECT_MIN
        while not self.retired:
            try:
                self.pubsub = self.owner.make_pubsub(self.address)
                await self.pubsub.ping()  # connect now, so a failure is seen here
                if self.names:
                    await self.subscribe(*sorted(self.names))
                self.connected.set()
                delay = RECONNECT_MIN
                await self.owner.connected_again(self)
                # Not `while True`: a cancel that lands as get_message's own timeout
                # fires can be taken for that timeout (asyncio.timeout on Python 3.11)
                # and lost; `retired`, which `stop` sets first, ends the loop then.
                while not self.retired:
                    item = await self.pubsub.get_message(timeout=1.0)
                    if item is not None:
                        await self.owner.on_item(self, item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away (or a bug): back off, reconnect
                if self.connected.is_set():
                    log.warning("lost Redis pub/sub %s (%s); reconnecting", self.address or "", exc)
                self.connected.clear()
                try:
                    await self.pubsub.aclose()
                except Exception:
                    pass
                try:
                    await self.owner.lost(self)
                except Exception as error:  # the cluster is still failing over
                    log.debug("cluster topology not refreshed: %s", error)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(RECONNECT_MAX, delay * 2)
