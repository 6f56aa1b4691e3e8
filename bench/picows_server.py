"""Peer for bench/peers.py: `picows` (Cython WebSocket on asyncio) with rooms, speaking
nyo-realtime's JSON frames like node_ws_server.js (subscribe -> subscribed, broadcast ->
ack + message to the others in the room). No auth, no history, no presence.

    python bench/picows_server.py PORT
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

rooms: dict[str, set[WSTransport]] = {}
clients: set[WSTransport] = set()
ids = itertools.count(1)
TEXT = WSMsgType.TEXT


class Client(WSListener):
    def __init__(self) -> None:
        self.joined: list[str] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        clients.add(transport)
        transport.send(
            TEXT, orjson.dumps({"type": "authenticated", "connectionId": f"c-{next(ids)}"})
        )

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if frame.msg_type != TEXT:
            return  # the clients send neither fragments nor binary frames
        try:
            data = orjson.loads(frame.get_payload_as_memoryview())
        except orjson.JSONDecodeError:
            return
        kind = data.get("type")
        if kind == "subscribe":
            rooms.setdefault(data["channel"], set()).add(transport)
            self.joined.append(data["channel"])
            transport.send(
                TEXT,
                orjson.dumps(
                    {"type": "subscribed", "ref": data.get("ref"), "channel": data["channel"]}
                ),
            )
        elif kind == "broadcast":
            mid = f"m-{next(ids)}"
            # Encoded once, the same bytes to every member.
            message = orjson.dumps(
                {"type": "message", "channel": data["channel"], "id": mid,
                 "event": data.get("event"), "payload": data.get("payload"),
                 "ts": int(time.time() * 1000)}
            )  # fmt: skip
            for member in rooms.get(data["channel"], ()):
                if member is not transport:
                    member.send(TEXT, message)
            if data.get("ref") is not None:
                transport.send(TEXT, orjson.dumps({"type": "ack", "ref": data["ref"], "id": mid}))
        elif kind == "ping":
            transport.send(
                TEXT,
                orjson.dumps(
                    {"type": "pong", "ref": data.get("ref"), "ts": int(time.time() * 1000)}
                ),
            )

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        clients.discard(transport)
        for name in self.joined:
            rooms.get(name, set()).discard(transport)


async def main() -> None:
    port = int(sys.argv[1])

    def listener_factory(request: WSUpgradeRequest) -> Client:
        return Client()

    server = await ws_create_server(listener_factory, "127.0.0.1", port)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    print(f"picows listening on 127.0.0.1:{port}", flush=True)
    await stop
    server.close()
    for transport in list(clients):
        transport.send_close(1001)
        transport.disconnect()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
