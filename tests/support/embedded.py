"""A server in the test's own event loop, watched at its sockets, and raw clients'
small steps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from nyo_realtime_ext import create_server
from nyo_realtime_ext.embed import RealtimeServer

from .rawclient import Raw, text
from .tokens import SECRET


@asynccontextmanager
async def embedded(tmp_path: Path, **options: Any) -> AsyncIterator[RealtimeServer]:
    """`create_server` in this loop, so a test can watch its sockets."""
    server = create_server(
        port=0, jwt_secret=SECRET, db_path=str(tmp_path / "db.sqlite"), rate_limit=0,
        **options,
    )  # fmt: skip
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server.on_listening = listening.set_result
    serving = asyncio.ensure_future(server.serve())
    server.port = await asyncio.wait_for(listening, 10)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        await server.close()
        await asyncio.wait_for(serving, 10)


def count_writes(server: Any, user: str) -> list[bytes]:
    """Every write to `user`'s socket from now on (`server`: a RealtimeServer or its service)."""
    hub = getattr(server, "service", server).hub
    (session,) = [s for s in hub.sessions.values() if s.identity.user_id == user]
    transport = session.conn.transport
    writes: list[bytes] = []
    original = transport.write

    def write(data: bytes) -> None:
        writes.append(bytes(data))
        original(data)

    transport.write = write
    return writes


async def subscribed(client: Raw, channel: str) -> None:
    client.writer.write(text({"type": "subscribe", "channel": channel, "ref": "s"}))
    while (await client.json())["type"] != "subscribed":
        pass


async def messages(client: Raw, count: int) -> list[Any]:
    received = []
    while len(received) < count:
        frame = await client.json()
        if frame["type"] == "message":
            received.append(frame["payload"])
    return received
