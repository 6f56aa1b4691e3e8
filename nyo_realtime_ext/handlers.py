"""The WebSocket handshake, and tornado's frame loop where the socket stays tornado's.

After tornado's handshake (origins, limits, the 101) `RealtimeSocket.open`
moves the socket to a `wire.WireSocket`, under `nyo-realtime serve` and under
Jupyter alike, and this handler, its request and tornado's frame loop are let
go (memory, and a burst of frames handled in one pass: see `wire`). Should
that not be possible, tornado's loop carries on with this handler as the hub's
`Connection`.

Either way, sending bypasses `WebSocketHandler.write_message` on purpose. That
method frames the payload again for every client and wraps every write in a
new asyncio Task; profiling a fan-out to 100 subscribers put a quarter of the
server's time there. Frames go through an `outbox.Outbox` instead, framed once
and written once per client per burst.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import Any

import orjson
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler

from .auth import AuthError
from .hub import Refused, Session, Slot
from .models import Identity
from .outbox import Outbox
from .protocol import ErrorCode
from .service import RealtimeService
from .wire import take_over

# What a refused handshake tells the client to wait before it tries again.
RETRY_AFTER_SECONDS = 5


def bearer_token(handler: Any) -> str | None:
    """A token from `?token=` or `Authorization: Bearer`."""
    token = handler.get_query_argument("token", None)
    if token:
        return token
    scheme, _, value = handler.request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class RealtimeSocket(WebSocketHandler):
    """One client's WebSocket handshake; the hub's `Connection` only where the
    socket could not be taken over (then its outbox's `Transport` too)."""

    service: RealtimeService
    session: Session | None = None
    # Only where tornado keeps the socket (see `open`): the outbox refers back to
    # this handler, a cycle that would hold every taken-over handshake's handler,
    # request and stream until the garbage collector's next full pass.
    outbox: Outbox | None = None
    _unsent = 0  # bytes handed to the stream that the client has not taken yet
    # From the handshake (`get`): who the credentials say, or why they were refused,
    # and the slot reserved for the connection until a session holds it.
    _identity: Identity | None = None
    _refusal: AuthError | None = None
    _slot: Slot | None = None

    def initialize(self, service: RealtimeService) -> None:
        self.service = service

    def backlog(self) -> int:
        return self.outbox.backlog() if self.outbox is not None else 0

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Credentials are read, and a slot taken (`Hub.admission`), before the upgrade
        # and before anything is awaited: refused while an HTTP answer can still say
        # why, and many handshakes at once cannot all pass one check.
        self._identity, self._refusal = None, None
        try:
            self._identity = self.service.identify_handshake(
                bearer_token(self), self.jupyter_user()
            )
        except AuthError as exc:  # upgraded all the same, then told (4401) in `open`
            self._refusal = exc
        try:
            self._slot = self.service.hub.admission.admit(
                self.request.remote_ip or "", authenticated=self._identity is not None
            )
        except Refused as refused:
            self.set_status(refused.status)
            self.set_header("Content-Type", "application/json")
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
            self.finish(
                orjson.dumps(
                    {"error": {"code": ErrorCode.LIMIT_EXCEEDED, "message": refused.message}}
                )
            )
            return
        try:
            await super().get(*args, **kwargs)  # the upgrade, then `open`
        finally:
            # Still ours: refused by tornado (origin, headers), or the connection never
            # reached the hub. A session that has it gives it back when it ends.
            slot, self._slot = self._slot, None
            if slot is not None:
                slot.release()

    @property
    def max_message_size(self) -> int:
        # tornado closes with 1009 above this, before the frame is buffered whole.
        return self.service.config.max_payload_size

    def get_compression_options(self) -> None:
        # Compression is per connection: it would undo "encode once" for every subscriber.
        return None

    def jupyter_user(self) -> Any:
        return None

    def handed_over(self) -> None:
        """The socket is a `WireSocket`'s now: stop what this handler did with it."""

    async def open(self, *args: Any, **kwargs: Any) -> None:
        # A coroutine: tornado reads no frame of the connection before it returns.
        # Everything from the request was read in `get`, before the move lets it go.
        ws = self.ws_connection
        # Jupyter keeps the current handler in a context variable, and every callback
        # made from here copies the context: the moved socket's reads would hold this
        # handler, its request and its stream (8 KB) for its whole life. So the socket
        # starts in a context of its own.
        fresh = contextvars.Context()
        taken = (
            await fresh.run(asyncio.ensure_future, take_over(ws.stream, self.service))
            if ws is not None
            else None
        )
        if taken is None:
            self.outbox = Outbox(self.service.writer, self, self.service.config.max_send_buffer)
            self.send = self.outbox.send  # the hub's `Connection.send`: a call less each
            self.set_nodelay(True)
            await self._connect(self)
            return
        assert ws is not None
        ws.client_terminated = ws.server_terminated = True  # tornado's loop ends here
        # And its keep-alive pings (Jupyter sets websocket_ping_interval): their task
        # would hold this handler, its request and its stream, 8 KB a connection.
        pinging = getattr(ws, "_ping_coroutine", None)
        if pinging is not None:
            pinging.cancel()
        self.handed_over()
        wire, leftover = taken
        if wire.transport is None or wire.transport.is_closing():
            return  # gone during the move: the hub never knew it
        try:
            fresh.run(wire.start, await self._connect(wire), leftover)
        except BaseException:
            # tornado would close only its own, already closed stream: without this
            # the client would wait for `authenticated` on a socket nobody reads.
            wire.abort()
            raise

    async def _connect(self, conn: Any) -> Session | None:
        """The hub's session for `conn` (this handler or a `WireSocket`), or None if
        the credentials were refused or the client went away meanwhile."""
        hub = self.service.hub
        identity = self._identity
        if self._refusal is not None:
            hub.reject(conn, self._refusal)
            return None
        # `authenticated` shows the name and colour the user chose: read them first.
        profile = await hub.chosen_profile(identity) if identity is not None else None
        if not conn.sending():
            return None  # gone meanwhile: nothing to end
        session = hub.connect(conn, identity, profile, self._slot)
        if session is not None:
            self._slot = None  # the session's now
        if conn is self:
            self.session = session
        return session

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        # tornado awaits what this returns before it reads the connection's next
        # frame: one client's requests are handled in order, one at a time.
        if self.session is not None:
            return self.service.hub.receive(self.session, message)
        return None

    def on_ping(self, data: bytes) -> None:
        # Protocol-level pings (many non-browser clients send them) count as life,
        # and against the rate budget as any frame does.
        if self.session is not None:
            self.service.hub.charge(self.session)

    def on_pong(self, data: bytes) -> None:
        if self.session is not None:
            self.service.hub.charge(self.session)

    def on_close(self) -> None:
        if self.outbox is not None:
            self.outbox.discard()
        if self.session is not None:
            self.service.hub.disconnect(self.session, self.close_code)

    # -- the outbox's Transport, while the socket is tornado's ---------------------

    def transmit(self, data: bytes) -> None:
        connection = self.ws_connection
        assert connection is not None and connection.stream is not None  # `sending`
        try:
            written = connection.stream.write(data)
        except StreamClosedError:
            return
        if not written.done():  # the kernel took it all at once: nothing is pending
            self._unsent += len(data)
            written.add_done_callback(lambda _: self._taken(len(data)))

    def _taken(self, size: int) -> None:
        self._unsent -= size

    def unsent(self) -> int:
        return self._unsent

    def sending(self) -> bool:
        return self.ws_connection is not None and not self.ws_connection.is_closing()

    def cut(self, code: int, reason: str) -> None:
        if self.session is not None:
            self.service.hub.close(self.session, code, reason)
        else:
            self.close(code, reason)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        # What the hub sent just before closing (say, `token_expired`) goes out first.
        if self.outbox is not None:
            self.outbox.flush()
        super().close(code, reason)
