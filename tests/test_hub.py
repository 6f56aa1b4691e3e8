"""The hub without sockets or an event loop: frames in, frames out, a clock we move."""

from __future__ import annotations

from typing import Any

import pytest

from nyo_realtime_ext.auth import Authenticator
from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.engines import MemoryEngine
from nyo_realtime_ext.engines.memory import Store
from nyo_realtime_ext.hub import Hub
from nyo_realtime_ext.models import ChannelKey, ChannelRecord

from .support.hub_world import Peer, SlowPeer, World
from .support.tokens import SECRET, make_token


@pytest.fixture
def world() -> World:
    return World()


async def test_first_frame_auth_reports_identity_and_heartbeat_in_ms(world: World) -> None:
    peer = Peer()
    session = world.hub.connect(peer)
    await world.send(session, {"type": "auth", "token": make_token("ada", tenant="acme"), "ref": 7})
    (frame,) = peer.frames()
    assert frame["type"] == "authenticated" and frame["ref"] == 7
    assert frame["user"] == {"userId": "ada", "tenantId": "acme", "name": "Ada"}
    assert (frame["heartbeatInterval"], frame["heartbeatTimeout"], frame["protocol"]) == (
        30000,
        60000,
        1,
    )


async def test_everything_but_auth_and_ping_needs_authentication(world: World) -> None:
    peer = Peer()
    session = world.hub.connect(peer)
    await world.send(session, {"type": "ping", "ref": 1})
    await world.send(session, {"type": "subscribe", "channel": "room", "ref": 2})
    pong, refused = peer.frames()
    assert pong["type"] == "pong" and pong["ref"] == 1 and pong["ts"] == int(world.clock.now * 1000)
    assert refused == {
        "type": "error",
        "code": "unauthorized",
        "message": "authenticate first",
        "ref": 2,
    }
    assert peer.closed_with is None


async def test_bad_token_is_refused_and_closed_4401(world: World) -> None:
    peer = Peer()
    session = world.hub.connect(peer)
    await world.send(session, {"type": "auth", "token": make_token("ada", secret="wrong" * 10)})
    assert peer.frames()[0]["code"] == "unauthorized"
    assert peer.closed_with[0] == 4401


async def test_auth_timeout_closes_4401(world: World) -> None:
    peer = Peer()
    world.hub.connect(peer)
    world.clock.now += 9
    world.hub.tick()
    assert peer.closed_with is None
    world.clock.now += 2
    world.hub.tick()
    assert peer.frames()[0]["code"] == "unauthorized"
    assert peer.closed_with[0] == 4401


async def test_expired_token_closes_after_token_expired_unless_refreshed(world: World) -> None:
    # The hub's clock is ahead of the real one, so PyJWT (real clock) accepts
    # these tokens while the hub (its clock) decides when they run out.
    exp = int(world.clock.now) + 20
    ada, peer = await world.join("ada", exp=exp)
    await world.send(ada, {"type": "auth", "token": make_token("ada", tenant="acme", exp=exp + 20)})
    assert peer.take()[0]["type"] == "authenticated"
    world.clock.now = exp + 1
    world.hub.tick()
    assert peer.closed_with is None, "refreshed token must extend the session"
    world.clock.now = exp + 21
    world.hub.tick()
    assert [f["code"] for f in peer.frames("error")] == ["token_expired"]
    assert peer.closed_with[0] == 4401


async def test_refresh_for_another_user_is_refused_and_keeps_the_session(world: World) -> None:
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "auth", "token": make_token("mallory", tenant="acme"), "ref": 1})
    assert peer.take() == [
        {
            "type": "error",
            "code": "unauthorized",
            "message": "a refreshed token must be for the same user and tenant",
            "ref": 1,
        }
    ]
    assert peer.closed_with is None
    await world.send(ada, {"type": "subscribe", "channel": "room", "ref": 2})
    assert peer.frames()[0]["members"][0]["userId"] == "ada"


