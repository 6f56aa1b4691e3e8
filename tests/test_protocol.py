"""Frames of docs/protocol.md on their own: what `decode` accepts, and the error code
and message of everything it refuses (the hub's tests see the same through a connection)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nyo_realtime_ext.constants import STATUSES
from nyo_realtime_ext.protocol import (
    MAX_META_SIZE,
    ErrorCode,
    ProtocolError,
    channel_type_for,
    decode,
    encode,
    error,
    is_valid_channel,
    reply,
)


def refusal(frame: Any, authenticated: bool = True) -> ProtocolError:
    data = frame if isinstance(frame, (str, bytes)) else orjson.dumps(frame).decode()
    with pytest.raises(ProtocolError) as caught:
        decode(data, authenticated)
    return caught.value


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "auth", "token": "t"},
        {"type": "ping"},
        {"type": "ping", "ref": 7},
        {"type": "ping", "ref": "r-1"},
        {"type": "subscribe", "channel": "room:1"},
        {"type": "subscribe", "channel": "room:1", "since": "abc-3"},
        {"type": "unsubscribe", "channel": "a.b@c/d=e+f-g_h"},
        {"type": "broadcast", "channel": "room", "event": "e", "payload": {"x": [1, None]}},
        {"type": "broadcast", "channel": "room", "event": "e" * 100, "echo": False},
        {"type": "presence", "channel": "presence-room", "status": "away", "meta": {"x": 1}},
        {"type": "presence", "channel": "presence-room"},
        {"type": "subscribe", "channel": "room", "state": True, "since": "abc-3"},
        {"type": "state:set", "channel": "room", "key": "k", "value": None},
        {"type": "state:set", "channel": "room", "key": "~ada/vote", "value": [1], "ifVersion": ""},
        {"type": "state:set", "channel": "room", "key": "é" * 256, "value": {"a": 1}},
    ],
)  # fmt: skip
def test_valid_frames_decode_to_themselves(frame: dict[str, Any]) -> None:
    assert decode(orjson.dumps(frame).decode()) == frame


@pytest.mark.parametrize(
    ("data", "code", "says"),
    [
        (b'{"type": "ping"}', ErrorCode.BAD_REQUEST, "binary frames"),
        ('{"type": "ping"', ErrorCode.BAD_REQUEST, "not valid JSON"),
        ("[1, 2]", ErrorCode.BAD_REQUEST, "JSON object"),
        ('"ping"', ErrorCode.BAD_REQUEST, "JSON object"),
        ("[" * 1100 + "]" * 1100, ErrorCode.BAD_REQUEST, "not valid JSON"),
        ({"ref": 1}, ErrorCode.BAD_REQUEST, "`type`"),
        ({"type": 3}, ErrorCode.BAD_REQUEST, "`type`"),
        ({"type": "ping", "ref": True}, ErrorCode.BAD_REQUEST, "`ref`"),
        ({"type": "ping", "ref": 1.5}, ErrorCode.BAD_REQUEST, "`ref`"),
        ({"type": "ping", "ref": {"a": 1}}, ErrorCode.BAD_REQUEST, "`ref`"),
        ({"type": "shout"}, ErrorCode.UNKNOWN_TYPE, "'shout'"),
        ({"type": "auth"}, ErrorCode.BAD_REQUEST, "`token`"),
        ({"type": "auth", "token": ""}, ErrorCode.BAD_REQUEST, "`token`"),
        ({"type": "subscribe"}, ErrorCode.BAD_REQUEST, "`channel`"),
        ({"type": "subscribe", "channel": 5}, ErrorCode.BAD_REQUEST, "`channel`"),
        ({"type": "subscribe", "channel": ""}, ErrorCode.INVALID_CHANNEL, "channel names"),
        ({"type": "subscribe", "channel": "two words"}, ErrorCode.INVALID_CHANNEL, "channel"),
        ({"type": "subscribe", "channel": "é"}, ErrorCode.INVALID_CHANNEL, "channel"),
        ({"type": "subscribe", "channel": "x" * 201}, ErrorCode.INVALID_CHANNEL, "channel"),
        ({"type": "subscribe", "channel": "r", "since": 3}, ErrorCode.BAD_REQUEST, "`since`"),
        ({"type": "broadcast", "channel": "r"}, ErrorCode.BAD_REQUEST, "`event`"),
        ({"type": "broadcast", "channel": "r", "event": ""}, ErrorCode.BAD_REQUEST, "`event`"),
        ({"type": "broadcast", "channel": "r", "event": "e" * 101}, ErrorCode.BAD_REQUEST, "`event`"),
        ({"type": "broadcast", "channel": "r", "event": "e", "echo": 1}, ErrorCode.BAD_REQUEST, "`echo`"),
        ({"type": "presence", "channel": "r", "status": "asleep"}, ErrorCode.BAD_REQUEST, "`status`"),
        ({"type": "presence", "channel": "r", "meta": [1]}, ErrorCode.BAD_REQUEST, "`meta`"),
        # Optional, yet a null is refused rather than read as "unchanged".
        ({"type": "presence", "channel": "r", "meta": None}, ErrorCode.BAD_REQUEST, "`meta`"),
        ({"type": "presence", "channel": "r", "status": None}, ErrorCode.BAD_REQUEST, "`status`"),
        ({"type": "subscribe", "channel": "r", "state": 1}, ErrorCode.BAD_REQUEST, "`state`"),
        ({"type": "state:set", "channel": "r", "value": 1}, ErrorCode.BAD_REQUEST, "`key`"),
        ({"type": "state:set", "channel": "r", "key": "", "value": 1}, ErrorCode.BAD_REQUEST, "`key`"),
        ({"type": "state:set", "channel": "r", "key": "k" * 257, "value": 1}, ErrorCode.BAD_REQUEST, "`key`"),
        ({"type": "state:set", "channel": "r", "key": "a\tb", "value": 1}, ErrorCode.BAD_REQUEST, "`key`"),
        ({"type": "state:set", "channel": "r", "key": "k"}, ErrorCode.BAD_REQUEST, "`value`"),
        ({"type": "state:set", "channel": "r", "key": "k", "value": 1, "ifVersion": 2}, ErrorCode.BAD_REQUEST, "`ifVersion`"),
        ({"type": "state:set", "channel": "no way", "key": "k", "value": 1}, ErrorCode.INVALID_CHANNEL, "channel"),
    ],
)  # fmt: skip
def test_bad_frames_are_refused_with_the_documented_code(data: Any, code: str, says: str) -> None:
    refused = refusal(data)
    assert refused.code == code
    assert says in refused.message


def test_a_refusal_carries_the_ref_and_the_channel_it_can_name() -> None:
    refused = refusal({"type": "broadcast", "channel": "room", "event": "", "ref": 9})
    assert (refused.ref, refused.channel) == (9, "room")
    assert refused.to_wire() == {
        "type": "error",
        "code": ErrorCode.BAD_REQUEST,
        "message": refused.message,
        "ref": 9,
        "channel": "room",
    }
    # A bad ref cannot be echoed: the reply would carry what the client got wrong.
    assert refusal({"type": "ping", "ref": [1]}).ref is None
    # An invalid channel name is echoed cut to what a name may be.
    assert refusal({"type": "subscribe", "channel": "x" * 500}).channel == "x" * 200


def test_before_authentication_only_auth_and_ping_are_read() -> None:
    assert decode('{"type": "ping"}', authenticated=False) == {"type": "ping"}
    assert decode('{"type": "auth", "token": "t"}', authenticated=False)["token"] == "t"
    # Anything else is `unauthorized`, even when it is also malformed or unknown.
    for frame in (
        {"type": "subscribe", "channel": "room", "ref": 2},
        {"type": "subscribe", "ref": 2},
        {"type": "shout", "ref": 2},
    ):
        refused = refusal(frame, authenticated=False)
        assert (refused.code, refused.ref) == (ErrorCode.UNAUTHORIZED, 2)
    # What is not a frame at all is still a bad request.
    assert refusal("nope", authenticated=False).code == ErrorCode.BAD_REQUEST


def test_presence_meta_is_bounded_in_size_and_depth() -> None:
    frame = {"type": "presence", "channel": "presence-r"}
    near = MAX_META_SIZE - len('{"k":""}')
    assert decode(orjson.dumps({**frame, "meta": {"k": "x" * near}}).decode())
    too_big = refusal({**frame, "meta": {"k": "x" * (near + 1)}})
    assert too_big.code == ErrorCode.PAYLOAD_TOO_LARGE
    assert decode(_nested_presence(200))  # deep, yet within what can be sent on
    assert refusal(_nested_presence(300)).message == "`meta` is nested too deep"


def _nested_presence(depth: int) -> str:
    # Built as text: orjson reads up to 1024 levels but writes only up to 254, and what
    # cannot be sent on to the channel must be refused on input.
    meta = '{"d":' * depth + "1" + "}" * depth
    return '{"type": "presence", "channel": "presence-r", "meta": ' + meta + "}"


def test_every_status_of_the_protocol_is_accepted() -> None:
    for status in STATUSES:
        frame = {"type": "presence", "channel": "presence-r", "status": status}
        assert decode(orjson.dumps(frame).decode())["status"] == status


def test_channel_names_and_the_types_their_prefixes_give() -> None:
    assert is_valid_channel("room:1") and is_valid_channel("x" * 200)
    assert not any(is_valid_channel(n) for n in ("", "x" * 201, "a b", "ü", None, 7))
    assert channel_type_for("private-ops", "public") == "private"
    assert channel_type_for("presence-lobby", "public") == "presence"
    assert channel_type_for("room", "presence") == "presence"  # no prefix: the default


def test_frames_we_send() -> None:
    assert error("forbidden", "no") == {"type": "error", "code": "forbidden", "message": "no"}
    assert reply("pong", None, ts=5) == {"type": "pong", "ts": 5}
    assert reply("pong", "r", ts=5) == {"type": "pong", "ts": 5, "ref": "r"}
    assert orjson.loads(encode({"type": "ack", "id": "e-1"})) == {"type": "ack", "id": "e-1"}
