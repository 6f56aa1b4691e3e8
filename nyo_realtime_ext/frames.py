"""The frames the server sends, as bytes: the one place that writes their JSON.

Every outgoing frame of docs/protocol.md is built here: `message` frames, the
presence events (`user:joined`, `user:left`, `presence:updated`), member objects
and lists, the replies (`authenticated`, `subscribed`, `ack`, ...) and `error`.
Parsing what clients send stays in `protocol.py`.

**One key order.** The protocol does not fix the order of keys, but both engines
must send the same bytes for the same event (tests/test_engine_contract.py holds
them to it), so each object has one order, written down here once:

- a message: type, channel, id, event, payload, from, ts;
- a member: userId, kind? (kernels only), name, color?, avatar_url?, joinedAt, status, meta, lastSeen,
  connections (`?`: only when set);
- a presence event: type, channel, member;
- a shared-state entry: key, value, version, from; `state:changed` is type, channel,
  then the entry's keys; a `state` snapshot: type, channel, entries, complete.

**Encoded once.** A frame for many recipients is encoded once and the same bytes
go to each (engines hand them to `EngineEvents.deliver`); nothing here is called
per recipient.

**What Lua joins, and why.** The Redis engine assembles two kinds of frame inside
its scripts, from pieces made here, and never writes a JSON key itself:

- A message's id is given out by the publish script, atomically with storing and
  publishing it, so the frame can only be completed there. `message_pieces` gives
  the bytes before the id and the bytes after it; the script sends
  ``head .. id .. tail``. Ids (``epoch-seq``) need no JSON escaping.
- A member lives in Redis as fields (its head, status, meta, lastSeen, its
  connections), changed by scripts (join, leave, update, profile, the reaping of
  dead nodes), and the events those scripts publish carry the member as it is in
  that same step. `member_head` is the stored head (``{"userId":..,"name":..,
  "color":..,"avatar_url":..,"joinedAt":..``, no closing brace), made when the user
  joins; every script that builds members gets `LUA_PIECES` as its last argument:
  the keys between the fields (``member_json`` in prelude.lua joins
  ``head .. status_key .. status .. meta_key .. meta .. last_seen_key .. lastSeen ..
  connections_key .. count .. close``), the keys that bound the name-and-colour part
  of a head (a profile change swaps it: `shown_piece`), and the start of each
  presence event up to the channel's name (names need no JSON escaping: they are
  ``[A-Za-z0-9_:.@/=+-]``). Values Lua puts in (status, meta, names, colours) were
  encoded here too, and stored as bytes.
- A shared-state write gets its version in the state script, like a message its id:
  `state_pieces` gives the entry's bytes before the version and after it, and the
  start of a `state:changed` frame up to the entry's first key; the script stores
  ``entry = head .. version .. tail`` and publishes ``start .. entry`` without the
  entry's opening brace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .constants import PERSON

if TYPE_CHECKING:
    from .models import ChannelRecord, Identity, Member, Message, StateEntry

encode = orjson.dumps  # a frame (dict) to the bytes every recipient gets

MESSAGE = "message"
PRESENCE_EVENTS = ("user:joined", "user:left", "presence:updated")

# -- messages -------------------------------------------------------------------


def message_wire(
    channel: str, id_: str, event: str, payload: Any, sender: dict[str, Any] | None, ts_ms: int
) -> dict[str, Any]:
    return {
        "type": MESSAGE,
        "channel": channel,
        "id": id_,
        "event": event,
        "payload": payload,
        "from": sender,
        "ts": ts_ms,
    }


def message_frame(
    channel: str, id_: str, event: str, payload: Any, sender: dict[str, Any] | None, ts_ms: int
) -> bytes:
    """A `message` frame; raises orjson.JSONEncodeError for what cannot be sent."""
    return orjson.dumps(message_wire(channel, id_, event, payload, sender, ts_ms))


def message_of(message: Message) -> bytes:
    return message_frame(
        message.channel,
        message.id,
        message.event,
        message.payload,
        message.sender,
        int(message.ts * 1000),
    )


def message_pieces(
    channel: str, event: str, payload: Any, sender: dict[str, Any] | None, ts_ms: int
) -> tuple[bytes, bytes]:
    """The bytes of a `message` frame before its id and after it: ``head + id + tail``
    is `message_frame` with that id (the publish script joins them)."""
    frame = message_frame(channel, "", event, payload, sender, ts_ms)
    # The first `"id":""`: only the channel's name comes before it, and it has no `"`.
    cut = frame.index(b'"id":""') + len(b'"id":"')
    return frame[:cut], frame[cut:]


# -- members ----------------------------------------------------------------------


def member_wire(member: Member) -> dict[str, Any]:
    wire: dict[str, Any] = {"userId": member.user_id}
    if member.kind != PERSON:  # the one field a kernel adds (docs/protocol.md)
        wire["kind"] = member.kind
    wire["name"] = member.name
    if member.color:
        wire["color"] = member.color
    if member.avatar_url:
        wire["avatar_url"] = member.avatar_url
    wire["joinedAt"] = int(member.joined_at * 1000)
    wire["status"] = member.status
    wire["meta"] = member.meta
    wire["lastSeen"] = int(member.last_seen * 1000)
    wire["connections"] = len(member.connections)
    return wire


def members_wire(members: list[Member]) -> list[dict[str, Any]]:
    """A member list (`subscribed`, `presence:state`, HTTP): in the engine's order."""
    return [member_wire(m) for m in members]