async def test_one_order_per_channel_echo_and_ack(world: World) -> None:
    ada, ada_peer = await world.join("ada")
    bob, bob_peer = await world.join("bob")
    for s in (ada, bob):
        await world.send(s, {"type": "subscribe", "channel": "room"})
    ada_peer.take(), bob_peer.take()
    await world.send(
        ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 1, "ref": "a"}
    )
    await world.send(bob, {"type": "broadcast", "channel": "room", "event": "e", "payload": 2})
    await world.send(
        ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 3, "echo": False}
    )
    ada_frames, bob_frames = ada_peer.take(), bob_peer.take()
    assert [f["payload"] for f in bob_frames if f["type"] == "message"] == [1, 2, 3]
    assert [f["payload"] for f in ada_frames if f["type"] == "message"] == [1, 2]
    ack = [f for f in ada_frames if f["type"] == "ack"]
    assert ack == [{"type": "ack", "ref": "a", "id": bob_frames[0]["id"]}]
    ids = [f["id"] for f in bob_frames]
    assert len(set(ids)) == 3


async def test_encoded_once_same_bytes_for_every_subscriber(world: World) -> None:
    sessions = [await world.join(f"u{i}") for i in range(3)]
    await world.subscribe_all("public-news", sessions)
    await world.send(
        sessions[0][0], {"type": "broadcast", "channel": "public-news", "event": "e", "payload": {}}
    )
    sent = [peer.sent[0] for _, peer in sessions]
    assert all(data is sent[0] for data in sent)


async def test_must_subscribe_before_broadcast_or_presence(world: World) -> None:
    ada, peer = await world.join("ada")
    await world.send(
        ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 1, "ref": 1}
    )
    await world.send(ada, {"type": "presence", "channel": "room", "ref": 2})
    assert [(f["code"], f["channel"]) for f in peer.frames()] == [
        ("not_subscribed", "room"),
        ("not_subscribed", "room"),
    ]


async def test_second_tab_makes_no_join_or_leave(world: World) -> None:
    watcher, watcher_peer = await world.join("watcher")
    await world.send(watcher, {"type": "subscribe", "channel": "room"})
    tab1, _ = await world.join("ada")
    tab2, _ = await world.join("ada")
    await world.send(tab1, {"type": "subscribe", "channel": "room"})
    await world.send(tab2, {"type": "subscribe", "channel": "room"})
    joined = watcher_peer.frames("user:joined")
    assert [f["member"]["userId"] for f in joined] == ["ada"]
    assert joined[0]["member"]["connections"] == 1
    world.hub.disconnect(tab1)
    await world.settle()
    assert watcher_peer.frames("user:left") == []
    world.hub.disconnect(tab2)
    await world.settle()
    (left,) = watcher_peer.frames("user:left")
    assert left["member"]["userId"] == "ada" and left["member"]["status"] == "offline"


async def test_status_and_meta_updates(world: World) -> None:
    ada, ada_peer = await world.join("ada")
    bob, bob_peer = await world.join("bob")
    for s in (ada, bob):
        await world.send(s, {"type": "subscribe", "channel": "room"})
    bob_peer.take()
    await world.send(
        ada,
        {
            "type": "presence",
            "channel": "room",
            "status": "away",
            "meta": {"file": "a.ipynb"},
            "ref": 1,
        },
    )
    (updated,) = bob_peer.frames("presence:updated")
    assert updated["member"]["status"] == "away" and updated["member"]["meta"] == {
        "file": "a.ipynb"
    }
    state = ada_peer.frames("presence:state")[0]
    assert {m["userId"]: m["status"] for m in state["members"]} == {"ada": "away", "bob": "online"}
    await world.send(ada, {"type": "presence", "channel": "room", "status": "sleeping", "ref": 2})
    assert ada_peer.frames("error")[-1]["code"] == "bad_request"
    record = {m.user_id: m for m in world.store.presence_records(ChannelKey("acme", "room"))}["ada"]
    assert record.status == "away"


async def test_tenants_are_walls(world: World) -> None:
    acme, acme_peer = await world.join("ada", tenant="acme")
    globex, globex_peer = await world.join("ada", tenant="globex")
    await world.send(acme, {"type": "subscribe", "channel": "room:1"})
    await world.send(globex, {"type": "subscribe", "channel": "room:1"})
    assert [m["userId"] for m in globex_peer.frames("subscribed")[0]["members"]] == ["ada"]
    await world.send(
        acme, {"type": "broadcast", "channel": "room:1", "event": "e", "payload": "secret"}
    )
    assert globex_peer.frames("message") == [] and globex_peer.frames("user:joined") == []
    await world.send(
        globex,
        {
            "type": "subscribe",
            "channel": "room:1",
            "since": acme_peer.frames("message")[0]["id"],
            "ref": 3,
        },
    )
    again = globex_peer.frames("subscribed")[-1]
    assert again["ref"] == 3
    assert globex_peer.frames("message") == []


