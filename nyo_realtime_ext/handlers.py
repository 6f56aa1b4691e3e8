"""Tornado transports: thin adapters between sockets and the hub.

Sending bypasses `WebSocketHandler.write_message` on purpose. That method
frames the payload again for every client and wraps every write in a new
asyncio Task; profiling a fan-out to 100 subscribers put a quarter of the
server's time there. A server's frames are unmasked and, with compression
off, the same bytes for every client, so a message is framed once (see
`_framed`), and the frames for one client are gathered during one pass of
the event loop and written with one `send` syscall (`service.PassWriter`).
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import orjson
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler

from .auth import AuthError
from .hub import Session
from .protocol import CloseCode, ErrorCode
from .service import RealtimeService

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


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked, uncompressed text frame (RFC 6455, section 5.2)."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


# The hub hands the same bytes object to every subscriber of a message in a
# row, so remembering the last one frames each message once. Holding the
# reference keeps `is` from matching a recycled object.
_last_framed: tuple[bytes, bytes] = (b"", b"")


def _framed(payload: bytes) -> bytes:
    global _last_framed
    if _last_framed[0] is not payload:
        _last_framed = (payload, text_frame(payload))
    return _last_framed[1]


class QueuedFrames:
    """The sending half both WebSocket transports share (this tornado handler and
    `wire.WireSocket`): the hub's `send` queues a frame for the end of the loop
    pass, `service.PassWriter` writes the queue in one `send` syscall, and what is
    queued plus what the client has not taken never passes `max_send_buffer`:
    the client is cut with 4429 first. (The hub sizes recoveries to fit, see
    `Hub._on_subscribe`.)

    A transport calls `_init_queue` first, and provides `service`, `session`,
    `backlog`, `_stopped_sending`, `write_outbox` and `close`.
    """

    # Slots, not a dict: WireSocket keeps one per idle connection (see `wire`).
    __slots__ = ("_outbox", "_queued", "_send_limit")

    service: RealtimeService
    session: Session | None

    def _init_queue(self, service: RealtimeService) -> None:
        self._outbox: list[bytes] | None = None  # frames waiting for the end of this pass
        self._queued = 0  # bytes in _outbox
        # Checked on every frame sent: a plain number, not a traitlets lookup.
        self._send_limit = service.config.max_send_buffer

    if TYPE_CHECKING:  # the transport's own; nothing here may shadow tornado's `close`

        def backlog(self) -> int: ...
        def _stopped_sending(self) -> bool: ...
        def write_outbox(self) -> None: ...
        def close(self, code: int | None = None, reason: str | None = None) -> None: ...

    def send(self, data: bytes) -> None:
        """Queue a frame for the end of this loop pass."""
        if self._outbox is None:
            if self._stopped_sending():
                return
            self._outbox, self._queued = [], 0
            self.service.writer.schedule(self)
        frame = _framed(data)
        self._outbox.append(frame)
        self._queued += len(frame)
        if self.backlog() > self._send_limit:
            self._drop_outbox(CloseCode.TOO_MANY, "too slow to read")

    def abandon_outbox(self) -> None:
        """The pass's commit failed: its frames carry ids that do not exist."""
        self._drop_outbox(CloseCode.INTERNAL_ERROR, "internal error; reconnect and recover")

    def _drop_outbox(self, code: int, reason: str) -> None:
        self._outbox, self._queued = None, 0
        if self.session is not None:
            self.service.hub.close(self.session, code, reason)
        else:
            self.close(code, reason)


class RealtimeSocket(QueuedFrames, WebSocketHandler):
    """One client's WebSocket. Implements the hub's `Connection`."""

    service: RealtimeService
    session: Session | None = None
    _unsent = 0  # bytes handed to the stream that the client has not taken yet

    def initialize(self, service: RealtimeService) -> None:
        self.service = service
        self._init_queue(service)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        # Refused before the upgrade, while an HTTP answer can still say why.
        limit = self.service.config.max_connections
        if limit and len(self.service.hub.sessions) >= limit:
            self.set_status(503)
            self.set_header("Content-Type", "application/json")
            self.set_header("Retry-After", str(RETRY_AFTER_SECONDS))
            message = (
                f"this server holds its maximum of {limit} connections (max_connections); "
                "try again later"
            )
            self.finish(
                orjson.dumps({"error": {"code": ErrorCode.LIMIT_EXCEEDED, "message": message}})
            )
            return
        await super().get(*args, **kwargs)

    @property
    def max_message_size(self) -> int:
        # tornado closes with 1009 above this, before the frame is buffered whole.
        return self.service.config.max_payload_size

    def get_compression_options(self) -> None:
        # Compression is per connection: it would undo "encode once" for every subscriber.
        return None

    def jupyter_user(self) -> Any:
        return None

    async def open(self, *args: Any, **kwargs: Any) -> None:
        # A coroutine: tornado reads no frame of the connection before it returns.
        self.set_nodelay(True)
        hub = self.service.hub
        try:
            identity = self.service.identify_handshake(bearer_token(self), self.jupyter_user())
        except AuthError as exc:
            hub.reject(self, exc)
            return
        # `authenticated` shows the name and colour the user chose: read them first.
        profile = await hub.chosen_profile(identity) if identity is not None else None
        if self.ws_connection is None or self.ws_connection.is_closing():
            return  # gone meanwhile: on_close found no session to end
        self.session = hub.connect(self, identity, profile)

    def on_message(self, message: str | bytes) -> Awaitable[None] | None:
        # tornado awaits what this returns before it reads the connection's next
        # frame: one client's requests are handled in order, one at a time.
        if self.session is not None:
            return self.service.hub.receive(self.session, message)
        return None

    def on_ping(self, data: bytes) -> None:
        # Protocol-level pings (many non-browser clients send them) count as life too.
        if self.session is not None:
            self.service.hub.touch(self.session)

    def on_close(self) -> None:
        if self.session is not None:
            self.service.hub.disconnect(self.session, self.close_code)

    def backlog(self) -> int:
        return self._unsent + self._queued

    def _stopped_sending(self) -> bool:
        return self.ws_connection is None or self.ws_connection.is_closing()

    def write_outbox(self) -> None:
        """Write what this loop pass queued, in one `send`."""
        frames, self._outbox, self._queued = self._outbox, None, 0
        connection = self.ws_connection
        if not frames or connection is None or connection.is_closing():
            return
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        try:
            written = connection.stream.write(data)  # type: ignore[union-attr]  # open: it has a stream
        except StreamClosedError:
            return
        if not written.done():  # the kernel took it all at once: nothing is pending
            self._unsent += len(data)
            written.add_done_callback(lambda _: self._taken(len(data)))

    def _taken(self, size: int) -> None:
        self._unsent -= size

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        # What the hub sent just before closing (say, `token_expired`) goes out first.
        self.service.writer.write_now(self)
        super().close(code, reason)
