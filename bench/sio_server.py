"""Baseline for bench/fanout.py: a python-socketio server doing the same job.

python-socketio's AsyncServer on aiohttp (its fastest pure-Python setup). On
`subscribe` the client joins the room; on `broadcast` the server wraps the payload
in the same envelope as nyo-realtime (channel, id, event, payload, from, ts),
`emit`s it to the room (skipping the sender, like `echo: false`) and acks with the id.
No auth, no history, no rate limit: the cheapest correct fan-out socketio offers.

    python bench/sio_server.py PORT
"""

from __future__ import annotations

import itertools
import sys
import time

import socketio
from aiohttp import web


def main() -> None:
    port = int(sys.argv[1])
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    app = web.Application()
    sio.attach(app)
    ids = itertools.count(1)

    @sio.event
    async def subscribe(sid: str, channel: str) -> bool:
        await sio.enter_room(sid, channel)
        return True

    @sio.event
    async def broadcast(sid: str, data: dict) -> str:
        channel = data["channel"]
        message_id = f"m-{next(ids)}"
        message = {
            "channel": channel,
            "id": message_id,
            "event": data["event"],
            "payload": data.get("payload"),
            "from": {"connectionId": sid},
            "ts": int(time.time() * 1000),
        }
        await sio.emit("message", message, room=channel, skip_sid=sid)
        return message_id

    print(f"socketio listening on 127.0.0.1:{port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
