"""The HTTP fallback API of docs/protocol.md, for clients that cannot hold a WebSocket.

A thin transport, like `handlers.py`: it authenticates the request, checks and
parses what it carries, calls the hub's HTTP-facing methods with the caller's
identity and encodes the answer. Who may do what (tenants, private channels,
presence) is decided in the hub, for both transports at once.

One handler class per route (`base.ApiHandler` holds what they share). A
transport that needs more of every route (Jupyter's login, CORS) passes a
`variant`, a subclass of `ApiHandler`, that `api_routes` puts in front of each.
"""

from __future__ import annotations

from typing import Any

from tornado.web import RequestHandler

from ..service import RealtimeService
from .base import HTTP_METHODS, ApiContext, ApiError, ApiHandler, NotFoundHandler
from .channels import ChannelHandler, ChannelsHandler, MembersHandler
from .messages import MessagesHandler
from .openapi import OpenApiHandler
from .presence import PresenceHandler
from .profile import ProfileHandler
from .state import StateEntryHandler, StateHandler

__all__ = ["HTTP_METHODS", "ROUTES", "ApiError", "ApiHandler", "api_routes"]

# Paths below the API root. A channel name is one percent-encoded segment:
# tornado matches on the raw path, then decodes it.
ROUTES: list[tuple[str, type[ApiHandler]]] = [
    ("channels", ChannelsHandler),
    ("channels/([^/]+)", ChannelHandler),
    ("channels/([^/]+)/members", MembersHandler),
    ("channels/([^/]+)/messages", MessagesHandler),
    ("channels/([^/]+)/presence", PresenceHandler),
    ("channels/([^/]+)/state", StateHandler),
    ("channels/([^/]+)/state/([^/]+)", StateEntryHandler),
    ("profile", ProfileHandler),
    ("openapi.json", OpenApiHandler),
    (".*", NotFoundHandler),  # last: the API's 404 for everything else
]


def api_routes(
    prefix: str, service: RealtimeService, variant: type[ApiHandler] | None = None
) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """The URL table of the API under `prefix` (ending in '/'), for a tornado app."""
    context = ApiContext(service)
    return [
        (prefix + pattern, served_by(variant, route), {"context": context})
        for pattern, route in ROUTES
    ]


def served_by(variant: type[ApiHandler] | None, route: type[ApiHandler]) -> type[ApiHandler]:
    """`route` with what `variant` adds to every route (its methods come first)."""
    if variant is None:
        return route
    return type(
        variant.__name__ + route.__name__, (variant, route), {"__module__": variant.__module__}
    )
