"""Who gets in, and how many, on the standalone server, over real sockets: slow and
silent connections, connection caps, the open-file limit, browsers on other origins,
and tokens kept out of the log. Each test names the finding of the security review
it proves (marked `hardening`)."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from nyo_realtime_ext.standalone import FD_RESERVE

from .support.httpclient import Api
from .support.standalone_server import StandaloneServer
from .support.tokens import make_token

pytestmark = pytest.mark.hardening

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


async def _eof_after(reader: asyncio.StreamReader, timeout: float) -> float:
    """Seconds until the server hung up; TimeoutError if it held on for `timeout`."""
    started = time.monotonic()
    while await asyncio.wait_for(reader.read(65536), timeout):
        pass
    return time.monotonic() - started


async def _upgrade(server: StandaloneServer, query: str = "", **headers: str) -> tuple[int, bytes]:
    """A WebSocket handshake on a bare socket: the status and the body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines = [
        f"GET /ws{query} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = int(head.split(b" ", 2)[1])
    body = b""
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            body = await asyncio.wait_for(reader.readexactly(int(value)), 10)
    writer.close()
    return status, body


async def _handshake(
    server: StandaloneServer, query: str = "", local: str | None = None, **headers: str
) -> tuple[int, asyncio.StreamWriter]:
    """A WebSocket handshake on a bare socket, left open: the status, and the writer
    to close it with."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", server.port, local_addr=(local, 0) if local else None
    )
    lines = [
        f"GET /ws{query} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    return int(head.split(b" ", 2)[1]), writer


# -- finding 1: silent and slow connections, connection caps, the open-file limit ----


@pytest.mark.parametrize("how", ["silent", "dribbled headers", "dribbled body"])
async def test_a_connection_that_does_not_finish_its_request_in_auth_timeout_is_closed(
    standalone, how
):
    """Finding 1: before, tornado kept each of these open for an hour."""
    server = standalone("--Realtime.auth_timeout=1.5")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)

    async def dribble() -> None:
        if how == "dribbled body":
            writer.write(
                b"POST /api/channels HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
            )
        elif how == "dribbled headers":
            writer.write(b"GET /ws HTTP/1.1\r\n")
        for i in range(1000):  # a slowloris: a byte now and then, never the end
            if how == "silent":
                return
            await asyncio.sleep(0.2)
            try:
                writer.write(b"x" if how == "dribbled body" else f"X-{i}: y\r\n".encode())
                await writer.drain()
            except ConnectionError:
                return

    trickle = asyncio.ensure_future(dribble())
    try:
        elapsed = await _eof_after(reader, timeout=8)
    finally:
        trickle.cancel()
        writer.close()
    assert elapsed < 1.5 + 2


async def test_finished_requests_may_outlive_auth_timeout(standalone, connect):
    """Finding 1, the other side: the deadline is for the request, not for what follows
    it; an upgraded WebSocket and a long-poll run as long as they need."""
    server = standalone("--Realtime.auth_timeout=1")
    ada = await connect(server.url, make_token("ada"))
    api = Api(f"{server.http_url}/api/", make_token("ada"))
    assert (await api.post("channels", {"name": "room", "type": "public"})).status == 201
    started = time.monotonic()
    answer = await api.get("channels/room/messages?wait=2.5")
    assert answer.status == 200 and answer.body["messages"] == []
    assert time.monotonic() - started >= 2.4
    assert (await ada.request({"type": "ping"}))["type"] == "pong"


async def test_past_max_connections_the_handshake_is_refused_503(standalone, connect):
    """Finding 1: a server-wide cap, refused cleanly before the upgrade."""
    server = standalone("--Realtime.max_connections=2")
    ada = await connect(server.url, make_token("ada"))
    await connect(server.url)  # not authenticated yet: its own allowance (finding 8, round 3)
    await connect(server.url, make_token("bob"))
    status, body = await _upgrade(server, f"?token={make_token('cy')}")
    assert status == 503
    error = orjson.loads(body)["error"]
    assert error["code"] == "limit_exceeded" and "max_connections" in error["message"]
    assert (await ada.request({"type": "ping"}))["type"] == "pong"
    ada.close()
    deadline = time.monotonic() + 10
    while (await _upgrade(server, f"?token={make_token('cy')}"))[0] != 101:
        assert time.monotonic() < deadline, "a closed connection never freed its place"
        await asyncio.sleep(0.1)


async def test_past_max_connections_per_user_error_then_4429(standalone, connect):
    """Finding 1: a per-user cap, applied once the user is known: by a handshake token
    or by an `auth` frame, which then gets no `authenticated`."""
    server = standalone("--Realtime.max_connections_per_user=2")
    tabs = [await connect(server.url, make_token("ada")) for _ in range(2)]
    bob = await connect(server.url, make_token("bob"))  # other users are not affected
    other_tenant = await connect(server.url, make_token("ada", tenant="acme"))

    third = await connect(server.url, make_token("ada"), authenticate=False)
    frame = await third.recv()
    assert frame["type"] == "error" and frame["code"] == "limit_exceeded"
    assert "max_connections_per_user" in frame["message"] and "2" in frame["message"]
    assert await third.closed() == 4429

    by_frame = await connect(server.url)
    reply = await by_frame.request({"type": "auth", "token": make_token("ada")})
    assert (reply["type"], reply["code"]) == ("error", "limit_exceeded")
    assert by_frame.backlog == []  # no `authenticated` slipped out before it
    assert await by_frame.closed() == 4429

    for client in (*tabs, bob, other_tenant):
        assert (await client.request({"type": "ping"}))["type"] == "pong"
    tabs[0].close()
    deadline = time.monotonic() + 10
    while True:  # the closed tab gave its place back
        again = await connect(server.url, make_token("ada"), authenticate=False)
        if (await again.recv())["type"] == "authenticated":
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)


# -- issue 23, third round: admission (findings 8 and 9) ------------------------------


def _server_sockets(server: StandaloneServer) -> int:
    assert server.process is not None
    fds = Path(f"/proc/{server.process.pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except FileNotFoundError:  # closed meanwhile
            pass
    return count


async def _closed_on_the_server(server: StandaloneServer, writers: list[Any], idle: int) -> None:
    """Close the sockets and wait until the server is back to its `idle` sockets: it
    closes a connection's socket after the hub let go of it, its slot included."""
    for writer in writers:
        writer.close()
    deadline = time.monotonic() + 30
    while (sockets := _server_sockets(server)) > idle:
        assert time.monotonic() < deadline, f"the server still has {sockets} sockets"
        await asyncio.sleep(0.05)


@linux_only  # the server's fds from /proc
async def test_concurrent_handshakes_never_overshoot_max_connections(standalone):
    """Finding 9: the slot is reserved when the handshake is admitted. Before, the
    check counted only sessions already open: 90 handshakes at once against a cap of
    30 all upgraded. And every slot comes back, refused or ended."""
    server = standalone("--Realtime.max_connections=30")
    idle = _server_sockets(server)  # the listening ones
    tokens = [make_token(f"u{i}") for i in range(90)]
    opened = await asyncio.gather(*(_handshake(server, f"?token={t}") for t in tokens))
    statuses = Counter(status for status, _ in opened)
    assert statuses == {101: 30, 503: 60}, statuses
    await _closed_on_the_server(server, [writer for _, writer in opened], idle)

    # Handshakes that fail after their admission give their slot back: a refused
    # origin (403) and a refused token (then 4401).
    refused = await asyncio.gather(
        *(_handshake(server, f"?token={t}", Origin=REFUSED) for t in tokens[:40]),
        *(_handshake(server, f"?token={make_token('x', secret='wrong' * 8)}") for _ in range(40)),
    )
    assert Counter(status for status, _ in refused) == {403: 40, 101: 40}
    for _, writer in refused:
        writer.close()
    deadline = time.monotonic() + 20
    while True:  # the closed connections give their places back, all 30 of them
        again = await asyncio.gather(*(_handshake(server, f"?token={t}") for t in tokens[:30]))
        if Counter(status for status, _ in again) == {101: 30}:
            break
        for _, writer in again:
            writer.close()
        assert time.monotonic() < deadline, "slots were never given back"
        await asyncio.sleep(0.2)
    assert (await _upgrade(server, f"?token={make_token('late')}"))[0] == 503
    for _, writer in again:
        writer.close()


@linux_only  # 127.0.0.2 as a second client address
async def test_unauthenticated_sockets_cannot_lock_out_those_who_authenticate(standalone, connect):
    """Finding 8: before, sockets that never authenticate counted against
    `max_connections` until `auth_timeout`: one address holding them all turned
    every user away with 503. Now they have an allowance of their own, per address
    and in all, and a token at the handshake never draws on it."""
    server = standalone(
        "--Realtime.max_connections=20",
        "--Realtime.max_connections_per_user=0",
        "--Realtime.auth_timeout=60",
        "--Realtime.max_unauthenticated_per_address=5",
        "--Realtime.max_unauthenticated_connections=8",
    )
    waiting = await connect(server.url)  # will send its `auth` frame later
    flood = [await _handshake(server) for _ in range(30)]
    assert Counter(status for status, _ in flood) == {101: 4, 429: 26}
    status, body = await _upgrade(server)
    assert status == 429 and "max_unauthenticated_per_address" in body.decode()
    elsewhere = [await _handshake(server, local="127.0.0.2") for _ in range(5)]
    assert [status for status, _ in elsewhere] == [101, 101, 101, 503, 503]
    status, body = await _upgrade(server)
    error = orjson.loads(body)["error"]
    assert error["code"] == "limit_exceeded"

    # Everyone with a token gets in, from the flooding address too, up to the cap.
    users = [await connect(server.url, make_token(f"user{i}")) for i in range(20)]
    for user in users:
        assert (await user.request({"type": "ping"}))["type"] == "pong"
    status, body = await _upgrade(server, f"?token={make_token('late')}")
    assert status == 503 and "max_connections" in body.decode()

    # An `auth` frame moves a waiting socket to the authenticated pool, if it has room.
    reply = await waiting.request({"type": "auth", "token": make_token("waiting")})
    assert (reply["type"], reply["code"]) == ("error", "limit_exceeded")
    assert "max_connections" in reply["message"]
    assert await waiting.closed() == 4429
    users[0].close()
    deadline = time.monotonic() + 10
    while True:
        late = await connect(server.url)
        reply = await late.request({"type": "auth", "token": make_token("late")})
        if reply["type"] == "authenticated":
            break
        assert time.monotonic() < deadline, "the closed user's place never came back"
        await asyncio.sleep(0.1)
    assert (await late.request({"type": "ping"}))["type"] == "pong"
    for _, writer in flood + elsewhere:
        writer.close()


class LimitedServer(StandaloneServer):
    """A standalone server started with an open-file limit of (soft, hard)."""

    def __init__(self, db: Path, extra_args: list[str], nofile: tuple[int, int]) -> None:
        super().__init__(db, extra_args)
        self.nofile = nofile

    def start(self, *more_args: str) -> LimitedServer:
        real_popen = subprocess.Popen

        def popen(*args, **kwargs):
            return real_popen(
                *args,
                **kwargs,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile),
            )

        subprocess.Popen = popen  # type: ignore[misc]  # what StandaloneServer.start calls
        try:
            return super().start(*more_args)  # type: ignore[return-value]
        finally:
            subprocess.Popen = real_popen  # type: ignore[misc]


