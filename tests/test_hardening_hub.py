"""Findings of the security review that live in the hub and the engine: each test
failed on the code before its fix."""

from __future__ import annotations

from typing import Any

from .conftest import make_token
from .httpclient import Api, ch
from .test_hub import World


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
