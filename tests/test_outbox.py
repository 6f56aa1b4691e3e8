"""The sending path (`outbox.py`): frames of a burst go out in one write per client,
in order, after their commit; the bounds; `write_delay`; and the same through a
real server, standalone and on Redis, counted at the socket."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from nyo_realtime_ext.outbox import FLUSH_BYTES, Outbox, Writer, text_frame
from nyo_realtime_ext.protocol import CloseCode

from .support.embedded import count_writes, embedded, messages, subscribed
from .support.rawclient import Raw, text
from .support.redis_server import RedisServer
from .support.standalone_server import StandaloneServer
from .support.tokens import make_token


class Engine:
    """The engine's side of the writer: a commit that can be made to fail."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.fail = False

    def commit(self) -> None:
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        self.log.append("commit")

    def rollback(self) -> None:
        self.log.append("rollback")


class Socket:
    """An outbox's transport that records what it is handed."""

    def __init__(self, log: list[Any], unsent: int = 0) -> None:
        self.log = log
        self._unsent = unsent
        self.cut_with: int | None = None
        self.written = asyncio.get_running_loop().create_future()  # when, the first time

    def transmit(self, data: bytes) -> None:
        self.log.append(data)
        if not self.written.done():
            self.written.set_result(asyncio.get_running_loop().time())

    def unsent(self) -> int:
        return self._unsent

    def sending(self) -> bool:
        return self.cut_with is None

    def cut(self, code: int, reason: str) -> None:
        self.cut_with = code


def frames(*payloads: bytes) -> bytes:
    return b"".join(text_frame(p) for p in payloads)


async def next_pass() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_frames_of_a_burst_go_out_in_one_write_in_order_after_the_commit() -> None:
    log: list[Any] = []
    writer = Writer(Engine(log))  # type: ignore[arg-type]
    socket = Socket(log)
    outbox = Outbox(writer, socket, 1 << 20)
    payloads = [orjson.dumps({"n": n}) for n in range(50)]
    for payload in payloads:
        outbox.send(payload)
    assert log == []  # nothing leaves before the burst ends
    await next_pass()
    assert log == ["commit", frames(*payloads)]


async def test_a_frame_sent_to_many_is_framed_once() -> None:
    log: list[Any] = []
    writer = Writer(Engine(log))  # type: ignore[arg-type]
    sockets = [Socket(log) for _ in range(3)]
    outboxes = [Outbox(writer, s, 1 << 20) for s in sockets]
    payload = orjson.dumps({"type": "message"})
    for outbox in outboxes:
        outbox.send(payload)
    await next_pass()
    assert log[0] == "commit"
    written = log[1:]
    assert written == [text_frame(payload)] * 3
    assert written[0] is written[1] is written[2]  # the same bytes object: framed once


async def test_a_failed_commit_sends_nothing_and_cuts_the_clients_with_1011() -> None:
    log: list[Any] = []
    engine = Engine(log)
    writer = Writer(engine)  # type: ignore[arg-type]
    sockets = [Socket(log), Socket(log)]
    for socket in sockets:
        Outbox(writer, socket, 1 << 20).send(b'{"type":"ack","id":"e-1"}')
    engine.fail = True
    await next_pass()
    assert log == ["rollback"]  # no frame carries an id that does not exist
    assert [s.cut_with for s in sockets] == [CloseCode.INTERNAL_ERROR] * 2


async def test_a_client_over_max_send_buffer_is_cut_and_the_others_get_everything() -> None:
    log: list[Any] = []
    writer = Writer(Engine(log))  # type: ignore[arg-type]
    slow_log: list[Any] = []
    slow = Socket(slow_log, unsent=1000)  # has not taken 1000 bytes yet
    quick = Socket(log)
    slow_box, quick_box = Outbox(writer, slow, 1024), Outbox(writer, quick, 1024)
    payloads = [b"x" * 10 for _ in range(5)]
    for payload in payloads:
        slow_box.send(payload)
        quick_box.send(payload)
    await next_pass()
    assert slow.cut_with == CloseCode.TOO_MANY and slow_log == []
    assert log == ["commit", frames(*payloads)]


async def test_a_long_burst_goes_out_in_pieces_in_order_without_waiting_for_its_end() -> None:
    log: list[Any] = []
    writer = Writer(Engine(log))  # type: ignore[arg-type]
    outbox = Outbox(writer, Socket(log), 64 << 20)
    payloads = [b"%06d" % n + b"y" * 1000 for n in range(600)]  # about 2.3 x FLUSH_BYTES
    for payload in payloads:
        outbox.send(payload)
    written_early = [entry for entry in log if entry != "commit"]
    assert len(written_early) == 2  # two pieces of FLUSH_BYTES before the burst ends
    assert all(len(piece) >= FLUSH_BYTES for piece in written_early)
    await next_pass()
    pieces = [entry for entry in log if entry != "commit"]
    assert len(pieces) == 3 and b"".join(pieces) == frames(*payloads)
    assert log[0] == "commit"  # the first piece, too, waited for its commit


