"""Wires the layers together once per process: engine, authenticator, hub, writer.

Both entry points (the Jupyter extension and `nyo-realtime serve`) build one
`RealtimeService` from the `Realtime` configuration and hand it to the same
tornado handlers, so the two modes cannot drift apart.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tornado.ioloop import PeriodicCallback

from .auth import Authenticator, AuthError
from .config import Realtime
from .engines import Engine, MemoryEngine
from .hub import Hub
from .models import Identity
from .outbox import Writer
from .store import Store

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
EXPIRE_HISTORY_SECONDS = 60.0
COLLECT_SECONDS = 3600.0
# How often the WAL is copied into the database file, in a worker thread (see
# `Store.checkpoint`): at ~4 KB a message, 1 s of a busy server is a few MB of WAL.
CHECKPOINT_SECONDS = 1.0


def make_engine(config: Realtime) -> tuple[Engine, Store | None]:
    """The engine the configuration asks for: Redis when `redis_url` is set."""
    if config.redis_url:
        from .engines.redis import RedisEngine  # redis-py is only needed here

        return RedisEngine(config), None
    store = Store(config.db_path)
    store.mark_all_offline(time.time())  # nobody is connected to a fresh process
    return MemoryEngine(store, config.history_size, config.history_ttl), store


class RealtimeService:
    def __init__(self, config: Realtime) -> None:
        self.config = config
        self.engine, self.store = make_engine(config)
        self.authenticator = Authenticator(config)
        self.hub = Hub(config, self.engine, self.authenticator)
        self.writer = Writer(self.engine, config.write_delay)
        if self.store is not None:  # every append books the burst's commit
            self.store.on_append = self.writer.book
        self._timers: list[PeriodicCallback] = []
        self._checkpointing: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start the periodic work and the engine; call from the event loop's thread."""
        self._timers = [
            PeriodicCallback(self.hub.tick, TICK_SECONDS * 1000),
            PeriodicCallback(self._maintain, TICK_SECONDS * 1000),
        ]
        if self.store is not None:
            self._timers.append(
                PeriodicCallback(self._expire_history, EXPIRE_HISTORY_SECONDS * 1000)
            )
            self._timers.append(PeriodicCallback(self._checkpoint, CHECKPOINT_SECONDS * 1000))
        self._timers.append(PeriodicCallback(self._collect_idle, COLLECT_SECONDS * 1000))
        for timer in self._timers:
            timer.start()
        await self.hub.start()

    async def stop(self) -> None:
        """Close every connection with 1001; this node's members leave everywhere."""
        for timer in self._timers:
            timer.stop()
        await self.hub.shutdown()
        if self._checkpointing is not None:  # the store closes next: let it finish
            await asyncio.wait([self._checkpointing], timeout=30)

    def close_store(self) -> None:
        if self.store is not None:
            self.store.close()

    async def _maintain(self) -> None:
        try:
            await self.hub.maintain()
        except Exception:  # say, Redis is away: the next tick tries again
            log.warning("engine maintenance failed", exc_info=True)

    async def _collect_idle(self) -> None:
        try:
            gone = await self.hub.collect_idle()
        except Exception:
            log.warning("collecting idle channels failed", exc_info=True)
            return
        if gone:
            log.info("forgot %d channels idle for over %gs", gone, self.config.channel_idle_ttl)

    def _checkpoint(self) -> None:
        if self._checkpointing is not None and not self._checkpointing.done():
            return  # the last one is still copying: no queue of them
        loop = asyncio.get_running_loop()
        self._checkpointing = loop.run_in_executor(None, self.store.checkpoint)  # type: ignore[union-attr]
        self._checkpointing.add_done_callback(_log_checkpoint_failure)

    def _expire_history(self) -> None:
        self.store.drop_expired(time.time() - self.config.history_ttl)  # type: ignore[union-attr]

    def identify_handshake(self, token: str | None, jupyter_user: object | None) -> Identity | None:
        """Identity from handshake credentials; None means "wait for an `auth` frame".

        Under Jupyter the `token` query parameter may be Jupyter's own token,
        which Jupyter has already checked: a token that is not a valid JWT then
        falls back to the Jupyter user instead of being refused.
        """
        if token:
            try:
                return self.authenticator.identify(token)
            except AuthError:
                if jupyter_user is None:
                    raise
        if jupyter_user is not None:
            return self.authenticator.identity_from_jupyter(jupyter_user)
        return None


def _log_checkpoint_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        # The WAL keeps everything meanwhile; the next tick tries again.
        log.warning("SQLite checkpoint failed", exc_info=done.exception())
