"""What an administrator can audit: connections, subscriptions and publishes, as facts.

Metadata only, never a payload or a token. Under Jupyter the facts are
`jupyter_events` of one registered schema (`SCHEMA_ID`), emitted through the
server's `EventLogger` (so `c.EventLogger.handlers` decides where they go, and
nothing is spent when nobody listens); standalone they are log lines at INFO on
the `nyo_realtime_ext.audit` logger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SCHEMA_ID = "https://events.jupyter.org/nyo_realtime_ext/activity/v1"
ACTIONS = ("connected", "disconnected", "subscribed", "unsubscribed", "published")

SCHEMA: dict[str, Any] = {
    "$id": SCHEMA_ID,
    "version": "1",
    "title": "nyo-realtime activity",
    "personal-data": True,
    "description": (
        "Connections to the realtime service, the channels they subscribe to and leave, "
        "and what is published: who, where, which event and how many bytes, never the "
        "payload or a token."
    ),
    "type": "object",
    "required": ["action", "tenant"],
    "properties": {
        "action": {"enum": list(ACTIONS), "description": "What happened."},
        "user": {"type": ["string", "null"], "description": "User id; null for server code."},
        "tenant": {"type": "string"},
        "connection": {
            "type": ["string", "null"],
            "description": "WebSocket connection id; null over HTTP and for server code.",
        },
        "channel": {"type": "string"},
        "event": {"type": "string", "description": "The published message's event name."},
        "size": {"type": "integer", "description": "Bytes of the publish request."},
        "code": {"type": ["integer", "null"], "description": "Close code, when known."},
        "reason": {"type": "string", "description": "Why a subscription ended, if not asked."},
    },
}

Audit = Callable[[str, dict[str, Any]], None]


def log_audit(action: str, data: dict[str, Any]) -> None:
    """Standalone: one INFO line per fact (filtered out cheaply at the default level)."""
    if log.isEnabledFor(logging.INFO):
        log.info("%s %s", action, " ".join(f"{k}={v}" for k, v in data.items()))


def jupyter_audit(event_logger: Any) -> Audit:
    """Emit through Jupyter's `EventLogger`, with the schema registered."""
    event_logger.register_event_schema(SCHEMA)

    def emit(action: str, data: dict[str, Any]) -> None:
        event_logger.emit(schema_id=SCHEMA_ID, data={"action": action, **data})

    return emit
