"""What the hub refuses, and what a refusal leaves unchanged: nesting, grants that a
refreshed token drops, rate budgets per user, quotas, member caps, idle channels,
identities. Each test failed on the code before its fix (marked `hardening`)."""

from __future__ import annotations

from typing import Any

import pytest

from nyo_realtime_ext.models import ChannelKey
from nyo_realtime_ext.protocol import ProtocolError

from .support.httpclient import Api, ch
from .support.hub_world import World
from .support.tokens import make_token
from .support.wsclient import no_frame

pytestmark = pytest.mark.hardening


def deep(levels: int) -> str:
    """JSON text nested `levels` deep (orjson would refuse to encode it)."""
    return "[" * levels + "0" + "]" * levels


async def test_a_payload_nested_too_deep_is_a_bad_request_and_burns_no_id(tmp_path: Any) -> None:
    """orjson decodes 300 levels but will not encode them: refused on input, with
    the channel's sequence untouched, so a later `since` still recovers fully."""
    world = World(db_path=str(tmp_path / "x.db"))
    ada, ada_peer = await world.join("ada")
    await world.subscribe_all("room", [(ada, ada_peer)])
    await world.send(
        ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 1, "ref": 1}
    )
    first = ada_peer.frames("ack")[0]["id"]
    ada_peer.take()

    nested = (
        '{"type":"broadcast","channel":"room","event":"e","ref":2,"payload":'
        + ("[" * 300 + "]" * 300)
        + "}"
    )
    await world.send(ada, nested)
    (refused,) = ada_peer.take()
    assert refused["type"] == "error" and refused["code"] == "bad_request"
    assert refused["ref"] == 2 and "nested" in refused["message"]

    await world.send(
        ada, {"type": "broadcast", "channel": "room", "event": "e", "payload": 3, "ref": 3}
    )
    second = ada_peer.frames("ack")[0]["id"]
    epoch, seq = first.rsplit("-", 1)
    assert second == f"{epoch}-{int(seq) + 1}"  # no id was used up
    world.hub.engine.commit()
    bob, bob_peer = await world.join("bob")
    await world.send(bob, {"type": "subscribe", "channel": "room", "since": first})
    subscribed = bob_peer.frames("subscribed")[0]
    assert subscribed["recovered"] is True
    assert [m["id"] for m in bob_peer.frames("message")] == [second]


async def test_deep_presence_meta_is_a_bad_request() -> None:
    world = World()
    ada, peer = await world.join("ada")
    await world.subscribe_all("room", [(ada, peer)])
    frame = '{"type":"presence","channel":"room","ref":1,"meta":{"x":' + deep(299) + "}}"
    await world.send(ada, frame)
    (refused,) = peer.take()
    assert refused["code"] == "bad_request" and refused["ref"] == 1


async def test_a_refreshed_token_that_drops_a_grant_ends_the_subscription() -> None:
    world = World()
    grant = {"channels": ["private-ops"]}
    eve, eve_peer = await world.join("eve", **grant)
    boss, boss_peer = await world.join("boss", **grant)
    await world.subscribe_all("private-ops", [(eve, eve_peer), (boss, boss_peer)])

    await world.send(eve, {"type": "auth", "token": make_token("eve", tenant="acme"), "ref": 9})
    frames = eve_peer.take()
    assert frames[0]["type"] == "authenticated" and frames[0]["ref"] == 9
    assert frames[1] == {"type": "unsubscribed", "channel": "private-ops", "reason": "forbidden"}

    await world.send(
        boss, {"type": "broadcast", "channel": "private-ops", "event": "e", "payload": 1}
    )
    assert eve_peer.frames("message") == []  # nothing more reaches her
    await world.send(eve, {"type": "subscribe", "channel": "private-ops", "ref": 10})
    assert eve_peer.take()[-1]["code"] == "forbidden"


