"""Property-based fuzzing (hypothesis) of frame decoding and of the hub.

`test_decode_*` feed `protocol.decode` arbitrary text and bytes, arbitrary JSON-ish
objects (deep nesting, huge numbers, odd Unicode, every field of every frame type
with the wrong type) and well-formed frames. Decoding may only ever raise
`ProtocolError` with a documented code; it refuses a frame exactly when the
frame breaks a rule of docs/protocol.md (`spec_violations`, written from that file,
not from the code), with the code of one of the rules it breaks; the error can
be sent; and a frame it accepts decodes to itself.

`test_hub_fuzz` drives a `World` (tests/test_hub.py: the hub on the memory
engine, no sockets) with 3-5 sessions through random sequences of steps: frames
that mix valid and invalid subscribe/unsubscribe/broadcast/presence/ping/auth
requests on a few channel names of two tenants, abrupt disconnects, reconnects
(authenticated at the handshake or not), resumes (a new connection of the same
user subscribing again with `since` = the last id it saw) and clock advances
with `tick()` (auth timeouts, token expiry, heartbeat). An oracle (`Oracle`),
written from docs/protocol.md, predicts every frame each session must receive at each
step and with which code it must be closed; after each step (and
`await world.settle()`) the test checks that

- no exception escapes `receive`, no `internal` error is sent and nothing is
  logged at ERROR (background engine work logs its failures instead of raising);
- a refused frame produces no frame at all for any other session (only the
  `user:left` of a sender that a refused token disconnects);
- every session gets exactly the predicted frames, in order per channel: every
  accepted message (acked or not) exactly once, in acceptance order, by every
  session subscribed to its channel at publish time and by no other, and
  recoveries (`since`) send exactly the retained messages after `since`;
- a channel's ids are unique and, in order of acceptance, increase by one
  (the memory engine's `epoch-seq` ids: no refused request uses one up);
- the channels that exist are exactly those that some accepted request created
  (a refused request creates none);

and at the end that the engine's `members()` of every presence channel is exactly
the set of users with a live subscribed session.

Budget: CI runs a fixed number of examples (about 35 s here), the same ones every
time (`derandomize`), so it never fails by chance. For a longer run by hand, which
also draws new examples, raise them with NYO_FUZZ_EXAMPLES (examples of the hub
test; each decode test runs ten times as many):

    NYO_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_protocol_fuzz.py -p no:cacheprovider

A failure prints the smallest falsifying example hypothesis found, with every step
(the frame text sent and what each session got); a random run keeps it in
.hypothesis/ and replays it first next time (`--hypothesis-seed=N` repeats a run).
`test_hub_fuzz_finding_*` are such examples, kept as plain tests of what the fuzzer
found.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nyo_realtime_ext.engines.ids import parse_message_id
from nyo_realtime_ext.models import ChannelKey, ChannelRecord
from nyo_realtime_ext.protocol import ProtocolError, decode, encode

from .support.hub_world import Peer, World
from .support.tokens import SECRET, make_token

_EXAMPLES = int(os.environ.get("NYO_FUZZ_EXAMPLES") or 0)
HUB_EXAMPLES = _EXAMPLES or 1000
DECODE_EXAMPLES = 10 * _EXAMPLES or 2500

# Shrinking a failure, and a long run by hand, can outlast the suite's per-test timeout.
pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(0 if _EXAMPLES else 600)]

FUZZ = settings(
    deadline=None,
    # No `explain` phase: it traces every line the failing examples run, which
    # makes shrinking a hub example many times slower.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    # CI runs the same examples every time, so it never fails by chance; a run with
    # NYO_FUZZ_EXAMPLES explores new ones (pytest --hypothesis-seed=N repeats one).
    derandomize=not _EXAMPLES,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)

# -- what docs/protocol.md says -------------------------------------------------------

DOCUMENTED = {"bad_request", "unknown_type", "unauthorized", "invalid_channel", "payload_too_large"}
TYPES = ("auth", "subscribe", "unsubscribe", "broadcast", "presence", "ping")
STATUSES = ("online", "away", "busy", "offline")
NAME = re.compile(r"[A-Za-z0-9_:.@/=+\-]{1,200}")
MAX_META = 8 * 1024


def _is_ref(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _encodes(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def _channel_rules(frame: dict[str, Any]) -> set[str]:
    name = frame.get("channel")
    if not isinstance(name, str):  # missing or not a name: either code says so
        return {"bad_request", "invalid_channel"}
    return set() if NAME.fullmatch(name) else {"invalid_channel"}


def spec_violations(frame: Any, authenticated: bool) -> set[str]:
    """The error codes docs/protocol.md allows for `frame` (already parsed); empty when valid.

    Where the protocol leaves the order of checks open, any rule the frame
    breaks is an acceptable answer. A `null` optional field counts as absent,
    except `echo`, which must be a boolean when present.
    """
    if not isinstance(frame, dict):
        return {"bad_request"}
    found: set[str] = set()
    ref = frame.get("ref")
    if ref is not None and not _is_ref(ref):
        found.add("bad_request")
    type_ = frame.get("type")
    if not isinstance(type_, str):
        return found | {"bad_request"}
    if not authenticated and type_ not in ("auth", "ping"):
        return found | {"unauthorized"}
    if type_ not in TYPES:
        return found | {"unknown_type"}
    if type_ == "auth":
        token = frame.get("token")
        if not isinstance(token, str) or not token:  # malformed, or a token that is no token
            found |= {"bad_request", "unauthorized"}
    elif type_ in ("subscribe", "unsubscribe"):
        found |= _channel_rules(frame)
        since = frame.get("since")
        if type_ == "subscribe" and since is not None and not isinstance(since, str):
            found.add("bad_request")
    elif type_ == "broadcast":
        found |= _channel_rules(frame)
        event = frame.get("event")
        if not isinstance(event, str) or not 1 <= len(event) <= 100:
            found.add("bad_request")
        if "echo" in frame and not isinstance(frame["echo"], bool):
            found.add("bad_request")
    elif type_ == "presence":
        found |= _channel_rules(frame)
        status, meta = frame.get("status"), frame.get("meta")
        if status is not None and status not in STATUSES:
            found.add("bad_request")
        if meta is not None and not isinstance(meta, dict):
            found.add("bad_request")
        elif meta:
            if not _encodes(meta):
                found.add("bad_request")  # nested deeper than can be sent back
            elif len(orjson.dumps(meta)) > MAX_META:
                found.add("payload_too_large")
    return found


def check_decode(data: str | bytes, authenticated: bool) -> dict[str, Any] | None:
    """Decode `data` and hold the result to docs/protocol.md; the frame, or None if refused."""
    if isinstance(data, bytes):
        expected, parsed = {"bad_request"}, None
    else:
        try:  # what the server's JSON parser makes of the text
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            expected, parsed = {"bad_request"}, None
        else:
            expected = spec_violations(parsed, authenticated)
    try:
        frame = decode(data, authenticated=authenticated)
    except ProtocolError as exc:
        assert exc.code in DOCUMENTED, f"undocumented code {exc.code!r}"
        assert expected, f"a valid frame was refused with {exc.code}: {exc.message}"
        assert exc.code in expected, f"{exc.code!r} ({exc.message}), expected one of {expected}"
        assert isinstance(exc.message, str) and exc.message
        wire = orjson.loads(encode(exc.to_wire()))  # the error can be sent
        assert wire["type"] == "error" and wire["code"] == exc.code
        if isinstance(parsed, dict) and _is_ref(parsed.get("ref")):
            assert wire.get("ref") == parsed["ref"], "the error must echo the request's ref"
        if "channel" in wire:
            assert isinstance(wire["channel"], str) and len(wire["channel"]) <= 200
        return None
    assert not expected, f"accepted a frame that breaks {expected}: {data!r:.300}"
    assert same_json(frame, parsed), "a valid frame must decode to itself"
    return frame


# -- strategies -------------------------------------------------------------------

ODD_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),  # surrogates included
    st.sampled_from(
        ["", "\x00", "\u202eroom", "r\u00f6om", "room\n", "\ufeffroom", "\U0001f4a5", "ｒｏｏｍ",
         "İ", "e\u0301", "room\u200b", "\\", '"', "9" * 400, "-", "room:1"]
    ),
)  # fmt: skip
NUMBERS = st.one_of(
    st.integers(),  # unbounded: beyond 64 bits too
    st.integers(-(2**63), 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**64, -(2**63) - 1, 10**400, 0.1, -0.0, 1e308, 5e-324]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ODD_TEXT)


def _containers_of(keys: Any) -> Any:
    def extend(inner: Any) -> Any:
        return st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4))

    return extend


JSONISH = st.recursive(SCALARS, _containers_of(ODD_TEXT), max_leaves=12)


class Deep(NamedTuple):
    """JSON nested `depth` levels around `inner`, kept flat until it is written
    (hypothesis prints its examples, and a printer recurses)."""

    depth: int
    inner: Any = 0
    as_object: bool = False

    def text(self, ensure_ascii: bool = False) -> str:
        start, end = ('{"a":', "}") if self.as_object else ("[", "]")
        return start * self.depth + json_text(self.inner, ensure_ascii) + end * self.depth


def json_text(value: Any, ensure_ascii: bool = False) -> str:
    """JSON text as a client might send it (NaN and 1e400 included), `Deep` expanded."""
    holes: dict[str, str] = {}

    def swap(v: Any) -> Any:
        if isinstance(v, Deep):
            hole = f"\x01deep-hole-{len(holes)}\x02"
            holes[hole] = v.text(ensure_ascii)
            return hole
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(value), ensure_ascii=ensure_ascii, allow_nan=True)
    for hole, sub in holes.items():
        text = text.replace(json.dumps(hole), sub, 1)
    return text


def same_json(a: Any, b: Any) -> bool:
    """`a == b` without recursion: decoded frames nest up to 1024 levels."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            if x.keys() != y.keys():
                return False
            stack += [(x[k], y[k]) for k in x]
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            stack += list(zip(x, y, strict=True))
        elif x != y:
            return False
    return True


