"""Peer for bench/peers.py: `websockets` (asyncio server, `websockets.asyncio.server`) with
rooms and its `broadcast()` helper, speaking nyo-realtime's JSON frames like
node_ws_server.js (subscribe -> subscribed, broadcast -> ack + message to the others in
the room). No auth, no history, no presence: what a Python user would write first.

    python bench/websockets_server.py PORT
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time

import orjson
from websockets.asyncio.server import ServerConnection, broadcast, serve

rooms: dict[str, set[ServerConnection]] = {}
ids = itertools.count(1)


async def handler(ws: ServerConnection) -> None:
    joined: list[str] = []
    await ws.send(
        orjson.dumps({"type": "authenticated", "connectionId": f"c-{next(ids)}"}).decode()
    )
    try:
        async for data in ws:
            try:
                frame = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            kind = frame.get("type")
            if kind == "subscribe":
                rooms.setdefault(frame["channel"], set()).add(ws)
                joined.append(frame["channel"])
                await ws.send(
                    orjson.dumps(
                        {"type": "subscribed", "ref": frame.get("ref"), "channel": frame["channel"]}
                    ).decode()
                )
            elif kind == "broadcast":
                mid = f"m-{next(ids)}"
                # Encoded once, the same str to every member (broadcast() frames it once).
                message = orjson.dumps(
                    {"type": "message", "channel": frame["channel"], "id": mid,
                     "event": frame.get("event"), "payload": frame.get("payload"),
                     "ts": int(time.time() * 1000)}
                ).decode()  # fmt: skip
                room = rooms.get(frame["channel"], ())
                broadcast([m for m in room if m is not ws], message)
                if frame.get("ref") is not None:
                    await ws.send(
                        orjson.dumps({"type": "ack", "ref": frame["ref"], "id": mid}).decode()
                    )
            elif kind == "ping":
                await ws.send(
                    orjson.dumps(
                        {"type": "pong", "ref": frame.get("ref"), "ts": int(time.time() * 1000)}
                    ).decode()
                )
    finally:
        for name in joined:
            rooms.get(name, set()).discard(ws)


async def main() -> None:
    port = int(sys.argv[1])
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**20) as server:
        print(f"websockets listening on 127.0.0.1:{port}", flush=True)
        await stop
        server.close(close_connections=True)
        await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