def presence_event(type_: str, channel: str, member: Member) -> bytes:
    """`user:joined`, `user:left` or `presence:updated`, for every subscriber."""
    return orjson.dumps({"type": type_, "channel": channel, "member": member_wire(member)})


def shown_piece(name: str, color: str | None) -> bytes:
    """The name-and-colour part of a member head: ``,"name":..[,"color":..]``."""
    piece = b',"name":' + orjson.dumps(name)
    return piece + b',"color":' + orjson.dumps(color) if color else piece


def member_head(
    user_id: str,
    name: str,
    color: str | None,
    avatar_url: str | None,
    joined_ms: int,
    kind: str = PERSON,
) -> bytes:
    """The start of a member, up to its joinedAt, without the closing brace (Redis
    stores it; prelude.lua's member_json completes it with `LUA_PIECES`). `kind`
    comes before the name: a profile change swaps what lies from `name` on."""
    wire: dict[str, Any] = {"userId": user_id}
    if kind != PERSON:
        wire["kind"] = kind
    wire["name"] = name
    if color:
        wire["color"] = color
    if avatar_url:
        wire["avatar_url"] = avatar_url
    wire["joinedAt"] = joined_ms
    return orjson.dumps(wire)[:-1]


def stored_member(head: bytes, status: bytes, meta: bytes, last_seen: bytes, count: int) -> bytes:
    """A member from the fields Redis stores: what prelude.lua's member_json makes."""
    return b"".join(
        (
            head,
            _STATUS,
            status,
            _META,
            meta,
            _LAST_SEEN,
            last_seen,
            _CONNECTIONS,
            str(count).encode(),
            b"}",
        )
    )


_STATUS, _META, _LAST_SEEN, _CONNECTIONS = (
    b',"status":"',
    b'","meta":',
    b',"lastSeen":',
    b',"connections":',
)

#: The pieces Redis scripts join (see the module's docstring), as one JSON object
#: that prelude.lua decodes: the last argument of every script that builds members.
LUA_PIECES = orjson.dumps(
    {
        "status": _STATUS.decode(),
        "meta": _META.decode(),
        "lastSeen": _LAST_SEEN.decode(),
        "connections": _CONNECTIONS.decode(),
        "close": "}",
        # Bounds of a head's name-and-colour part (`shown_piece`): it starts at the
        # first `name` and ends at the first of `avatar` or `joinedAt`. Neither can
        # occur inside an encoded string (a `"` there is always escaped).
        "name": ',"name":',
        "color": ',"color":',
        "avatar": ',"avatar_url":',
        "joinedAt": ',"joinedAt":',
        # A presence event: its start up to the channel's name, then the member.
        **{type_: '{"type":"' + type_ + '","channel":"' for type_ in PRESENCE_EVENTS},
        "member": '","member":',
    }
)