DEEP = st.builds(Deep, st.integers(0, 1100), SCALARS, st.booleans())
ANY_VALUE = st.one_of(JSONISH, JSONISH, DEEP)

CHANNELS = st.one_of(
    st.sampled_from(["room", "presence-lobby", "private-team", "news", "a", "x" * 200]),
    st.from_regex(NAME, fullmatch=True),
    ANY_VALUE,
)
FIELD_VALUES = {
    "type": st.one_of(st.sampled_from(TYPES), st.sampled_from(["dance", "", "Ping"]), ANY_VALUE),
    "ref": st.one_of(st.integers(), st.text(max_size=6), ANY_VALUE),
    "channel": CHANNELS,
    "token": st.one_of(st.sampled_from(["", "not-a-jwt", make_token("ada")]), ANY_VALUE),
    "since": st.one_of(st.sampled_from(["", "abc-1", "x-" + "9" * 30]), ANY_VALUE),
    "event": st.one_of(st.text(min_size=0, max_size=101), st.just("e" * 101), ANY_VALUE),
    "payload": ANY_VALUE,
    "echo": st.one_of(st.booleans(), ANY_VALUE),
    "status": st.one_of(st.sampled_from(STATUSES), ANY_VALUE),
    "meta": st.one_of(
        st.dictionaries(ODD_TEXT, JSONISH, max_size=3),
        st.builds(lambda n: {"blob": "x" * n}, st.integers(8150, 8250)),
        st.builds(lambda d: {"deep": Deep(d)}, st.integers(250, 260)),
        ANY_VALUE,
    ),
    "extra": ANY_VALUE,
}
FRAMES = st.fixed_dictionaries({}, optional=FIELD_VALUES)


# Frames docs/protocol.md calls valid, made of values that survive a JSON round trip.
SAFE_TEXT = st.text(max_size=10)
SAFE_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    SAFE_TEXT,
)
SAFE_JSON = st.recursive(SAFE_SCALARS, _containers_of(SAFE_TEXT), max_leaves=12)
NAMES = st.from_regex(NAME, fullmatch=True)
REFS = st.one_of(st.integers(-(2**63), 2**63 - 1), SAFE_TEXT)