async def test_write_delay_waits_and_gathers_while_0_writes_on_the_next_pass() -> None:
    log: list[Any] = []
    delayed = Writer(Engine(log), write_delay=0.2)  # type: ignore[arg-type]
    socket = Socket(log)
    outbox = Outbox(delayed, socket, 1 << 20)
    start = asyncio.get_running_loop().time()
    outbox.send(b"1")
    await asyncio.sleep(0.05)
    outbox.send(b"2")
    at = await asyncio.wait_for(socket.written, 10)
    assert at - start >= 0.2
    assert log == ["commit", frames(b"1", b"2")]

    log.clear()
    prompt = Outbox(Writer(Engine(log)), Socket(log), 1 << 20)  # type: ignore[arg-type]
    prompt.send(b"3")
    await next_pass()  # no timer: the next pass of the loop writes it
    assert log == ["commit", frames(b"3")]


# -- through a real server, counted at the socket ------------------------------------


async def test_publishes_read_in_one_go_reach_each_subscriber_in_one_write(
    tmp_path: Path,
) -> None:
    async with embedded(tmp_path, default_channel_type="public") as server:
        await publish_in_one_write(server)


async def publish_in_one_write(server: Any) -> None:
    ada, bob = await Raw.open(server.port, "ada"), await Raw.open(server.port, "bob")
    for client in (ada, bob):
        assert (await client.json())["type"] == "authenticated"
        await subscribed(client, "feed")
    writes = count_writes(server, "bob")
    burst = b"".join(
        text({"type": "broadcast", "channel": "feed", "event": "e", "payload": n, "echo": False})
        for n in range(100)
    )
    ada.writer.write(burst)  # one TCP write: the server reads it in one go
    assert await messages(bob, 100) == list(range(100))
    assert len(writes) == 1  # one write, not one per publish
    ada.close()
    bob.close()


async def test_messages_from_one_read_of_redis_reach_each_subscriber_in_one_write(
    tmp_path: Path, redis_server: RedisServer, standalone: Any
) -> None:
    options = {"redis_url": redis_server.url, "default_channel_type": "public"}
    async with embedded(tmp_path, **options) as here:
        await publish_from_another_node(here, redis_server, standalone)


async def publish_from_another_node(here: Any, redis_server: RedisServer, standalone: Any) -> None:
    there: StandaloneServer = standalone(
        "--redis", redis_server.url, "--Realtime.default_channel_type=public",
        "--Realtime.rate_limit=0",
    )  # fmt: skip
    bob = await Raw.open(here.port, "bob")
    assert (await bob.json())["type"] == "authenticated"
    await subscribed(bob, "feed")
    writes = count_writes(here, "bob")

    def publish_there() -> None:
        for n in range(50):
            body = orjson.dumps({"event": "e", "payload": n})
            request = urllib.request.Request(
                f"{there.http_url}/api/channels/feed/messages", body, method="POST",
                headers={"Authorization": f"Bearer {make_token('ada')}",
                         "Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status in (200, 201)

    publisher = threading.Thread(target=publish_there)
    publisher.start()
    # This loop (the node's) is held while the other node publishes: every message
    # is waiting in the node's Redis socket when it looks again.
    publisher.join(30)
    assert await messages(bob, 50) == list(range(50))
    assert len(writes) <= 2  # the read from Redis, in one write (two if Redis split it)
    bob.close()


async def test_under_jupyter_too_publishes_read_in_one_go_reach_a_subscriber_in_one_write(
    jp_serverapp: Any, jupyter_url: str, jp_http_port: int, jp_base_url: str
) -> None:
    service = jp_serverapp.web_app.settings["nyo_realtime_service"]
    path = f"{jp_base_url}nyo-realtime/ws"
    ada = await Raw.open(jp_http_port, "ada", path=path)
    bob = await Raw.open(jp_http_port, "bob", path=path)
    for client in (ada, bob):
        assert (await client.json())["type"] == "authenticated"
        await subscribed(client, "feed")
    writes = count_writes(service, "bob")  # the socket moved to a WireSocket: see handlers
    burst = b"".join(
        text({"type": "broadcast", "channel": "feed", "event": "e", "payload": n, "echo": False})
        for n in range(100)
    )
    ada.writer.write(burst)
    assert await messages(bob, 100) == list(range(100))
    assert len(writes) == 1
    ada.close()
    bob.close()