PRESENCE_UPDATED_START = b'{"type":"presence:updated"'  # how an update frame starts


# -- shared state --------------------------------------------------------------------

STATE_CHANGED = "state:changed"
STATE = "state"


def state_entry_wire(entry: StateEntry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "value": entry.value,
        "version": entry.version,
        "from": entry.sender,
    }


def state_changed(channel: str, entry: StateEntry) -> bytes:
    """`state:changed`, for every subscriber that asked for state (a delete: value null)."""
    return orjson.dumps({"type": STATE_CHANGED, "channel": channel, **state_entry_wire(entry)})


def state_snapshot(channel: str, entries: list[StateEntry], complete: bool) -> bytes:
    """`state`: the entries after `subscribed` (all of them when `complete`, else the
    ones changed since the subscriber's `since`, deletions included as value null)."""
    return orjson.dumps(
        {
            "type": STATE,
            "channel": channel,
            "entries": [state_entry_wire(e) for e in entries],
            "complete": complete,
        }
    )


def state_pieces(
    channel: str, key: str, value: Any, sender: dict[str, Any] | None
) -> tuple[bytes, bytes, bytes]:
    """(entry head, entry tail, frame start): ``head + version + tail`` is the entry as
    `state_entry_wire` encodes it, and ``start + entry[1:]`` its `state:changed` frame.
    Raises orjson.JSONEncodeError for a value that cannot be sent."""
    entry = orjson.dumps({"key": key, "value": value, "version": "", "from": sender})
    # The last `,"version":""`: the value before it may hold one, `from` after it cannot
    # (its keys are userId and connectionId, and a `"` inside a string is escaped).
    cut = entry.rindex(b',"version":""') + len(b',"version":"')
    start = orjson.dumps({"type": STATE_CHANGED, "channel": channel})[:-1] + b","
    return entry[:cut], entry[cut:], start


# -- replies, errors, records -------------------------------------------------------


def error(code: str, message: str, ref: Any = None, channel: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    if channel is not None:
        frame["channel"] = channel
    return frame


def conflict(message: str, entry: StateEntry | None, ref: Any, channel: str) -> dict[str, Any]:
    """The `conflict` error of a compare-and-set: the entry as it is now (null: no key)."""
    frame = error("conflict", message, ref, channel)
    frame["entry"] = state_entry_wire(entry) if entry is not None else None
    return frame


def reply(type_: str, ref: Any, **fields: Any) -> dict[str, Any]:
    frame = {"type": type_, **fields}
    if ref is not None:
        frame["ref"] = ref
    return frame


def identity_wire(identity: Identity) -> dict[str, Any]:
    """`authenticated.user`."""
    user: dict[str, Any] = {"userId": identity.user_id, "tenantId": identity.tenant_id}
    if identity.kind != PERSON:
        user["kind"] = identity.kind
    user["name"] = identity.name or identity.user_id
    if identity.color:
        user["color"] = identity.color
    if identity.avatar_url:
        user["avatar_url"] = identity.avatar_url
    return user


def profile_answer(
    user_id: str, name: str, color: str | None, chosen: dict[str, Any]
) -> dict[str, Any]:
    """The answer of `GET`/`PUT profile`."""
    return {"userId": user_id, "name": name, "color": color, "chosen": chosen}


def channel_wire(channel: ChannelRecord) -> dict[str, Any]:
    """A channel's record over HTTP."""
    return {
        "name": channel.key.name,
        "type": channel.type,
        "owner": channel.owner,
        "members": list(channel.members),
        "createdAt": int(channel.created_at * 1000),
    }
