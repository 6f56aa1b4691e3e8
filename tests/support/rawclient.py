"""A raw WebSocket client for tests: frames as bytes, written as the test wants them
(several in one write, in the handshake's packet, malformed), read as they arrive."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any

import orjson

from .tokens import make_token

TIMEOUT = 10.0


def frame(payload: bytes, opcode: int = 0x1, final: bool = True) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    head = bytes([(0x80 if final else 0) | opcode])
    length = len(payload)
    if length < 126:
        head += bytes([0x80 | length])
    elif length <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack("!H", length)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", length)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def text(message: dict[str, Any]) -> bytes:
    return frame(orjson.dumps(message))


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, user: str = "ada", then: bytes = b"", path: str = "/ws") -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path}?token={make_token(user)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            + then  # in the same packet as the handshake
        )
        status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert b" 101 " in status.split(b"\r\n")[0], status
        return cls(reader, writer)

    async def read(self) -> tuple[int, bytes] | None:
        """The next frame as (opcode, payload); None at the end of the stream."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        except asyncio.IncompleteReadError:
            return None
        length = head[1] & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return head[0] & 0x0F, await self.reader.readexactly(length)

    async def json(self) -> dict[str, Any]:
        read = await self.read()
        assert read is not None and read[0] == 0x1, read
        return orjson.loads(read[1])

    def close(self) -> None:
        self.writer.close()
