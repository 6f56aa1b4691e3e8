"""nyo-realtime embedded in an application: hooks, and messages published from code.

    SECRET=... python examples/embedded_server.py [--port 3001]

Clients connect to ws://127.0.0.1:3001/ws with a JWT signed with $SECRET. The
application greets whoever connects (on the log), keeps "shouting" off every
channel, keeps `admin:` channels for the user "admin", and publishes the time
on `clock` every second, as the server (`from: null`). Ctrl-C or SIGTERM stops
it; clients are told 1001 and reconnect elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time

from nyo_realtime_ext import create_server
from nyo_realtime_ext.hooks import Client

log = logging.getLogger("example")


def greet(client: Client) -> None:
    log.info("hello %s (%s)", client.name, client.connection_id)


def goodbye(client: Client, code: int | None) -> None:
    log.info("goodbye %s, closed with %s", client.name, code)


async def may_subscribe(client: Client, channel: str) -> bool:
    # An async hook: it could ask a database; the loop serves everyone meanwhile.
    return not channel.startswith("admin:") or client.user_id == "admin"


def may_publish(client: Client, channel: str, event: str, payload: object) -> bool:
    return event != "shout"


async def main(port: int) -> None:
    server = create_server(
        port=port,
        path="/ws",
        jwt_secret=os.environ["SECRET"],
        db_path=os.environ.get("DB", ".nyo-realtime-example.db"),
        on_connect=greet,
        on_disconnect=goodbye,
        on_subscribe=may_subscribe,
        on_publish=may_publish,
    )
    server.on_listening = lambda port: print(f"listening on ws://127.0.0.1:{port}/ws", flush=True)
    serving = asyncio.ensure_future(server.serve())

    async def tick() -> None:
        while True:
            await server.publish("clock", "tick", {"time": time.time()})
            await asyncio.sleep(1)

    ticking = asyncio.ensure_future(tick())

    def stop() -> None:
        ticking.cancel()  # no more publishing, then the server goes
        server.stop()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    await serving


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=3001)
    asyncio.run(main(parser.parse_args().port))
