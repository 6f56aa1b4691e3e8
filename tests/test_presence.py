"""Presence as data: one member per user however many connections it has, a join only
for the first connection in, a leave only for the last one out, and changes that are
changes as JSON sees them."""

from __future__ import annotations

from nyo_realtime_ext.engines.memory.tracker import PresenceTracker
from nyo_realtime_ext.engines.meta import json_key, same_json
from nyo_realtime_ext.models import ChannelKey, Identity

ROOM = ChannelKey("acme", "presence-room")
ADA = Identity("ada", "acme", "Ada Lovelace", color="#123456", avatar_url="https://a/ada.png")
BOB = Identity("bob", "acme")


def test_a_user_is_one_member_however_many_tabs() -> None:
    tracker = PresenceTracker()
    member, joined = tracker.join(ROOM, ADA, "c1", now=10.0, status="busy", meta={"tab": 1})
    assert joined
    again, joined_again = tracker.join(ROOM, ADA, "c2", now=11.0)
    assert not joined_again and again is member
    # The second tab neither resets the status nor the meta, and keeps the first join time.
    assert (member.status, member.meta, member.joined_at, member.last_seen) == (
        "busy",
        {"tab": 1},
        10.0,
        11.0,
    )
    assert member.connections == {"c1", "c2"}
    assert [m.user_id for m in tracker.members(ROOM)] == ["ada"]
    wire = member.to_wire()
    assert wire["connections"] == 2 and wire["name"] == "Ada Lovelace"
    assert (wire["color"], wire["avatar_url"]) == ("#123456", "https://a/ada.png")


def test_only_the_last_connection_out_makes_a_leave() -> None:
    tracker = PresenceTracker()
    tracker.join(ROOM, ADA, "c1", now=1.0)
    tracker.join(ROOM, ADA, "c2", now=1.0)
    tracker.join(ROOM, BOB, "c3", now=1.0)
    assert tracker.leave(ROOM, "ada", "c1", now=2.0) is None
    assert tracker.member(ROOM, "ada") is not None
    left = tracker.leave(ROOM, "ada", "c2", now=3.0)
    assert left is not None and left.status == "offline" and left.last_seen == 3.0
    assert tracker.member(ROOM, "ada") is None
    assert [m.user_id for m in tracker.members(ROOM)] == ["bob"]


def test_leaving_what_was_never_joined_is_nothing() -> None:
    tracker = PresenceTracker()
    assert tracker.leave(ROOM, "ada", "c1", now=1.0) is None
    tracker.join(ROOM, ADA, "c1", now=1.0)
    assert tracker.leave(ROOM, "ada", "other-connection", now=2.0) is None
    assert tracker.leave(ChannelKey("globex", ROOM.name), "ada", "c1", now=2.0) is None
    assert tracker.member(ROOM, "ada") is not None


def test_an_empty_channel_is_forgotten() -> None:
    tracker = PresenceTracker()
    tracker.join(ROOM, ADA, "c1", now=1.0)
    tracker.leave(ROOM, "ada", "c1", now=2.0)
    assert tracker.members(ROOM) == []
    assert tracker._channels == {}  # nothing kept for a channel nobody is on


def test_tenants_are_walls() -> None:
    tracker = PresenceTracker()
    tracker.join(ROOM, ADA, "c1", now=1.0)
    assert tracker.members(ChannelKey("globex", ROOM.name)) == []


def test_an_update_reports_only_a_change() -> None:
    tracker = PresenceTracker()
    member, _ = tracker.join(ROOM, ADA, "c1", now=1.0)
    assert member.status == "online" and member.meta == {}
    assert tracker.update(ROOM, "ada", now=2.0, status="online") is None
    assert member.last_seen == 2.0  # seen, even when nothing changed
    assert tracker.update(ROOM, "ada", now=3.0, status="away") is member
    assert tracker.update(ROOM, "ada", now=4.0, meta={"x": 1}) is member
    assert tracker.update(ROOM, "ada", now=5.0, meta={"x": 1.0}) is None  # one JSON number
    assert tracker.update(ROOM, "ada", now=6.0, meta={"x": True}) is member  # not a number
    assert (member.status, member.meta) == ("away", {"x": True})
    assert tracker.update(ROOM, "nobody", now=7.0, status="busy") is None


def test_meta_is_the_members_own_copy() -> None:
    tracker = PresenceTracker()
    meta = {"cursor": 1}
    member, _ = tracker.join(ROOM, ADA, "c1", now=1.0, meta=meta)
    meta["cursor"] = 2
    assert member.meta == {"cursor": 1}


def test_a_member_without_a_name_is_called_by_its_id() -> None:
    member, _ = PresenceTracker().join(ROOM, BOB, "c1", now=1.0)
    assert member.name == "bob"


def test_same_json_compares_as_a_client_would() -> None:
    assert same_json({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not same_json(1, True) and not same_json(0, False) and not same_json(True, 1.0)
    assert same_json(True, True) and not same_json(True, False)
    assert not same_json({"a": 1}, {"a": 1, "b": 2})
    assert not same_json([1, 2], [1, 2, 3])
    assert not same_json("1", 1) and not same_json([], {})


def test_json_key_is_equal_exactly_when_same_json_holds() -> None:
    # The Redis engine compares meta by json_key, the memory engine by same_json.
    values = [
        1, 1.0, -0.0, 0, True, False, None, "1", 0.5, 2.0**70, [], {}, [1, 2], [1.0, 2],
        {"a": 1, "b": [0]}, {"b": [-0.0], "a": 1.0}, {"a": True, "b": [0]}, {"a": 1},
    ]  # fmt: skip
    for a in values:
        for b in values:
            assert (json_key(a) == json_key(b)) == same_json(a, b), (a, b)
