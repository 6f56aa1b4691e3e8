"""The Jupyter server extension: the realtime service under `{base_url}nyo-realtime/`."""

from __future__ import annotations

from typing import Any

import orjson
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.extension.application import ExtensionApp
from tornado import web
from tornado.httputil import HTTPServerRequest
from tornado.ioloop import IOLoop
from traitlets import Instance

from .api import HTTP_METHODS, ApiHandler, api_routes
from .audit import jupyter_audit
from .config import Realtime
from .constants import API_PATH, SETTINGS_PATH, WS_PATH
from .documents import document_scope
from .embed import RealtimeServer
from .handlers import RealtimeSocket, bearer_token
from .kernel_env import clear_kernel_env, setup_kernel_env
from .service import RealtimeService


def mark_websocket_fetch(request: HTTPServerRequest) -> None:
    """Say `Sec-Fetch-Mode: websocket` on a WebSocket handshake that does not.

    JupyterHub's login (HubOAuth) treats a request by its fetch metadata: a
    WebSocket's cookie needs no XSRF token (the origin check guards it), its
    `?token=` counts, and `allow_websocket_cookie_auth` applies. Chromium sends
    no fetch metadata on WebSocket handshakes, so JupyterHub takes them for
    plain GETs of unknown mode, logs "Skipping XSRF check for insecure request"
    at WARNING for every connection, and ignores the settings for WebSockets.
    `Upgrade` and `Sec-WebSocket-Key` are headers no page's script may set, so a
    request with both is a browser's WebSocket handshake (or not a browser's at
    all, which may send any header anyway)."""
    headers = request.headers
    if (
        headers.get("Upgrade", "").lower() == "websocket"
        and "Sec-WebSocket-Key" in headers
        and "Sec-Fetch-Mode" not in headers
    ):
        headers["Sec-Fetch-Mode"] = "websocket"


class JupyterRealtimeSocket(WebSocketMixin, RealtimeSocket, JupyterHandler):
    """The realtime WebSocket with Jupyter's login as one more way in.

    The handshake is allowed without a Jupyter login because a client may bring
    a JWT instead (query, header or first frame); the hub enforces that one of
    them succeeds within `auth_timeout`.
    """

    def prepare(self, *args: Any, **kwargs: Any) -> Any:
        mark_websocket_fetch(self.request)  # before Jupyter's login reads the headers
        return super().prepare(*args, **kwargs)

    @allow_unauthenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        return await super().get(*args, **kwargs)

    def jupyter_user(self) -> Any:
        return self.current_user

    def handed_over(self) -> None:
        # Jupyter's keep-alive pings went through tornado's stream, now closed; the
        # hub's heartbeat (`heartbeat_timeout`) and the WireSocket's pongs remain.
        # Let go of it too: it holds this handler, which holds it, a cycle that only
        # the garbage collector's full pass would free.
        if self.ping_callback is not None:
            self.ping_callback.stop()
            self.ping_callback = None


# Jupyter's `prepare` takes a private keyword (`_redirect_to_login`) that tornado never
# passes; ours, which calls it through `super()`, takes none.
class JupyterRealtimeApi(ApiHandler, JupyterHandler):  # type: ignore[misc]
    """The HTTP API with Jupyter's login as one more way in; `api_routes` puts it in
    front of every route.

    Unauthenticated requests get past Jupyter so that a Bearer JWT can be
    checked instead; the API answers 401 when neither is there.
    """

    # Jupyter's own: its XSRF token may come as a query parameter, and clients
    # may ask that a request not count as activity.
    common_query_parameters = ("token", "_xsrf", "no_track_activity")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every verb, even those the route lacks: a missing one should reach the
        # API's 405, and a request without a Jupyter login the API's 401, rather
        # than Jupyter's 403 or its login page.
        for method in HTTP_METHODS:
            name = method.lower()
            setattr(cls, name, allow_unauthenticated(getattr(cls, name)))

    def check_xsrf_cookie(self) -> None:
        # A request that proves itself with a valid JWT needs no XSRF token: a
        # browser never adds one on its own. A header that does not verify
        # proves nothing, and the request would fall back to the cookie login,
        # which is exactly what XSRF forges; so it is checked like any other.
        token = bearer_token(self)
        if token and self.service.authenticator.verifies(token):
            return None
        if hasattr(self, "_jupyter_current_user") and self.current_user is None:
            return None  # no Jupyter login to forge: without a JWT the answer is 401
        return JupyterHandler.check_xsrf_cookie(self)

    def jupyter_user(self) -> Any:
        return self.current_user


class SettingsHandler(JupyterHandler):
    """What the JupyterLab extension needs to know of this server: its document scope."""

    def initialize(self, service: RealtimeService) -> None:
        self.service = service

    @web.authenticated
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"documentScope": document_scope(self.service.config)}))


class RealtimeExtension(ExtensionApp):
    name = "nyo_realtime_ext"
    description = "Realtime channels, presence and chat for Jupyter"
    classes = [Realtime]

    service = Instance(RealtimeService, allow_none=True)

    def initialize_settings(self) -> None:
        serverapp = self.serverapp
        assert serverapp is not None  # Jupyter sets it before it initializes extensions
        config = Realtime(parent=serverapp)
        self.service = RealtimeService(config)
        self.settings["nyo_realtime_service"] = self.service
        # For other server extensions: publish and read members from server code.
        self.settings["nyo_realtime"] = RealtimeServer(config, service=self.service)
        # Who connected, subscribed, published: Jupyter events, for administrators.
        self.service.hub.audit = jupyter_audit(serverapp.event_logger)
        # Under pytest-jupyter and in a real server alike, this loop is the one
        # that will serve: the engine starts as soon as it runs.
        IOLoop.current().add_callback(self.service.start)
        setup_kernel_env(serverapp, self.service)  # kernels' `connect()` finds us

    def initialize_handlers(self) -> None:
        assert self.service is not None  # made by initialize_settings, which runs first
        self.handlers.append((f"/{WS_PATH}", JupyterRealtimeSocket, {"service": self.service}))
        self.handlers.append((f"/{SETTINGS_PATH}", SettingsHandler, {"service": self.service}))
        self.handlers.extend(api_routes(f"/{API_PATH}", self.service, JupyterRealtimeApi))

    async def stop_extension(self) -> None:
        clear_kernel_env()
        if self.service is not None:
            # The store stays open: Jupyter stops extensions before it stops
            # serving, and each write is its own transaction anyway.
            await self.service.stop()
