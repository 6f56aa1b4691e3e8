"""A WebSocket connection after the handshake, on a bare asyncio transport.

Why: tornado keeps, for every open WebSocket, the handler with its request and
headers, an IOStream with its buffers and futures, the protocol object, and a
chain of seven suspended coroutines in one Task that reads the next frame. For
a server holding ten thousand idle clients that was ~17 KB each, nearly all of
it waiting. Here tornado still answers the handshake (origins, limits, the 101);
then `take_over` moves the socket to one `WireSocket` (an asyncio `Protocol`
with `__slots__`): no task and no stream buffer while a client is idle.

RFC 6455 itself is python-websockets' sans-I/O core (`websockets.protocol.Protocol`,
one per connection, ~1.1 KB): it parses and unmasks frames, answers pings,
validates close codes and control frames, enforces `max_payload_size` (1009),
runs the closing handshake and fails the connection on protocol errors (1002).
This module feeds it the bytes that arrive, writes what it has to send, and does
what it leaves to its user: it joins the fragments of a message and decodes text
(invalid UTF-8 fails the connection with 1007), and it hands messages to the hub.
Data frames we send do not go through it: they are framed once per fan-out and
written by the connection's `outbox.Outbox`, once per burst (see `outbox`).

It behaves as tornado's protocol does for what a client can see: frames of one
client are handled in order, each after the previous one's `Hub.receive`
finished (reading pauses meanwhile, and frames already parsed wait). Unlike
tornado, which starts a task per message, one task handles every frame parsed
from a read, so that a read of publishes ends in one burst of writes; pings get
pongs and count as life; a client's close is echoed with its code; a server's
close goes out after the frames queued before it and waits up to `CLOSE_WAIT`
for the client's answer; malformed frames fail the connection (a close frame
with 1002, 1007 or 1009, then the TCP connection is closed).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING, Any, cast

from websockets.exceptions import ProtocolError
from websockets.frames import CloseCode as WsCloseCode
from websockets.frames import Frame, Opcode
from websockets.protocol import SEND_EOF, Protocol, Side, State

from .outbox import Outbox
from .protocol import CloseCode

if TYPE_CHECKING:
    from .hub import Session
    from .service import RealtimeService

log = logging.getLogger(__name__)

# One logger for every connection's `websockets.protocol.Protocol`. At WARNING:
# websockets (17) logs each closed connection at INFO (thousands of lines without an id
# after a restart) and traces every frame at DEBUG; its errors still come through.
_protocol_log = logging.getLogger(f"{__name__}.protocol")
_protocol_log.setLevel(logging.WARNING)

# Seconds a server-side close waits for the client's close frame, as tornado.
CLOSE_WAIT = 5.0
# Fragments one message may come in; more fail the connection with 1009. Clients
# that fragment do so in pieces of kilobytes (a 1 MiB message in a few hundred);
# one-byte pieces would cost the server far more than the bytes sent.
MAX_FRAGMENTS = 1024

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_CLOSE, _PING, _PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG
_OPEN = State.OPEN
_NO_STATUS = WsCloseCode.NO_STATUS_RCVD  # the code of a close frame without one


class WireSocket(asyncio.Protocol):
    """One client's WebSocket as the hub's `Connection` and its outbox's `Transport`."""

    __slots__ = (
        "service", "session", "transport", "outbox", "send", "backlog", "_ws", "_pending",
        "_fragments", "_opcode", "_count", "_busy", "_close_timer",
        "close_code", "_ready", "__weakref__",
    )  # fmt: skip

    def __init__(self, service: RealtimeService) -> None:
        self.service = service
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        # RFC 6455 (the handshake is done: it starts OPEN).
        self._ws = Protocol(
            Side.SERVER,
            state=_OPEN,
            max_size=service.config.max_payload_size,
            logger=_protocol_log,
        )
        # Frames parsed and not handled yet, the next one last; None when there are none.
        self._pending: list[Frame] | None = None
        self._fragments: bytearray | None = None  # a fragmented message so far
        self._opcode = _TEXT  # of the fragmented message
        self._count = 0  # its fragments so far
        self._busy = False  # a task is handling the parsed frames
        self.outbox = Outbox(service.writer, self, service.config.max_send_buffer)
        # The hub's `Connection.send` and `backlog` are the outbox's own, bound once:
        # `send` runs once per delivery, and a call less is a tenth of its cost.
        self.send = self.outbox.send
        self.backlog = self.outbox.backlog
        # Set once our close frame is out and we wait for the client's.
        self._close_timer: asyncio.TimerHandle | None = None
        self.close_code: int | None = None  # the client's, when it sent one
        self._ready = False  # the hub knows the connection (frames may be handled)

    # -- the hub's Connection --------------------------------------------------------

    # Data frames go from the outbox straight to the transport, bypassing the
    # websockets `Protocol`: a server's frames are unmasked and, with no extension
    # agreed, carry no reserved bit, so the bytes the writer frames once for every
    # subscriber are exactly what the `Protocol` would serialize. Only control
    # frames (pongs, close) go through it, and no data frame follows our close.

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        # What the hub sent just before closing (say, `token_expired`) goes out first.
        self.outbox.flush()
        if not self.sending():
            return
        ws = self._ws
        if ws.state is _OPEN:
            try:
                ws.send_close(code, _close_reason(reason) if code is not None else "")
            except ProtocolError:  # a code no close frame may carry (1005, 1006, 999...)
                log.warning("close code %s cannot be sent; closing with none", code)
                ws.send_close()
            assert self.transport is not None
            loop = asyncio.get_running_loop()
            self._close_timer = loop.call_later(CLOSE_WAIT, self.transport.abort)
        # Else the client's close, or a failure, came first and is not handled yet:
        # its answer (echo or close frame, then the end of the TCP connection) goes now.
        self._flush()

    # -- the outbox's Transport -----------------------------------------------------

    def transmit(self, data: bytes) -> None:
        assert self.transport is not None  # `sending` said so
        self.transport.write(data)

    def unsent(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def sending(self) -> bool:
        """False once our close frame is out (or the connection is gone)."""
        transport = self.transport
        return transport is not None and not transport.is_closing() and self._close_timer is None

    def cut(self, code: int, reason: str) -> None:
        if self.session is not None:
            self.service.hub.close(self.session, code, reason)
        else:
            self.close(code, reason)

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self._ready:
            transport.pause_reading()  # until `start`: nothing is read before the leftover

    def start(self, session: Session | None, leftover: bytes) -> None:
        """The hub knows the connection: handle what arrived meanwhile, then read on."""
        self.session, self._ready = session, True
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.resume_reading()
        if leftover:
            self.data_received(leftover)
        else:
            self._process()

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        ws.receive_data(data)
        events = cast("list[Frame]", ws.events_received())  # after the handshake: frames
        if events:
            events.reverse()
            self._pending = events if self._pending is None else events + self._pending
        # What the Protocol has to send (pongs; the echo of a close or a failure's
        # close frame, and the end of TCP) goes once the frames before it are handled.
        if self._ready and not self._busy:
            self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        self.outbox.discard()
        self._pending, self._fragments = None, None
        session, self.session = self.session, None
        if session is not None:
            self.service.hub.disconnect(session, self.close_code)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- frames --------------------------------------------------------------------

    def _flush(self) -> None:
        """Write what the websockets `Protocol` has to send: pongs, close frames, and
        `SEND_EOF` once the closing handshake is done or the connection failed."""
        for data in self._ws.data_to_send():
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            if data == SEND_EOF:  # the closing handshake is over, or the connection failed
                transport.close()  # after what is buffered; a server closes TCP first
                # A client that stops reading would keep the socket and its buffer
                # forever (the hub has let it go): the same bound as our own close.
                if self._close_timer is None:
                    loop = asyncio.get_running_loop()
                    self._close_timer = loop.call_later(CLOSE_WAIT, transport.abort)
            else:
                transport.write(data)

    def _process(self) -> None:
        """Handle the parsed frames in order: control frames here, messages in a task."""
        if self._busy:
            return
        message = self._next_message()
        if message is None:
            return
        assert self.transport is not None  # `_next_message` checked it
        self._busy = True
        self.transport.pause_reading()
        task = asyncio.ensure_future(self._receive(message))
        task.add_done_callback(self._received)

    async def _receive(self, message: str | bytes | None) -> None:
        """Hand the hub each message parsed so far, the next after the last is done.

        One task for all of them: a `Hub.receive` that need not wait (the memory
        engine's never does) returns without a pass of the event loop, so a read
        of publishes is handled, committed and written as one burst.
        """
        receive = self.service.hub.receive
        while message is not None:
            session = self.session
            if session is None:
                return
            await receive(session, message)
            message = self._next_message()

    def _received(self, task: asyncio.Future[None]) -> None:
        self._busy = False
        if not task.cancelled() and task.exception() is not None:
            log.error("handling a frame failed", exc_info=task.exception())
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
            self._process()

    def _next_message(self) -> str | bytes | None:
        """The next whole message for the hub, after the control frames before it;
        None when no parsed frame is left (or the connection is ending)."""
        while True:
            transport = self.transport
            if transport is None or transport.is_closing():
                return None
            pending = self._pending
            if not pending:
                # Everything parsed before a client's close or a failure is handled:
                # now its answer (a no-op while the connection is open).
                self._pending = None
                self._flush()
                return None
            frame = pending.pop()
            opcode = frame.opcode
            if opcode is _CLOSE:
                self._closed_by_client()
                continue
            session = self.session
            if opcode is _PING or opcode is _PONG:
                if session is not None:  # life, and its cost: see `Hub.charge`
                    self.service.hub.charge(session)
                if opcode is _PONG:
                    continue
                if self.outbox.backlog() > self.service.config.max_send_buffer:
                    # Pinging without reading our pongs: bounded as any other frame.
                    self.outbox.drop(CloseCode.TOO_MANY, "too slow to read")
                    return None
                if self._ws.state is _OPEN:  # then pongs are all the Protocol has queued
                    self._flush()
                continue
            data = bytes(frame.data)  # already bytes (unmasked): no copy
            if not frame.fin:
                # A fragment: the hub sees its message once, whole, so each one is
                # charged here; past the budget the whole message is dropped.
                if session is not None and not self.service.hub.charge(session):
                    self._fragments = None  # None: the rest of it is dropped too
                    continue
                if opcode is not _CONT:
                    self._opcode, self._fragments, self._count = opcode, bytearray(data), 1
                elif self._fragments is not None:
                    self._count += 1
                    if self._count >= MAX_FRAGMENTS:  # and the final one still to come
                        self._fail(WsCloseCode.MESSAGE_TOO_BIG, "too many fragments")
                        return None
                    self._fragments += data
                continue
            if opcode is _CONT:
                whole, self._fragments = self._fragments, None
                if whole is None:  # the end of a message dropped over the budget
                    continue
                whole += data
                opcode, data = self._opcode, bytes(whole)
            if opcode is _TEXT:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    self._fail(WsCloseCode.INVALID_DATA, "invalid UTF-8")
                    return None
                if session is not None:
                    return text
            elif session is not None:
                return data

    def _closed_by_client(self) -> None:
        """The client's close frame (first, or the answer to ours): the hub hears its
        code; the Protocol queued the echo, if one is due, and the end of TCP."""
        received = self._ws.close_rcvd
        code = received.code if received is not None else None
        self.close_code = None if code == _NO_STATUS else code
        session, self.session = self.session, None
        if session is not None:
            self.service.hub.disconnect(session, self.close_code)
        self._pending = None  # nothing after a close frame counts (RFC 6455, 1.4)
        self._flush()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455, 7.1.7): a close frame, then the end of TCP."""
        self._pending = self._fragments = None
        self._ws.fail(code, reason)  # no second close frame if ours is out, EOF once
        self._flush()


def _close_reason(reason: str | None) -> str:
    """`reason` cut to fit a close frame (125 bytes with the code's 2), at a character."""
    encoded = (reason or "").encode()
    return encoded[:123].decode(errors="ignore")


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
    if getattr(stream, "_read_buffer_pos", 0) or getattr(stream, "_user_read_buffer", False):
        return None  # older tornados keep an offset into the buffer: not ours to guess
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