async def test_private_channel_needs_membership_claim_or_hook(world: World) -> None:
    key = ChannelKey("acme", "private-team")
    await world.hub.engine.channels.create(
        ChannelRecord(key, "private", None, world.clock(), ("ada",))
    )
    ada, ada_peer = await world.join("ada")
    eve, eve_peer = await world.join("eve")
    carl, carl_peer = await world.join("carl", channels=["private-t*"])
    for s in (ada, eve, carl):
        await world.send(s, {"type": "subscribe", "channel": "private-team", "ref": 1})
    assert ada_peer.frames()[0]["type"] == "subscribed"
    assert carl_peer.frames()[0]["type"] == "subscribed"
    assert eve_peer.frames() == [
        {
            "type": "error",
            "code": "forbidden",
            "message": "you may not subscribe on this channel",
            "ref": 1,
            "channel": "private-team",
        }
    ]


async def test_authorize_hook_decides_for_others() -> None:
    calls: list[tuple[str, str, str]] = []

    def authorize(identity: Any, channel: str, action: str) -> bool:
        calls.append((identity.user_id, channel, action))
        return identity.user_id == "friend"

    world = World(authorize=authorize)
    friend, friend_peer = await world.join("friend")
    stranger, stranger_peer = await world.join("stranger")
    await world.send(friend, {"type": "subscribe", "channel": "private-x"})
    await world.send(stranger, {"type": "subscribe", "channel": "private-x"})
    assert friend_peer.frames()[0]["type"] == "subscribed"
    assert stranger_peer.frames()[0]["code"] == "forbidden"
    assert ("friend", "private-x", "subscribe") in calls


async def test_recovery_replays_exactly_the_missed_messages(world: World) -> None:
    ada, ada_peer = await world.join("ada")
    bob, bob_peer = await world.join("bob")
    for s in (ada, bob):
        await world.send(s, {"type": "subscribe", "channel": "room"})
    for i in range(5):
        await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": i})
    seen = bob_peer.frames("message")
    world.hub.disconnect(bob)
    await world.settle()
    for i in range(5, 8):
        await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": i})
    bob2, bob2_peer = await world.join("bob")
    await world.send(bob2, {"type": "subscribe", "channel": "room", "since": seen[2]["id"]})
    frames = bob2_peer.frames()
    assert frames[0]["type"] == "subscribed" and frames[0]["recovered"] is True
    assert [f["payload"] for f in frames[1:]] == [3, 4, 5, 6, 7]


async def test_recovery_flags_gaps_and_unknown_ids() -> None:
    world = World(history_size=3)
    ada, _ = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "room"})
    for i in range(6):
        await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": i})
    for since in ("0000-1", "nonsense", "9999999"):
        bob, peer = await world.join("bob")
        await world.send(bob, {"type": "subscribe", "channel": "room", "since": since})
        frames = peer.frames()
        assert frames[0]["recovered"] is False
        assert [f["payload"] for f in frames[1:]] == [3, 4, 5]


async def test_history_ttl_drops_old_messages() -> None:
    world = World(history_ttl=60)
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "room"})
    await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": "old"})
    first_id = peer.frames("message")[0]["id"]
    world.clock.now += 61
    await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": "new"})
    bob, bob_peer = await world.join("bob")
    await world.send(bob, {"type": "subscribe", "channel": "room", "since": "x-0"})
    assert [f["payload"] for f in bob_peer.frames("message")] == ["new"]
    carl, carl_peer = await world.join("carl")
    await world.send(carl, {"type": "subscribe", "channel": "room", "since": first_id})
    assert carl_peer.frames("subscribed")[0]["recovered"] is True


