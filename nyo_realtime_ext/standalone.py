"""The standalone transport: tornado's HTTP server hardened for the open internet.

What `nyo-realtime serve` and `create_server` listen with (under Jupyter,
Jupyter listens): handshakes cut after `auth_timeout`, an accept loop that
neither spins nor floods the log at the open-file limit, the open-file limit
raised at start, origins and CORS from `allowed_origins`, tokens kept out of logs.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import unquote_plus

import tornado.web
from tornado import httputil
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.netutil import bind_sockets

from .api import ApiError, ApiHandler, api_routes
from .api.messages import MAX_LONG_POLLS
from .constants import STANDALONE_API_PATH
from .handlers import RealtimeSocket
from .protocol import ErrorCode
from .service import RealtimeService

try:
    import resource
except ImportError:  # Windows: no open-file limit to raise
    resource = None  # type: ignore[assignment]

# Bodies over max_payload_size get a JSON 413 from the API; this much more is
# read to say so, and anything larger is refused before it is buffered.
BODY_SLACK = 64 * 1024
# A query string in a log line: from `?` to the end of the URL.
_QUERY = re.compile(r"\?([^\s#'\"<>]*)")

# File descriptors kept beyond one per WebSocket connection (both pools: `max_connections`
# and `max_unauthenticated_connections`): the database, Redis, the listening socket,
# other HTTP requests (512), and the long-polls (`api.messages.MAX_LONG_POLLS`).
FD_RESERVE = 512 + MAX_LONG_POLLS
# When accept() fails (out of file descriptors, say), new connections wait in the
# kernel's backlog this long before the next try, and it is said at most this often.
ACCEPT_PAUSE = 0.5
ACCEPT_LOG_INTERVAL = 60.0
ACCEPT_BATCH = 128  # connections taken per wake-up, as tornado's own accept loop


def _redact_query(match: re.Match[str]) -> str:
    parts = match.group(1).split("&")
    for i, part in enumerate(parts):
        name, equals, _ = part.partition("=")
        # The name as tornado reads it: `%74oken` is `token` too.
        if equals and unquote_plus(name).strip().lower() == "token":
            parts[i] = f"{name}=[secret]"
    return "?" + "&".join(parts)


class RedactTokens(logging.Filter):
    """Blank every `token` query parameter in tornado's log lines (access, errors),
    however its name is percent-encoded: tokens are credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "?" in message:
            redacted = _QUERY.sub(_redact_query, message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def origin_allowed(origin: str, allowed: Iterable[str]) -> bool:
    """Whether `Realtime.allowed_origins` lists `origin` (or is `*`)."""
    origin = origin.strip().rstrip("/").lower()
    return any(entry == "*" or entry.strip().rstrip("/").lower() == origin for entry in allowed)


class StandaloneSocket(RealtimeSocket):
    """The WebSocket of `nyo-realtime serve`: its own origin and `allowed_origins`.

    tornado accepts the server's own origin before it asks `check_origin`
    (6.6; `super()` does it on older versions). Under Jupyter the socket is
    `JupyterRealtimeSocket`, and Jupyter's origin rules apply.
    """

    def check_origin(self, origin: str) -> bool:
        return origin_allowed(origin, self.service.config.allowed_origins) or bool(
            super().check_origin(origin)
        )


class StandaloneApi(ApiHandler):
    """The HTTP API of `nyo-realtime serve`, with CORS for `allowed_origins`; `api_routes`
    puts it in front of every route.

    Credentials are a Bearer header, never a cookie, so no
    `Access-Control-Allow-Credentials`: a page on an allowed origin sends the
    token it holds, and nothing a browser adds on its own gets through.
    """

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        self.set_default_headers()  # the first call, from tornado's __init__, came too early

    def set_default_headers(self) -> None:
        # Called again after an error clears the headers, so errors carry them too.
        if getattr(self, "context", None) is None:
            return
        allowed = self.service.config.allowed_origins
        if not allowed:
            return
        self.set_header("Vary", "Origin")
        origin = self.request.headers.get("Origin")
        if origin and origin_allowed(origin, allowed):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Expose-Headers", "Retry-After, WWW-Authenticate, Allow")

    async def prepare(self) -> None:
        headers = self.request.headers
        if self.request.method == "OPTIONS" and "Access-Control-Request-Method" in headers:
            self._preflight(headers.get("Origin", ""))
            return
        await super().prepare()

    def _preflight(self, origin: str) -> None:
        self.check_route_exists()
        if not origin_allowed(origin, self.service.config.allowed_origins):
            raise ApiError(
                ErrorCode.FORBIDDEN, f"origin {origin!r} is not in Realtime.allowed_origins"
            )
        self.set_status(204)
        self.set_header("Access-Control-Allow-Methods", ", ".join(self.allowed_methods()))
        self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        self.set_header("Access-Control-Max-Age", "600")
        self.finish()


def make_app(service: RealtimeService) -> tornado.web.Application:
    return tornado.web.Application(
        [
            (service.config.path, StandaloneSocket, {"service": service}),
            *api_routes(STANDALONE_API_PATH, service, StandaloneApi),
        ]
    )


class _RequestDeadline(httputil.HTTPMessageDelegate):
    """Gives a request's body what is left of the deadline its headers started.

    tornado times headers (`idle_connection_timeout`) and body (`body_timeout`)
    separately; with this, the request as a whole, or the handshake of a
    WebSocket, is done within one `auth_timeout` of its first byte, or cut.
    """

    def __init__(
        self, delegate: httputil.HTTPMessageDelegate, connection: Any, timeout: float
    ) -> None:
        self.delegate = delegate
        self.connection = connection
        self.deadline = IOLoop.current().time() + timeout

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        left = max(self.deadline - IOLoop.current().time(), 0.001)
        self.connection.set_body_timeout(left)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


class _Acceptor:
    """tornado's accept loop, made safe for when accept() fails.

    At the open-file limit, tornado's loop raises EMFILE on every pass of the
    event loop while the listening socket stays readable: full CPU and a
    traceback per pass. Here a failure stops accepting for `ACCEPT_PAUSE`
    (new connections wait in the kernel's backlog), and is logged at most
    once per `ACCEPT_LOG_INTERVAL`, with one line when accepting works again.
    """

    def __init__(
        self,
        sock: socket.socket,
        callback: Callable[[socket.socket, Any], None],
        log: logging.Logger,
    ) -> None:
        self.sock = sock
        self.callback = callback
        self.log = log
        self.io_loop = IOLoop.current()
        self.removed = False
        self.paused: object | None = None  # the timeout that resumes accepting
        self.failing_since: float | None = None
        self.failures = 0
        self.warned = False
        self.last_warning = -math.inf
        self.io_loop.add_handler(sock, self._accept, IOLoop.READ)

    def _accept(self, fd: Any, events: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.removed:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:  # every waiting connection is taken
                self._recovered()
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._pause(exc)
                return
            self.callback(connection, address)

    def _pause(self, exc: OSError) -> None:
        self.io_loop.remove_handler(self.sock)
        self.paused = self.io_loop.call_later(ACCEPT_PAUSE, self._resume)
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since, self.failures = now, 0
        self.failures += 1
        if now - self.last_warning >= ACCEPT_LOG_INTERVAL:
            self.last_warning, self.warned = now, True
            self.log.warning(
                "nyo-realtime cannot accept connections: %s (open-file limit %s); new "
                "connections wait until others close, trying again every %g s (said at "
                "most once a minute)",
                exc,
                _open_file_limit(),
                ACCEPT_PAUSE,
            )

    def _resume(self) -> None:
        self.paused = None
        if not self.removed:
            self.io_loop.add_handler(self.sock, self._accept, IOLoop.READ)

    def _recovered(self) -> None:
        if self.failing_since is None:
            return
        if self.warned:
            self.warned = False
            self.log.warning(
                "nyo-realtime accepts connections again, after %.1f s and %d failed tries",
                time.monotonic() - self.failing_since,
                self.failures,
            )
        self.failing_since = None

    def remove(self) -> None:
        self.removed = True
        if self.paused is not None:
            self.io_loop.remove_timeout(self.paused)
            self.paused = None
        else:
            self.io_loop.remove_handler(self.sock)


class RealtimeHTTPServer(HTTPServer):
    """tornado's HTTPServer with a deadline per request and a guarded accept loop."""

    def initialize(  # type: ignore[override]
        self, *args: Any, request_timeout: float, log: logging.Logger, **kwargs: Any
    ) -> None:
        # Headers within `request_timeout` of the first byte (or of the end of
        # the previous request on a kept-alive connection), the body within what is left.
        kwargs.setdefault("idle_connection_timeout", request_timeout)
        kwargs.setdefault("body_timeout", request_timeout)
        super().initialize(*args, **kwargs)
        self.request_timeout = request_timeout
        self.log = log

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        delegate = super().start_request(server_conn, request_conn)
        return _RequestDeadline(delegate, request_conn, self.request_timeout)

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        # tornado's own, with `_Acceptor` for `netutil.add_accept_handler`.
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = _Acceptor(
                sock, self._handle_connection, self.log
            ).remove


def _open_file_limit() -> str:
    if resource is None:
        return "unknown"
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return "unlimited" if soft == resource.RLIM_INFINITY else str(soft)


def raise_open_file_limit(
    log: logging.Logger, max_connections: int, max_unauthenticated: int = 0
) -> None:
    """Take every file descriptor the hard limit allows, and say when that is too few
    for `max_connections` and `max_unauthenticated` WebSockets (and `FD_RESERVE`)."""
    if resource is None:
        return
    infinity = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    sockets = max_connections + max_unauthenticated if max_connections else 0
    needed = sockets + FD_RESERVE
    was = soft
    # macOS refuses an unlimited soft limit: then as many as needed, or OPEN_MAX.
    for target in (hard, needed, 10240):
        if soft == infinity or (target != infinity and target <= soft):
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        soft = target
        break

    def shown(limit: int) -> str:
        return "unlimited" if limit == infinity else str(limit)

    if soft != was:
        log.info(
            "open-file limit %s (raised from %s; hard limit %s)", shown(soft), was, shown(hard)
        )
    else:
        log.info("open-file limit %s (hard limit %s)", shown(soft), shown(hard))
    if max_connections and soft != infinity and soft < needed:
        log.warning(
            "nyo-realtime: the open-file limit is %d (hard limit %s), but "
            "max_connections=%d and max_unauthenticated_connections=%d need about %d (one "
            "per connection and %d for files, HTTP requests and long-polls): near the "
            "limit, new connections wait until others close. Raise the hard limit "
            "(ulimit -Hn, systemd LimitNOFILE=, docker --ulimit nofile=) or lower "
            "--Realtime.max_connections.",
            soft,
            shown(hard),
            max_connections,
            max_unauthenticated,
            needed,
            FD_RESERVE,
        )


def listen(
    service: RealtimeService,
    host: str,
    port: int,
    trust_proxy_headers: bool = False,
    log: logging.Logger | None = None,
) -> tuple[RealtimeHTTPServer, int]:
    """Serve `service` on host:port (0 picks a free port); the server and its port."""
    log = log or logging.getLogger("nyo_realtime_ext")
    for name in ("tornado.access", "tornado.application", "tornado.general"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
    config = service.config
    raise_open_file_limit(log, config.max_connections, config.max_unauthenticated_connections)
    server = RealtimeHTTPServer(
        make_app(service),
        xheaders=trust_proxy_headers,
        max_body_size=service.config.max_payload_size + BODY_SLACK,
        request_timeout=service.config.auth_timeout,
        log=log,
    )
    sockets = bind_sockets(port, host)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]
