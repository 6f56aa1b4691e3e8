"""Audit events under Jupyter, and the server object other extensions publish through."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nyo_realtime_ext.audit import SCHEMA_ID


async def test_jupyter_events_record_activity_and_never_payloads_or_tokens(
    jp_serverapp, jupyter_ws_url, connect, token
):
    events: list[dict[str, Any]] = []

    async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        events.append(data)

    jp_serverapp.event_logger.add_listener(schema_id=SCHEMA_ID, listener=listener)
    secret_token = token("ada")
    ada = await connect(jupyter_ws_url, secret_token)
    await ada.subscribe("room")
    payload = {"text": "the-secret-payload"}
    await ada.request({"type": "broadcast", "channel": "room", "event": "chat", "payload": payload})
    await ada.request({"type": "unsubscribe", "channel": "room"})
    ada.close()
    deadline = time.monotonic() + 10
    while not any(e["action"] == "disconnected" for e in events):
        assert time.monotonic() < deadline, events
        await asyncio.sleep(0.05)
    await jp_serverapp.event_logger.gather_listeners()

    assert [e["action"] for e in events] == [
        "connected",
        "subscribed",
        "published",
        "unsubscribed",
        "disconnected",
    ]
    assert {e["user"] for e in events} == {"ada"}
    assert {e["connection"] for e in events} == {ada.connection_id}
    published = events[2]
    assert published["channel"] == "room" and published["event"] == "chat"
    assert published["size"] > len("the-secret-payload")
    assert "the-secret-payload" not in repr(events) and secret_token not in repr(events)


async def test_other_extensions_publish_through_the_server_object(
    jp_serverapp, jupyter_ws_url, connect, token
):
    server = jp_serverapp.web_app.settings["nyo_realtime"]
    watcher = await connect(jupyter_ws_url, token("watcher"))
    await watcher.subscribe("kernels")
    message_id = await server.publish("kernels", "status", {"state": "busy"})
    message = await watcher.expect("message")
    assert message["id"] == message_id and message["from"] is None
    assert message["payload"] == {"state": "busy"}
    assert [m["userId"] for m in await server.members("kernels")] == ["watcher"]


async def test_standalone_audit_is_log_lines_at_info(standalone, connect, token):
    server = standalone("--log-level", "INFO")
    secret = token("ada")
    ada = await connect(server.url, secret)
    await ada.subscribe("room")
    await ada.request({"type": "broadcast", "channel": "room", "event": "chat", "payload": "psst"})
    ada.close()
    deadline = time.monotonic() + 10
    while "disconnected" not in server.output():
        assert time.monotonic() < deadline, server.output()
        await asyncio.sleep(0.05)
    log = server.output()
    for action in ("connected", "subscribed", "published", "disconnected"):
        assert f"{action} user=ada" in log
    assert "psst" not in log and secret not in log
