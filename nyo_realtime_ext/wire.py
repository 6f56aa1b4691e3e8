"""A WebSocket connection after the handshake, on a bare asyncio transport.

Why: tornado keeps, for every open WebSocket, the handler with its request and
headers, an IOStream with its buffers and futures, the protocol object, and a
chain of seven suspended coroutines in one Task that reads the next frame. For
a server holding ten thousand idle clients that was ~17 KB each, nearly all of
it waiting. Here tornado still answers the handshake (origins, limits, the 101);
then `take_over` moves the socket to one `WireSocket` (a `Protocol` with
`__slots__`) that parses frames as they arrive: no task and no buffer while a
client is idle.

It behaves as tornado's protocol does for what a client can see: frames of one
client are handled in order, each after the previous one's `Hub.receive`
finished (reading pauses meanwhile); pings get pongs and count as life; a
message over `max_payload_size` closes with 1009; a client's close is echoed
with its code; a server's close waits up to `CLOSE_WAIT` for the client's
answer; malformed frames (reserved bits, fragmented or long control frames,
invalid UTF-8) drop the connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import TYPE_CHECKING, Any

from tornado.util import _websocket_mask  # tornado's own unmasking (C when built)

from .handlers import _framed
from .protocol import CloseCode

if TYPE_CHECKING:
    from .hub import Session
    from .service import RealtimeService

log = logging.getLogger(__name__)

# Seconds a server-side close waits for the client's close frame, as tornado.
CLOSE_WAIT = 5.0

_TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    return struct.pack("!BB", 0x80 | opcode, len(payload)) + payload


class WireSocket(asyncio.Protocol):
    """One client's WebSocket as the hub's `Connection` and the writer's `Outbox`."""

    __slots__ = (
        "service", "session", "transport", "_buffer", "_fragments", "_opcode", "_busy",
        "_outbox", "_queued", "_closing", "_close_timer", "close_code", "_ready", "_send_limit",
        "__weakref__",
    )  # fmt: skip

    def __init__(self, service: RealtimeService) -> None:
        self.service = service
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self._buffer: bytes | bytearray = b""  # bytes of an incomplete frame
        self._fragments: bytearray | None = None  # a fragmented message so far
        self._opcode = 0  # of the fragmented message
        self._busy = False  # a frame's `Hub.receive` has not finished yet
        self._outbox: list[bytes] | None = None  # frames waiting for the end of this pass
        self._queued = 0
        self._closing = False  # our close frame is sent
        self._close_timer: asyncio.TimerHandle | None = None
        self.close_code: int | None = None  # the client's, when it sent one
        self._ready = False  # the hub knows the connection (frames may be handled)
        # Checked on every frame sent: a plain number, not a traitlets lookup.
        self._send_limit = service.config.max_send_buffer

    # -- the hub's Connection --------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue a frame for the end of this loop pass (see `handlers.RealtimeSocket`)."""
        if self._outbox is None:
            if self._closing or self.transport is None or self.transport.is_closing():
                return
            self._outbox, self._queued = [], 0
            self.service.writer.schedule(self)
        frame = _framed(data)
        self._outbox.append(frame)
        self._queued += len(frame)
        if self.backlog() > self._send_limit:
            self._drop_outbox(CloseCode.TOO_MANY, "too slow to read")

    def backlog(self) -> int:
        unsent = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return unsent + self._queued

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        # What the hub sent just before closing (say, `token_expired`) goes out first.
        self.service.writer.write_now(self)
        if self._closing or self.transport is None or self.transport.is_closing():
            return
        self._closing = True
        payload = b"" if code is None else struct.pack("!H", code) + (reason or "").encode()
        self.transport.write(control_frame(_CLOSE, payload[:125]))
        if self.close_code is not None:  # the client's close came first: we are done
            self.transport.close()
        else:
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_WAIT, self.transport.abort)

    # -- the writer's Outbox ---------------------------------------------------------

    def write_outbox(self) -> None:
        frames, self._outbox, self._queued = self._outbox, None, 0
        transport = self.transport
        if not frames or transport is None or transport.is_closing() or self._closing:
            return
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))

    def abandon_outbox(self) -> None:
        self._drop_outbox(CloseCode.INTERNAL_ERROR, "internal error; reconnect and recover")

    def _drop_outbox(self, code: int, reason: str) -> None:
        self._outbox, self._queued = None, 0
        if self.session is not None:
            self.service.hub.close(self.session, code, reason)
        else:
            self.close(code, reason)

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self._ready:
            transport.pause_reading()  # until `start`

    def start(self, session: Session | None, leftover: bytes) -> None:
        """The hub knows the connection: handle what arrived meanwhile, then read on."""
        self.session, self._ready = session, True
        if leftover:
            self._buffer = leftover + self._buffer
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._process()

    def data_received(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else data
        if self._ready and not self._busy:
            self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._outbox, self._buffer, self._fragments = None, b"", None
        session, self.session = self.session, None
        if session is not None:
            self.service.hub.disconnect(session, self.close_code)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- frames --------------------------------------------------------------------

    def _process(self) -> None:
        """Handle the complete frames in the buffer until one needs waiting for."""
        while not self._busy and self.transport is not None and not self.transport.is_closing():
            message = self._next_frame()
            if message is None:
                break
            opcode, data = message
            if opcode == _TEXT:
                try:
                    text: str | bytes = data.decode("utf-8")
                except UnicodeDecodeError:
                    self.abort()
                    return
            else:
                text = data
            if self.session is None:
                continue
            pending = self.service.hub.receive(self.session, text)
            self._busy = True
            self.transport.pause_reading()
            task = asyncio.ensure_future(pending)
            task.add_done_callback(self._received)

    def _received(self, task: asyncio.Future[None]) -> None:
        self._busy = False
        if not task.cancelled() and task.exception() is not None:
            log.error("handling a frame failed", exc_info=task.exception())
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._process()

    def _next_frame(self) -> tuple[int, bytes] | None:
        """The next complete data message, handling control frames on the way."""
        while True:
            buffer = self._buffer
            if len(buffer) < 2:
                return None
            first, second = buffer[0], buffer[1]
            final, opcode, length = first & 0x80, first & 0x0F, second & 0x7F
            start = 2
            if first & 0x70 or (opcode & 0x8 and (length > 125 or not final)):
                self.abort()  # reserved bits (no extension is agreed), bad control frame
                return None
            if length == 126:
                if len(buffer) < 4:
                    return None
                (length,) = struct.unpack_from("!H", buffer, 2)
                start = 4
            elif length == 127:
                if len(buffer) < 10:
                    return None
                (length,) = struct.unpack_from("!Q", buffer, 2)
                start = 10
            total = length + (len(self._fragments) if self._fragments is not None else 0)
            if total > self.service.config.max_payload_size:
                self.close(1009, "message too big")
                self.abort()
                return None
            masked = second & 0x80
            end = start + (4 if masked else 0) + length
            if len(buffer) < end:
                return None
            payload = bytes(buffer[end - length : end])
            if masked:
                payload = _websocket_mask(bytes(buffer[start : start + 4]), payload)
            self._buffer = buffer[end:] if len(buffer) > end else b""
            if opcode & 0x8:
                self._control(opcode, payload)
                continue
            if opcode == 0:  # continuation
                if self._fragments is None:
                    self.abort()
                    return None
                self._fragments += payload
                if not final:
                    continue
                opcode, payload, self._fragments = self._opcode, bytes(self._fragments), None
                return opcode, payload
            if self._fragments is not None:  # a new message inside a fragmented one
                self.abort()
                return None
            if not final:
                self._opcode, self._fragments = opcode, bytearray(payload)
                continue
            return opcode, payload

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _PING:
            if self.transport is not None and not self._closing:
                self.transport.write(control_frame(_PONG, payload))
            if self.session is not None:  # many non-browser clients ping: life too
                self.service.hub.touch(self.session)
        elif opcode == _CLOSE:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            if self._closing:  # the answer to ours
                if self.transport is not None:
                    self.transport.close()
                return
            # Echo the client's code (RFC 6455, section 5.5.1), then the hub hears of it.
            session, self.session = self.session, None
            if session is not None:
                self.service.hub.disconnect(session, self.close_code)
            echo = b"" if self.close_code is None else struct.pack("!H", self.close_code)
            self._closing = True
            if self.transport is not None:
                self.transport.write(control_frame(_CLOSE, echo))
                self.transport.close()


async def take_over(stream: Any, service: RealtimeService) -> tuple[WireSocket, bytes] | None:
    """Move a tornado IOStream's socket to a new `WireSocket`, reading paused until
    its `start`; None if that cannot be done safely (the caller keeps tornado's loop).

    Returns the protocol and the bytes tornado had read past the handshake.
    """
    if stream.writing() or stream.closed():  # the 101 must be out; a closed one stays
        return None
    buffer = getattr(stream, "_read_buffer", None)
    size = getattr(stream, "_read_buffer_size", None)
    if not isinstance(buffer, bytearray) or not isinstance(size, int):
        return None  # a tornado whose buffers we do not know
    leftover = bytes(buffer[:size])
    sock = stream.socket
    stream.io_loop.remove_handler(sock.fileno())
    fd = sock.detach()  # the stream forgets the socket without closing it
    stream.close()
    new = socket.socket(fileno=fd)
    new.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wire = WireSocket(service)
    await asyncio.get_running_loop().connect_accepted_socket(lambda: wire, new)
    return wire, leftover
