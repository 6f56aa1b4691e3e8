"""Wires the layers together once per process: store, engine, authenticator, hub.

Both entry points (the Jupyter extension and `nyo-realtime serve`) build one
`RealtimeService` from the `Realtime` configuration and hand it to the same
tornado handlers, so the two modes cannot drift apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from tornado.ioloop import PeriodicCallback

from .auth import Authenticator, AuthError
from .config import Realtime
from .engines import MemoryEngine
from .hub import Hub
from .models import Identity
from .store import Store

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
EXPIRE_HISTORY_SECONDS = 60.0


class Outbox(Protocol):
    def write_outbox(self) -> None:
        """Write the frames queued during this loop pass."""

    def abandon_outbox(self) -> None:
        """Drop them: the commit they depend on failed."""


class PassWriter:
    """Ends each event-loop pass: one commit of the messages stored in it, then
    one write per connection of everything queued for it.

    Batching per pass turns a burst of messages into one SQLite commit and one
    `send` per client instead of one each, and committing before writing means
    no client ever sees an id that a crash could take back. Every append books
    the pass's end, so a message nobody is sent is committed all the same.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._waiting: list[Outbox] = []
        self._booked = False
        store.on_append = self.book

    def book(self) -> None:
        """Make sure this pass ends with a commit and the writes that wait for it."""
        if not self._booked:
            self._booked = True
            asyncio.get_running_loop().call_soon(self._end_pass)

    def schedule(self, outbox: Outbox) -> None:
        """`outbox` has frames queued for the end of this pass."""
        self._waiting.append(outbox)
        self.book()

    def write_now(self, outbox: Outbox) -> None:
        """For a connection about to close: what it was sent goes out first."""
        self._deliver(outbox, self._commit())

    def _end_pass(self) -> None:
        self._booked = False
        waiting, self._waiting = self._waiting, []
        committed = self._commit()
        for outbox in waiting:
            self._deliver(outbox, committed)

    def _commit(self) -> bool:
        try:
            self.store.commit()
        except Exception:
            log.exception("commit failed: the messages of this pass are dropped")
            self.store.rollback()
            return False
        return True

    @staticmethod
    def _deliver(outbox: Outbox, committed: bool) -> None:
        try:
            if committed:
                outbox.write_outbox()
            else:
                outbox.abandon_outbox()
        except Exception:  # one connection's trouble must not strand the others
            log.exception("writing to a client failed")


class RealtimeService:
    def __init__(self, config: Realtime) -> None:
        self.config = config
        self.store = Store(config.db_path)
        self.store.mark_all_offline(time.time())  # nobody is connected to a fresh process
        self.engine = MemoryEngine(self.store, config.history_size, config.history_ttl)
        self.authenticator = Authenticator(config)
        self.hub = Hub(config, self.store, self.engine, self.authenticator)
        self.writer = PassWriter(self.store)
        self._timers: list[PeriodicCallback] = []

    def start(self) -> None:
        """Start the periodic work; call from the event loop's thread."""
        self._timers = [
            PeriodicCallback(self.hub.tick, TICK_SECONDS * 1000),
            PeriodicCallback(self._expire_history, EXPIRE_HISTORY_SECONDS * 1000),
        ]
        for timer in self._timers:
            timer.start()

    def stop(self) -> None:
        """Close every connection with 1001 and leave the database consistent."""
        for timer in self._timers:
            timer.stop()
        self.hub.shutdown()

    def close_store(self) -> None:
        self.store.close()

    def _expire_history(self) -> None:
        self.store.drop_expired(time.time() - self.config.history_ttl)

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
