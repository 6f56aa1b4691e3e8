"""Tornado transports: thin adapters between sockets and the hub."""

from __future__ import annotations

from typing import Any

from tornado.iostream import StreamBufferFullError
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from .auth import AuthError
from .hub import Session
from .protocol import CloseCode
from .service import RealtimeService


def bearer_token(handler: Any) -> str | None:
    """A token from `?token=` or `Authorization: Bearer`."""
    token = handler.get_query_argument("token", None)
    if token:
        return token
    scheme, _, value = handler.request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


class RealtimeSocket(WebSocketHandler):
    """One client's WebSocket. Implements the hub's `Connection`."""

    service: RealtimeService
    session: Session | None = None

    def initialize(self, service: RealtimeService) -> None:
        self.service = service

    @property
    def max_message_size(self) -> int:
        # tornado closes with 1009 above this, before the frame is buffered whole.
        return self.service.config.max_payload_size

    def get_compression_options(self) -> None:
        # Compression is per connection: it would undo "encode once" for every subscriber.
        return None

    def jupyter_user(self) -> Any:
        return None

    def open(self, *args: Any, **kwargs: Any) -> None:
        # A client that does not read must not grow our memory: tornado raises
        # StreamBufferFullError past this size, and `send` cuts the client.
        self.ws_connection.stream.max_write_buffer_size = self.service.config.max_send_buffer  # type: ignore[union-attr]
        self.set_nodelay(True)
        hub = self.service.hub
        try:
            identity = self.service.identify_handshake(bearer_token(self), self.jupyter_user())
        except AuthError as exc:
            hub.reject(self, exc)
            return
        self.session = hub.connect(self, identity)

    def on_message(self, message: str | bytes) -> None:
        if self.session is not None:
            self.service.hub.receive(self.session, message)

    def on_close(self) -> None:
        if self.session is not None:
            self.service.hub.disconnect(self.session)

    def send(self, data: bytes) -> None:
        try:
            self.write_message(data)
        except WebSocketClosedError:
            pass
        except StreamBufferFullError:
            stream = self.ws_connection.stream  # type: ignore[union-attr]
            stream.max_write_buffer_size = None  # room for the close frame
            if self.session is not None:
                self.service.hub.close(self.session, CloseCode.TOO_MANY, "too slow to read")
            else:
                self.close(CloseCode.TOO_MANY, "too slow to read")
