"""Wires the layers together once per process: engine, authenticator, hub, writer.

Both entry points (the Jupyter extension and `nyo-realtime serve`) build one
`RealtimeService` from the `Realtime` configuration and hand it to the same
tornado handlers, so the two modes cannot drift apart.
"""

from __future__ import annotations

import logging

from tornado.ioloop import PeriodicCallback

from .auth import Authenticator, AuthError
from .config import Realtime
from .engines import make_engine
from .hub import Hub
from .models import Identity
from .outbox import Writer

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
COLLECT_SECONDS = 3600.0


class RealtimeService:
    def __init__(self, config: Realtime) -> None:
        self.config = config
        self.engine = make_engine(config)
        self.authenticator = Authenticator(config)
        self.hub = Hub(config, self.engine, self.authenticator)
        self.writer = Writer(self.engine, config.write_delay)
        self.engine.on_commit_due(self.writer.book)
        self._timers: list[PeriodicCallback] = []

    async def start(self) -> None:
        """Start the periodic work and the engine; call from the event loop's thread."""
        timers = [
            (TICK_SECONDS, self.hub.tick),
            (TICK_SECONDS, self._maintain),
            (COLLECT_SECONDS, self._collect_idle),
            *self.engine.timers(),
        ]
        self._timers = [PeriodicCallback(work, seconds * 1000) for seconds, work in timers]
        for timer in self._timers:
            timer.start()
        await self.hub.start()

    async def stop(self) -> None:
        """Close every connection with 1001; this node's members leave everywhere."""
        for timer in self._timers:
            timer.stop()
        await self.hub.shutdown()  # which closes the engine

    def release(self) -> None:
        """After `stop` and the last frames: the engine lets its storage go."""
        self.engine.release()

    async def _maintain(self) -> None:
        try:
            await self.hub.maintain()
        except Exception:  # say, Redis is away: the next tick tries again
            log.warning("engine maintenance failed", exc_info=True)

    async def _collect_idle(self) -> None:
        try:
            gone = await self.hub.channels.collect_idle()
        except Exception:
            log.warning("collecting idle channels failed", exc_info=True)
            return
        if gone:
            log.info("forgot %d channels idle for over %gs", gone, self.config.channel_idle_ttl)

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
