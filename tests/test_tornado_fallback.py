"""Where `wire.take_over` cannot move the socket (a tornado whose stream internals it
does not know), tornado's frame loop keeps the connection and the handler is the
hub's connection, with the same outbox: the protocol, the order of frames and the
send-buffer bound hold there as they do on a moved socket."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from nyo_realtime_ext import handlers

from .support.embedded import embedded, messages, subscribed
from .support.rawclient import Raw, text


@pytest.fixture(autouse=True)
def socket_stays_with_tornado(monkeypatch: pytest.MonkeyPatch) -> None:
    async def cannot_move(stream: Any, service: Any) -> None:
        return None

    monkeypatch.setattr(handlers, "take_over", cannot_move)


async def opened(port: int, user: str, channel: str) -> Raw:
    client = await Raw.open(port, user)
    assert (await client.json())["type"] == "authenticated"
    await subscribed(client, channel)
    return client


async def test_publishes_reach_the_others_in_order_and_each_is_acked(tmp_path: Path) -> None:
    async with embedded(tmp_path, default_channel_type="public") as server:
        ada, bob = (
            await opened(server.port, "ada", "feed"),
            await opened(server.port, "bob", "feed"),
        )
        sessions = server.service.hub.sessions.values()
        assert all(isinstance(s.conn, handlers.RealtimeSocket) for s in sessions)  # not moved
        ada.writer.write(
            b"".join(
                text(
                    {
                        "type": "broadcast",
                        "channel": "feed",
                        "event": "e",
                        "payload": n,
                        "ref": f"p{n}",
                        "echo": False,
                    }
                )
                for n in range(50)
            )  # fmt: skip
        )
        assert await messages(bob, 50) == list(range(50))
        acks = [await ada.json() for _ in range(50)]
        assert [(a["type"], a["ref"]) for a in acks] == [("ack", f"p{n}") for n in range(50)]
        ada.close()
        bob.close()


async def test_a_client_that_stops_reading_is_cut_with_4429_and_the_others_get_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="nyo_realtime_ext.hub")
    async with embedded(tmp_path, default_channel_type="public", max_send_buffer=65536) as server:
        slow = await opened(server.port, "slow", "feed")
        slow.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        good = await opened(server.port, "good", "feed")
        publisher = await opened(server.port, "pub", "feed")
        count, pad = 200, "x" * 30_000  # 6 MB: more than the kernel holds for `slow`
        reading = asyncio.ensure_future(messages(good, count))
        for n in range(count):
            publisher.writer.write(
                text({"type": "broadcast", "channel": "feed", "event": "e",
                      "payload": [n, pad], "echo": False})
            )  # fmt: skip
        assert [p[0] for p in await asyncio.wait_for(reading, 60)] == list(range(count))
        cuts = [r.getMessage() for r in caplog.records if "with 4429" in r.getMessage()]
        assert len(cuts) == 1 and "/slow)" in cuts[0], cuts
        for client in (slow, good, publisher):
            client.close()
