"""The client's exceptions, shared by both faces."""

from __future__ import annotations


class RealtimeError(Exception):
    """Base of the client's exceptions."""


class RequestError(RealtimeError):
    """The server answered a request with an `error` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionLost(RealtimeError):
    """The connection dropped before the reply came.

    For `send` this means the outcome is unknown: the server may or may not
    have accepted the message. Sending again could publish it twice, so the
    client never retries on its own.
    """


class ClientClosed(RealtimeError):
    """The client is closed (by `close()`, a refused token, or giving up)."""