def _valid(type_: str, required: dict[str, Any], optional: dict[str, Any]) -> Any:
    return st.fixed_dictionaries(
        {"type": st.just(type_), **required},
        optional={"ref": REFS, "extra": SAFE_JSON, **optional},
    )


VALID_FRAMES = st.one_of(
    _valid("auth", {"token": st.text(min_size=1, max_size=20)}, {}),
    _valid("ping", {}, {}),
    _valid("subscribe", {"channel": NAMES}, {"since": SAFE_TEXT}),
    _valid("unsubscribe", {"channel": NAMES}, {}),
    _valid(
        "broadcast",
        {"channel": NAMES, "event": st.text(min_size=1, max_size=100)},
        {"payload": SAFE_JSON, "echo": st.booleans()},
    ),
    _valid(
        "presence",
        {"channel": NAMES},
        {"status": st.sampled_from(STATUSES), "meta": st.dictionaries(SAFE_TEXT, SAFE_JSON)},
    ),
)


# -- decoding -----------------------------------------------------------------------


@settings(FUZZ, max_examples=DECODE_EXAMPLES)
@given(text=st.one_of(st.text(st.characters(exclude_categories=())), ODD_TEXT), auth=st.booleans())
def test_decode_any_text(text: str, auth: bool) -> None:
    check_decode(text, auth)


