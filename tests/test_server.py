"""The standalone server over real sockets: every way in, every way out, many users."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import jwt
import pytest
from tornado.websocket import WebSocketClosedError

from .support.tokens import SECRET, make_token


async def test_three_ways_to_authenticate(server, connect):
    by_query = await connect(server.url, make_token("q"))
    by_header = await connect(
        server.url, make_token("h"), query_token=False,
        headers={"Authorization": f"Bearer {make_token('h')}"}, authenticate=False,
    )  # fmt: skip
    by_frame = await connect(server.url)
    assert by_query.connection_id
    assert (await by_header.expect("authenticated"))["user"]["userId"] == "h"
    reply = await by_frame.request({"type": "auth", "token": make_token("f", tenant="acme")})
    assert reply["type"] == "authenticated" and reply["user"]["tenantId"] == "acme"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("not-a-jwt", "unauthorized"),
        (make_token("eve", secret="another-secret-that-is-long-enough!!"), "unauthorized"),
        (jwt.encode({"sub": "eve"}, None, algorithm="none"), "unauthorized"),
        (jwt.encode({"sub": "eve"}, SECRET, algorithm="HS512"), "unauthorized"),
        (make_token("eve", exp=int(time.time()) - 10), "token_expired"),
        (make_token("eve", nbf=int(time.time()) + 3600), "unauthorized"),
        (jwt.encode({"name": "no sub"}, SECRET, algorithm="HS256"), "unauthorized"),
    ],
)
async def test_bad_tokens_are_refused_with_4401(server, connect, token, code):
    at_handshake = await connect(server.url, token, authenticate=False)
    assert (await at_handshake.recv())["code"] == code
    assert await at_handshake.closed() == 4401
    in_frame = await connect(server.url)
    await in_frame.send({"type": "auth", "token": token})
    assert (await in_frame.recv())["code"] == code
    assert await in_frame.closed() == 4401


async def test_issuer_and_audience_are_enforced_when_configured(standalone, connect):
    server = standalone("--Realtime.jwt_issuer=hub", "--Realtime.jwt_audience=nyo")
    good = await connect(server.url, make_token("ada", iss="hub", aud="nyo"))
    assert good.connection_id
    for claims in ({"iss": "hub"}, {"aud": "nyo"}, {"iss": "other", "aud": "nyo"}):
        bad = await connect(server.url, make_token("eve", **claims), authenticate=False)
        assert (await bad.recv())["code"] == "unauthorized"
        assert await bad.closed() == 4401


async def test_unauthenticated_connection_times_out(standalone, connect):
    server = standalone("--Realtime.auth_timeout=1")
    client = await connect(server.url)
    assert (await client.recv(timeout=10))["code"] == "unauthorized"
    assert await client.closed() == 4401


async def test_token_expiry_closes_unless_refreshed(server, connect):
    soon = int(time.time()) + 2
    lapsing = await connect(server.url, make_token("ada", exp=soon))
    refreshed = await connect(server.url, make_token("bob", exp=soon))
    reply = await refreshed.request({"type": "auth", "token": make_token("bob", exp=soon + 3600)})
    assert reply["type"] == "authenticated"
    assert (await lapsing.expect("error", timeout=10))["code"] == "token_expired"
    assert await lapsing.closed() == 4401
    assert (await refreshed.request({"type": "ping"}))["type"] == "pong"


async def test_two_tabs_of_one_user_are_one_member(server, connect):
    watcher = await connect(server.url, make_token("watcher"))
    await watcher.subscribe("room")
    tab1 = await connect(server.url, make_token("ada"))
    tab2 = await connect(server.url, make_token("ada"))
    await tab1.subscribe("room")
    reply = await tab2.subscribe("room")
    assert {m["userId"]: m["connections"] for m in reply["members"]} == {"watcher": 1, "ada": 2}
    assert (await watcher.expect("user:joined"))["member"]["userId"] == "ada"
    tab1.close()
    state = await watcher.request({"type": "presence", "channel": "room"})
    deadline = time.monotonic() + 10
    while {m["userId"]: m["connections"] for m in state["members"]}["ada"] != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        state = await watcher.request({"type": "presence", "channel": "room"})
    tab2.close()
    left = await watcher.expect("user:left")
    assert left["member"]["userId"] == "ada"
    # exactly one join and one leave for the two tabs
    state = await watcher.request({"type": "presence", "channel": "room"})
    assert [m["userId"] for m in state["members"]] == ["watcher"]


async def test_two_tenants_on_the_same_channel_name_never_meet(server, connect):
    acme = await connect(server.url, make_token("ada", tenant="acme"))
    globex = await connect(server.url, make_token("bob", tenant="globex"))
    await acme.subscribe("room:1")
    reply = await globex.subscribe("room:1")
    assert [m["userId"] for m in reply["members"]] == ["bob"]
    await acme.request(
        {"type": "broadcast", "channel": "room:1", "event": "e", "payload": "acme only"}
    )
    await globex.request(
        {"type": "broadcast", "channel": "room:1", "event": "e", "payload": "globex only"}
    )
    assert (await acme.expect("message"))["payload"] == "acme only"
    assert (await globex.expect("message"))["payload"] == "globex only"
    replay = await connect(server.url, make_token("carl", tenant="globex"))
    await replay.subscribe("room:1", since="none-0")
    assert (await replay.expect("message"))["payload"] == "globex only"
    assert (await replay.request({"type": "ping"}))["type"] == "pong"  # nothing else queued


async def test_private_channel_with_and_without_rights(server, connect):
    allowed = await connect(server.url, make_token("ada", channels=["private-team"]))
    denied = await connect(server.url, make_token("eve"))
    await allowed.subscribe("private-team")
    reply = await denied.request({"type": "subscribe", "channel": "private-team"})
    assert (reply["code"], reply["channel"]) == ("forbidden", "private-team")
    reply = await denied.request(
        {"type": "broadcast", "channel": "private-team", "event": "e", "payload": 1}
    )
    assert reply["code"] == "not_subscribed"
    await allowed.request(
        {"type": "broadcast", "channel": "private-team", "event": "e", "payload": "ok"}
    )
    assert (await allowed.expect("message"))["payload"] == "ok"


async def test_silent_client_is_closed_4408_and_leaves(standalone, connect):
    server = standalone("--heartbeat-interval", "0.5", "--heartbeat-timeout", "1.5")
    silent = await connect(server.url, make_token("silent"))
    alive = await connect(server.url, make_token("alive"))
    await silent.subscribe("room")
    await alive.subscribe("room")

    protocol_pinger = await connect(server.url, make_token("protocol-pinger"))

    async def keep_pinging():
        while True:
            await alive.send({"type": "ping"})
            protocol_pinger.ws.ping()  # a WebSocket ping frame, not a `ping` message
            await asyncio.sleep(0.3)

    pinger = asyncio.ensure_future(keep_pinging())
    try:
        assert await silent.closed(timeout=15) == 4408
        left = await alive.expect("user:left", timeout=10)
        assert left["member"]["userId"] == "silent"
        assert (await alive.request({"type": "ping"}))["type"] == "pong"
        assert (await protocol_pinger.request({"type": "ping"}))["type"] == "pong"
    finally:
        pinger.cancel()


async def test_flooding_client_is_warned_then_cut_4429(standalone, connect):
    server = standalone("--Realtime.rate_limit=20")
    flood = await connect(server.url, make_token("flood"))
    calm = await connect(server.url, make_token("calm"))
    for _ in range(200):
        try:
            await flood.send({"type": "ping"})
        except WebSocketClosedError:
            break
    frames = []
    while (frame := await flood.recv()) is not None:
        frames.append(frame)
    errors = [f["code"] for f in frames if f["type"] == "error"]
    assert errors == ["rate_limited"]
    assert flood.close_code == 4429
    assert (await calm.request({"type": "ping"}))["type"] == "pong"


async def test_client_that_never_reads_is_cut_and_nobody_waits_for_it(standalone, connect):
    server = standalone("--Realtime.max_send_buffer=262144")
    sleeper = await connect(server.url, make_token("sleeper"))
    watcher = await connect(server.url, make_token("watcher"))
    await sleeper.subscribe("room")
    await watcher.subscribe("room")
    publisher = await connect(server.url, make_token("publisher"))
    await publisher.subscribe("public-feed")
    await sleeper.subscribe("public-feed")  # from here on, the sleeper reads nothing
    chunk = "x" * 100_000
    for i in range(300):  # 30 MB: far beyond socket buffers plus max_send_buffer
        await publisher.send(
            {
                "type": "broadcast",
                "channel": "public-feed",
                "event": "e",
                "payload": chunk,
                "echo": False,
            }
        )
        if i % 100 == 99:
            await asyncio.sleep(0.1)
    left = await watcher.expect("user:left", timeout=30)
    assert left["member"]["userId"] == "sleeper"
    assert (await publisher.request({"type": "ping"}))["type"] == "pong"


async def test_oversize_frame_closes_1009_and_others_carry_on(standalone, connect):
    server = standalone("--max-payload-size", "1000")
    big = await connect(server.url, make_token("big"))
    other = await connect(server.url, make_token("other"))
    await big.send({"type": "broadcast", "channel": "room", "event": "e", "payload": "x" * 2000})
    assert await big.closed() == 1009
    assert (await other.request({"type": "ping"}))["type"] == "pong"


async def test_binary_and_deeply_nested_frames_get_bad_request(server, connect):
    client = await connect(server.url, make_token("ada"))
    await client.send(b"\x00\x01binary")
    assert (await client.recv())["code"] == "bad_request"
    await client.send("[" * 100_000 + "]" * 100_000)
    assert (await client.recv())["code"] == "bad_request"
    assert (await client.request({"type": "ping"}))["type"] == "pong"


async def test_restart_keeps_history_and_sigterm_closes_1001(standalone, connect):
    server = standalone()
    ada = await connect(server.url, make_token("ada"))
    await ada.subscribe("room")
    ids = []
    for i in range(3):
        ids.append(
            (
                await ada.request(
                    {"type": "broadcast", "channel": "room", "event": "e", "payload": i}
                )
            )["id"]
        )
    assert server.stop(signal.SIGTERM) == 0
    assert await ada.closed() == 1001

    server.start()
    back = await connect(server.url, make_token("ada"))
    reply = await back.subscribe("room", since=ids[0])
    assert reply["recovered"] is True
    assert [(await back.expect("message"))["id"] for _ in range(2)] == ids[1:]
    fresh = await back.request({"type": "broadcast", "channel": "room", "event": "e", "payload": 3})
    assert fresh["id"] not in ids


def test_refuses_to_start_without_a_way_to_verify_tokens(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nyo_realtime_ext.server", "serve", "--db", str(tmp_path / "x.db")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "--jwt-secret" in result.stderr + result.stdout


@pytest.mark.parametrize(("level", "info"), [("WARN", False), ("INFO", True)])
def test_the_service_makes_no_log_record_below_the_servers_level(level, info):
    # traitlets sets the application's logger to DEBUG and filters in its handler: the
    # service took that level, and made (then dropped) an audit record per publish.
    probe = (
        "import logging, sys\n"
        "from nyo_realtime_ext.server import ServeApp, _log_to\n"
        "app = ServeApp.instance()\n"
        "app.initialize(sys.argv[1:])\n"
        "_log_to(app.log, app.log_level)\n"
        "print(logging.getLogger('nyo_realtime_ext.audit').isEnabledFor(logging.INFO))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, f"--log-level={level}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == str(info)


async def test_hooks_given_as_import_strings(standalone, connect):
    server = standalone(
        "--Realtime.verify_token=tests.support.hooks:verify",
        "--Realtime.authorize=tests.support.hooks:authorize",
    )
    ada = await connect(server.url, "ticket-ada", authenticate=False)
    frame = await ada.expect("authenticated")
    assert frame["user"] == {"userId": "ada", "tenantId": "acme", "name": "Ada"}
    await ada.subscribe("private-open-to-ada")
    refused = await ada.request({"type": "subscribe", "channel": "private-other"})
    assert refused["code"] == "forbidden"
    stranger = await connect(server.url, make_token("ada"), authenticate=False)
    assert (await stranger.recv())["code"] == "unauthorized"  # the hook replaced JWT checking
    assert await stranger.closed() == 4401


@pytest.mark.parametrize("size", [10, 125, 126, 65535, 65536, 500_000])
async def test_messages_of_every_frame_length_arrive_intact(server, connect, size):
    ada = await connect(server.url, make_token("ada"))
    bob = await connect(server.url, make_token("bob"))
    await ada.subscribe("room")
    await bob.subscribe("room")
    payload = "é" * (size // 2)  # two bytes each in UTF-8
    await ada.request({"type": "broadcast", "channel": "room", "event": "e", "payload": payload})
    assert (await bob.expect("message"))["payload"] == payload


async def test_sigint_also_closes_1001_and_leaves_everyone_offline(standalone, connect):
    import sqlite3

    server = standalone()
    ada = await connect(server.url, make_token("ada"))
    await ada.subscribe("room")
    assert server.stop(signal.SIGINT) == 0
    assert await ada.closed() == 1001
    with sqlite3.connect(server.db) as db:
        rows = db.execute("SELECT user_id, status, online FROM presence").fetchall()
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert rows == [("ada", "offline", 0)]


async def test_a_recovery_larger_than_the_send_buffer_is_cut_to_fit_and_flagged(
    standalone, connect
):
    server = standalone("--Realtime.max_send_buffer=2000000")
    ada = await connect(server.url, make_token("ada"))
    await ada.subscribe("room")
    ids = []
    for _ in range(6):  # 5.4 MB of history, far more than the 2 MB send buffer
        frame = {"type": "broadcast", "channel": "room", "event": "e", "payload": "x" * 900_000}
        ids.append((await ada.request(frame))["id"])
    late = await connect(server.url, make_token("late"))
    reply = await late.subscribe("room", since=ids[0])
    assert reply["recovered"] is False  # told to reload, not cut off for asking
    assert [(await late.expect("message"))["id"] for _ in range(2)] == ids[
        -2:
    ]  # the newest that fit
    assert (await late.request({"type": "ping"}))["type"] == "pong"


async def test_tokens_never_reach_the_log(server):
    from tornado.httpclient import AsyncHTTPClient

    secret_token = make_token("ada")
    response = await AsyncHTTPClient().fetch(
        f"{server.http_url}/api/channels/nowhere?token={secret_token}", raise_error=False
    )
    assert response.code == 404
    await asyncio.sleep(0.5)
    output = server.output()
    assert "/api/channels/nowhere?token=[secret]" in output
    assert secret_token not in output


async def test_huge_bodies_are_refused_before_they_are_read(server, connect):
    from tornado.httpclient import AsyncHTTPClient

    try:
        response = await AsyncHTTPClient().fetch(
            f"{server.http_url}/api/channels",
            method="POST",
            body=b"x" * 20_000_000,
            raise_error=False,
        )
        refused = response.code >= 400
    except OSError:  # the server hung up instead of reading 20 MB
        refused = True
    assert refused
    ada = await connect(server.url, make_token("ada"))
    assert (await ada.request({"type": "ping"}))["type"] == "pong"


def test_a_second_server_on_the_same_database_is_refused(server):
    result = subprocess.run(
        [sys.executable, "-m", "nyo_realtime_ext.server", "serve", "--port", "0",
         "--jwt-secret", SECRET, "--db", str(server.db)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "in use by another nyo-realtime process" in result.stderr + result.stdout


async def test_host_and_path_flags(standalone, connect):
    server = standalone("--host", "127.0.0.1", "--path", "/realtime")
    client = await connect(server.url.replace("/ws", "/realtime"), make_token("ada"))
    assert client.connection_id