async def test_deep_payload_over_http_is_400(server: Any) -> None:
    api = Api(server.http_url + "/api/", make_token("ada"))
    assert (
        await api.post(f"channels/{ch('room')}/messages", {"event": "e", "payload": 1})
    ).status == 201
    body = '{"event": "e", "payload": ' + deep(300) + "}"
    answer = await api.post(f"channels/{ch('room')}/messages", raw=body.encode())
    assert answer.status == 400 and answer.body["error"]["code"] == "bad_request"
    ids = [m["id"] for m in (await api.get(f"channels/{ch('room')}/messages")).body["messages"]]
    third = (await api.post(f"channels/{ch('room')}/messages", {"event": "e"})).body["id"]
    epoch, seq = ids[-1].rsplit("-", 1)
    assert third == f"{epoch}-{int(seq) + 1}"


async def test_one_rate_budget_per_user_across_connections() -> None:
    """More tabs do not buy a bigger budget: a user's connections share one bucket
    (rate 10/s, bursts of 20), while another user's budget is untouched."""
    world = World(rate_limit=10)
    tabs = [await world.join("ada") for _ in range(2)]
    bob, bob_peer = await world.join("bob")
    for i in range(12):
        for session, _ in tabs:
            await world.send(session, {"type": "ping", "ref": i})
    pongs = sum(len(peer.frames("pong")) for _, peer in tabs)
    limited = [peer.frames("error") for _, peer in tabs]
    assert pongs <= 20 < 24  # the auth frames and 24 pings drew on one budget of 20
    assert any(f and f[0]["code"] == "rate_limited" for f in limited)
    await world.send(bob, {"type": "ping", "ref": "b"})
    assert bob_peer.frames("pong")  # bob has his own


async def test_channels_per_user_are_a_quota_checked_before_creation() -> None:
    world = World(max_channels_per_user=2)
    ada, peer = await world.join("ada")
    for name in ("a", "b", "c"):
        await world.send(ada, {"type": "subscribe", "channel": name, "ref": name})
    refused = peer.frames("error")
    assert [f["code"] for f in refused] == ["limit_exceeded"]
    assert "max_channels_per_user" in refused[0]["message"] and refused[0]["ref"] == "c"
    assert world.store.get_channel(ChannelKey("acme", "c")) is None
    # Existing channels, made by others, stay open to her; the quota is hers alone.
    bob, bob_peer = await world.join("bob")
    await world.send(bob, {"type": "subscribe", "channel": "c"})
    await world.send(ada, {"type": "subscribe", "channel": "c", "ref": "again"})
    assert peer.frames()[-1]["type"] == "subscribed"
    ada_id = world.hub.auth.identity_from_claims({"sub": "ada", "tenant": "acme"})
    with pytest.raises(ProtocolError) as caught:
        await world.hub.create_channel(ada_id, ChannelKey("acme", "d"), "public", ())
    assert caught.value.code == "limit_exceeded"


async def test_member_lists_are_capped() -> None:
    world = World(max_channel_members=2)
    ada = world.hub.auth.identity_from_claims({"sub": "ada", "tenant": "acme"})
    key = ChannelKey("acme", "team")
    with pytest.raises(ProtocolError) as caught:
        await world.hub.create_channel(ada, key, "private", ("b", "c", "d"))
    assert caught.value.code == "limit_exceeded" and await world.hub.find_channel(key) is None
    await world.hub.create_channel(ada, key, "private", ("b", "c"))
    with pytest.raises(ProtocolError) as caught:
        await world.hub.change_members(ada, key, ["b", "c", "d"])
    assert caught.value.code == "limit_exceeded"
    assert (await world.hub.find_channel(key)).members == ("b", "c")