async def test_heartbeat_sweep_closes_silent_connections_and_ends_presence(world: World) -> None:
    quiet, quiet_peer = await world.join("quiet")
    chatty, chatty_peer = await world.join("chatty")
    for s in (quiet, chatty):
        await world.send(s, {"type": "subscribe", "channel": "room"})
    for _ in range(3):
        world.clock.now += 30
        await world.send(chatty, {"type": "ping"})
        world.hub.tick()
    await world.settle()
    assert quiet_peer.closed_with == (4408, "heartbeat timeout")
    assert chatty_peer.closed_with is None
    assert [f["member"]["userId"] for f in chatty_peer.frames("user:left")] == ["quiet"]


async def test_flooding_gets_one_rate_limited_then_4429() -> None:
    world = World(rate_limit=10)
    flood, peer = await world.join("flood")
    calm, calm_peer = await world.join("calm")
    for _ in range(20):  # the burst
        await world.send(flood, {"type": "ping"})
    # The auth frame spent the connection's own budget; from then on it is the user's.
    assert len(peer.frames("pong")) == 20
    await world.send(flood, {"type": "ping"})
    assert [f["code"] for f in peer.frames("error")] == ["rate_limited"]
    assert peer.closed_with is None
    for _ in range(20):
        await world.send(flood, {"type": "ping"})
    assert peer.closed_with[0] == 4429
    assert [f["code"] for f in peer.frames("error")] == ["rate_limited"]
    await world.send(calm, {"type": "ping"})
    assert calm_peer.frames("pong") and calm_peer.closed_with is None


async def test_rate_limit_forgives_after_the_bucket_refills() -> None:
    world = World(rate_limit=10)
    client, peer = await world.join("burst")
    for _ in range(30):
        await world.send(client, {"type": "ping"})
    assert peer.closed_with is None
    world.clock.now += 2.5
    for _ in range(30):
        await world.send(client, {"type": "ping"})
    assert peer.closed_with is None
    assert [f["code"] for f in peer.frames("error")] == ["rate_limited", "rate_limited"]


async def test_a_rename_costs_its_fan_out_from_the_users_budget() -> None:
    """Issue 23, finding 6: a user on many presence channels who renames costs every
    watcher one `presence:updated` per channel. The user's budget pays for them, as
    for that many frames: here 60 channels with a budget of 20 a second (bursts 40)
    leave the next frames refused until the debt is paid, and nobody else pays."""
    world = World(rate_limit=20)
    ada, ada_peer = await world.join("ada")
    bob, bob_peer = await world.join("bob")
    rooms = [f"presence-room-{n}" for n in range(60)]
    for n, room in enumerate(rooms):
        if n % 20 == 0:
            world.clock.now += 2  # a full bucket again: the set-up is within budget
        await world.send(ada, {"type": "subscribe", "channel": room})
        await world.send(bob, {"type": "subscribe", "channel": room})
    world.clock.now += 2
    ada_peer.take()
    bob_peer.take()

    assert ada.identity is not None
    await world.hub.set_profile(ada.identity, {"name": "Countess"})
    assert len(bob_peer.frames("presence:updated")) == 60
    await world.send(ada, {"type": "ping", "ref": 1})
    assert [f["code"] for f in ada_peer.frames("error")] == ["rate_limited"]
    assert not ada_peer.frames("pong")
    await world.send(bob, {"type": "ping"})
    assert bob_peer.frames("pong")
    # A full bucket (40) less 60: 20 frames' worth of debt at 20 a second. Served
    # again once it is paid off, and not before.
    world.clock.now += 0.5
    await world.send(ada, {"type": "ping", "ref": 2})
    assert not any(f.get("ref") == 2 for f in ada_peer.frames("pong"))
    world.clock.now += 1
    await world.send(ada, {"type": "ping", "ref": 3})
    assert [f["ref"] for f in ada_peer.frames("pong")] == [3]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_request"),
        ("[1, 2]", "bad_request"),
        (b'{"type": "ping"}', "bad_request"),
        ("[" * 5000 + "]" * 5000, "bad_request"),
        ('{"type": 3}', "bad_request"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "ping", "ref": [1]}', "bad_request"),
        ('{"type": "subscribe"}', "bad_request"),
        ('{"type": "subscribe", "channel": "has space"}', "invalid_channel"),
        ('{"type": "subscribe", "channel": ""}', "invalid_channel"),
        ('{"type": "subscribe", "channel": "' + "x" * 201 + '"}', "invalid_channel"),
        ('{"type": "subscribe", "channel": "room", "since": 5}', "bad_request"),
        ('{"type": "broadcast", "channel": "room", "payload": 1}', "bad_request"),
        ('{"type": "broadcast", "channel": "room", "event": "' + "e" * 101 + '"}', "bad_request"),
        ('{"type": "broadcast", "channel": "room", "event": "e", "echo": "no"}', "bad_request"),
        ('{"type": "presence", "channel": "room", "meta": [1]}', "bad_request"),
        ('{"type": "auth", "token": ""}', "bad_request"),
    ],
)
async def test_bad_frames_get_the_documented_error_and_nothing_else_changes(
    world: World, frame: str | bytes, code: str
) -> None:
    bad, bad_peer = await world.join("bad")
    good, good_peer = await world.join("good")
    for s in (bad, good):
        await world.send(s, {"type": "subscribe", "channel": "room"})
    bad_peer.take(), good_peer.take()
    await world.send(bad, frame)
    (error,) = bad_peer.take()
    assert error["type"] == "error" and error["code"] == code, error
    assert bad_peer.closed_with is None
    assert good_peer.take() == []
    await world.send(
        bad, {"type": "broadcast", "channel": "room", "event": "still", "payload": "here"}
    )
    assert [f["event"] for f in good_peer.frames("message")] == ["still"]


