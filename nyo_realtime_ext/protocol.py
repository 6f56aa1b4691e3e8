"""Frames of docs/protocol.md: parse and validate what clients send; codes and limits.

What the server sends is written by `frames.py` (`encode`, `reply` and `error` are
re-exported here for the code that has always found them here).

Parsing never trusts the client: every field is checked here, so the hub only
ever sees well-formed requests, and every bad frame becomes a `ProtocolError`
carrying the documented error code.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .constants import CHAT_EVENT
from .constants import STATUSES as STATUSES  # re-exported: the frames check statuses
from .frames import encode as encode
from .frames import error as error
from .frames import reply as reply

PROTOCOL_VERSION = 1

CHANNEL_NAME = re.compile(r"[A-Za-z0-9_:.@/=+\-]{1,200}")
CHANNEL_TYPES = ("public", "private", "presence")
MAX_EVENT_LENGTH = 100
# Presence meta is copied into every `subscribed` and `presence:state` of the
# channel, so it is kept small; messages are the place for bulk data.
MAX_META_SIZE = 8 * 1024
# A shared-state key: any text without control characters, short enough to sit in
# every snapshot and in a Redis hash field name (values have their own limit).
MAX_STATE_KEY_LENGTH = 256
# Per-user keys: `~<userId>/...` is written only by that user (votes, per-person entries).
USER_KEY_PREFIX = "~"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ErrorCode:
    BAD_REQUEST = "bad_request"
    UNKNOWN_TYPE = "unknown_type"
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token_expired"
    FORBIDDEN = "forbidden"
    INVALID_CHANNEL = "invalid_channel"
    NOT_SUBSCRIBED = "not_subscribed"
    RATE_LIMITED = "rate_limited"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INTERNAL = "internal"
    # A quota (channels per connection or user, members in a list, connections per
    # user) was reached; `message` names it. Nothing happened.
    LIMIT_EXCEEDED = "limit_exceeded"
    # The engine (say, Redis) cannot store or deliver right now; nothing happened.
    UNAVAILABLE = "unavailable"
    # A publish or state write reached the engine, which never answered: it may have
    # taken effect (and been delivered), or not. Look before sending it again.
    OUTCOME_UNKNOWN = "outcome_unknown"
    # HTTP API only.
    NOT_FOUND = "not_found"
    # A compare-and-set whose `ifVersion` is not the entry's (both transports), or
    # over HTTP, a name that exists.
    CONFLICT = "conflict"


class CloseCode:
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011  # the server failed (say, its database); reconnect and recover
    UNAUTHORIZED = 4401
    HEARTBEAT_TIMEOUT = 4408
    TOO_MANY = 4429


class ProtocolError(Exception):
    """A request that gets an `error` frame; the connection stays open."""

    def __init__(
        self,
        code: str,
        message: str,
        ref: Any = None,
        channel: str | None = None,
        extra: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref
        self.channel = channel
        # Fields the error carries beyond these (a `conflict`'s current `entry`).
        self.extra = extra or {}
        self.retry_after = retry_after  # seconds, for HTTP's `Retry-After`

    def to_wire(self) -> dict[str, Any]:
        return {**error(self.code, self.message, self.ref, self.channel), **self.extra}


def encode_value(value: Any, field: str, ref: Any = None, channel: str | None = None) -> bytes:
    """`value` as JSON, or `bad_request`: the decoder accepts nesting up to 1024 levels,
    the encoder only up to 254, and what cannot be sent must be refused on input."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"`{field}` is nested too deep", ref, channel
        ) from None


def is_valid_channel(name: Any) -> bool:
    return isinstance(name, str) and CHANNEL_NAME.fullmatch(name) is not None


def channel_type_for(name: str, default: str) -> str:
    if name.startswith("private-"):
        return "private"
    if name.startswith("presence-"):
        return "presence"
    return default


def decode(data: str | bytes, authenticated: bool = True) -> dict[str, Any]:
    """Parse one client frame into a validated request dict, or raise ProtocolError.

    Before authentication only `auth` and `ping` are looked at closely; any
    other frame is `unauthorized`, whatever else is wrong with it.
    """
    if isinstance(data, bytes):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "binary frames are not accepted; send JSON text")
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson also refuses nesting deeper than 1024 levels here.
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"frame is not valid JSON: {exc}") from None
    if not isinstance(frame, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    ref = frame.get("ref")
    if ref is not None and (not isinstance(ref, (str, int)) or isinstance(ref, bool)):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "`ref` must be a string or an integer")
    type_ = frame.get("type")
    if not isinstance(type_, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "`type` must be a string", ref)
    if not authenticated and type_ not in ("auth", "ping"):
        raise ProtocolError(ErrorCode.UNAUTHORIZED, "authenticate first", ref)
    validate = _VALIDATORS.get(type_)
    if validate is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {type_!r}", ref)
    validate(frame, ref)
    return frame