@settings(FUZZ, max_examples=DECODE_EXAMPLES // 5)
@given(data=st.binary(), auth=st.booleans())
def test_decode_any_bytes_is_a_bad_request(data: bytes, auth: bool) -> None:
    check_decode(data, auth)


@settings(FUZZ, max_examples=DECODE_EXAMPLES)
@given(
    value=st.one_of(FRAMES, FRAMES, FRAMES, ANY_VALUE),
    auth=st.booleans(),
    ensure_ascii=st.booleans(),
    wrap=st.sampled_from([0, 0, 0, 0, 1, 1023, 1024, 1025]),
)
def test_decode_jsonish_frames(value: Any, auth: bool, ensure_ascii: bool, wrap: int) -> None:
    check_decode(json_text(Deep(wrap, value), ensure_ascii), auth)


@settings(FUZZ, max_examples=DECODE_EXAMPLES)
@given(frame=VALID_FRAMES, ensure_ascii=st.booleans())
def test_decode_valid_frames_decode_to_themselves(
    frame: dict[str, Any], ensure_ascii: bool
) -> None:
    for text in (orjson.dumps(frame).decode(), json.dumps(frame, ensure_ascii=ensure_ascii)):
        assert same_json(check_decode(text, authenticated=True), frame)
        if frame["type"] in ("auth", "ping"):
            assert same_json(check_decode(text, authenticated=False), frame)


# -- the hub ------------------------------------------------------------------------

TENANT = {"ada": "acme", "bob": "acme", "cy": "acme", "eve": "globex"}
SLOT_USERS = ["ada", "bob", "ada", "eve", "cy"]  # slot 2: ada's second tab
GRANT = ["private-*"]
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


class TokenSpec(NamedTuple):
    """A token, made when the step runs: `valid`, `badsig`, `expired` (PyJWT's clock) or `junk`."""

    kind: str
    user: str
    exp: int | None = None  # seconds after the hub's clock: expires by `tick()`
    grant: bool = False  # a `channels` claim for private-*


class SinceSpec(NamedTuple):
    """`since`, chosen when the step runs among the ids seen so far."""

    kind: str  # id | other | empty | beyond
    index: int = 0


class Subscribed(NamedTuple):
    """A channel name, chosen when the step runs among the sender's subscriptions."""

    index: int


class Send(NamedTuple):
    slot: int
    frame: Any  # a dict (with TokenSpec/SinceSpec/MISSING inside), or raw str/bytes


class Drop(NamedTuple):
    slot: int


class Reconnect(NamedTuple):
    slot: int
    user: str | None  # None: authenticate later (or never) with a frame
    grant: bool


class Resume(NamedTuple):
    """The slot's client comes back as a reconnecting client does: a new connection
    as the same user, subscribing again with `since` = the last id it saw."""

    slot: int


class Tick(NamedTuple):
    seconds: float


def weighted(*choices: tuple[int, Any]) -> Any:
    """One of the strategies, each `weight` times as likely as one of weight 1
    (`one_of` flattens nested choices, so it cannot weigh them)."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(lambda s: s)


VALID_NAMES = st.sampled_from(
    ["room"] * 4 + ["presence-lobby", "news"] * 2 + ["private-team", "private-zz", "chat:2"]
)
H_CHANNELS = weighted(
    (20, VALID_NAMES),
    (
        1,
        st.sampled_from(
            ["", "has space", "x" * 201, "r\u00f6om", "room\n", MISSING, None, 7, ["room"]]
        ),
    ),
)
H_OWN_CHANNELS = weighted((2, st.builds(Subscribed, st.integers(0, 9))), (1, H_CHANNELS))
H_REFS = weighted(
    (8, st.just(MISSING)),
    (4, st.integers(-3, 2**40)),
    (3, st.text(max_size=3)),
    (1, st.sampled_from([None, True, 1.5, [1], {"r": 1}, 2**70])),
)
# Small pools, so that the same member's meta changes between look-alikes (1, 1.0, true).
META_VALUES = st.sampled_from([1, True, 0, False, 1.0, None, "a", [1], [True], {"k": 0}])
META_POOL = st.sampled_from(
    [{}, {"x": 1}, {"x": True}, {"x": 1.0}, {"x": 0}, {"x": False}, {"x": [1]}, {"x": [True]},
     {"x": None}, {"x": "a"}, {"y": 1}, {"x": 1, "y": 1}]
)  # fmt: skip
H_META = weighted(
    (4, st.just(MISSING)),
    (10, META_POOL),
    (3, st.dictionaries(st.sampled_from(["x", "y"]), META_VALUES, max_size=2)),
    (1, st.sampled_from(
        [None, [1], "x", 3, {"blob": "x" * 9000}, {"deep": Deep(300)}, {"d": Deep(250)}]
    )),
)  # fmt: skip
H_PAYLOADS = weighted(
    (2, st.just(MISSING)),
    (8, SAFE_JSON),
    (2, JSONISH),
    (1, st.builds(Deep, st.integers(250, 256), SCALARS)),
)
H_EVENTS = weighted(
    (20, st.sampled_from(["e", "chat:message", "x" * 100])),
    (1, FIELD_VALUES["event"]),
)
H_ECHO = weighted((8, st.just(MISSING)), (7, st.booleans()), (1, st.sampled_from([None, 0, "no"])))
H_STATUS = weighted(
    (6, st.just(MISSING)),
    (9, st.sampled_from(STATUSES)),
    (1, st.sampled_from([None, "sleeping", 1])),
)
H_TOKENS = weighted(
    (
        6,
        st.builds(
            TokenSpec,
            st.sampled_from(["valid", "valid", "valid", "valid", "badsig", "expired", "junk"]),
            st.sampled_from(list(TENANT)),
            st.sampled_from([None, None, None, 5, 40, -1]),
            st.booleans(),
        ),
    ),
    (1, st.sampled_from([MISSING, "", None, 5, "not-a-jwt"])),
)
H_SINCE = weighted(
    (8, st.just(MISSING)),
    (
        7,
        st.builds(
            SinceSpec, st.sampled_from(["id", "id", "other", "empty", "beyond"]), st.integers(0, 50)
        ),
    ),
    (1, st.sampled_from([None, "", "nonsense", "abc-", "x-99999999999999999999", 5, []])),
)


def _frame(type_: str, **fields: Any) -> Any:
    return st.fixed_dictionaries({"type": st.just(type_), "ref": H_REFS, **fields})


H_FRAMES = weighted(
    (4, _frame("subscribe", channel=H_CHANNELS, since=H_SINCE)),
    (1, _frame("unsubscribe", channel=H_OWN_CHANNELS)),
    (5, _frame("broadcast", channel=H_OWN_CHANNELS, event=H_EVENTS, payload=H_PAYLOADS, echo=H_ECHO)),
    (4, _frame("presence", channel=H_OWN_CHANNELS, status=H_STATUS, meta=H_META)),
    (1, _frame("ping")),
    (1, _frame("auth", token=H_TOKENS)),
    (1, st.fixed_dictionaries(
        {}, optional={"type": st.sampled_from(["dance", "", 3, None]), "channel": H_CHANNELS}
    )),
    (1, st.one_of(
        st.sampled_from(["not json", "[1, 2]", "", "{", "null", "[" * 2000 + "]" * 2000]),
        st.text(max_size=12),
        st.binary(max_size=6),
    )),
)  # fmt: skip
SLOTS = st.integers(0, 4)
ROOMS = st.lists(st.sampled_from(["room", "news", "presence-lobby"]), unique=True, max_size=3)
ACTIONS = weighted(
    (16, st.builds(Send, SLOTS, H_FRAMES)),
    (1, st.builds(Drop, SLOTS)),
    (2, st.builds(Resume, SLOTS)),
    (
        1,
        st.builds(
            Reconnect, SLOTS, st.sampled_from([None, "ada", "bob", "cy", "eve"]), st.booleans()
        ),
    ),
    (1, st.builds(Tick, st.sampled_from([0.5, 5, 11, 31, 61]))),
)


def canon(value: Any) -> Any:
    """JSON content, comparable as clients see it: a boolean is no number (`1 != true`),
    but 1 and 1.0 are one JSON number; keys in any order."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("l", tuple(canon(v) for v in value))
    if isinstance(value, dict):
        return ("d", tuple(sorted((k, canon(v)) for k, v in value.items())))
    raise TypeError(value)


class OneOf(frozenset):
    """Any of these error codes: where docs/protocol.md leaves the choice open."""

    def __repr__(self) -> str:
        return "|".join(sorted(self))


@dataclass(eq=False)
class Entry:
    """An accepted message as the oracle knows it; its id is learned when first seen."""

    key: ChannelKey
    index: int  # place in the channel's order of acceptance
    event: str
    payload: bytes
    sender: tuple[str, str]
    ts: int
    id: str | None = None

    def __repr__(self) -> str:
        return f"<message #{self.index} of {self.key.name} id={self.id}>"


@dataclass(eq=False)
class Client:
    """One session as the oracle sees it."""

    slot: int
    session: Any
    peer: Peer
    auth_deadline: float
    last_seen: float
    user: str | None = None
    tenant: str | None = None
    grant: bool = False
    expires_at: float | None = None
    subs: dict[ChannelKey, None] = field(default_factory=dict)  # an ordered set
    last_id: dict[ChannelKey, str] = field(default_factory=dict)  # last message id seen
    resume: dict[ChannelKey, str] = field(default_factory=dict)  # subs when it went, since
    live: bool = True
    closed_with: int | None = None
    bucket: list[float] = field(default_factory=list)  # rate budget: [tokens, at]
    limited: bool = False  # told `rate_limited`, not forgiven yet
    rejected: int = 0  # frames dropped since

    @property
    def sid(self) -> str:
        return self.session.id

    def __repr__(self) -> str:
        return f"<slot {self.slot} {self.sid} {self.user or 'anonymous'}{'' if self.live else ' gone'}>"


@dataclass
class MemberState:
    status: str
    meta: Any
    conns: set[str]


class Oracle:
    """What docs/protocol.md says each session must receive, step by step."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.config = world.config
        self.clients: list[Client] = []  # in order of connection, like hub.sessions
        self.slots: dict[int, Client] = {}
        self.channels: dict[ChannelKey, tuple[str, tuple[str, ...]]] = {}
        self.history: dict[ChannelKey, list[Entry]] = defaultdict(list)
        self.members: dict[ChannelKey, dict[str, MemberState]] = defaultdict(dict)
        self.tokens: dict[str, TokenSpec] = {}
        self.next_sweep = world.clock.now + self.config.heartbeat_interval
        self.expected: dict[Client, list[tuple[Any, tuple[Any, ...]]]] = defaultdict(list)
        self.pending_leaves: list[tuple[ChannelKey, str, str]] = []
        self.refused = False  # the step's frame got an error
        self.buckets: dict[tuple[str, str], list[float]] = {}  # one rate budget per user

    @property
    def now(self) -> float:
        return self.world.clock.now

    def expect(self, client: Client, channel: str | None, *sig: Any) -> None:
        self.expected[client].append((channel, sig))

    # -- state helpers ------------------------------------------------------------

    def channel_type(self, key: ChannelKey) -> str:
        if key in self.channels:
            return self.channels[key][0]
        name = key.name
        if name.startswith("private-"):
            return "private"
        if name.startswith("presence-"):
            return "presence"
        return self.config.default_channel_type

    def may_access(self, client: Client, key: ChannelKey) -> bool:
        if self.channel_type(key) != "private":
            return True
        members = self.channels.get(key, ("", ()))[1]
        return client.user in members or (
            client.grant and any(fnmatch.fnmatchcase(key.name, p) for p in GRANT)
        )

    def subscribers(self, key: ChannelKey) -> list[Client]:
        return [c for c in self.clients if c.live and key in c.subs]

    def member_sig(self, user: str, m: MemberState, status: str | None = None) -> tuple:
        return (user, user.title(), status or m.status, canon(m.meta), len(m.conns))

    def members_sig(self, key: ChannelKey) -> tuple:
        return tuple(self.member_sig(u, m) for u, m in sorted(self.members[key].items()))

    def join(self, client: Client, key: ChannelKey) -> None:
        members = self.members[key]
        member = members.get(client.user)  # type: ignore[arg-type]
        if member is not None:
            member.conns.add(client.sid)
            return
        member = members[client.user] = MemberState("online", {}, {client.sid})  # type: ignore[index]
        for other in self.subscribers(key):
            if other is not client:
                self.expect(other, key.name, "user:joined", self.member_sig(client.user, member))  # type: ignore[arg-type]

    def leave(self, key: ChannelKey, user: str, sid: str) -> None:
        member = self.members[key][user]
        member.conns.discard(sid)
        if member.conns:
            return
        del self.members[key][user]
        for other in self.subscribers(key):
            self.expect(other, key.name, "user:left", self.member_sig(user, member, "offline"))

    def close(self, client: Client, code: int | None) -> None:
        """The session is gone; its presence ends in the background (see `flush`)."""
        client.live, client.closed_with = False, code
        client.resume = {key: client.last_id.get(key, "") for key in client.subs}
        for key in client.subs:
            if self.channel_type(key) == "presence":
                self.pending_leaves.append((key, client.user, client.sid))  # type: ignore[arg-type]
        client.subs.clear()

    def flush(self) -> None:
        """The background leaves of this step ran (`world.settle()`)."""
        leaves, self.pending_leaves = self.pending_leaves, []
        for key, user, sid in leaves:
            self.leave(key, user, sid)

    # -- steps ----------------------------------------------------------------------

    def connected(self, client: Client, identity: TokenSpec | None) -> None:
        client.bucket = [2 * self.config.rate_limit, self.now]  # its own until authenticated
        old = self.slots.get(client.slot)
        if old is not None and old.live:
            self.close(old, None)
        self.clients.append(client)
        self.slots[client.slot] = client
        if identity is not None:
            self.authenticate(client, identity, None)

    def authenticate(self, client: Client, token: TokenSpec, ref: Any) -> None:
        first = client.user is None
        principal = (TENANT[token.user], token.user)
        limit = self.config.max_connections_per_user
        if first and limit:
            others = [c for c in self.clients if c.live and (c.tenant, c.user) == principal]
            if len(others) >= limit:
                self.refuse(client, "limit_exceeded", ref)
                self.close(client, 4429)
                return
        client.bucket = self.buckets.setdefault(principal, [2 * self.config.rate_limit, self.now])
        client.user, client.tenant = token.user, TENANT[token.user]
        client.grant = token.grant
        client.expires_at = None if token.exp is None else float(token.exp)  # absolute
        user = {"userId": token.user, "tenantId": client.tenant, "name": token.user.title()}
        self.expect(client, None, "authenticated", ref, client.sid, user)
        if first:
            return
        for key in list(client.subs):  # rights are checked again on a refresh
            if not self.may_access(client, key):
                del client.subs[key]
                self.expect(client, key.name, "unsubscribed", None, "forbidden")

    def frame(self, client: Client, data: str | bytes) -> None:
        if not client.live:
            return  # a closed session's frames are ignored
        client.last_seen = self.now
        if not self.admit(client):
            return
        try:
            frame = decode(data, authenticated=client.user is not None)
        except ProtocolError as exc:
            self.refused = True
            self.expect(client, exc.channel, "error", exc.code, exc.ref, exc.channel)
            return
        type_, ref = frame["type"], frame.get("ref")
        if type_ == "ping":
            self.expect(client, None, "pong", ref, int(self.now * 1000))
            return
        if type_ == "auth":
            self.auth(client, frame["token"], ref)
            return
        name = frame["channel"]
        key = ChannelKey(client.tenant, name)  # type: ignore[arg-type]
        getattr(self, type_)(client, key, frame, ref)

    def admit(self, client: Client) -> bool:
        """The rate limit (README): `rate_limit` frames/s per user, bursts to twice
        that; one `rate_limited`, later frames dropped; another full burst: 4429."""
        rate, bucket, now = self.config.rate_limit, client.bucket, self.now
        burst = 2 * rate
        if rate <= 0:
            return True
        bucket[0], bucket[1] = min(burst, bucket[0] + (now - bucket[1]) * rate), now
        if bucket[0] >= 1:
            bucket[0] -= 1
            if client.limited and bucket[0] >= burst - 1:  # refilled: forgiven
                client.limited, client.rejected = False, 0
            return True
        self.refused = True
        if not client.limited:
            client.limited = True
            self.expect(client, None, "error", "rate_limited", None, None)
        client.rejected += 1
        if client.rejected > burst:
            self.close(client, 4429)
        return False

    def refuse(self, client: Client, code: str, ref: Any, channel: str | None = None) -> None:
        self.refused = True
        self.expect(client, channel, "error", code, ref, channel)

    def auth(self, client: Client, token: str, ref: Any) -> None:
        spec = self.tokens.get(token)
        if spec is None or spec.kind in ("badsig", "junk"):
            self.refuse(client, "unauthorized", ref)
            self.close(client, 4401)
        elif spec.kind == "expired":
            self.refuse(client, "token_expired", ref)
            self.close(client, 4401)
        elif client.user is not None and (client.user, client.tenant) != (
            spec.user,
            TENANT[spec.user],
        ):
            self.refuse(client, "unauthorized", ref)  # a refresh is for the same principal
        else:
            self.authenticate(client, spec, ref)

    def subscribe(self, client: Client, key: ChannelKey, frame: dict, ref: Any) -> None:
        name, type_ = key.name, self.channel_type(key)
        codes = set()
        if not self.may_access(client, key):
            codes.add("forbidden")
        if key not in client.subs and len(client.subs) >= self.config.max_subscriptions:
            codes |= {"bad_request", "limit_exceeded"}  # a quota: either code says it
        if codes:
            return self.refuse(client, OneOf(codes), ref, name)
        presence = type_ == "presence"
        if key in client.subs:  # again: no replay
            members = self.members_sig(key) if presence else MISSING
            return self.expect(client, name, "subscribed", ref, type_, members, MISSING)
        self.channels.setdefault(key, (type_, ()))
        client.subs[key] = None
        since = frame.get("since")
        replay: list[Entry] = []
        recovered: Any = MISSING
        if since is not None:
            replay, recovered = self.missed(key, since)
        if presence:
            self.join(client, key)
        members = self.members_sig(key) if presence else MISSING
        self.expect(client, name, "subscribed", ref, type_, members, recovered)
        for entry in replay:
            self.expect(client, name, *self.message_sig(entry))

    def missed(self, key: ChannelKey, since: str) -> tuple[list[Entry], bool]:
        history = self.history[key]
        size = self.config.history_size
        retained = history[-size:] if size > 0 else []
        if since == "":
            after = 0
        else:
            known = [e.index for e in history if e.id == since]
            if not known:  # unknown: what is left, and reload
                return list(retained), False
            after = known[0] + 1
        missed = history[after:]
        kept = [e for e in missed if e in retained]
        return kept, len(kept) == len(missed)

    def message_sig(self, entry: Entry) -> tuple:
        return ("message", entry, entry.event, entry.payload, *entry.sender, entry.ts)

    def unsubscribe(self, client: Client, key: ChannelKey, frame: dict, ref: Any) -> None:
        if key in client.subs:
            del client.subs[key]
            if self.channel_type(key) == "presence":
                self.leave(key, client.user, client.sid)  # type: ignore[arg-type]
        self.expect(client, key.name, "unsubscribed", ref, None)

    def broadcast(self, client: Client, key: ChannelKey, frame: dict, ref: Any) -> None:
        if key not in client.subs:
            return self.refuse(client, "not_subscribed", ref, key.name)
        payload = frame.get("payload")
        if frame["event"] == "chat:message":  # docs/protocol.md, "Chat messages"
            text = payload.get("text") if isinstance(payload, dict) else None
            if not isinstance(text, str):
                return self.refuse(client, "bad_request", ref, key.name)
            if len(text) > 16 * 1024:
                return self.refuse(client, "payload_too_large", ref, key.name)
        if not _encodes({"payload": payload}):
            return self.refuse(client, "bad_request", ref, key.name)
        history = self.history[key]
        entry = Entry(
            key,
            len(history),
            frame["event"],
            orjson.dumps(payload),
            (client.user, client.sid),  # type: ignore[arg-type]
            int(self.now * 1000),
        )
        history.append(entry)
        for other in self.subscribers(key):
            if other is client and frame.get("echo", True) is False:
                continue
            self.expect(other, key.name, *self.message_sig(entry))
        if ref is not None:
            self.expect(client, None, "ack", ref, entry)

    def presence(self, client: Client, key: ChannelKey, frame: dict, ref: Any) -> None:
        if key not in client.subs:
            return self.refuse(client, "not_subscribed", ref, key.name)
        if self.channel_type(key) != "presence":
            return self.refuse(client, "bad_request", ref, key.name)
        status, meta = frame.get("status"), frame.get("meta")
        member = self.members[key][client.user]  # type: ignore[index]
        changed = False
        if status is not None and status != member.status:
            member.status, changed = status, True
        if meta is not None and canon(meta) != canon(member.meta):
            member.meta, changed = meta, True
        if changed:
            sig = self.member_sig(client.user, member)  # type: ignore[arg-type]
            for other in self.subscribers(key):
                self.expect(other, key.name, "presence:updated", sig)
        self.expect(client, key.name, "presence:state", ref, self.members_sig(key))

    def tick(self) -> None:
        now = self.now
        for client in [c for c in self.clients if c.live]:
            if client.user is None and now >= client.auth_deadline:
                self.expect(client, None, "error", "unauthorized", None, None)
                self.close(client, 4401)
            elif client.expires_at is not None and now >= client.expires_at:
                self.expect(client, None, "error", "token_expired", None, None)
                self.close(client, 4401)
        if now >= self.next_sweep:
            self.next_sweep = now + self.config.heartbeat_interval
            silent_since = now - self.config.heartbeat_timeout
            for client in [c for c in self.clients if c.live]:
                if client.last_seen < silent_since:
                    self.close(client, 4408)


def actual_sig(frame: dict[str, Any]) -> tuple[Any, tuple[Any, ...]]:
    """A received frame in the oracle's terms: (channel, signature)."""
    type_, channel = frame["type"], frame.get("channel")

    def member(m: dict[str, Any]) -> tuple:
        return (m["userId"], m["name"], m["status"], canon(m["meta"]), m["connections"])

    if type_ == "message":
        sender = frame["from"]
        sig = ("message", frame["id"], frame["event"], orjson.dumps(frame["payload"]),
               sender["userId"], sender["connectionId"], frame["ts"])  # fmt: skip
    elif type_ == "ack":
        sig = ("ack", frame["ref"], frame["id"])
    elif type_ == "pong":
        sig = ("pong", frame.get("ref"), frame["ts"])
    elif type_ == "authenticated":
        sig = ("authenticated", frame.get("ref"), frame["connectionId"], frame["user"])
    elif type_ == "error":
        sig = ("error", frame["code"], frame.get("ref"), channel)
    elif type_ == "subscribed":
        members = frame.get("members", MISSING)
        members = MISSING if members is MISSING else tuple(member(m) for m in members)
        sig = ("subscribed", frame.get("ref"), frame["channelType"], members,
               frame.get("recovered", MISSING))  # fmt: skip
    elif type_ == "unsubscribed":
        sig = ("unsubscribed", frame.get("ref"), frame.get("reason"))
    elif type_ in ("user:joined", "user:left", "presence:updated"):
        sig = (type_, member(frame["member"]))
    elif type_ == "presence:state":
        sig = ("presence:state", frame.get("ref"), tuple(member(m) for m in frame["members"]))
    else:
        sig = (type_, repr(frame))
    return channel, sig


def _same(expected: tuple, actual: tuple) -> bool:
    if len(expected) != len(actual):
        return False
    for want, got in zip(expected, actual, strict=True):
        if isinstance(want, OneOf):
            if got not in want:
                return False
        elif isinstance(want, Entry):
            if want.id is None:
                want.id = got  # learned: it must be the same everywhere from now on
            elif want.id != got:
                return False
        elif want is MISSING or got is MISSING:
            if want is not got:
                return False
        elif want != got:
            return False
    return True


def compare(client: Client, expected: list, actual_frames: list[dict[str, Any]]) -> None:
    """Same frames, in the same order within each channel."""
    actual = [actual_sig(f) for f in actual_frames]
    by_channel: dict[Any, list] = defaultdict(list)
    got: dict[Any, list] = defaultdict(list)
    for channel, sig in expected:
        by_channel[channel].append(sig)
    for channel, sig in actual:
        got[channel].append(sig)
    ok = set(by_channel) == set(got) and all(
        len(by_channel[c]) == len(got[c])
        and all(_same(w, g) for w, g in zip(by_channel[c], got[c], strict=True))
        for c in by_channel
    )
    assert ok, (
        f"{client} received other frames than the protocol says:\n"
        f"  expected {[s for _, s in expected]}\n  received {actual_frames}"
    )


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def make_spec_token(spec: TokenSpec, now: float) -> tuple[str, TokenSpec]:
    """The token text for `spec`, and the spec with an absolute `exp`."""
    claims: dict[str, Any] = {"tenant": TENANT[spec.user]}
    if spec.grant:
        claims["channels"] = GRANT
    exp = None
    if spec.kind == "expired":
        claims["exp"] = int(time.time()) - 60  # PyJWT's clock, not the hub's
    elif spec.exp is not None:
        exp = claims["exp"] = int(now) + spec.exp  # the hub's clock runs ahead of PyJWT's
    if spec.kind == "junk":
        return f"junk-{spec.user}", spec
    secret = SECRET if spec.kind != "badsig" else "another-secret-that-is-long-enough!!"
    return make_token(spec.user, secret=secret, **claims), spec._replace(exp=exp)


class HubFuzz:
    def __init__(self, config: dict[str, Any], slots: int, rooms: list[list[str]]) -> None:
        self.world = World(**config)
        self.oracle = Oracle(self.world)
        self.slots = slots
        self.rooms = rooms  # what each slot subscribes to before the steps
        self.trace: list[str] = []  # what happened, step by step, for a failure's report
        self.step_no = 0

    def say(self, line: str) -> None:
        self.trace.append(line)

    async def setup(self) -> None:
        engine, now = self.world.hub.engine, self.world.clock.now
        for key, type_, members in (
            (ChannelKey("acme", "news"), "public", ()),
            (ChannelKey("acme", "private-team"), "private", ("ada",)),
        ):
            await engine.channels.create(ChannelRecord(key, type_, None, now, members))
            self.oracle.channels[key] = (type_, members)
        for slot in range(self.slots):
            await self.run(Reconnect(slot, None, False))
            await self.run(
                Send(slot, {"type": "auth", "token": TokenSpec("valid", SLOT_USERS[slot])})
            )
            for name in self.rooms[slot]:
                await self.run(Send(slot, {"type": "subscribe", "channel": name}))

    def resolve(self, frame: Any, client: Client) -> str | bytes:
        if not isinstance(frame, dict):
            return frame
        resolved: dict[Any, Any] = {}
        for name, value in frame.items():
            if value is MISSING:
                continue
            if isinstance(value, TokenSpec):
                value, spec = make_spec_token(value, self.world.clock.now)
                self.oracle.tokens[value] = spec
            elif isinstance(value, Subscribed):
                names = [key.name for key in client.subs] or ["room"]
                value = names[value.index % len(names)]
            elif isinstance(value, SinceSpec):
                value = self.since(value, frame.get("channel"), client)
            resolved[name] = value
        return json_text(resolved)

    def since(self, spec: SinceSpec, name: Any, client: Client) -> str:
        known: dict[ChannelKey, list[str]] = defaultdict(list)
        for key, entries in self.oracle.history.items():
            known[key] += [e.id for e in entries if e.id is not None]
        key = ChannelKey(client.tenant or "acme", name if isinstance(name, str) else "")
        own = known.get(key, [])
        others = [i for k, ids in known.items() if k != key for i in ids]
        if spec.kind == "id" and own:
            return own[spec.index % len(own)]
        if spec.kind == "other" and others:
            return others[spec.index % len(others)]
        if spec.kind == "beyond" and own:
            epoch, seq = parse_message_id(own[-1])  # type: ignore[misc]
            return f"{epoch}-{seq + 1000 + spec.index}"
        return ""

    async def run(self, action: Any) -> None:
        world, oracle, hub = self.world, self.oracle, self.world.hub
        self.step_no += 1
        oracle.refused = False
        sender: Client | None = None
        if isinstance(action, Send):
            sender = oracle.slots[action.slot % self.slots]
            data = self.resolve(action.frame, sender)
            self.say(f"step {self.step_no}: {sender} sends {data!r:.400}")
            oracle.frame(sender, data)
            await hub.receive(sender.session, data)
        elif isinstance(action, Drop):
            client = oracle.slots[action.slot % self.slots]
            self.say(f"step {self.step_no}: {client} disconnects")
            if client.live:
                oracle.close(client, None)
            hub.disconnect(client.session)
        elif isinstance(action, Reconnect):
            peer = Peer()
            identity = spec = None
            if action.user is not None:
                token, spec = make_spec_token(
                    TokenSpec("valid", action.user, None, action.grant), world.clock.now
                )
                identity = hub.auth.identify(token)
            slot = action.slot % self.slots
            old = oracle.slots.get(slot)
            if old is not None:
                hub.disconnect(old.session)
            session = hub.connect(peer, identity)
            client = Client(slot, session, peer, world.clock.now + world.config.auth_timeout,
                            world.clock.now)  # fmt: skip
            self.say(f"step {self.step_no}: slot {slot} connects as {client}")
            oracle.connected(client, spec)
        elif isinstance(action, Resume):
            old = oracle.slots[action.slot % self.slots]
            if old.live:
                await self.run(Drop(old.slot))
            user = old.user or SLOT_USERS[old.slot]
            await self.run(Reconnect(old.slot, user, old.grant))
            for key, since in old.resume.items():
                frame = {"type": "subscribe", "channel": key.name, "since": since}
                await self.run(Send(old.slot, frame))
            return
        elif isinstance(action, Tick):
            world.clock.now += action.seconds
            self.say(f"step {self.step_no}: {action.seconds} s pass, tick()")
            oracle.tick()
            hub.tick()
        await world.settle()
        oracle.flush()
        self.check(sender)

    def check(self, sender: Client | None) -> None:
        oracle = self.oracle
        received = {c: c.peer.take() for c in oracle.clients}
        for client, frames in received.items():
            if frames:
                self.say(f"    {client} got {frames!r:.600}")
            internal = [f for f in frames if f.get("type") == "error" and f["code"] == "internal"]
            assert not internal, f"{client} got an internal error: {internal}"
        if sender is not None and oracle.refused:
            left_user = sender.user if not sender.live else None
            for client, frames in received.items():
                if client is sender:
                    continue
                leaks = [
                    f for f in frames if not (f["type"] == "user:left" and f["member"]["userId"] == left_user)
                ]  # fmt: skip
                assert not leaks, f"a refused frame of {sender} reached {client}: {leaks}"
        for client, frames in received.items():
            compare(client, oracle.expected.pop(client, []), frames)
            for frame in frames:
                if frame["type"] == "message":
                    client.last_id[ChannelKey(client.tenant, frame["channel"])] = frame["id"]  # type: ignore[arg-type]
            closed = client.peer.closed_with[0] if client.peer.closed_with else None
            assert closed == client.closed_with, (
                f"{client} closed with {closed}, expected {client.closed_with}"
            )
        assert not oracle.expected, f"expected frames for no client: {oracle.expected}"
        for key, entries in oracle.history.items():
            ids = [(e.index, e.id) for e in entries if e.id is not None]
            assert len({i for _, i in ids}) == len(ids), f"{key}: an id was given twice: {ids}"
            parsed = [(index, parse_message_id(i)) for index, i in ids]
            for (i1, p1), (i2, p2) in zip(parsed, parsed[1:], strict=False):
                assert p1 and p2 and p1[0] == p2[0] and p2[1] - p1[1] == i2 - i1, (
                    f"{key}: ids in order of acceptance must increase by one: {ids}"
                )
        store = self.world.store
        for tenant in ("acme", "globex"):
            there = {c.key for c in store.list_channels(tenant)}
            want = {k for k in oracle.channels if k.tenant == tenant}
            assert there == want, (
                f"channels of {tenant}: {sorted(n for _, n in there)}, "
                f"but accepted requests created {sorted(n for _, n in want)}"
            )

    async def finish(self) -> None:
        await self.world.settle()
        presence = self.world.hub.engine.presence
        for key in self.oracle.channels:
            if self.oracle.channel_type(key) != "presence":
                continue
            members = {m.user_id for m in await presence.members(key)}
            live = {c.user for c in self.oracle.subscribers(key)}
            assert members == live, f"{key}: members {members}, live subscribers {live}"


async def fuzz_hub(
    config: dict[str, Any], slots: int, rooms: list[list[str]], actions: list[Any]
) -> None:
    log = ErrorLog()
    logger = logging.getLogger("nyo_realtime_ext")
    logger.addHandler(log)
    fuzz = HubFuzz(config, slots, rooms)
    try:
        await fuzz.setup()
        for action in actions:
            await fuzz.run(action)
            assert not log.records, f"logged: {[r.getMessage() for r in log.records]}"
        await fuzz.finish()
    except Exception as exc:
        exc.add_note("\n".join(fuzz.trace))
        raise
    finally:
        logger.removeHandler(log)
        await fuzz.world.hub.shutdown()
        fuzz.world.store.close()


def run_async(coroutine: Any) -> Any:
    """A fresh event loop per example: the hub spawns tasks on the running loop."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


@settings(FUZZ, max_examples=HUB_EXAMPLES)
@given(
    config=st.fixed_dictionaries(
        {
            "history_size": st.sampled_from([100, 3]),
            "max_subscriptions": st.sampled_from([1000, 3]),
            "max_connections_per_user": st.sampled_from([100, 2]),
            "rate_limit": st.sampled_from([200, 0, 5]),
        }
    ),
    slots=st.integers(3, 5),
    rooms=st.lists(ROOMS, min_size=5, max_size=5),
    actions=st.lists(ACTIONS, min_size=20, max_size=60),
)
def test_hub_fuzz(
    config: dict[str, Any], slots: int, rooms: list[list[str]], actions: list[Any]
) -> None:
    run_async(fuzz_hub(config, slots, rooms, actions))


def test_hub_fuzz_finding_a_meta_change_from_1_to_true_is_not_lost() -> None:
    """Found by `test_hub_fuzz`, kept as its smallest case: a member whose meta is
    `{"x": 1}` sets `{"x": true}`. The memory engine compared meta as Python values
    (`1 == True`): nobody was told, and the meta stayed `{"x": 1}`."""
    actions = [
        Send(0, {"type": "presence", "channel": "room", "meta": {"x": 1}, "ref": 1}),
        Send(0, {"type": "presence", "channel": "room", "meta": {"x": True}, "ref": 2}),
    ]
    config = {"history_size": 100, "max_subscriptions": 1000}
    run_async(fuzz_hub(config, 3, [["room"], ["room"], [], [], []], actions))