async def test_history_survives_a_new_hub_on_the_same_database(tmp_path: Any) -> None:
    path = str(tmp_path / "db.sqlite")
    config = Realtime(jwt_secret=SECRET, db_path=path)
    first = World()
    first.store = Store(path)
    engine = MemoryEngine(first.store, 100, 3600)
    first.hub = Hub(config, engine, Authenticator(config), first.clock)
    ada, peer = await first.join("ada")
    await first.send(ada, {"type": "subscribe", "channel": "room"})
    await first.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": "kept"})
    message_id = peer.frames("message")[0]["id"]
    await first.hub.shutdown()
    first.store.close()

    second = World()
    second.store = Store(path)
    engine = MemoryEngine(second.store, 100, 3600)
    second.hub = Hub(config, engine, Authenticator(config), second.clock)
    bob, bob_peer = await second.join("bob")
    await second.send(bob, {"type": "subscribe", "channel": "room", "since": "x-0"})
    assert [(f["id"], f["payload"]) for f in bob_peer.frames("message")] == [(message_id, "kept")]
    await second.send(
        bob, {"type": "broadcast", "channel": "room", "event": "e", "payload": "next"}
    )
    new_id = bob_peer.frames("message")[-1]["id"]
    assert new_id != message_id
    assert [m.status for m in second.store.presence_records(ChannelKey("acme", "room"))] == [
        "offline",
        "online",
    ]


async def test_subscriptions_per_connection_are_bounded() -> None:
    world = World(max_subscriptions=2)
    ada, peer = await world.join("ada")
    for name in ("a", "b", "c"):
        await world.send(ada, {"type": "subscribe", "channel": name, "ref": name})
    assert [f["type"] for f in peer.frames()] == ["subscribed", "subscribed", "error"]
    refused = peer.frames("error")[0]
    assert refused["code"] == "limit_exceeded" and "max_subscriptions" in refused["message"]
    assert world.store.get_channel(ChannelKey("acme", "c")) is None  # refused: not created
    await world.send(ada, {"type": "unsubscribe", "channel": "a"})
    await world.send(ada, {"type": "subscribe", "channel": "c", "ref": "again"})
    assert peer.frames()[-1]["type"] == "subscribed"


async def test_idle_channels_leave_memory_and_come_back_from_the_store(world: World) -> None:
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "room"})
    await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 1})
    first = peer.frames("message")[0]["id"]
    await world.send(ada, {"type": "unsubscribe", "channel": "room"})
    world.clock.now += 31
    await world.send(ada, {"type": "ping"})
    world.hub.tick()
    assert ChannelKey("acme", "room") not in world.hub.channels.states
    await world.settle()  # the engine stops listening to it
    await world.send(ada, {"type": "subscribe", "channel": "room", "since": first})
    await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 2})
    frames = peer.frames()
    assert frames[-1]["type"] == "message" and frames[-1]["id"] not in (first,)
    assert [f for f in frames if f["type"] == "subscribed"][-1]["recovered"] is True


