"""One client connection as the hub sees it, and what a transport gives the hub for it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..frames import encode
from ..models import ChannelKey, Identity
from ..ratelimit import TokenBucket

if TYPE_CHECKING:
    from .admission import Slot

# What a subscriber being set up holds back: (frame, message id or None, state
# version or None: set for a `state:changed`, which its snapshot may already hold).
Held = list[tuple[bytes, str | None, str | None]]


class Connection(Protocol):
    """What a transport gives the hub for one client."""

    def send(self, data: bytes) -> None:
        """Queue one text frame; the transport enforces `max_send_buffer`."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection; the transport calls `Hub.disconnect` when it is gone."""

    def backlog(self) -> int:
        """Bytes queued for this client and not yet taken by it."""


@dataclass(eq=False, slots=True)  # slots: thousands of them sit idle
class Session:
    """One client connection as the hub sees it."""

    id: str
    conn: Connection
    last_seen: float
    bucket: TokenBucket
    identity: Identity | None = None
    auth_deadline: float = 0.0
    subscriptions: set[ChannelKey] = field(default_factory=set)
    # Channels whose `subscribed` has not been sent yet, with what arrived meanwhile.
    held: dict[ChannelKey, Held] | None = None
    limited: bool = False
    rejected: int = 0
    closed: bool = False
    # Its place under `max_connections` (or the unauthenticated allowance), if the
    # transport reserved one (`Hub.admission`); given back when it ends.
    slot: Slot | None = None
    # The last of its publishes still under way in an engine that pipelines them
    # (see `Dispatch.receive`): anything else it asks waits until that is answered.
    inflight: asyncio.Future[str] | None = None

    def send(self, frame: dict[str, Any]) -> None:
        self.conn.send(encode(frame))


def who(session: Session) -> str:
    identity = session.identity
    return f"{identity.tenant_id}/{identity.user_id}" if identity else "unauthenticated"