def _require_channel(frame: dict[str, Any], ref: Any) -> None:
    name = frame.get("channel")
    if not isinstance(name, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "`channel` must be a string", ref)
    if not is_valid_channel(name):
        raise ProtocolError(
            ErrorCode.INVALID_CHANNEL,
            "channel names are 1-200 characters of A-Z a-z 0-9 _ : . @ / = + -",
            ref,
            name[:200],
        )


def _check_auth(frame: dict[str, Any], ref: Any) -> None:
    token = frame.get("token")
    if not isinstance(token, str) or not token:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "`token` must be a non-empty string", ref)


def _check_subscribe(frame: dict[str, Any], ref: Any) -> None:
    _require_channel(frame, ref)
    since = frame.get("since")
    if since is not None and not isinstance(since, str):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "`since` must be a message id (string)", ref, frame["channel"]
        )


def _check_subscribe_state(frame: dict[str, Any], ref: Any) -> None:
    _check_subscribe(frame, ref)
    if not isinstance(frame.get("state", False), bool):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "`state` must be a boolean", ref, frame["channel"]
        )


def check_state_key(key: Any, ref: Any = None, channel: str | None = None) -> None:
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= MAX_STATE_KEY_LENGTH
        or _CONTROL.search(key) is not None
    ):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            f"`key` must be a string of 1-{MAX_STATE_KEY_LENGTH} characters without "
            "control characters",
            ref,
            channel,
        )


def check_if_version(if_version: Any, ref: Any = None, channel: str | None = None) -> None:
    """A given `ifVersion`: a string. Null is no version: a client that means "no
    condition" leaves it out, and one that means "only if absent" says ""."""
    if not isinstance(if_version, str):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST,
            '`ifVersion` must be a version (string), or "" for "only if the key is absent"',
            ref,
            channel,
        )


def _check_state_set(frame: dict[str, Any], ref: Any) -> None:
    _require_channel(frame, ref)
    channel = frame["channel"]
    check_state_key(frame.get("key"), ref, channel)
    if "value" not in frame:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "`value` is required (null deletes the key)", ref, channel
        )
    if "ifVersion" in frame:
        check_if_version(frame["ifVersion"], ref, channel)


def _check_broadcast(frame: dict[str, Any], ref: Any) -> None:
    _require_channel(frame, ref)
    check_event(frame.get("event"), ref, frame["channel"])
    echo = frame.get("echo", True)
    if not isinstance(echo, bool):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "`echo` must be a boolean", ref, frame["channel"]
        )


def check_event(event: Any, ref: Any = None, channel: str | None = None) -> None:
    if not isinstance(event, str) or not 1 <= len(event) <= MAX_EVENT_LENGTH:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "`event` must be a string of 1-100 characters", ref, channel
        )


def check_chat(payload: Any, max_length: int, ref: Any = None, channel: str | None = None) -> None:
    """A chat message is `{"text": <at most max_length characters>, ...}`: every reader's
    browser renders it as Markdown, so its size has a bound of its own."""
    text = payload.get("text") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"a `{CHAT_EVENT}` payload is an object with a `text` string",
            ref, channel,
        )  # fmt: skip
    if len(text) > max_length:
        raise ProtocolError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"a chat message is at most {max_length} characters (max_chat_length)",
            ref, channel,
        )  # fmt: skip


def check_presence_update(
    fields: dict[str, Any], ref: Any = None, channel: str | None = None
) -> None:
    # Both are optional, but present means set: a `null` is refused rather than
    # read as "unchanged", so a client that sends one learns it at once.
    if "status" in fields and fields["status"] not in STATUSES:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"`status` must be one of {', '.join(STATUSES)}", ref, channel
        )
    meta = fields.get("meta")
    if "meta" in fields and not isinstance(meta, dict):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "`meta` must be an object", ref, channel)
    if meta and len(encode_value(meta, "meta", ref, channel)) > MAX_META_SIZE:
        raise ProtocolError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"`meta` must encode to at most {MAX_META_SIZE} bytes",
            ref,
            channel,
        )


def _check_presence(frame: dict[str, Any], ref: Any) -> None:
    _require_channel(frame, ref)
    check_presence_update(frame, ref, frame["channel"])


_VALIDATORS = {
    "auth": _check_auth,
    "subscribe": _check_subscribe_state,
    "unsubscribe": _require_channel,
    "broadcast": _check_broadcast,
    "presence": _check_presence,
    "state:set": _check_state_set,
    "ping": lambda frame, ref: None,
}