async def test_unsubscribe_replies_and_others_see_the_user_leave(world: World) -> None:
    ada, ada_peer = await world.join("ada")
    bob, bob_peer = await world.join("bob")
    for s in (ada, bob):
        await world.send(s, {"type": "subscribe", "channel": "room"})
    await world.send(ada, {"type": "unsubscribe", "channel": "room", "ref": 9})
    assert ada_peer.frames()[-1] == {"type": "unsubscribed", "channel": "room", "ref": 9}
    assert bob_peer.frames("user:left")[0]["member"]["userId"] == "ada"
    await world.send(bob, {"type": "broadcast", "channel": "room", "event": "e", "payload": 1})
    assert ada_peer.frames("message") == []


async def test_presence_on_a_public_channel_is_a_bad_request() -> None:
    world = World(default_channel_type="public")
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "public-news", "ref": 1})
    assert "members" not in peer.frames("subscribed")[0]
    await world.send(ada, {"type": "presence", "channel": "public-news", "ref": 2})
    assert peer.frames("error")[0]["code"] == "bad_request"


async def test_identity_cannot_be_set_by_frames(world: World) -> None:
    ada, ada_peer = await world.join("ada")
    bob, bob_peer = await world.join("bob")
    for s in (ada, bob):
        await world.send(s, {"type": "subscribe", "channel": "room"})
    forged = {"type": "broadcast", "channel": "room", "event": "e", "payload": 1,
              "from": {"userId": "bob"}, "userId": "bob", "tenantId": "globex"}  # fmt: skip
    await world.send(ada, forged)
    assert bob_peer.frames("message")[0]["from"]["userId"] == "ada"
    await world.send(
        ada, {"type": "presence", "channel": "room", "meta": {"userId": "bob"}, "userId": "bob"}
    )
    updated = bob_peer.frames("presence:updated")[0]["member"]
    assert updated["userId"] == "ada"


async def test_a_failing_hook_costs_one_internal_error_not_the_connection() -> None:
    def authorize(identity: Any, channel: str, action: str) -> bool:
        raise RuntimeError("directory service is down")

    world = World(authorize=authorize)
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "private-x", "ref": 1})
    await world.send(ada, {"type": "ping", "ref": 2})
    error, pong = peer.frames()
    assert (error["type"], error["code"], error["ref"]) == ("error", "internal", 1)
    assert "directory" not in error["message"]  # no internals leak to clients
    assert pong["type"] == "pong" and peer.closed_with is None


async def test_a_refused_request_leaves_no_trace_so_names_cannot_be_squatted(world: World) -> None:
    eve, eve_peer = await world.join("eve")
    await world.send(eve, {"type": "subscribe", "channel": "private-team"})
    assert eve_peer.frames()[0]["code"] == "forbidden"
    key = ChannelKey("acme", "private-team")
    assert world.store.get_channel(key) is None
    # Someone granted the name may still create it (the squatting rule).
    ada = world.hub.auth.identity_from_claims(
        {"sub": "ada", "tenant": "acme", "channels": ["private-team"]}
    )
    assert (await world.hub.create_channel(ada, key, "private", ("bob",))).owner == "ada"


async def test_before_authentication_everything_else_is_unauthorized(world: World) -> None:
    peer = Peer()
    session = world.hub.connect(peer)
    for frame in (
        '{"type": "subscribe", "channel": "bad name!"}',
        '{"type": "nope"}',
        '{"type": "broadcast"}',
    ):
        await world.send(session, frame)
    assert [f["code"] for f in peer.frames()] == ["unauthorized"] * 3
    await world.send(session, '{"type": "auth"}')
    assert peer.frames()[-1]["code"] == "bad_request"  # auth itself is still checked closely


async def test_presence_meta_is_bounded(world: World) -> None:
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "room"})
    await world.send(
        ada, {"type": "presence", "channel": "room", "meta": {"blob": "x" * 9000}, "ref": 1}
    )
    assert peer.frames("error")[0]["code"] == "payload_too_large"
    await world.send(
        ada, {"type": "presence", "channel": "room", "meta": {"file": "a.ipynb"}, "ref": 2}
    )
    assert peer.frames("presence:state")[0]["members"][0]["meta"] == {"file": "a.ipynb"}


