"""The hub: sessions, subscriptions, fan-out, authorization, heartbeat, limits.

Sans-I/O in the manner of the `websockets` protocol core: transports hand it
raw frames (`receive`) and tell it when a connection opens or closes; it hands
back encoded bytes through `Connection.send` and asks for closes through
`Connection.close`. It owns no socket and no clock (one is injected), and
knows no SQL and no Redis: channels, messages and members live behind the
three interfaces of `engines.base`, so the same hub runs one process or many.

The engine pushes every message and presence event of a channel this node
listens to through `deliver`, already encoded: the same bytes go to every
subscriber. A subscriber still being set up (its `subscribed` not sent yet,
its recovery not read yet) has what arrives meanwhile held back for it, then
sent after its recovery without the messages the recovery already had, so a
reconnecting client sees no gap and no duplicate whatever the engine's latency.
"""

from .admission import Refused, Slot
from .facade import http_connection_id
from .hub import Hub
from .session import Connection, Held, Session

__all__ = ["Connection", "Held", "Hub", "Refused", "Session", "Slot", "http_connection_id"]
