"""What every route of the HTTP API shares: authentication, the rate limit, checks of
the query and the body, and docs/protocol.md's error answers.

A route is a subclass of `ApiHandler` that defines a tornado method per HTTP verb it
answers; the verbs a class defines are the ones it allows, everything else is a 405
with the API's error body (before authentication, as a client needs no token to learn
it asked wrongly).
"""

from __future__ import annotations

import inspect
import math
from importlib.resources import files
from typing import Any, ClassVar

import orjson
from tornado.web import HTTPError, RequestHandler

from ..auth import AuthError, TokenExpired
from ..engines import EngineUnavailable, OutcomeUnknown
from ..handlers import bearer_token
from ..hooks import HookFailed
from ..hub import Hub
from ..models import ChannelKey, Identity
from ..protocol import ErrorCode, ProtocolError, is_valid_channel
from ..service import RealtimeService

# The verbs a route may define, in the order the `Allow` header lists them.
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

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
    ErrorCode.OUTCOME_UNKNOWN: 504,
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
    504: ErrorCode.OUTCOME_UNKNOWN,
}


class ApiError(HTTPError):
    """An answer with docs/protocol.md's error body: `{"error": {"code", "message"}}`."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status or STATUS_FOR_CODE.get(code, 500))
        self.code = code
        self.message = message
        self.headers = headers or {}  # set on the answer: tornado clears earlier ones
        self.extra = extra or {}  # more fields of the error (a conflict's `entry`)


def api_error_for(exc: BaseException | None) -> ApiError | None:
    """The answer for what a route let through, or None when it is a bug.

    Routes call the hub and let its refusals rise; this is the one place that
    turns them into answers, for every route at once.
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ProtocolError):
        retry = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
        return ApiError(exc.code, exc.message, extra=exc.extra, headers=retry)
    if isinstance(exc, OutcomeUnknown):
        return ApiError(ErrorCode.OUTCOME_UNKNOWN, str(exc))
    if isinstance(exc, EngineUnavailable):
        return ApiError(ErrorCode.UNAVAILABLE, str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, orjson.JSONEncodeError):
        return ApiError(ErrorCode.BAD_REQUEST, "`payload` is nested too deep")
    if isinstance(exc, HookFailed):  # logged where it failed
        return ApiError(ErrorCode.INTERNAL, "internal server error", 500)
    return None


class ApiContext:
    """What every request of one API mount shares: the service and the rate limiter
    (the same kind of bucket a WebSocket connection has, kept per user)."""

    def __init__(self, service: RealtimeService) -> None:
        self.service = service
        self.limiter = service.hub.limiter  # one budget per user, over both transports
        # Long-polls held now, per (tenant, user) and in all (api/messages.py).
        self.long_polls: dict[tuple[str, str], int] = {}
        self.long_polls_held = 0
        self.openapi: dict[str, Any] = orjson.loads(
            files("nyo_realtime_ext").joinpath("openapi.json").read_bytes()
        )


class ApiHandler(RequestHandler):
    """The shared part of every route; a route adds its verbs and `query_parameters`."""

    context: ApiContext
    identity: Identity
    # Query parameters the route reads; any other is refused, so a misspelt
    # `wiat=30` is a clear 400 instead of a silently ignored long-poll.
    query_parameters: ClassVar[tuple[str, ...]] = ()
    # Accepted on every route: `token` is the other way to send a JWT (docs/protocol.md).
    common_query_parameters: ClassVar[tuple[str, ...]] = ("token",)
    # A public route answers without credentials and without counting against anyone.
    public: ClassVar[bool] = False

    def initialize(self, context: ApiContext) -> None:
        self.context = context

    @property
    def service(self) -> RealtimeService:
        return self.context.service

    @property
    def hub(self) -> Hub:
        return self.context.service.hub

    @classmethod
    def allowed_methods(cls) -> tuple[str, ...]:
        """The verbs this route defines (a decorated one, like Jupyter's, counts as what
        it wraps: tornado's own default is a 405)."""
        return tuple(
            method
            for method in HTTP_METHODS
            if inspect.unwrap(getattr(cls, method.lower()))
            is not getattr(RequestHandler, method.lower())
        )

    def jupyter_user(self) -> Any:
        """The Jupyter login of the request; only the Jupyter variant has one."""
        return None

    def check_xsrf_cookie(self) -> None:
        # Standalone, credentials are a Bearer header a browser never adds on its own.
        return None

    def check_route_exists(self) -> None:
        """Every route exists but `NotFoundHandler`, the catch-all that says there is none."""

    # -- request lifecycle ------------------------------------------------------

    async def prepare(self) -> None:
        parent = super().prepare()
        if parent is not None:  # Jupyter's prepare is a coroutine; tornado's is not
            await parent
        if self._finished:
            return
        self.check_route_exists()
        allowed = self.allowed_methods()
        if self.request.method not in allowed:
            raise ApiError(
                ErrorCode.BAD_REQUEST,
                f"{self.request.method} is not allowed here; use {' or '.join(allowed)}",
                405,
                {"Allow": ", ".join(allowed)},
            )
        if self.public:
            return
        self.identity = self._authenticate()
        caller = (self.identity.tenant_id, self.identity.user_id)
        if not self.context.limiter.admit(caller, self.hub.clock()):
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"more than {self.context.limiter.rate:g} requests per second; slow down",
                headers={"Retry-After": "1"},
            )
        known = (*self.query_parameters, *self.common_query_parameters)
        unknown = sorted(set(self.request.query_arguments) - set(known))
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

    def channel_key(self, name: str) -> ChannelKey:
        """The channel a URL names, in the caller's tenant."""
        if not is_valid_channel(name):
            raise ApiError(
                ErrorCode.INVALID_CHANNEL,
                "channel names are 1-200 characters of A-Z a-z 0-9 _ : . @ / = + -",
            )
        return ChannelKey(self.identity.tenant_id, name)

    # -- answers ------------------------------------------------------------------

    def reply(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # A refusal the API answers (a bad frame, the engine away) is no bug to log;
        # an ApiError is an HTTPError, which tornado logs only with a log message.
        if api_error_for(value) is None or isinstance(value, HTTPError):
            super().log_exception(typ, value, tb)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = api_error_for(exc)
        extra: dict[str, Any] = {}
        if error is not None:
            code, message, extra = error.code, error.message, error.extra
            self.set_status(error.status_code)  # tornado set 500 for what it did not know
            for name, value in error.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, HTTPError):
            code = CODE_FOR_STATUS.get(status_code, ErrorCode.INTERNAL)
            message = exc.log_message or self._reason
        else:  # a bug: say so without leaking it
            code, message = ErrorCode.INTERNAL, "internal server error"
        self.set_header("Content-Type", "application/json")
        self.finish(orjson.dumps({"error": {"code": code, "message": message, **extra}}))

    # -- request bodies and queries -------------------------------------------------

    def json_body(self, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
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

    def number_argument(self, name: str, default: float, low: float, high: float) -> float:
        """The query parameter `name` as a number from `low` to `high`."""
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

    def whole_number_argument(self, name: str, default: int, low: int, high: int) -> int:
        value = self.number_argument(name, default, low, high)
        if value != int(value):
            raise ApiError(ErrorCode.BAD_REQUEST, f"`{name}` must be a whole number")
        return int(value)


class NotFoundHandler(ApiHandler):
    """Every path under the API that is no route: a 404 with the API's error body,
    whatever the verb (rather than tornado's HTML page)."""

    def check_route_exists(self) -> None:
        raise ApiError(ErrorCode.NOT_FOUND, f"no API route {self.request.path!r}")
