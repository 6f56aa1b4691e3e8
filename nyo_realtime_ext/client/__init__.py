"""Python client for docs/protocol.md: reconnects, recovers, and never hands a message twice.

Two faces over one implementation, in the manner of the `websockets` library:

- `aio`: `RealtimeClient` and `Channel` are asyncio objects, for code that owns a loop.
- `threaded`: `ThreadedClient` and `SyncChannel` run a `RealtimeClient` on an event
  loop in a thread of their own; the face for notebooks and the widgets.

`connect()` builds a `ThreadedClient` and, in a kernel started by a Jupyter
server with the extension, finds that server without arguments (`discovery`).
`backoff` is the reconnect policy, `errors` the exceptions of both faces.

The client runs in kernels and imports nothing of the server but
`nyo_realtime_ext.constants` (tests/test_layout.py checks).
"""

from __future__ import annotations

from ..constants import ENV_TOKEN, ENV_URL, STATUSES
from .aio import (
    CLOSE_HEARTBEAT,
    CLOSE_TOO_MANY,
    CLOSE_UNAUTHORIZED,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TIMEOUT,
    REQUEST_TIMEOUT,
    ConnectionState,
    RealtimeClient,
    TokenProvider,
)
from .backoff import (
    MAX_RECONNECT_ATTEMPTS,
    MAX_RECONNECT_DELAY,
    RATE_LIMITED_ATTEMPT,
    RECONNECT_DELAY,
    backoff_delay,
    backoff_window,
)
from .channel import CHANNEL_EVENTS, FROM_START, Channel
from .discovery import discover
from .errors import ClientClosed, ConnectionLost, RealtimeError, RequestError
from .events import Callback
from .state import Conflict, SharedState
from .threaded import (
    SyncChannel,
    SyncState,
    ThreadedClient,
    connect,
    shared_client,
    use_realtime_channel,
)

__all__ = [
    "CHANNEL_EVENTS",
    "CLOSE_HEARTBEAT",
    "CLOSE_TOO_MANY",
    "CLOSE_UNAUTHORIZED",
    "ENV_TOKEN",
    "ENV_URL",
    "FROM_START",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_TIMEOUT",
    "MAX_RECONNECT_ATTEMPTS",
    "MAX_RECONNECT_DELAY",
    "RATE_LIMITED_ATTEMPT",
    "RECONNECT_DELAY",
    "REQUEST_TIMEOUT",
    "STATUSES",
    "Callback",
    "Channel",
    "ClientClosed",
    "Conflict",
    "ConnectionLost",
    "ConnectionState",
    "RealtimeClient",
    "RealtimeError",
    "RequestError",
    "SharedState",
    "SyncChannel",
    "SyncState",
    "ThreadedClient",
    "TokenProvider",
    "backoff_delay",
    "backoff_window",
    "connect",
    "discover",
    "shared_client",
    "use_realtime_channel",
]
