"""Under Jupyter, a WebSocket moved to a `WireSocket` leaves nothing of tornado's
behind (handlers.RealtimeSocket.open): not its handler, its request or its stream,
which cost about 8 KB per idle connection, even where Jupyter has tornado ping."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

from nyo_realtime_ext.extension import JupyterRealtimeSocket

from .support.embedded import subscribed
from .support.rawclient import Raw
from .support.tokens import SECRET


@pytest.fixture
def jp_server_config(tmp_path: Path) -> dict[str, Any]:
    return {
        # JupyterLab's own setting: tornado pings every WebSocket every 30 s.
        "ServerApp": {
            "jpserver_extensions": {"nyo_realtime_ext": True},
            "tornado_settings": {"websocket_ping_interval": 30},
        },
        "Realtime": {"jwt_secret": SECRET, "db_path": str(tmp_path / "jupyter-realtime.db")},
    }


async def test_a_moved_socket_keeps_no_tornado_handler_alive(
    jp_serverapp: Any, jupyter_url: str, jp_http_port: int, jp_base_url: str
) -> None:
    path = f"{jp_base_url}nyo-realtime/ws"
    # 60: asyncio lets go of cancelled timers (Jupyter's and tornado's pings, stopped
    # at the move, which hold the handler's context) once they are over 100 and half
    # of its timers, as with any number of idle connections worth counting.
    clients = [await Raw.open(jp_http_port, f"u{i}", path=path) for i in range(60)]
    for client in clients:
        assert (await client.json())["type"] == "authenticated"
        await subscribed(client, "presence-room")  # served by the WireSocket
    await asyncio.sleep(0.1)  # a pass of the loop, which drops them
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, JupyterRealtimeSocket)]
    assert alive == []
    for client in clients:
        client.close()


async def test_a_moved_socket_is_let_go_without_waiting_for_the_garbage_collector(
    jp_serverapp: Any, jupyter_url: str, jp_http_port: int, jp_base_url: str
) -> None:
    # A reference cycle through the handler (its outbox, or Jupyter's ping callback,
    # referring back to it) kept every handshake's handler, request and stream until
    # a full collection, which a server of idle connections may not run for a long
    # time: 2 KB a connection standalone (`bench/connections.py`).
    path = f"{jp_base_url}nyo-realtime/ws"
    gc.collect()
    gc.disable()
    try:
        clients = [await Raw.open(jp_http_port, f"u{i}", path=path) for i in range(60)]
        for client in clients:
            assert (await client.json())["type"] == "authenticated"
            await subscribed(client, "presence-room")
        await asyncio.sleep(0.1)
        alive = [o for o in gc.get_objects() if isinstance(o, JupyterRealtimeSocket)]
    finally:
        gc.enable()
    assert alive == []
    for client in clients:
        client.close()
