"""The server as a library: `create_server` with hooks, publishing from code, and
the example script that shows it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nyo_realtime_ext import create_server

from .support.tokens import SECRET, make_token

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "embedded_server.py"


async def test_create_server_serves_in_a_running_loop_with_hooks_and_publishes(
    tmp_path: Path, connect: Any
) -> None:
    seen: list[tuple[str, Any]] = []

    async def on_subscribe(client: Any, channel: str) -> bool:
        seen.append(("subscribe", channel))
        return channel != "closed"

    server = create_server(
        port=0,
        jwt_secret=SECRET,
        db_path=str(tmp_path / "embedded.db"),
        on_connect=lambda client: seen.append(("connect", client.user_id)),
        on_disconnect=lambda client, code: seen.append(("disconnect", code)),
        on_subscribe=on_subscribe,
    )
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    server.on_listening = listening.set_result
    serving = asyncio.ensure_future(server.serve())
    port = await asyncio.wait_for(listening, 10)

    ada = await connect(f"ws://127.0.0.1:{port}/ws", make_token("ada"))
    await ada.subscribe("news")
    refused = await ada.request({"type": "subscribe", "channel": "closed"})
    assert refused["code"] == "forbidden"
    message_id = await server.publish("news", "headline", {"text": "hello"})
    message = await ada.expect("message")
    assert message["id"] == message_id and message["from"] is None
    assert [m["userId"] for m in await server.members("news")] == ["ada"]
    with pytest.raises(ValueError):
        await server.publish("not a name!", "e")

    # Shared state from server code: `from` null, seen by a state subscriber.
    assert await server.state("board") == {}
    await ada.subscribe("board", state=True)
    await ada.expect("state")
    entry = await server.set_state("board", "~ada/anything", {"by": "the server"})
    changed = await ada.expect("state:changed")
    assert changed["version"] == entry["version"] and changed["from"] is None
    assert await server.state("board") == {"~ada/anything": {"by": "the server"}}

    await server.close()  # clients are told 1001, the way SIGTERM does
    assert await ada.closed() == 1001
    await asyncio.wait_for(serving, 10)
    assert seen[:3] == [("connect", "ada"), ("subscribe", "news"), ("subscribe", "closed")]
    assert ("disconnect", 1001) in seen


def test_create_server_refuses_to_exist_without_a_way_to_verify_tokens(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="verify tokens"):
        create_server(port=0, db_path=str(tmp_path / "x.db"))


async def test_the_example_script_publishes_and_stops_on_sigterm(
    tmp_path: Path, connect: Any
) -> None:
    env = {**os.environ, "SECRET": SECRET, "DB": str(tmp_path / "example.db")}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        line = ""
        while not line.startswith("listening on "):  # after the log's first lines
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
            assert line, "the example exited"
        url = line.split()[-1]
        client = await connect(url, make_token("grace"))
        await client.subscribe("clock")
        tick = await client.expect("message", timeout=5)
        assert tick["event"] == "tick" and tick["from"] is None
        shout = await client.request(
            {"type": "broadcast", "channel": "clock", "event": "shout", "payload": 1}
        )
        assert shout["code"] == "forbidden"
        admin = await client.request({"type": "subscribe", "channel": "admin:keys"})
        assert admin["code"] == "forbidden"
        process.send_signal(signal.SIGTERM)
        assert await client.closed() == 1001
        assert process.wait(timeout=15) == 0
        output = process.stdout.read()
        assert "hello Grace" in output and "goodbye Grace" in output
    finally:
        if process.poll() is None:
            process.kill()
        time.sleep(0)