@pytest.mark.parametrize("since", ["abc-²", "x-" + "9" * 5000, "-", "abc-"])
async def test_odd_since_values_are_unknown_ids_not_internal_errors(
    world: World, since: str
) -> None:
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "room", "since": since[:200]})
    assert peer.frames()[0]["type"] == "subscribed" and peer.frames()[0]["recovered"] is False


async def test_ids_never_repeat_without_history() -> None:
    world = World(history_size=0)
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "room"})
    await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 1})
    await world.send(ada, {"type": "unsubscribe", "channel": "room"})
    world.clock.now += 31
    await world.send(ada, {"type": "ping"})
    world.hub.tick()  # the idle channel leaves memory
    await world.settle()
    await world.send(ada, {"type": "subscribe", "channel": "room"})
    await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 2})
    ids = [f["id"] for f in peer.frames("message")]
    assert len(ids) == 2 and ids[0] != ids[1]


async def test_recovery_cut_short_is_not_called_complete() -> None:
    world = World(history_size=10)
    ada, peer = await world.join("ada")
    await world.send(ada, {"type": "subscribe", "channel": "room"})
    for i in range(8):
        await world.send(ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": i})
    first = peer.frames("message")[0]["id"]
    world.hub.engine.broker.history_size = world.config.history_size = 3  # lowered between restarts
    bob, bob_peer = await world.join("bob")
    await world.send(bob, {"type": "subscribe", "channel": "room", "since": first})
    assert bob_peer.frames("subscribed")[0]["recovered"] is False


async def test_shutdown_closes_everyone_1001_without_a_storm_of_leaves(world: World) -> None:
    sessions = [await world.join(f"u{i}") for i in range(5)]
    await world.subscribe_all("room", sessions)
    await world.hub.shutdown()
    for _, peer in sessions:
        assert peer.take() == [] and peer.closed_with == (1001, "server shutting down")
    late = Peer()
    assert world.hub.connect(late) is None and late.closed_with[0] == 1001
    assert {m.status for m in world.store.presence_records(ChannelKey("acme", "room"))} == {
        "offline"
    }


async def test_a_failing_store_write_on_disconnect_strands_no_one(world: World) -> None:
    ada, _ = await world.join("ada")
    bob, bob_peer = await world.join("bob")
    for name in ("a", "b", "c"):
        await world.send(ada, {"type": "subscribe", "channel": name})
        await world.send(bob, {"type": "subscribe", "channel": name})
    bob_peer.take()
    save = world.store.save_presence
    calls = []

    def save_once_locked(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        save(*args, **kwargs)

    world.store.save_presence = save_once_locked  # type: ignore[method-assign]
    world.hub.disconnect(ada)
    await world.settle()
    assert sorted(f["channel"] for f in bob_peer.frames("user:left")) == ["a", "b", "c"]
    for name in ("a", "b", "c"):
        members = await world.hub.engine.presence.members(ChannelKey("acme", name))
        assert [m.user_id for m in members] == ["bob"]


async def test_recoveries_asked_at_once_share_one_send_buffer() -> None:
    world = World(max_send_buffer=3_000_000)
    ada, _ = await world.join("ada")
    for n in range(5):
        await world.send(ada, {"type": "subscribe", "channel": f"room{n}"})
        for _ in range(2):
            await world.send(
                ada,
                {
                    "type": "broadcast",
                    "channel": f"room{n}",
                    "event": "e",
                    "payload": "x" * 900_000,
                },
            )
    greedy = SlowPeer()
    session = world.hub.connect(greedy)
    await world.send(session, {"type": "auth", "token": make_token("greedy", tenant="acme")})
    for n in range(5):
        await world.send(session, {"type": "subscribe", "channel": f"room{n}", "since": "x-0"})
    await world.send(
        session, {"type": "subscribe", "channel": "room0", "since": "x-0"}
    )  # again: no replay
    assert [f.get("recovered") for f in greedy.frames("subscribed")] == [False] * 5 + [None]
    assert 900_000 < greedy.backlog() <= 3_000_000
    assert greedy.closed_with is None
