"""The HTTP fallback API against the standalone server: real HTTP, with real
WebSocket clients watching the other side."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nyo_realtime_ext.config import Realtime
from nyo_realtime_ext.models import ChannelKey
from nyo_realtime_ext.service import RealtimeService
from nyo_realtime_ext.standalone import make_app

from .support.httpclient import Api, api_of, assert_error, ch, held, raw_answer, raw_request
from .support.standalone_server import free_port
from .support.tokens import SECRET
from .support.wsclient import no_frame

# -- helpers --------------------------------------------------------------------------


@pytest.fixture
def inprocess(
    tmp_path: Path, jp_asyncio_loop: asyncio.AbstractEventLoop
) -> Iterator[Callable[..., Awaitable[tuple[RealtimeService, str]]]]:
    """Factory: the standalone app in this process, so a test can look inside the hub.

    Await it from an async test: it listens on the running loop.
    """
    started: list[tuple[Any, RealtimeService]] = []

    async def start(**config: Any) -> tuple[RealtimeService, str]:
        db = str(tmp_path / f"inprocess{len(started)}.db")
        service = RealtimeService(Realtime(jwt_secret=SECRET, db_path=db, **config))
        port = free_port()
        http_server = make_app(service).listen(port, "127.0.0.1")
        started.append((http_server, service))
        await service.start()
        return service, f"http://127.0.0.1:{port}"

    yield start
    for http_server, service in started:
        http_server.stop()
        jp_asyncio_loop.run_until_complete(service.stop())
        service.release()


def watchers(service: RealtimeService, key: ChannelKey) -> list[Any]:
    """The long-polls waiting on `key` in this process (none while nobody watches it)."""
    state = service.hub.channels.states.get(key)
    return state.observers if state is not None else []


# -- publish and history ---------------------------------------------------------------


async def test_http_and_websocket_publishes_share_one_order(server, connect, token):
    ada = api_of(server, token("ada", tenant="acme"))
    watcher = await connect(server.url, token("cy", tenant="acme"))
    bob = await connect(server.url, token("bob", tenant="acme"))
    await watcher.subscribe("room:1")
    await bob.subscribe("room:1")

    ids = []
    for i in range(3):
        answer = await ada.post(
            f"channels/{ch('room:1')}/messages", {"event": "http", "payload": i}
        )
        assert answer.status == 201 and set(answer.body) == {"id"}
        ids.append(answer.body["id"])
        ack = await bob.request(
            {"type": "broadcast", "channel": "room:1", "event": "ws", "payload": i}
        )
        ids.append(ack["id"])

    seen = [await watcher.expect("message") for _ in ids]
    assert [m["id"] for m in seen] == ids
    # Over HTTP the publisher is named, without a connection (docs/protocol.md).
    assert [m["from"] for m in seen[::2]] == [{"userId": "ada", "connectionId": None}] * 3
    assert {m["from"]["userId"] for m in seen[1::2]} == {"bob"}

    history = await ada.get(f"channels/{ch('room:1')}/messages")
    assert history.status == 200
    assert [m["id"] for m in history.body["messages"]] == ids
    assert history.body["messages"] == seen
    # `since` and `limit` page through it, oldest first.
    page = await ada.get(f"channels/{ch('room:1')}/messages?since={ids[1]}&limit=2")
    assert [m["id"] for m in page.body["messages"]] == ids[2:4]
    newest = await ada.get(f"channels/{ch('room:1')}/messages?limit=2")
    assert [m["id"] for m in newest.body["messages"]] == ids[-2:]


async def test_publish_creates_the_channel_like_a_websocket_publish(server, token):
    ada = api_of(server, token("ada"))
    assert (await ada.get(f"channels/{ch('fresh')}")).status == 404
    assert (await ada.post(f"channels/{ch('fresh')}/messages", {"event": "e"})).status == 201
    channel = (await ada.get(f"channels/{ch('fresh')}")).body["channel"]
    assert channel["name"] == "fresh" and channel["type"] == "presence"
    assert channel["owner"] is None  # only an explicit creation gives an owner
    message = (await ada.get(f"channels/{ch('fresh')}/messages")).body["messages"][0]
    assert message["payload"] is None
    assert message["from"] == {"userId": "ada", "connectionId": None}


async def test_channel_names_are_percent_encoded_path_segments(server, token):
    ada = api_of(server, token("ada"))
    name = "team/a@b=c+d:e.f_g-h"
    assert (await ada.post(f"channels/{ch(name)}/messages", {"event": "e"})).status == 201
    assert (await ada.get(f"channels/{ch(name)}")).body["channel"]["name"] == name
    # A raw slash is a path separator, never part of a name.
    assert_error(await ada.get("channels/team/a@b=c+d:e.f_g-h"), 404, "not_found")


# -- long-poll -------------------------------------------------------------------------


async def test_long_poll_is_woken_by_a_websocket_publish(server, connect, token):
    ada = api_of(server, token("ada"))
    first = await ada.post(f"channels/{ch('lp')}/messages", {"event": "e", "payload": 1})
    since = first.body["id"]
    poll = asyncio.ensure_future(ada.get(f"channels/{ch('lp')}/messages?since={since}&wait=30"))
    await held(poll)
    bob = await connect(server.url, token("bob"))
    await bob.subscribe("lp")
    ack = await bob.request({"type": "broadcast", "channel": "lp", "event": "e", "payload": 2})
    answer = await asyncio.wait_for(poll, 20)
    assert answer.status == 200
    assert [(m["id"], m["payload"]) for m in answer.body["messages"]] == [(ack["id"], 2)]
    assert answer.body["messages"][0]["from"]["userId"] == "bob"


async def test_long_poll_is_woken_by_an_http_publish(server, token):
    ada, bob = api_of(server, token("ada")), api_of(server, token("bob"))
    await ada.post(f"channels/{ch('lp2')}/messages", {"event": "e"})
    latest = (await ada.get(f"channels/{ch('lp2')}/messages")).body["messages"][-1]["id"]
    polls = [
        asyncio.ensure_future(ada.get(f"channels/{ch('lp2')}/messages?since={latest}&wait=30"))
        for _ in range(3)
    ]
    for poll in polls:
        await held(poll, 0.2)
    published = await bob.post(f"channels/{ch('lp2')}/messages", {"event": "x", "payload": "hi"})
    for answer in await asyncio.wait_for(asyncio.gather(*polls), 20):
        assert [m["id"] for m in answer.body["messages"]] == [published.body["id"]]


async def test_long_poll_on_an_empty_channel_waits_for_its_first_message(server, token):
    ada = api_of(server, token("ada"))
    assert (await ada.post("channels", {"name": "empty", "type": "public"})).status == 201
    poll = asyncio.ensure_future(ada.get(f"channels/{ch('empty')}/messages?wait=30"))
    await held(poll)
    published = await ada.post(f"channels/{ch('empty')}/messages", {"event": "e"})
    answer = await asyncio.wait_for(poll, 20)
    assert [m["id"] for m in answer.body["messages"]] == [published.body["id"]]


async def test_long_poll_answers_empty_when_the_wait_ends(server, token):
    ada = api_of(server, token("ada"))
    since = (await ada.post(f"channels/{ch('quiet')}/messages", {"event": "e"})).body["id"]
    answer = await ada.get(f"channels/{ch('quiet')}/messages?since={since}&wait=0.3")
    assert answer.status == 200 and answer.body == {"messages": []}


async def test_long_poll_answers_at_once_when_newer_messages_exist(server, token):
    ada = api_of(server, token("ada"))
    first = (await ada.post(f"channels/{ch('busy')}/messages", {"event": "e"})).body["id"]
    second = (await ada.post(f"channels/{ch('busy')}/messages", {"event": "e"})).body["id"]
    poll = asyncio.ensure_future(ada.get(f"channels/{ch('busy')}/messages?since={first}&wait=50"))
    answer = await asyncio.wait_for(poll, 20)  # well before 50 s
    assert [m["id"] for m in answer.body["messages"]] == [second]


async def test_a_client_that_goes_away_frees_its_wait(inprocess, token):
    service, url = await inprocess()
    ada = Api(url + "/api/", token("ada"))
    await ada.post(f"channels/{ch('gone')}/messages", {"event": "e"})
    since = (await ada.get(f"channels/{ch('gone')}/messages")).body["messages"][0]["id"]
    key = ChannelKey("default", "gone")
    reader, writer = await raw_request(
        f"{url}/api/channels/gone/messages?since={since}&wait=50",
        {"Authorization": f"Bearer {token('ada')}"},
    )
    await until(lambda: len(watchers(service, key)) == 1)
    writer.close()
    await until(lambda: not watchers(service, key))
    # The server is unharmed: a publish still works and wakes nobody stale.
    assert (await ada.post(f"channels/{ch('gone')}/messages", {"event": "e"})).status == 201


async def test_a_thousand_long_polls_cost_no_thread_and_all_wake(inprocess, token):
    service, url = await inprocess()
    ada = Api(url + "/api/", token("ada"))
    since = (await ada.post(f"channels/{ch('crowd')}/messages", {"event": "e"})).body["id"]
    key = ChannelKey("default", "crowd")
    threads_before = threading.active_count()
    count = 1000
    # One user per request keeps the per-user rate limit out of the picture.
    conns = [
        await raw_request(
            f"{url}/api/channels/crowd/messages?since={since}&wait=50",
            {"Authorization": f"Bearer {token(f'u{i}')}"},
        )
        for i in range(count)
    ]
    await until(lambda: len(watchers(service, key)) == count, timeout=60)
    assert threading.active_count() <= threads_before + 2
    published = (await ada.post(f"channels/{ch('crowd')}/messages", {"event": "go"})).body["id"]
    answers = await asyncio.gather(*(raw_answer(reader) for reader, _ in conns))
    assert {a.status for a in answers} == {200}
    assert all([m["id"] for m in a.body["messages"]] == [published] for a in answers)
    for _, writer in conns:
        writer.close()


async def until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# -- presence over HTTP ----------------------------------------------------------------


async def test_http_member_joins_updates_and_expires_as_any_member(standalone, connect, token):
    server = standalone("--heartbeat-timeout=2")
    watcher = await connect(server.url, token("ada"))
    await watcher.subscribe("presence-room")
    bob = api_of(server, token("bob", name="Bob B"))
    path = f"channels/{ch('presence-room')}/presence"

    joined = await bob.post(path, {"meta": {"tab": "notes"}})
    assert joined.status == 200
    member = joined.body["member"]
    assert (member["userId"], member["name"], member["status"]) == ("bob", "Bob B", "online")
    assert member["meta"] == {"tab": "notes"} and member["connections"] == 1
    frame = await watcher.expect("user:joined")
    assert frame["member"]["userId"] == "bob" and frame["member"]["meta"] == {"tab": "notes"}

    # Heartbeats past `heartbeat_timeout` keep bob here; a status change is announced.
    for i in range(6):
        await asyncio.sleep(0.6)
        answer = await bob.post(path, {"status": "away"} if i == 2 else None)
        assert answer.status == 200 and answer.body["member"]["userId"] == "bob"
    updated = await watcher.recv()
    assert updated["type"] == "presence:updated" and updated["member"]["status"] == "away"
    members = (await bob.get(f"channels/{ch('presence-room')}/members")).body["members"]
    assert {m["userId"]: m["status"] for m in members} == {"ada": "online", "bob": "away"}

    # Silence: bob leaves as if a connection closed, and is listed as offline.
    left = await watcher.recv(timeout=15)
    assert left["type"] == "user:left" and left["member"]["userId"] == "bob"
    online = (await bob.get(f"channels/{ch('presence-room')}/members")).body["members"]
    assert [m["userId"] for m in online] == ["ada"]
    everyone = await bob.get(f"channels/{ch('presence-room')}/members?include=offline")
    offline = {m["userId"]: m for m in everyone.body["members"]}["bob"]
    assert offline["status"] == "offline" and offline["connections"] == 0
    assert offline["lastSeen"] >= member["lastSeen"]


async def test_http_leave_is_immediate_and_a_second_connection_changes_nothing(
    server, connect, token
):
    watcher = await connect(server.url, token("ada"))
    await watcher.subscribe("presence-lobby")
    bob_ws = await connect(server.url, token("bob"))
    await bob_ws.subscribe("presence-lobby")
    assert (await watcher.expect("user:joined"))["member"]["userId"] == "bob"
    bob = api_of(server, token("bob"))
    path = f"channels/{ch('presence-lobby')}/presence"

    # bob over HTTP too: one member with two connections, no second join.
    answer = await bob.post(path)
    assert answer.body["member"]["connections"] == 2
    assert (await bob.delete(path)).status == 204
    await no_frame(watcher)

    # HTTP alone: DELETE leaves at once.
    bob_ws.close()
    assert (await watcher.expect("user:left"))["member"]["userId"] == "bob"
    await bob.post(path)
    assert (await watcher.expect("user:joined"))["member"]["userId"] == "bob"
    answer = await bob.delete(path)
    assert answer.status == 204 and answer.body is None
    assert (await watcher.expect("user:left"))["member"]["userId"] == "bob"
    assert (await bob.delete(path)).status == 204  # leaving twice is harmless


async def test_http_presence_needs_a_presence_channel(server, token):
    ada = api_of(server, token("ada"))
    await ada.post("channels", {"name": "plain", "type": "public"})
    assert_error(await ada.post(f"channels/{ch('plain')}/presence"), 409, "conflict")
    assert_error(
        await ada.post(f"channels/{ch('presence-x')}/presence", {"status": "asleep"}),
        400,
        "bad_request",
    )
    for body in ({"meta": [1]}, {"meta": None}, {"status": None}):
        assert_error(
            await ada.post(f"channels/{ch('presence-x')}/presence", body), 400, "bad_request"
        )
    # None of those refusals made ada a member, or even made the channel.
    assert_error(await ada.get(f"channels/{ch('presence-x')}/members"), 404, "not_found")
    assert_error(await ada.delete(f"channels/{ch('never')}/presence"), 404, "not_found")


# -- channels, owners, private channels ------------------------------------------------


async def test_create_list_get_and_conflict(server, token):
    ada = api_of(server, token("ada", tenant="acme"))
    created = await ada.post("channels", {"name": "room:2", "type": "public", "members": ["bob"]})
    assert created.status == 201
    channel = created.body["channel"]
    assert channel["name"] == "room:2" and channel["type"] == "public"
    assert channel["owner"] == "ada" and channel["members"] == ["bob"]
    assert isinstance(channel["createdAt"], int)
    assert (await ada.get(f"channels/{ch('room:2')}")).body == {"channel": channel}
    assert (await ada.get("channels")).body == {"channels": [channel]}
    again = await ada.post("channels", {"name": "room:2", "type": "presence"})
    assert_error(again, 409, "conflict")
    assert (await ada.get(f"channels/{ch('room:2')}")).body == {"channel": channel}


async def test_private_channel_rules_hold_on_every_route(server, connect, token):
    ada = api_of(server, token("ada", channels=["private-deal"]))  # may create it
    bob = api_of(server, token("bob"))
    eve = api_of(server, token("eve"))
    name = ch("private-deal")
    created = await ada.post("channels", {"name": "private-deal", "type": "private"})
    assert created.body["channel"]["members"] == []

    for answer in [
        await bob.get(f"channels/{name}"),
        await bob.get(f"channels/{name}/messages"),
        await bob.get(f"channels/{name}/messages?wait=5"),
        await bob.get(f"channels/{name}/members"),
        await bob.post(f"channels/{name}/messages", {"event": "e"}),
        await bob.patch(f"channels/{name}", {"members": ["bob"]}),
    ]:
        assert_error(answer, 403, "forbidden")
    assert (await bob.get("channels")).body == {"channels": []}
    assert (await ada.get(f"channels/{name}/messages")).body == {"messages": []}

    # Only the owner changes members; a member gets in, over HTTP and WebSocket alike.
    changed = await ada.patch(f"channels/{name}", {"members": ["bob", "bob", "cy"]})
    assert changed.status == 200 and changed.body["channel"]["members"] == ["bob", "cy"]
    assert_error(await bob.patch(f"channels/{name}", {"members": ["eve"]}), 403, "forbidden")
    assert (await bob.post(f"channels/{name}/messages", {"event": "e"})).status == 201
    assert [c["name"] for c in (await bob.get("channels")).body["channels"]] == ["private-deal"]
    bob_ws = await connect(server.url, token("bob"))
    assert (await bob_ws.subscribe("private-deal"))["channelType"] == "private"
    assert_error(await eve.get(f"channels/{name}/messages"), 403, "forbidden")

    # A token's `channels` claim opens it too.
    granted = api_of(server, token("eve", channels=["private-*"]))
    assert (await granted.get(f"channels/{name}/messages")).status == 200


async def test_private_presence_channel_refuses_http_presence_to_outsiders(server, token):
    ada = api_of(server, token("ada"))
    await ada.post("channels", {"name": "vip", "type": "private", "members": ["ada"]})
    bob = api_of(server, token("bob"))
    assert_error(await bob.post(f"channels/{ch('vip')}/presence"), 403, "forbidden")


async def test_tenants_are_walls(server, connect, token):
    acme = api_of(server, token("ada", tenant="acme"))
    globex = api_of(server, token("ada", tenant="globex"))
    watcher = await connect(server.url, token("cy", tenant="acme"))
    await watcher.subscribe("room:1")

    await acme.post("channels", {"name": "room:1b", "type": "public"})
    acme_id = (await acme.post(f"channels/{ch('room:1')}/messages", {"event": "a"})).body["id"]
    assert (await watcher.expect("message"))["id"] == acme_id
    assert_error(await globex.get(f"channels/{ch('room:1')}"), 404, "not_found")
    assert_error(await globex.get(f"channels/{ch('room:1')}/messages"), 404, "not_found")
    assert_error(await globex.get(f"channels/{ch('room:1')}/members"), 404, "not_found")
    assert (await globex.get("channels")).body == {"channels": []}

    # The same name in globex is another channel: its messages stay there.
    await globex.post(f"channels/{ch('room:1')}/messages", {"event": "g"})
    await globex.post(f"channels/{ch('room:1')}/presence")
    await no_frame(watcher)
    globex_history = (await globex.get(f"channels/{ch('room:1')}/messages")).body["messages"]
    assert [m["event"] for m in globex_history] == ["g"]
    acme_history = (await acme.get(f"channels/{ch('room:1')}/messages")).body["messages"]
    assert [m["event"] for m in acme_history] == ["a"]
    members = (await acme.get(f"channels/{ch('room:1')}/members")).body["members"]
    assert [m["userId"] for m in members] == ["cy"]
    # globex may create a name acme holds.
    assert (await globex.post("channels", {"name": "room:1b", "type": "public"})).status == 201


# -- bad input -------------------------------------------------------------------------


async def test_every_bad_input_gets_the_json_error_and_nothing_changes(server, connect, token):
    ada = api_of(server, token("ada"))
    watcher = await connect(server.url, token("cy"))
    await watcher.subscribe("room")
    await ada.post("channels", {"name": "owned", "type": "public"})
    room = f"channels/{ch('room')}"
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "channels", {"raw": b"{not json"}, 400, "bad_request"),
        ("POST", "channels", {"raw": b"[1, 2]"}, 400, "bad_request"),
        ("POST", "channels", {"raw": b""}, 400, "bad_request"),
        ("POST", "channels", {"body": {"type": "public"}}, 400, "bad_request"),
        ("POST", "channels", {"body": {"name": "x"}}, 400, "bad_request"),
        ("POST", "channels", {"body": {"name": 5, "type": "public"}}, 400, "bad_request"),
        ("POST", "channels", {"body": {"name": "x", "type": "secret"}}, 400, "bad_request"),
        ("POST", "channels", {"body": {"name": "x", "type": "public", "members": "bob"}}, 400, "bad_request"),
        ("POST", "channels", {"body": {"name": "x", "type": "public", "members": [""]}}, 400, "bad_request"),
        ("POST", "channels", {"body": {"name": "x", "type": "public", "colour": 1}}, 400, "bad_request"),
        ("POST", "channels", {"body": {"name": "bad name", "type": "public"}}, 400, "invalid_channel"),
        ("POST", "channels", {"body": {"name": "x" * 201, "type": "public"}}, 400, "invalid_channel"),
        ("POST", f"{room}/messages", {"raw": b'{"event": "e",'}, 400, "bad_request"),
        ("POST", f"{room}/messages", {"body": {}}, 400, "bad_request"),
        ("POST", f"{room}/messages", {"body": {"event": 7}}, 400, "bad_request"),
        ("POST", f"{room}/messages", {"body": {"event": ""}}, 400, "bad_request"),
        ("POST", f"{room}/messages", {"body": {"event": "e" * 101}}, 400, "bad_request"),
        ("POST", f"{room}/messages", {"body": {"event": "e", "from": "x"}}, 400, "bad_request"),
        ("POST", f"channels/{ch('bad name')}/messages", {"body": {"event": "e"}}, 400, "invalid_channel"),
        ("POST", f"channels/{ch('é')}/messages", {"body": {"event": "e"}}, 400, "invalid_channel"),
        ("GET", f"channels/{ch('x' * 201)}", {}, 400, "invalid_channel"),
        ("GET", f"channels/{ch('nowhere')}", {}, 404, "not_found"),
        ("GET", f"channels/{ch('nowhere')}/messages", {}, 404, "not_found"),
        ("GET", f"channels/{ch('nowhere')}/members", {}, 404, "not_found"),
        ("PATCH", f"channels/{ch('nowhere')}", {"body": {"members": []}}, 404, "not_found"),
        ("PATCH", f"channels/{ch('owned')}", {"body": {}}, 400, "bad_request"),
        ("PATCH", f"channels/{ch('owned')}", {"body": {"members": [1]}}, 400, "bad_request"),
        ("PATCH", f"channels/{ch('owned')}", {"body": {"type": "private"}}, 400, "bad_request"),
        ("GET", f"{room}/messages?limit=0", {}, 400, "bad_request"),
        ("GET", f"{room}/messages?limit=abc", {}, 400, "bad_request"),
        ("GET", f"{room}/messages?limit=2.5", {}, 400, "bad_request"),
        ("GET", f"{room}/messages?limit=1001", {}, 400, "bad_request"),
        ("GET", f"{room}/messages?wait=-1", {}, 400, "bad_request"),
        ("GET", f"{room}/messages?wait=nan", {}, 400, "bad_request"),
        ("GET", f"{room}/messages?wait=56", {}, 400, "bad_request"),
        ("GET", f"{room}/messages?since=", {}, 400, "bad_request"),
        ("GET", f"{room}/messages?wiat=5", {}, 400, "bad_request"),
        ("GET", f"{room}/members?include=everyone", {}, 400, "bad_request"),
        ("POST", f"{room}/presence", {"raw": b"nope"}, 400, "bad_request"),
        ("POST", f"{room}/presence", {"body": {"status": 3}}, 400, "bad_request"),
        ("GET", "nothing/here", {}, 404, "not_found"),
        ("PUT", "channels", {"body": {}}, 405, "bad_request"),
        ("DELETE", f"{room}/messages", {}, 405, "bad_request"),
    ]  # fmt: skip
    for method, path, kw, status, code in cases:
        answer = await ada.call(method, path, **kw)
        assert answer.status == status, (method, path, kw, answer)
        assert_error(answer, status, code)
    assert (await ada.call("PUT", "channels", body={})).headers["Allow"] == "GET, POST"

    # Nothing of that reached anyone or changed anything.
    await no_frame(watcher)
    assert [c["name"] for c in (await ada.get("channels")).body["channels"]] == ["owned", "room"]
    assert (await ada.get(f"{room}/messages")).body == {"messages": []}
    good = await ada.post(f"{room}/messages", {"event": "ok"})
    assert (await watcher.expect("message"))["id"] == good.body["id"]


async def test_credentials(server, token):
    path = "channels"
    no_token = await api_of(server, None).get(path)
    assert_error(no_token, 401, "unauthorized")
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(await api_of(server, "garbage").get(path), 401, "unauthorized")
    assert_error(await api_of(server, token("ada", secret="x" * 40)).get(path), 401, "unauthorized")
    assert_error(await api_of(server, token("ada", exp=1)).get(path), 401, "token_expired")
    assert_error(
        await api_of(server, None).post(f"channels/{ch('room')}/messages", {"event": "e"}),
        401,
        "unauthorized",
    )
    # `?token=` is the other way in, as for the WebSocket.
    via_query = await api_of(server, None).get(f"channels?token={token('ada')}")
    assert via_query.status == 200
    # The OpenAPI document is public.
    assert (await api_of(server, None).get("openapi.json")).status == 200


async def test_body_over_max_payload_size_is_413(standalone, token):
    server = standalone("--max-payload-size=2000")
    ada = api_of(server, token("ada"))
    big = {"event": "e", "payload": "x" * 3000}
    assert_error(await ada.post(f"channels/{ch('room')}/messages", big), 413, "payload_too_large")
    assert_error(await ada.get(f"channels/{ch('room')}"), 404, "not_found")  # nothing created
    small = {"event": "e", "payload": "x" * 1000}
    assert (await ada.post(f"channels/{ch('room')}/messages", small)).status == 201


async def test_too_many_requests_is_429_per_user(standalone, token):
    server = standalone("--Realtime.rate_limit=2")
    ada, bob = api_of(server, token("ada")), api_of(server, token("bob"))
    answers = [await ada.get("channels") for _ in range(12)]
    limited = [a for a in answers if a.status == 429]
    assert limited, [a.status for a in answers]
    assert_error(limited[0], 429, "rate_limited")
    assert limited[0].headers["Retry-After"] == "1"
    assert (await bob.get("channels")).status == 200  # someone else is not slowed down


async def test_reading_history_past_the_replay_budget_is_429_with_retry_after(standalone, token):
    # Issue 23, finding 4: history read again and again costs the reader, who waits.
    server = standalone("--Realtime.replay_rate=2000", "--Realtime.default_channel_type=public")
    ada, bob = api_of(server, token("ada")), api_of(server, token("bob"))
    for _ in range(10):
        await ada.post(f"channels/{ch('room')}/messages", {"event": "e", "payload": "x" * 1000})
    answers = [await ada.get(f"channels/{ch('room')}/messages") for _ in range(4)]
    assert [a.status for a in answers[:2]] == [200, 200]
    assert 1 <= len(answers[0].body["messages"]) < 10  # what fits in 4 KB
    limited = answers[-1]
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    assert "bytes of history per second" in limited.body["error"]["message"]
    assert (await bob.get(f"channels/{ch('room')}/messages")).status == 200  # bob's is whole


async def test_an_oversized_chat_message_over_http_is_413_and_not_published(server, token):
    ada = api_of(server, token("ada"))
    room = f"channels/{ch('lobby')}/messages"
    too_long = {"event": "chat:message", "payload": {"text": "x" * 16385}}
    assert_error(await ada.post(room, too_long), 413, "payload_too_large")
    assert_error(await ada.post(room, {"event": "chat:message", "payload": 7}), 400, "bad_request")
    assert (
        await ada.post(room, {"event": "chat:message", "payload": {"text": "hi"}})
    ).status == 201
    texts = [m["payload"]["text"] for m in (await ada.get(room)).body["messages"]]
    assert texts == ["hi"]


async def test_openapi_document_is_served_and_names_every_route(server):
    answer = await api_of(server, None).get("openapi.json")
    document = answer.body
    assert document["openapi"].startswith("3.")
    assert document["servers"] == [{"url": "/api"}]
    assert set(document["paths"]) == {
        "/channels",
        "/channels/{name}",
        "/channels/{name}/members",
        "/channels/{name}/messages",
        "/channels/{name}/presence",
        "/channels/{name}/state",
        "/channels/{name}/state/{key}",
        "/profile",
        "/openapi.json",
    }


async def test_history_answers_are_cut_to_a_size_and_say_more(server, token):
    ada = api_of(server, token("ada"))
    path = f"channels/{ch('big')}/messages"
    start = (await ada.post(path, {"event": "start"})).body["id"]
    pad = "x" * 300_000  # four of these pass the 1 MiB an answer may hold
    ids = [(await ada.post(path, {"event": "e", "payload": pad})).body["id"] for _ in range(5)]
    first = (await ada.get(f"{path}?since={start}")).body
    assert first.get("more") is True and 1 <= len(first["messages"]) < 5
    assert [m["id"] for m in first["messages"]] == ids[: len(first["messages"])]
    rest = (await ada.get(f"{path}?since={first['messages'][-1]['id']}")).body
    assert [m["id"] for m in first["messages"] + rest["messages"]] == ids
    assert "more" not in rest
    newest = (await ada.get(path)).body  # without `since`: the newest that fit
    assert newest["more"] is True and newest["messages"][-1]["id"] == ids[-1]
    limited = (await ada.get(f"{path}?since={ids[0]}&limit=1")).body
    assert [m["id"] for m in limited["messages"]] == [ids[1]] and limited["more"] is True


async def test_channel_lists_come_a_page_at_a_time(server, token):
    ada = api_of(server, token("ada"))
    names = [f"page:{i:02d}" for i in range(7)]
    for name in names:
        assert (await ada.post("channels", {"name": name, "type": "public"})).status == 201
    seen: list[str] = []
    after = ""
    while True:
        page = (await ada.get(f"channels?limit=3&after={ch(after)}")).body
        assert len(page["channels"]) <= 3
        seen += [c["name"] for c in page["channels"]]
        if "next" not in page:
            break
        after = page["next"]
    assert seen == names
    assert len((await ada.get("channels")).body["channels"]) == 7  # default page: 100
    assert_error(await ada.get("channels?limit=0"), 400, "bad_request")


async def test_quotas_answer_limit_exceeded_over_http(standalone, token):
    server = standalone("--Realtime.max_channels_per_user=1", "--Realtime.max_channel_members=2")
    ada = api_of(server, token("ada"))
    too_many = await ada.post(
        "channels", {"name": "a", "type": "public", "members": ["x", "y", "z"]}
    )
    assert_error(too_many, 403, "limit_exceeded")
    assert (await ada.post("channels", {"name": "a", "type": "public"})).status == 201
    assert_error(await ada.post("channels", {"name": "b", "type": "public"}), 403, "limit_exceeded")
    assert_error(
        await ada.post(f"channels/{ch('c')}/messages", {"event": "e"}), 403, "limit_exceeded"
    )
    assert (await ada.get(f"channels/{ch('b')}")).status == 404  # nothing was created


# -- on_subscribe guards every HTTP way in (issue 23) -----------------------------------

HOOKED = ("--Realtime.on_subscribe=tests.support.hooks:keep_mallory_out",
          "--Realtime.on_publish=tests.support.hooks:keep_mallory_quiet")  # fmt: skip


@pytest.fixture(params=["memory", "redis"])
def hooked_server(request, standalone):
    """A server whose application keeps Mallory out of `admin` channels, on each engine."""
    if request.param == "redis":
        return standalone("--redis", request.getfixturevalue("redis_server").url, *HOOKED)
    return standalone(*HOOKED)


async def test_a_refusing_on_subscribe_guards_every_http_route(hooked_server, connect, token):
    server, name = hooked_server, "admin:payroll"
    path = f"channels/{ch(name)}"
    admin_api = api_of(server, token("admin"))
    admin = await connect(server.url, token("admin"))
    await admin.subscribe(name)  # a presence channel (default_channel_type)
    secret = await admin.request(
        {"type": "broadcast", "channel": name, "event": "pay", "payload": "salaries"}
    )
    await admin.expect("message", id=secret["id"])  # its own echo
    await admin_api.post(f"channels/{ch('lobby')}/messages", {"event": "hi"})
    mallory = api_of(server, token("mallory", channels=["private-*"]))

    refused = [
        await mallory.get(path),
        await mallory.patch(path, {"members": ["mallory"]}),
        await mallory.get(f"{path}/members"),
        await mallory.get(f"{path}/members?include=offline"),
        await mallory.get(f"{path}/messages"),
        await mallory.get(f"{path}/messages?since={secret['id']}&wait=30"),  # not held
        await mallory.post(f"{path}/presence"),
        await mallory.post(f"{path}/presence", {"status": "busy", "meta": {"x": 1}}),
        await mallory.post(f"{path}/messages", {"event": "forged"}),  # on_publish
        await mallory.post(f"channels/{ch('admin:new')}/presence"),
        await mallory.post("channels", {"name": "private-admin", "type": "private"}),
    ]
    for answer in refused:
        assert_error(answer, 403, "forbidden")
        assert answer.body["error"]["message"] == "refused by the application"
    listed = (await mallory.get("channels")).body["channels"]
    assert [c["name"] for c in listed] == ["lobby"]
    # Leaving needs no right; she was never there, so nobody hears of it.
    assert (await mallory.delete(f"{path}/presence")).status == 204
    # The same decision over the WebSocket.
    mallory_ws = await connect(server.url, token("mallory"))
    answer = await mallory_ws.request({"type": "subscribe", "channel": name, "since": ""})
    assert answer["type"] == "error" and answer["code"] == "forbidden"

    # Nothing changed: no join, no message, no member, no new channel; no secret out.
    await no_frame(admin)
    members = (await admin_api.get(f"{path}/members?include=offline")).body["members"]
    assert [m["userId"] for m in members] == ["admin"]
    history = (await admin_api.get(f"{path}/messages")).body["messages"]
    assert [m["id"] for m in history] == [secret["id"]]
    for other in ("admin:new", "private-admin"):
        assert_error(await admin_api.get(f"channels/{ch(other)}"), 404, "not_found")
    assert (await admin_api.get(path)).body["channel"]["owner"] is None
    # Whom the application lets in reads as before.
    assert (await mallory.get(f"channels/{ch('lobby')}/messages")).status == 200
    assert (await api_of(server, token("bob")).get(f"{path}/messages")).body["messages"] == history


async def test_a_hook_answer_that_is_no_answer_is_a_500_and_changes_nothing(
    hooked_server, connect, token
):
    server, name = hooked_server, "wrong:room"  # the hook answers "no" here
    ada = api_of(server, token("ada"))
    path = f"channels/{ch(name)}"
    assert_error(await ada.post(f"{path}/presence"), 500, "internal")
    assert_error(await ada.get(path), 404, "not_found")  # nothing was created
    # An unprefixed name's explicit creation asks no hook; every read then fails closed.
    assert (await ada.post("channels", {"name": name, "type": "presence"})).status == 201
    failed = [
        await ada.get(path),
        await ada.get(f"{path}/messages"),
        await ada.get(f"{path}/messages?wait=30"),  # not held
        await ada.get(f"{path}/members"),
        await ada.post(f"{path}/presence"),
        await ada.get("channels"),
    ]
    for answer in failed:
        assert_error(answer, 500, "internal")
    client = await connect(server.url, token("ada"))
    frame = await client.request({"type": "subscribe", "channel": name})
    assert frame["type"] == "error" and frame["code"] == "internal"
    # One logged error per failed request: the first presence, the six above, the subscribe.
    assert server.output().count("hook on_subscribe answered 'no' (a str)") == 1 + 6 + 1
    assert "Traceback" not in server.output()


async def test_long_polls_per_user_are_capped_with_429(standalone, token):
    """Issue 23, finding 5: before, one user held as many long-polls as they opened
    (300: the server's descriptors went from 11 to 313), none refused. Past
    `max_long_polls_per_user` a long-poll that would wait is refused at once, with
    429 and `Retry-After`; other users, and answers that need no wait, are not."""
    server = standalone("--Realtime.max_long_polls_per_user=3")
    ada = api_of(server, token("ada", tenant="acme"))
    bob = api_of(server, token("bob", tenant="acme"))
    assert (await ada.post("channels", {"name": "lp", "type": "public"})).status == 201
    first = (await ada.post(f"channels/{ch('lp')}/messages", {"event": "e"})).body["id"]
    path = f"channels/{ch('lp')}/messages?since={first}&wait=50"

    polls = [asyncio.ensure_future(ada.get(path, timeout=60)) for _ in range(6)]
    bobs = asyncio.ensure_future(bob.get(path, timeout=60))
    refused: list[Any] = []
    pending = set(polls)
    while len(refused) < 3:  # whichever three come last, they are answered at once
        done, pending = await asyncio.wait(pending, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        assert done, "no long-poll was refused"
        refused += [task.result() for task in done]
    assert len(refused) == 3 and len(pending) == 3 and not bobs.done()
    for answer in refused:
        assert_error(answer, 429, "limit_exceeded")
        assert "max_long_polls_per_user" in answer.body["error"]["message"]
        assert answer.headers["Retry-After"] == "5"
    # An answer that needs no wait is no long-poll held: it is not refused.
    now = await ada.get(f"channels/{ch('lp')}/messages?wait=50")
    assert now.status == 200 and [m["id"] for m in now.body["messages"]] == [first]

    second = (await bob.post(f"channels/{ch('lp')}/messages", {"event": "e"})).body["id"]
    for answer in [*(await asyncio.gather(*pending)), await bobs]:
        assert answer.status == 200 and [m["id"] for m in answer.body["messages"]] == [second]
    # The answered long-polls gave their places back: three wait again.
    again = [
        asyncio.ensure_future(ada.get(f"channels/{ch('lp')}/messages?since={second}&wait=50"))
        for _ in range(3)
    ]
    third = (await bob.post(f"channels/{ch('lp')}/messages", {"event": "e"})).body["id"]
    for answer in await asyncio.gather(*again):
        assert answer.status == 200 and [m["id"] for m in answer.body["messages"]] == [third]