@pytest.fixture
def limited(tmp_path):
    servers: list[LimitedServer] = []

    def start(nofile: tuple[int, int], *args: str) -> LimitedServer:
        server = LimitedServer(tmp_path / f"limited{len(servers)}.db", list(args), nofile)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.kill()


def _open_files(pid: int) -> tuple[int, int]:
    """The soft and hard RLIMIT_NOFILE of a process."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open-file limit in /proc")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@linux_only
def test_the_soft_open_file_limit_is_raised_to_the_hard_one(limited):
    """Finding 1: the server takes all the file descriptors it may, and says so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 100 + 1000 + FD_RESERVE  # max_connections, max_unauthenticated_connections
    if hard == resource.RLIM_INFINITY or hard < needed:
        pytest.skip(f"needs a finite hard open-file limit of at least {needed}, not {hard}")
    server = limited((512, hard), "--log-level=INFO", "--Realtime.max_connections=100")
    assert _open_files(server.process.pid) == (hard, hard)
    output = server.output()
    assert f"open-file limit {hard}" in output and "raised from 512" in output
    assert "max_connections" not in output  # enough for 100: no warning


@linux_only
async def test_at_the_open_file_limit_the_server_neither_spins_nor_floods_the_log(limited):
    """Finding 1: tornado's accept loop, at EMFILE, logged a traceback on every pass of
    the event loop at full CPU; the server waits instead, and answers once fds free up."""
    limit = 96
    server = limited((limit, limit), "--Realtime.auth_timeout=60")
    pid = server.process.pid

    def server_fds() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    while server_fds() < limit:  # silent connections, until the server has no fd left
        held.append(await asyncio.open_connection("127.0.0.1", server.port))
        if len(held) % 10 == 0:
            await asyncio.sleep(0.05)
        assert len(held) < 2 * limit, "the server never ran out of file descriptors"
    held += [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(5)]
    await asyncio.sleep(0.5)  # a few accepts fail by now

    log_before, cpu_before = len(server.output()), _cpu_seconds(pid)
    await asyncio.sleep(2)
    logged, cpu = len(server.output()) - log_before, _cpu_seconds(pid) - cpu_before
    assert server_fds() == limit  # still out of fds, as intended
    assert cpu < 0.5, f"the server spun: {cpu:.2f} s of CPU in 2 s"
    assert logged < 1000, f"{logged} bytes logged in 2 s at the limit"
    output = server.output()
    assert len(output) < 4000
    assert "Too many open files" in output
    # The SQLite checkpoint, once a second, cannot open the file either: said once.
    assert output.count("checkpoint failed") <= 1, output
    # ... and it said at start that this limit is too low for max_connections.
    assert "max_connections=10000" in output and f"open-file limit is {limit}" in output

    for _, writer in held[:20]:  # some clients leave: the server answers again
        writer.close()
    response = await AsyncHTTPClient().fetch(
        f"{server.http_url}/api/openapi.json", request_timeout=15
    )
    assert response.code == 200
    for _, writer in held[20:]:
        writer.close()