async def test_channels_nobody_uses_are_collected_after_the_idle_time() -> None:
    world = World(channel_idle_ttl=100)
    ada, peer = await world.join("ada")
    for name in ("old", "held", "fresh"):
        await world.send(ada, {"type": "subscribe", "channel": name})
        await world.send(ada, {"type": "broadcast", "channel": name, "event": "e", "payload": 1})
    owner = world.hub.auth.identity_from_claims({"sub": "ada", "tenant": "acme"})
    await world.hub.create_channel(owner, ChannelKey("acme", "owned"), "public", ())
    await world.send(ada, {"type": "unsubscribe", "channel": "old"})
    await world.send(ada, {"type": "unsubscribe", "channel": "fresh"})
    world.hub.engine.commit()
    world.clock.now += 150
    await world.send(ada, {"type": "subscribe", "channel": "fresh"})
    await world.send(ada, {"type": "broadcast", "channel": "fresh", "event": "e", "payload": 2})
    await world.send(ada, {"type": "unsubscribe", "channel": "fresh"})
    await world.settle()
    world.hub.tick()  # "old" and "fresh" are no longer listened to here
    world.clock.now += world.config.heartbeat_interval
    world.hub.tick()
    await world.settle()

    assert await world.hub.channels.collect_idle() == 1
    assert world.store.get_channel(ChannelKey("acme", "old")) is None
    for name in ("held", "fresh", "owned"):  # subscribed, used lately, owned
        assert world.store.get_channel(ChannelKey("acme", name)) is not None
    # A forgotten name comes back as a new channel, with a new epoch: a `since`
    # from before is unknown (recovered: false), never mistaken for the new history.
    await world.send(ada, {"type": "subscribe", "channel": "old", "since": "x-1"})
    assert peer.frames("subscribed")[-1]["recovered"] is False


async def test_http_presence_refused_by_the_channel_type_creates_nothing() -> None:
    world = World(default_channel_type="public")
    ada = world.hub.auth.identify(make_token("ada", tenant="acme"))
    key = ChannelKey("acme", "plain")
    with pytest.raises(ProtocolError) as caught:
        await world.hub.http_presence(ada, key, None, None)
    assert caught.value.code == "conflict"
    assert await world.hub.find_channel(key) is None


EVIL_COLOR = "red;background-image:url(https://evil.example/t.png)"


@pytest.mark.parametrize(
    ("sub", "claims", "field"),
    [
        ("ada\n{}", {"name": "Ada"}, "`sub` must not contain control characters (U+000A)"),
        ("ada", {"tenant": "acme\r"}, "`tenant` must not contain control characters (U+000D)"),
        ("ada", {"name": "Ada\x00"}, "`name` must not contain control characters (U+0000)"),
        ("ada", {"color": EVIL_COLOR}, "`color` must be `#rrggbb`"),
    ],
)
async def test_identities_with_control_characters_or_css_are_refused_at_the_door(
    server: Any, connect: Any, sub: str, claims: dict[str, Any], field: str
) -> None:
    """Findings 15 and 18: before, each of these tokens connected (a newline in a user
    id then split the frames relayed through Redis, and the colour went into every
    viewer's style attribute). Now 401 / `unauthorized` and 4401, and nobody hears of it."""
    bob = await connect(server.url, make_token("bob", tenant="acme"))
    await bob.subscribe("presence-room")
    bad = make_token(sub, **{"tenant": "acme", **claims})

    at_handshake = await connect(server.url, bad, authenticate=False)
    frame = await at_handshake.recv()
    assert (frame["type"], frame["code"]) == ("error", "unauthorized") and field in frame["message"]
    assert await at_handshake.closed() == 4401

    by_frame = await connect(server.url)
    reply = await by_frame.request({"type": "auth", "token": bad})
    assert reply["code"] == "unauthorized" and field in reply["message"]
    assert await by_frame.closed() == 4401

    answer = await Api(server.http_url + "/api/", bad).get("channels")
    assert answer.status == 401 and answer.body["error"]["code"] == "unauthorized"
    assert field in answer.body["error"]["message"]

    await no_frame(bob)  # nobody joined, nothing was relayed
    members = await Api(server.http_url + "/api/", make_token("bob", tenant="acme")).get(
        f"channels/{ch('presence-room')}/members"
    )
    assert [m["userId"] for m in members.body["members"]] == ["bob"]


