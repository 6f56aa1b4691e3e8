"""The HTTP fallback API of docs/protocol.md, for clients that cannot hold a WebSocket.

A thin transport, like `handlers.py`: it authenticates the request, checks and
parses what it carries, calls the hub's HTTP-facing methods with the caller's
identity and encodes the answer. Who may do what (tenants, private channels,
presence) is decided in the hub, for both transports at once.

One handler class serves every route, told by the URL table which route it is,
so the Jupyter variant that adds Jupyter's login is a single subclass.

A long-poll waits on an asyncio Future that the hub resolves from its fan-out;
a waiting request costs a future and a timer, never a thread.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import orjson
from tornado.web import HTTPError, RequestHandler

from .auth import AuthError, TokenExpired
from .engines import EngineUnavailable
from .handlers import bearer_token
from .hooks import HookFailed
from .hub import Hub
from .models import ChannelKey, Identity
from .protocol import (
    CHANNEL_TYPES,
    ErrorCode,
    ProtocolError,
    check_event,
    check_presence_update,
    is_valid_channel,
)
from .service import RealtimeService

# Longest a long-poll may be held; proxies commonly cut idle requests at 60 s.
MAX_WAIT = 55.0
MAX_LIMIT = 1000
# Channels in one answer of `GET channels` unless `limit` says otherwise.
CHANNELS_PAGE = 100
# A history answer stops before this many bytes of messages (one message always
# comes, however large), and says `"more": true`.
MAX_ANSWER_BYTES = 1024 * 1024

STATUS_FOR_CODE = {
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_CHANNEL: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.LIMIT_EXCEEDED: 403,
    ErrorCode.UNAVAILABLE: 503,
}
CODE_FOR_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.BAD_REQUEST,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
}

# (path below the API root, route name, methods). A channel name is one
# percent-encoded segment: tornado matches on the raw path, then decodes it.
ROUTES: list[tuple[str, str, tuple[str, ...]]] = [
    ("channels", "channels", ("GET", "POST")),
    ("channels/([^/]+)", "channel", ("GET", "PATCH")),
    ("channels/([^/]+)/members", "members", ("GET",)),
    ("channels/([^/]+)/messages", "messages", ("GET", "POST")),
    ("channels/([^/]+)/presence", "presence", ("POST", "DELETE")),
    ("openapi.json", "openapi", ("GET",)),
    (".*", "unknown", ()),
]
# Query parameters each route reads; any other is refused, so a misspelt
# `wiat=30` is a clear 400 instead of a silently ignored long-poll.
QUERY_PARAMETERS = {
    "channels": ("limit", "after"),
    "members": ("include",),
    "messages": ("since", "limit", "wait"),
}


class ApiError(HTTPError):
    """An answer with docs/protocol.md's error body: `{"error": {"code", "message"}}`."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status or STATUS_FOR_CODE.get(code, 500))
        self.code = code
        self.message = message
        self.headers = headers or {}  # set on the answer: tornado clears earlier ones


class ApiContext:
    """What every request of one API mount shares: the service and the rate limiter
    (the same kind of bucket a WebSocket connection has, kept per user)."""

    def __init__(self, service: RealtimeService) -> None:
        self.service = service
        self.limiter = service.hub.limiter  # one budget per user, over both transports
        self.openapi: dict[str, Any] = orjson.loads(
            files(__package__).joinpath("openapi.json").read_bytes()
        )


def api_routes(
    prefix: str, service: RealtimeService, handler: type[RealtimeApiHandler] | None = None
) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """The URL table of the API under `prefix` (ending in '/'), for a tornado app."""
    context = ApiContext(service)
    handler = handler or RealtimeApiHandler
    return [
        (prefix + pattern, handler, {"context": context, "route": route, "methods": methods})
        for pattern, route, methods in ROUTES
    ]