# -- finding 7: browser pages on other origins ---------------------------------------------

ALLOWED = "https://app.example.com"
REFUSED = "https://evil.example.net"


async def test_websocket_accepts_its_own_and_listed_origins_only(standalone, connect):
    """Finding 7: an origin in `allowed_origins` gets in (403 before); others stay out."""
    server = standalone(f"--Realtime.allowed_origins={ALLOWED}")
    token = f"?token={make_token('ada')}"
    assert (await _upgrade(server, token, Origin=ALLOWED))[0] == 101
    assert (await _upgrade(server, token, Origin=ALLOWED + "/"))[0] == 101
    assert (await _upgrade(server, token, Origin=REFUSED))[0] == 403
    assert (await _upgrade(server, token, Origin=f"http://127.0.0.1:{server.port}"))[0] == 101
    assert (await _upgrade(server, token, Origin=REFUSED, **{"Sec-Fetch-Site": "cross-site"}))[
        0
    ] == 403
    browser = await connect(server.url, make_token("ada"), headers={"Origin": ALLOWED})
    assert (await browser.request({"type": "ping"}))["type"] == "pong"


async def test_a_star_allows_any_origin(standalone):
    """Finding 7: `*` opens the WebSocket and the API to every origin."""
    server = standalone("--Realtime.allowed_origins=*")
    assert (await _upgrade(server, f"?token={make_token('ada')}", Origin=REFUSED))[0] == 101
    api = Api(f"{server.http_url}/api/", make_token("ada"), headers={"Origin": REFUSED})
    answer = await api.get("channels")
    assert answer.status == 200
    assert answer.headers["Access-Control-Allow-Origin"] == REFUSED