async def test_asking_for_the_same_history_again_and_again_costs_the_asker() -> None:
    """Issue 23, finding 4: 36 recoveries in 15 s made the server send 295 MB. Now
    the bytes a user has replayed to them come out of a budget of their own
    (`replay_rate`, bursts to twice that), over WebSocket and HTTP alike."""
    world = World(replay_rate=20_000, default_channel_type="public")
    key = ChannelKey("acme", "room")
    for n in range(50):
        await world.hub.publish_from_server(key, "e", {"n": n, "pad": "x" * 1000})
    mallory, peer = await world.join("mallory")

    async def recover() -> tuple[list[int], bool]:
        await world.send(mallory, {"type": "unsubscribe", "channel": "room"})
        await world.send(mallory, {"type": "subscribe", "channel": "room", "since": ""})
        frames = peer.take()
        (subscribed,) = [f for f in frames if f["type"] == "subscribed"]
        return [f["payload"]["n"] for f in frames if f["type"] == "message"], subscribed[
            "recovered"
        ]

    first, recovered = await recover()
    assert not recovered and 30 <= len(first) < 50  # a burst of 40 KB: the newest fit
    assert first == list(range(50 - len(first), 50))
    again, recovered = await recover()
    assert again == [] and not recovered  # spent: asking again costs mallory only
    # HTTP history draws on the same budget: what is left (one message at the
    # most), then a 429 until it is paid off.
    assert len((await world.hub.read_history(mallory.identity, key, None, 100)).messages) <= 1
    with pytest.raises(ProtocolError) as refused:
        await world.hub.read_history(mallory.identity, key, None, 100)
    assert refused.value.code == "rate_limited" and refused.value.retry_after >= 1

    bob, bob_peer = await world.join("bob")  # someone else's budget is whole
    await world.send(bob, {"type": "subscribe", "channel": "room", "since": ""})
    assert len(bob_peer.frames("message")) == len(first)

    world.clock.now += 10  # paid off: 20 KB a second
    back, _ = await recover()
    assert len(back) == len(first)


@pytest.mark.parametrize(
    "payload, code",
    [
        ({"text": "*a" * 8193}, "payload_too_large"),  # 16,386 characters
        ({"body": "hi"}, "bad_request"),
        ("hi", "bad_request"),
        (None, "bad_request"),
    ],
)
async def test_a_chat_message_is_a_text_of_bounded_size(payload: Any, code: str) -> None:
    """Issue 23, finding 16: one 128 KiB chat message of `*a` froze every reader's
    browser, and came back from history on every reload. Refused at the door, and
    nothing is published: the watcher hears nothing, the next id is the next one."""
    world = World(default_channel_type="public")
    (ada, ada_peer), (bob, bob_peer) = await world.join("ada"), await world.join("bob")
    await world.subscribe_all("lobby", [(ada, ada_peer), (bob, bob_peer)])
    chat = {"type": "broadcast", "channel": "lobby", "event": "chat:message", "ref": 1}
    await world.send(ada, {**chat, "payload": {"text": "before"}})
    await world.send(ada, {**chat, "payload": payload, "ref": 2})
    (refused,) = [f for f in ada_peer.frames("error") if f.get("ref") == 2]
    assert refused["code"] == code and refused["channel"] == "lobby"
    await world.send(ada, {**chat, "payload": {"text": "*a" * 8192}, "ref": 3})  # 16,384: fits
    heard = bob_peer.frames("message")
    assert [m["payload"]["text"][:6] for m in heard] == ["before", "*a*a*a"]
    first, last = (int(m["id"].rpartition("-")[2]) for m in heard)
    assert last == first + 1  # the refused one took no id
