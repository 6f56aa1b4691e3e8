"""A bare asyncio WebSocket client for load generation: thousands per process.

One `asyncio.Protocol` per connection and no task, no stream and no read loop
of its own, so 10,000 of them fit in one client process with little CPU: the
load generator must not be what limits the measurement. It speaks just enough
RFC 6455 for the server's text frames (unmasked, unfragmented, uncompressed:
the server sends nothing else) and masks its own frames with a zero key (the
server accepts any key; a real client must not do this).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import resource
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

_refs = itertools.count(1)
_ZERO_MASK = b"\0\0\0\0"


def raise_open_file_limit() -> int:
    """Take every file descriptor the hard limit allows; returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A final, masked (with a zero key, so the bytes stay as they are) frame."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + _ZERO_MASK + payload


class RawSocket(asyncio.Protocol):
    """One connection. `hello` resolves with the first unsolicited frame
    (`authenticated` when the token was in the URL); `on_frame(socket, frame)` is
    called for each later frame that is not the answer to a `request`; `closed`
    resolves with the close code."""

    __slots__ = (
        "transport", "buffer", "upgraded", "waiting", "on_frame", "closed", "close_code",
        "received", "user", "data", "hello",
    )  # fmt: skip

    def __init__(self, on_frame: Callable[[RawSocket, dict[str, Any]], None] | None = None):
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.on_frame = on_frame
        self.close_code: int | None = None
        self.received = 0
        self.user: str | None = None
        self.data: Any = None  # whatever the caller keeps per connection
        # The first frame without a ref: `authenticated` (or the `error` that refuses
        # the token). It may come in the same read as the handshake's answer.
        self.hello: asyncio.Future[dict[str, Any]] = loop.create_future()

    @classmethod
    async def open(
        cls,
        url: str,
        on_frame: Callable[[RawSocket, dict[str, Any]], None] | None = None,
        timeout: float = 30.0,
    ) -> RawSocket:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sock = cls(on_frame)
        await asyncio.wait_for(
            loop.create_connection(lambda: sock, parts.hostname, parts.port), timeout
        )
        key = base64.b64encode(os.urandom(16)).decode()
        sock.transport.write(  # type: ignore[union-attr]
            (
                f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        try:
            await asyncio.wait_for(asyncio.shield(sock.upgraded), timeout)
        except BaseException:
            sock.abort()
            raise
        return sock

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            del self.buffer[: end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                self.abort()
                return
            self.upgraded.set_result(None)
        self._frames()

    def _frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                (length,) = struct.unpack_from("!H", buffer, 2)
                start = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                (length,) = struct.unpack_from("!Q", buffer, 2)
                start = 10
            if len(buffer) < start + length:
                return
            payload = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == 0x1:
                self.received += 1
                self.on_text(payload)
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.close_code = code
                self.abort()
            elif opcode == 0x9:  # ping: pong with the same data
                self._write(client_frame(payload, 0xA))

    def on_text(self, payload: bytes) -> None:
        """A text frame; JSON here (a subclass may speak another dialect)."""
        self._dispatch(orjson.loads(payload))

    def _dispatch(self, frame: dict[str, Any]) -> None:
        ref = frame.get("ref")
        if ref is not None:
            waiter = self.waiting.pop(ref, None)
            if waiter is not None:
                if not waiter.done():
                    waiter.set_result(frame)
                return
        if not self.hello.done():
            self.hello.set_result(frame)
        elif self.on_frame is not None:
            self.on_frame(self, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed during the handshake"))
        for waiter in self.waiting.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError("connection lost"))
        self.waiting.clear()
        if not self.closed.done():
            self.closed.set_result(self.close_code)
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(f"closed ({self.close_code})"))

    # -- sending -------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send(self, frame: dict[str, Any]) -> None:
        self._write(client_frame(orjson.dumps(frame)))

    async def request(self, frame: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """Send `frame` with a fresh ref; the frame that answers it."""
        ref = frame["ref"] = f"r{next(_refs)}"
        waiter = asyncio.get_running_loop().create_future()
        self.waiting[ref] = waiter
        self.send(frame)
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self.waiting.pop(ref, None)

    def close(self, code: int = 1000) -> None:
        self._write(client_frame(struct.pack("!H", code), 0x8))
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