async def test_api_answers_cors_for_listed_origins(standalone):
    """Finding 7: preflight 204 with the allowed methods and headers; answers (errors
    too, so a page can read them) carry Access-Control-Allow-Origin; others get none."""
    server = standalone(f"--Realtime.allowed_origins={ALLOWED}")
    preflight = HTTPRequest(
        f"{server.http_url}/api/channels",
        method="OPTIONS",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    response = await AsyncHTTPClient().fetch(preflight, raise_error=False)
    assert response.code == 204
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == ALLOWED
    assert {"GET", "POST"} <= {
        m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")
    }
    allowed_headers = {
        h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed_headers
    assert "Origin" in headers.get("Vary", "")

    response = await AsyncHTTPClient().fetch(
        HTTPRequest(
            preflight.url, method="OPTIONS", headers={**preflight.headers, "Origin": REFUSED}
        ),
        raise_error=False,
    )
    assert response.code == 403 and "Access-Control-Allow-Origin" not in response.headers

    page = Api(f"{server.http_url}/api/", make_token("ada"), headers={"Origin": ALLOWED})
    created = await page.post("channels", {"name": "room", "type": "public"})
    assert created.status == 201
    assert created.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Retry-After" in created.headers["Access-Control-Expose-Headers"]
    refused = await page.as_(None).call("GET", "channels", headers={"Origin": ALLOWED})
    assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == ALLOWED
    stranger = Api(f"{server.http_url}/api/", make_token("eve"), headers={"Origin": REFUSED})
    answer = await stranger.get("channels")
    assert answer.status == 200 and "Access-Control-Allow-Origin" not in answer.headers


async def test_without_allowed_origins_other_origins_stay_refused(server):
    """Finding 7, the default: only the server's own origin."""
    assert (await _upgrade(server, f"?token={make_token('ada')}", Origin=ALLOWED))[0] == 403
    response = await AsyncHTTPClient().fetch(
        HTTPRequest(
            f"{server.http_url}/api/channels",
            method="OPTIONS",
            headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"},
        ),
        raise_error=False,
    )
    assert response.code == 403 and "Access-Control-Allow-Origin" not in response.headers


@pytest.fixture
def jp_server_config(tmp_path):
    from .support.tokens import SECRET

    return {
        "ServerApp": {"jpserver_extensions": {"nyo_realtime_ext": True}},
        "Realtime": {
            "jwt_secret": SECRET,
            "db_path": str(tmp_path / "jupyter-realtime.db"),
            "allowed_origins": [ALLOWED],
        },
    }


async def test_under_jupyter_allowed_origins_changes_nothing(jupyter_ws_url):
    """Finding 7: `allowed_origins` is the standalone server's; Jupyter's rules stay."""
    request = HTTPRequest(
        f"{jupyter_ws_url}?token={make_token('ada')}", headers={"Origin": ALLOWED}
    )
    from tornado.websocket import websocket_connect

    with pytest.raises(HTTPClientError) as refused:
        await asyncio.wait_for(websocket_connect(request), 10)
    assert refused.value.code == 403


# -- finding 8: tokens in the access log ----------------------------------------------------


@pytest.mark.parametrize("name", ["%74oken", "t%6Fk%65n", "%74%6F%6B%65%6E"])
async def test_a_percent_encoded_token_never_reaches_the_log(server, name):
    """Finding 8: tornado decodes the parameter's name, so the log filter must too."""
    secret_token = make_token("ada")
    response = await AsyncHTTPClient().fetch(
        f"{server.http_url}/api/channels/nowhere/messages?limit=5&{name}={secret_token}&wait=0",
        raise_error=False,
    )
    assert response.code == 404  # authenticated by it: the channel is what is missing
    await asyncio.sleep(0.5)
    output = server.output()
    assert f"/api/channels/nowhere/messages?limit=5&{name}=[secret]&wait=0" in output
    assert secret_token not in output
