"""A minimal WebSocket client for tests: send frames, read them with time limits."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

TIMEOUT = 10.0
_refs = itertools.count(1)


class WSClient:
    connection_id: str | None = None

    def __init__(self, ws: WebSocketClientConnection) -> None:
        self.ws = ws
        # Frames skipped while waiting for something else, kept for later reads.
        self.backlog: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls, url: str, token: str | None = None, *, headers: dict[str, str] | None = None,
        query_token: bool = True, max_message_size: int = 64 * 1024 * 1024,
        timeout: float = TIMEOUT,
    ) -> WSClient:  # fmt: skip
        if token is not None and query_token:
            url = f"{url}{'&' if '?' in url else '?'}token={token}"
        request = HTTPRequest(url, headers=headers or {})
        ws = await asyncio.wait_for(
            websocket_connect(request, max_message_size=max_message_size), timeout
        )
        return cls(ws)

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        if isinstance(frame, dict):
            await self.ws.write_message(orjson.dumps(frame).decode())
        else:
            await self.ws.write_message(frame, binary=isinstance(frame, bytes))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any] | None:
        """The next frame, or None when the connection closed."""
        if self.backlog:
            return self.backlog.pop(0)
        data = await asyncio.wait_for(self.ws.read_message(), timeout)
        return None if data is None else orjson.loads(data)

    async def expect(self, type_: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """Skip frames until one of `type_` (matching `fields`) arrives."""
        for i, frame in enumerate(self.backlog):
            if frame["type"] == type_ and all(frame.get(k) == v for k, v in fields.items()):
                return self.backlog.pop(i)
        skipped = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                frame = await self._read(max(0.01, deadline - loop.time()))
                if frame is None:
                    raise AssertionError(f"closed ({self.close_code}) while waiting for {type_}")
                if frame["type"] == type_ and all(frame.get(k) == v for k, v in fields.items()):
                    return frame
                skipped.append(frame)
        finally:
            self.backlog.extend(skipped)

    async def request(self, frame: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
        """Send a frame with a ref and return the reply that echoes it."""
        frame.setdefault("ref", f"r{next(_refs)}")
        await self.send(frame)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            reply = await self._read(max(0.01, deadline - loop.time()))
            if reply is None:
                raise AssertionError(f"closed ({self.close_code}) while waiting for {frame}")
            if reply.get("ref") == frame["ref"]:
                return reply
            self.backlog.append(reply)

    async def _read(self, timeout: float) -> dict[str, Any] | None:
        data = await asyncio.wait_for(self.ws.read_message(), timeout)
        return None if data is None else orjson.loads(data)

    async def subscribe(self, channel: str, **fields: Any) -> dict[str, Any]:
        reply = await self.request({"type": "subscribe", "channel": channel, **fields})
        assert reply["type"] == "subscribed", reply
        return reply

    async def closed(self, timeout: float = TIMEOUT) -> int | None:
        """Read until the server closes; returns the close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.recv(max(0.01, deadline - loop.time())) is not None:
            pass
        return self.close_code

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    def close(self) -> None:
        self.ws.close()


async def no_frame(client: Any, timeout: float = 0.5) -> None:
    """Nothing arrives on `client` for a moment (proof that nothing else changed)."""
    with pytest.raises(asyncio.TimeoutError):
        frame = await client.recv(timeout)
        raise AssertionError(f"unexpected frame {frame}")


async def drain(client: Any) -> None:
    """Forget what `client` was sent so far (joins of the set-up)."""
    client.backlog.clear()
    try:
        while True:
            await client.recv(0.3)
    except asyncio.TimeoutError:
        pass