class RealtimeApiHandler(RequestHandler):
    """Every route of the API; the URL table says which one this instance serves."""

    context: ApiContext
    route: str
    methods: tuple[str, ...]
    identity: Identity
    # Accepted on every route: `token` is the other way to send a JWT (docs/protocol.md).
    common_query_parameters: tuple[str, ...] = ("token",)
    _wake: Callable[[Any], None] | None = None
    _gone = False

    def initialize(self, context: ApiContext, route: str, methods: tuple[str, ...]) -> None:
        self.context = context
        self.route = route
        self.methods = methods

    @property
    def service(self) -> RealtimeService:
        return self.context.service

    @property
    def hub(self) -> Hub:
        return self.context.service.hub

    def jupyter_user(self) -> Any:
        """The Jupyter login of the request; only the Jupyter variant has one."""
        return None

    def check_xsrf_cookie(self) -> None:
        # Standalone, credentials are a Bearer header a browser never adds on its own.
        return None

    # -- request lifecycle ------------------------------------------------------

    async def prepare(self) -> None:
        parent = super().prepare()
        if parent is not None:  # Jupyter's prepare is a coroutine; tornado's is not
            await parent
        if self._finished:
            return
        if self.route == "unknown":
            raise ApiError(ErrorCode.NOT_FOUND, f"no API route {self.request.path!r}")
        if self.request.method not in self.methods:
            raise ApiError(
                ErrorCode.BAD_REQUEST,
                f"{self.request.method} is not allowed here; use {' or '.join(self.methods)}",
                405,
                {"Allow": ", ".join(self.methods)},
            )
        if self.route == "openapi":
            return  # the description of the API is public
        self.identity = self._authenticate()
        caller = (self.identity.tenant_id, self.identity.user_id)
        if not self.context.limiter.admit(caller, self.hub.clock()):
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"more than {self.context.limiter.rate:g} requests per second; slow down",
                headers={"Retry-After": "1"},
            )
        allowed = (*QUERY_PARAMETERS.get(self.route, ()), *self.common_query_parameters)
        unknown = sorted(set(self.request.query_arguments) - set(allowed))
        if unknown:
            raise ApiError(
                ErrorCode.BAD_REQUEST, f"unknown query parameter(s): {', '.join(unknown)}"
            )
        limit = self.service.config.max_payload_size
        if len(self.request.body or b"") > limit:
            raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"the body is over {limit} bytes")

    def _authenticate(self) -> Identity:
        try:
            identity = self.service.identify_handshake(bearer_token(self), self.jupyter_user())
        except TokenExpired as exc:
            raise ApiError(ErrorCode.TOKEN_EXPIRED, str(exc)) from None
        except AuthError as exc:
            raise ApiError(ErrorCode.UNAUTHORIZED, str(exc)) from None
        if identity is None:
            raise ApiError(
                ErrorCode.UNAUTHORIZED,
                "send `Authorization: Bearer <JWT>`",
                headers={"WWW-Authenticate": 'Bearer realm="nyo-realtime"'},
            )
        return identity

    async def get(self, *args: str) -> None:
        await self._dispatch(*args)

    async def post(self, *args: str) -> None:
        await self._dispatch(*args)

    async def patch(self, *args: str) -> None:
        await self._dispatch(*args)

    async def delete(self, *args: str) -> None:
        await self._dispatch(*args)

    async def _dispatch(self, *args: str) -> None:
        method = getattr(self, f"_{self.request.method.lower()}_{self.route}")  # type: ignore[union-attr]
        try:
            if args:
                await method(self._key(args[0]))
            else:
                await method()
        except ProtocolError as exc:
            raise ApiError(exc.code, exc.message) from None
        except EngineUnavailable as exc:
            raise ApiError(ErrorCode.UNAVAILABLE, str(exc), headers={"Retry-After": "1"}) from None
        except orjson.JSONEncodeError:
            raise ApiError(ErrorCode.BAD_REQUEST, "`payload` is nested too deep") from None
        except HookFailed:  # logged where it failed
            raise ApiError(ErrorCode.INTERNAL, "internal server error", 500) from None

    def _key(self, name: str) -> ChannelKey:
        if not is_valid_channel(name):
            raise ApiError(
                ErrorCode.INVALID_CHANNEL,
                "channel names are 1-200 characters of A-Z a-z 0-9 _ : . @ / = + -",
            )
        return ChannelKey(self.identity.tenant_id, name)

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._gone = True
        if self._wake is not None:
            self._wake(None)  # free the long-poll now, not when its timer fires

    # -- answers ------------------------------------------------------------------

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            code, message = exc.code, exc.message
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, HTTPError):
            code = CODE_FOR_STATUS.get(status_code, ErrorCode.INTERNAL)
            message = exc.log_message or self._reason
        else:  # a bug: say so without leaking it
            code, message = ErrorCode.INTERNAL, "internal server error"
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"error": {"code": code, "message": message}}))

    # -- request bodies and queries -------------------------------------------------

    def _body(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
        """The JSON object in the body, with only `allowed` keys and every `required` one."""
        raw = self.request.body
        if not raw and not required:
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(ErrorCode.BAD_REQUEST, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(ErrorCode.BAD_REQUEST, "the body must be a JSON object")
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise ApiError(ErrorCode.BAD_REQUEST, f"unknown field(s): {', '.join(unknown)}")
        missing = [name for name in required if name not in body]
        if missing:
            raise ApiError(ErrorCode.BAD_REQUEST, f"missing field(s): {', '.join(missing)}")
        return body

    def _number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # also refuses nan
            raise ApiError(
                ErrorCode.BAD_REQUEST, f"`{name}` must be a number from {low:g} to {high:g}"
            )
        return value

    # -- routes -----------------------------------------------------------------------

    async def _get_openapi(self) -> None:
        # The servers entry points back at this mount, so the document is right
        # standalone and under any Jupyter base_url alike.
        root = self.request.path[: -len("openapi.json")]
        self._reply(200, {**self.context.openapi, "servers": [{"url": root.rstrip("/")}]})

    async def _get_channels(self) -> None:
        limit = self._number("limit", CHANNELS_PAGE, 1, MAX_LIMIT)
        if limit != int(limit):
            raise ApiError(ErrorCode.BAD_REQUEST, "`limit` must be a whole number")
        after = self.get_query_argument("after", "", strip=False)
        if len(after) > 200:
            raise ApiError(ErrorCode.BAD_REQUEST, "`after` must be a channel name")
        channels, next_after = await self.hub.visible_channels(self.identity, after, int(limit))
        answer: dict[str, Any] = {"channels": [c.to_wire() for c in channels]}
        if next_after is not None:
            answer["next"] = next_after  # the next page: `?after=<next>`
        self._reply(200, answer)

    async def _post_channels(self) -> None:
        body = self._body(("name", "type", "members"), required=("name", "type"))
        name, type_ = body["name"], body["type"]
        if not isinstance(name, str):
            raise ApiError(ErrorCode.BAD_REQUEST, "`name` must be a string")
        if type_ not in CHANNEL_TYPES:
            raise ApiError(
                ErrorCode.BAD_REQUEST, f"`type` must be one of {', '.join(CHANNEL_TYPES)}"
            )
        members = _user_ids(body.get("members", []))
        channel = await self.hub.create_channel(self.identity, self._key(name), type_, members)
        self._reply(201, {"channel": channel.to_wire()})

    async def _get_channel(self, key: ChannelKey) -> None:
        channel = await self.hub.accessible_channel(self.identity, key)
        self._reply(200, {"channel": channel.to_wire()})

    async def _patch_channel(self, key: ChannelKey) -> None:
        body = self._body(("members",), required=("members",))
        channel = await self.hub.change_members(
            self.identity, key, list(_user_ids(body["members"]))
        )
        self._reply(200, {"channel": channel.to_wire()})

    async def _get_members(self, key: ChannelKey) -> None:
        include = self.get_query_argument("include", None)
        if include not in (None, "offline"):
            raise ApiError(ErrorCode.BAD_REQUEST, "`include` may only be `offline`")
        members = await self.hub.http_members(
            self.identity, key, include_offline=include == "offline"
        )
        self._reply(200, {"members": [m.to_wire() for m in members]})

    async def _get_messages(self, key: ChannelKey) -> None:
        since = self.get_query_argument("since", None, strip=False)
        if since is not None and not 1 <= len(since) <= 200:
            raise ApiError(ErrorCode.BAD_REQUEST, "`since` must be a message id")
        limit = self._number("limit", MAX_LIMIT, 1, MAX_LIMIT)
        if limit != int(limit):
            raise ApiError(ErrorCode.BAD_REQUEST, "`limit` must be a whole number")
        wait = self._number("wait", 0.0, 0.0, MAX_WAIT)
        history = await self.hub.read_history(
            self.identity, key, since, int(limit), MAX_ANSWER_BYTES
        )
        if not history.messages and wait > 0:
            await self._wait_for_message(key, since, wait)
            if self._gone:
                return
            history = await self.hub.read_history(
                self.identity, key, since, int(limit), MAX_ANSWER_BYTES
            )
        answer: dict[str, Any] = {"messages": [m.to_wire() for m in history.messages]}
        if history.more:
            answer["more"] = True  # cut by `limit` or size: ask again from the last id
        self._reply(200, answer)

    async def _wait_for_message(self, key: ChannelKey, since: str | None, wait: float) -> None:
        """Until a message after `since` exists, `wait` seconds pass, or the client leaves.

        The watch starts before history is read again, so a message published
        (on any node) between the first read and the watch is not missed.
        """
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake(_message_id: Any) -> None:
            if not woken.done():
                woken.set_result(None)

        cancel = await self.hub.watch(key, wake)
        timer = loop.call_later(wait, wake, None)
        self._wake = wake
        try:
            if (await self.hub.read_history(self.identity, key, since, 1)).messages:
                wake(None)
            await woken
        finally:
            self._wake = None
            timer.cancel()
            cancel()

    async def _post_messages(self, key: ChannelKey) -> None:
        body = self._body(("event", "payload"), required=("event",))
        check_event(body["event"])  # ProtocolError -> 400 in _dispatch
        message_id = await self.hub.publish_http(
            self.identity, key, body["event"], body.get("payload")
        )
        self._reply(201, {"id": message_id})

    async def _post_presence(self, key: ChannelKey) -> None:
        body = self._body(("status", "meta"))
        check_presence_update(body)  # ProtocolError -> 400 in _dispatch
        member = await self.hub.http_presence(
            self.identity, key, body.get("status"), body.get("meta")
        )
        self._reply(200, {"member": member.to_wire()})

    async def _delete_presence(self, key: ChannelKey) -> None:
        await self.hub.http_leave(self.identity, key)
        self.set_status(204)
        self.finish()


def _user_ids(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(u, str) and u for u in value):
        raise ApiError(ErrorCode.BAD_REQUEST, "`members` must be a list of user ids (strings)")
    return tuple(dict.fromkeys(value))  # unique, in the order given
