"""The standalone server's frame handling after the handshake (`wire.py`), byte by byte.

A raw TCP client sends what well-behaved libraries never do (a frame in the
handshake's packet, fragments with a ping between them, invalid UTF-8, bad close
frames, reserved bits, an oversize fragmented message) and reads the server's
frames as they are on the wire; a failed connection never disturbs another one.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
from pathlib import Path

import orjson
import pytest

from nyo_realtime_ext.wire import CLOSE_WAIT

from .support.rawclient import Raw, frame, text

TIMEOUT = 10.0


async def test_a_frame_sent_with_the_handshake_is_answered(server):
    client = await Raw.open(server.port, then=text({"type": "ping", "ref": "early"}))
    assert (await client.json())["type"] == "authenticated"
    pong = await client.json()
    assert (pong["type"], pong["ref"]) == ("pong", "early")
    client.close()


async def test_requests_in_one_write_are_answered_in_order(server):
    client = await Raw.open(server.port)
    assert (await client.json())["type"] == "authenticated"
    batch = b"".join(
        text({"type": "subscribe", "channel": f"room-{i}", "ref": f"s{i}"}) for i in range(20)
    )
    client.writer.write(batch)
    refs = [(await client.json())["ref"] for _ in range(20)]
    assert refs == [f"s{i}" for i in range(20)]
    client.close()


async def test_a_fragmented_message_with_a_ping_between_its_parts(server):
    client = await Raw.open(server.port)
    assert (await client.json())["type"] == "authenticated"
    whole = orjson.dumps({"type": "subscribe", "channel": "room", "ref": "frag"})
    client.writer.write(
        frame(whole[:10], 0x1, final=False)
        + frame(b"are you there", 0x9)  # a ping may come between fragments
        + frame(whole[10:20], 0x0, final=False)
        + frame(whole[20:], 0x0)
    )
    assert await client.read() == (0xA, b"are you there")
    reply = await client.json()
    assert (reply["type"], reply["ref"]) == ("subscribed", "frag")
    client.close()


async def test_the_clients_close_code_is_echoed(server):
    client = await Raw.open(server.port)
    assert (await client.json())["type"] == "authenticated"
    client.writer.write(frame(struct.pack("!H", 4000) + b"bye", 0x8))
    opcode, payload = await client.read()  # type: ignore[misc]
    assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 4000))
    assert await client.read() is None  # and the server closes the TCP connection
    client.close()


async def failed_with(client: Raw, code: int) -> None:
    """The server fails the connection: a close frame with `code`, then the end of TCP."""
    read = await client.read()
    assert read is not None and read[0] == 0x8, read
    assert struct.unpack("!H", read[1][:2])[0] == code, read
    assert await client.read() is None
    client.close()


async def bad_and_good(port: int) -> tuple[Raw, Raw]:
    bad, good = await Raw.open(port, "bad"), await Raw.open(port, "good")
    for client in (bad, good):
        assert (await client.json())["type"] == "authenticated"
    return bad, good


async def still_served(good: Raw) -> None:
    good.writer.write(text({"type": "ping", "ref": "still"}))
    assert (await good.json())["ref"] == "still"
    good.close()


async def test_invalid_utf8_fails_only_that_connection_with_1007(server):
    bad, good = await bad_and_good(server.port)
    bad.writer.write(frame(b'{"type": "ping", "x": "\xff"}'))
    await failed_with(bad, 1007)
    await still_served(good)


async def test_invalid_utf8_across_fragments_fails_with_1007(server):
    bad, good = await bad_and_good(server.port)
    euro = "\u20ac".encode()  # split between fragments it is valid; cut short it is not
    bad.writer.write(frame(b'"' + euro[:2], 0x1, final=False) + frame(euro[2:] + b'"', 0x0))
    # A valid message split inside a character: answered (a `bad_request`, not JSON object).
    assert (await bad.json())["type"] == "error"
    bad.writer.write(frame(b'"' + euro[:2], 0x1, final=False) + frame(b'"', 0x0))
    await failed_with(bad, 1007)
    await still_served(good)


@pytest.mark.parametrize(
    "payload",
    [
        struct.pack("!H", 1005),  # "no status": never on the wire
        struct.pack("!H", 1006),  # "abnormal closure": never on the wire
        struct.pack("!H", 999),
        b"\x03",  # one byte: no room for a code
    ],
    ids=["1005", "1006", "999", "one-byte"],
)
async def test_a_bad_close_frame_fails_the_connection_with_1002(server, payload):
    bad, good = await bad_and_good(server.port)
    bad.writer.write(frame(payload, 0x8))
    await failed_with(bad, 1002)
    await still_served(good)


async def test_an_empty_close_frame_is_echoed_empty(server):
    client = await Raw.open(server.port)
    assert (await client.json())["type"] == "authenticated"
    client.writer.write(frame(b"", 0x8))
    assert await client.read() == (0x8, b"")
    assert await client.read() is None
    client.close()


async def test_an_oversize_fragmented_message_fails_with_1009(standalone):
    port = standalone("--Realtime.max_payload_size=1000").port
    bad, good = await bad_and_good(port)
    # Each fragment fits; together they do not.
    bad.writer.write(
        frame(b"[" + b" " * 400, 0x1, final=False)
        + frame(b" " * 400, 0x0, final=False)
        + frame(b" " * 400 + b"]", 0x0)
    )
    await failed_with(bad, 1009)
    await still_served(good)


async def test_a_reserved_bit_fails_the_connection_with_1002(server):
    bad, good = await bad_and_good(server.port)
    raw = bytearray(text({"type": "ping"}))
    raw[0] |= 0x40  # RSV1: no extension was agreed
    bad.writer.write(bytes(raw))
    await failed_with(bad, 1002)
    await still_served(good)


async def test_requests_before_a_close_are_handled_before_it(server):
    client, other = await bad_and_good(server.port)
    other.writer.write(text({"type": "subscribe", "channel": "room", "ref": "s"}))
    assert (await other.json())["type"] == "subscribed"
    client.writer.write(
        text({"type": "subscribe", "channel": "room", "ref": "s"})
        + frame(struct.pack("!H", 1000), 0x8)
    )
    # The subscribe was handled (the other member heard of the join) before the close.
    joined = await other.json()
    assert (joined["type"], joined["member"]["userId"]) == ("user:joined", "bad"), joined
    while True:
        read = await client.read()
        assert read is not None
        if read[0] == 0x8:
            assert read[1] == struct.pack("!H", 1000)
            break
    assert await client.read() is None
    client.close()
    other.close()


async def test_a_bad_token_gets_its_error_and_4401(server):
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws?token=nonsense HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")
    client = Raw(reader, writer)
    assert (await client.json())["type"] == "error"
    opcode, payload = await client.read()  # type: ignore[misc]
    assert (opcode, struct.unpack("!H", payload[:2])[0]) == (0x8, 4401)
    client.close()


async def test_pinging_without_reading_the_pongs_is_cut(standalone):
    # Pongs count against the send buffer like any frame: a client that pings and
    # never reads cannot make the server hold its answers without bound (it is
    # cut with 4429, then let go CLOSE_WAIT later, which this client sees).
    port = standalone("--Realtime.max_send_buffer=65536", "--Realtime.rate_limit=0").port
    bad, good = await bad_and_good(port)
    bad.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pings = frame(b"p" * 125, 0x9) * 1000
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CLOSE_WAIT + 30
    cut = False
    while not cut and loop.time() < deadline:
        try:
            bad.writer.write(pings)
            await asyncio.wait_for(bad.writer.drain(), 1.0)
        except asyncio.TimeoutError:
            pass  # the server reads slower than we write: go on
        except ConnectionError:
            cut = True
    assert cut, "the server kept answering pings nobody read"
    bad.close()
    await still_served(good)


async def test_a_client_that_closes_and_stops_reading_is_let_go(standalone):
    # After a client's close the hub has forgotten it, so no heartbeat would ever
    # end it: its socket and what it left unread go after CLOSE_WAIT, read or not.
    server = standalone("--Realtime.max_send_buffer=33554432", "--Realtime.rate_limit=0")
    bad, good = await bad_and_good(server.port)
    bad.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for client in (bad, good):
        client.writer.write(text({"type": "subscribe", "channel": "feed", "ref": "s"}))
        assert (await client.json())["type"] == "subscribed"
    payload = "x" * 50_000
    for n in range(200):  # 10 MB that `bad` never reads: more than the kernel holds
        good.writer.write(text({"type": "broadcast", "channel": "feed", "event": "e",
                                "payload": payload, "ref": n}))  # fmt: skip
    await good.writer.drain()
    for _ in range(400):  # each broadcast's ack and its message (echo is on)
        assert (await good.json())["type"] in ("message", "ack")

    def sockets() -> int:
        fds = Path(f"/proc/{server.process.pid}/fd")
        return sum(1 for fd in fds.iterdir() if "socket" in os.readlink(fd))

    before = sockets()
    bad.writer.write(frame(struct.pack("!H", 1000), 0x8))
    deadline = asyncio.get_running_loop().time() + CLOSE_WAIT + 10
    while sockets() >= before and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
    assert sockets() < before, "the server kept the socket of a client that had closed"
    bad.close()
    good.writer.write(text({"type": "ping", "ref": "still"}))
    while (reply := await good.json())["type"] != "pong":
        assert reply["type"] == "user:left"  # `feed` is a presence channel: bad left
    assert reply["ref"] == "still"
    good.close()


async def close_code_after_frames(client: Raw) -> tuple[list[str], int | None]:
    """The types (errors: codes) of the text frames a client gets, then the close code."""
    types: list[str] = []
    while (read := await client.read()) is not None:
        opcode, payload = read
        if opcode == 0x8:
            return types, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        if opcode == 0x1:
            sent = orjson.loads(payload)
            types.append(sent.get("code", sent["type"]))  # an error by its code
    return types, None


async def test_a_flood_of_websocket_pings_is_cut_as_a_flood_of_frames_is(server):
    # Each ping, answered by a pong, costs the rate budget as a JSON ping does:
    # 802,000 pings in 8 s were once free.
    bad, good = await bad_and_good(server.port)
    bad.writer.write(frame(b"", 0x9) * 2000)  # ten times the burst of 400
    types, code = await close_code_after_frames(bad)
    assert "rate_limited" in types
    assert code == 4429
    await still_served(good)


async def test_a_flood_of_fragments_is_cut_as_a_flood_of_frames_is(server):
    # Empty continuation frames, forever: each fragment costs the budget, so the
    # flooder is cut while nobody else notices.
    bad, good = await bad_and_good(server.port)
    flood = frame(b'"', 0x1, final=False) + frame(b"", 0x0, final=False) * 5000
    bad.writer.write(flood)
    types, code = await close_code_after_frames(bad)
    assert "rate_limited" in types
    assert code == 4429
    await still_served(good)


async def test_a_message_in_too_many_fragments_fails_with_1009(standalone):
    server = standalone("--Realtime.rate_limit=0")  # no budget: the count alone bounds it
    bad, good = await bad_and_good(server.port)
    ping = orjson.dumps({"type": "ping", "ref": "pieces"})
    pieces = [ping[:1]] + [b""] * 1022 + [ping[1:]]  # 1024 fragments: the most allowed
    bad.writer.write(
        b"".join(
            frame(piece, 0x1 if n == 0 else 0x0, final=n == len(pieces) - 1)
            for n, piece in enumerate(pieces)
        )
    )
    pong = await bad.json()
    assert (pong["type"], pong["ref"]) == ("pong", "pieces")
    pieces.insert(1, b"")  # one more
    bad.writer.write(
        b"".join(
            frame(piece, 0x1 if n == 0 else 0x0, final=n == len(pieces) - 1)
            for n, piece in enumerate(pieces)
        )
    )
    types, code = await close_code_after_frames(bad)
    assert types == [] and code == 1009
    await still_served(good)
