"""Soak: a real `nyo-realtime serve` under connection churn, watched from inside and out.

Churners, `NYO_SOAK_CONCURRENCY` (50) at a time, each open a connection as one of a
few users, subscribe to one of a few presence channels, publish a message with a
`ref` and wait for its `ack`, then go: cleanly (close frame), after unsubscribing,
abruptly (socket closed, or reset, with no close frame), right after a publish
whose ack they do not wait for, or without ever authenticating. Long-lived
watchers, subscribed to every channel, record every message and presence event.
The churn runs `NYO_SOAK_SECONDS` (20 in CI) after a warm-up; then the test checks
that

- no churner failed and the server logged no Traceback;
- every acked message reached every watcher, and every watcher saw each
  channel's messages in the same order, each once;
- each churning user's `user:joined` and `user:left` alternate on every channel,
  and presence is exact at the end: a `presence` request lists only the watchers;
- the server's RSS (VmRSS) came back to within 30 MB of its post-warm-up
  baseline, and its open file descriptors to within a few of theirs;
- every churning user can still connect (no per-user connection count leaked).

It prints the figures (connections churned, messages acked, RSS and fds before,
at peak and after). A longer run by hand:

    NYO_SOAK_SECONDS=600 .venv/bin/python -m pytest tests/e2e/test_soak.py -p no:cacheprovider -s
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import orjson
import pytest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ..support.tokens import make_token
from ..support.wsclient import WSClient

SOAK_SECONDS = float(os.environ.get("NYO_SOAK_SECONDS") or 20)
CONCURRENCY = int(os.environ.get("NYO_SOAK_CONCURRENCY") or 50)
WARM_UP_CONNECTIONS = 300
MODES = ("clean", "abrupt", "unsubscribe", "reset", "unacked", "anonymous")
CHANNELS = [f"presence-soak-{n}" for n in range(4)]
WATCHERS = [f"watcher-{n}" for n in range(3)]
# Enough users that their rate budgets (rate_limit frames/s each, shared by all of a
# user's connections) hold at full churn; few enough that each churns hundreds of
# connections, so a leaked per-user connection count would reach its cap.
USERS = [f"churner-{n}" for n in range(32)]
RSS_SLACK_KB = 30 * 1024
FD_SLACK = 5
SETTLE_SECONDS = 15.0
MAX_WATCHER_LAG = 2.0

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
    pytest.mark.timeout(SOAK_SECONDS + 150),
]


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Watcher:
    """A long-lived subscriber of every channel that records everything it is sent."""

    def __init__(self, user: str, ws: WebSocketClientConnection) -> None:
        self.user = user
        self.ws = ws
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.presence: dict[str, list[tuple[str, str]]] = defaultdict(list)  # (event, user)
        self.errors: list[dict[str, Any]] = []
        self.closed: int | None = None
        self.read_up_to = 0.0  # publish time (`payload.t`) of the newest message read
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, user: str) -> Watcher:
        ws = await asyncio.wait_for(websocket_connect(f"{url}?token={make_token(user)}"), 10)
        watcher = cls(user, ws)
        for channel in CHANNELS:
            reply = await watcher.request({"type": "subscribe", "channel": channel})
            assert reply["type"] == "subscribed", reply
        return watcher

    async def _read(self) -> None:
        while (data := await self.ws.read_message()) is not None:
            frame = orjson.loads(data)
            type_ = frame["type"]
            future = self._replies.pop(str(frame.get("ref")), None)
            if future is not None and not future.done():  # not given up on
                future.set_result(frame)
            elif type_ == "message":
                self.messages[frame["channel"]].append(frame)
                self.read_up_to = max(self.read_up_to, frame["payload"]["t"])
            elif type_ in ("user:joined", "user:left"):
                self.presence[frame["channel"]].append((type_, frame["member"]["userId"]))
            elif type_ == "error":
                self.errors.append(frame)
        self.closed = self.ws.close_code or -1

    async def request(self, frame: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        ref = f"{self.user}-{next(self._refs)}"
        future = self._replies[ref] = asyncio.get_running_loop().create_future()
        await self.ws.write_message(orjson.dumps({**frame, "ref": ref}).decode())
        return await asyncio.wait_for(future, timeout)

    async def keep_alive(self) -> None:
        while True:  # within any heartbeat_timeout, however long the soak
            await asyncio.sleep(5)
            await self.request({"type": "ping"}, timeout=60)

    def close(self) -> None:
        self._reader.cancel()
        self.ws.close()


class Churn:
    def __init__(self, url: str, watchers: list[Watcher]) -> None:
        self.url = url
        self.watchers = watchers
        self.acked_up_to = 0.0  # publish time of the newest acked message
        self.held_back = 0.0  # seconds churners waited for the watchers
        self.numbers = itertools.count()
        self.churned = 0
        self.modes: Counter[str] = Counter()
        self.acked: list[tuple[str, str, int]] = []  # channel, id, number
        self.failures: list[str] = []
        self.stage: dict[int, str] = {}
        self.clients: dict[int, WSClient] = {}
        self.started = time.monotonic()

    async def worker(self, deadline: float, until: int | None = None) -> None:
        """Churn until `deadline`, or until `until` connections have churned in all."""
        while time.monotonic() < deadline and (until is None or self.churned < until):
            if self.lagging():
                await asyncio.sleep(0.02)
                self.held_back += 0.02 / CONCURRENCY
                continue
            n = next(self.numbers)
            try:
                await asyncio.wait_for(self.once(n), 20)
            except Exception as exc:  # every failure is reported at the end
                at = time.monotonic() - self.started
                client = self.clients.get(n)
                unread = client.backlog[-3:] if client is not None else []
                self.failures.append(
                    f"churn {n} ({self.modes_of(n)}) at {at:.1f} s, {self.stage.get(n)}: "
                    f"{exc!r}; other frames it got: {unread}"
                )
                if client is not None and client.ws.protocol is not None:
                    abort(client.ws)
            self.stage.pop(n, None)
            self.clients.pop(n, None)
            self.churned += 1

    def lagging(self) -> bool:
        """Whether a watcher is more than MAX_WATCHER_LAG behind the acks.

        The watchers read on this process's event loop, beside the churners;
        were they left behind by more than the server's send buffer, the server
        would rightly cut them (4429, too slow to read).
        """
        return any(self.acked_up_to - w.read_up_to > MAX_WATCHER_LAG for w in self.watchers)

    @staticmethod
    def modes_of(n: int) -> str:
        return MODES[n % len(MODES)]

    async def once(self, n: int) -> None:
        mode = MODES[n % len(MODES)]
        self.modes[mode] += 1
        stage = self.stage
        stage[n] = "connecting"
        if mode == "anonymous":  # never authenticates: a ping, then gone
            client = self.clients[n] = await WSClient.open(self.url)
            stage[n] = "ping"
            assert (await client.request({"type": "ping"}))["type"] == "pong"
            client.close()
            return
        user, channel = USERS[n % len(USERS)], CHANNELS[(n // len(USERS)) % len(CHANNELS)]
        client = self.clients[n] = await WSClient.open(self.url, make_token(user))
        stage[n] = "authenticating"
        frame = await client.expect("authenticated")
        assert frame["user"]["userId"] == user, frame
        stage[n] = "subscribing"
        await client.subscribe(channel)
        stage[n] = "publishing"
        payload = {"n": n, "t": time.monotonic()}
        publish = {"type": "broadcast", "channel": channel, "event": "soak", "payload": payload}
        if mode == "unacked":
            await client.send({**publish, "ref": f"x{n}"})
            abort(client.ws)
            return
        reply = await client.request(publish)
        assert reply["type"] == "ack", reply
        self.acked.append((channel, reply["id"], n))
        self.acked_up_to = max(self.acked_up_to, payload["t"])
        stage[n] = "leaving"
        if mode == "clean":
            client.close()
        elif mode == "unsubscribe":
            reply = await client.request({"type": "unsubscribe", "channel": channel})
            assert reply["type"] == "unsubscribed", reply
            client.close()
        elif mode == "abrupt":
            abort(client.ws)
        else:
            abort(client.ws, reset=True)


def abort(ws: WebSocketClientConnection, reset: bool = False) -> None:
    """Drop the connection without a close frame; with `reset`, with a TCP RST."""
    stream = ws.protocol.stream  # type: ignore[union-attr]
    if reset:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.close()


async def churn_for(churn: Churn, seconds: float, connections: int | None = None) -> float:
    """Churn for `seconds`, or (a warm-up) for `connections` more connections."""
    started = time.monotonic()
    until = None if connections is None else churn.churned + connections
    await asyncio.gather(*(churn.worker(started + seconds, until) for _ in range(CONCURRENCY)))
    return time.monotonic() - started


async def exact_presence(watchers: list[Watcher]) -> dict[str, list[str]]:
    """Ask until every channel lists only the watchers (leaves of abrupt closes may lag)."""
    for watcher in watchers:  # the reply comes after all it was sent before: read it all
        await watcher.request({"type": "ping"}, timeout=120)
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        seen = {}
        for channel in CHANNELS:
            reply = await watchers[0].request({"type": "presence", "channel": channel}, 60)
            seen[channel] = sorted(m["userId"] for m in reply["members"])
        if all(users == sorted(WATCHERS) for users in seen.values()):
            return seen
        if time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.2)


async def test_soak_churn_loses_nothing_and_leaks_nothing(standalone: Any) -> None:
    server = standalone()
    pid = server.process.pid
    url = server.url
    rss_start, fds_start = rss_kb(pid), fd_count(pid)
    watchers = [await Watcher.open(url, user) for user in WATCHERS]
    pingers = [asyncio.ensure_future(w.keep_alive()) for w in watchers]
    churn = Churn(url, watchers)
    try:
        await churn_for(churn, 120, connections=WARM_UP_CONNECTIONS)
        await exact_presence(watchers)
        await asyncio.sleep(1)
        rss_before, fds_before = rss_kb(pid), fd_count(pid)
        warm = churn.churned

        peak = [rss_before]
        slowest = [0.0, 0.0]  # a watcher's ping round trip, and when

        async def sample() -> None:
            while True:
                await asyncio.sleep(0.5)
                peak.append(rss_kb(pid))
                sent = time.monotonic()
                await watchers[0].request({"type": "ping"}, timeout=60)
                took = time.monotonic() - sent
                if took > slowest[0]:
                    slowest[:] = [took, sent - churn.started]

        sampler = asyncio.ensure_future(sample())
        seconds = await churn_for(churn, SOAK_SECONDS)
        sampler.cancel()
        presence = await exact_presence(watchers)
        await asyncio.sleep(2)
        rss_after, fds_after = rss_kb(pid), fd_count(pid)

        # Nobody's connection count leaked: every churning user still gets in.
        for user in USERS:
            client = await WSClient.open(url, make_token(user))
            assert (await client.expect("authenticated"))["user"]["userId"] == user
            client.close()
    finally:
        for task in pingers:
            task.cancel()
        for watcher in watchers:
            watcher.close()

    churned = churn.churned - warm
    acked = len(churn.acked)
    print(
        f"\nsoak: {churned} connections churned in {seconds:.1f} s "
        f"({churned / seconds:.0f}/s, {CONCURRENCY} at a time) after {warm} to warm up; "
        f"{acked} messages acked; modes {dict(churn.modes)}; churners held back "
        f"{churn.held_back:.1f} s for the watchers to catch up\n"
        f"      server RSS {rss_start / 1024:.1f} MB at start, {rss_before / 1024:.1f} MB after "
        f"warm-up, {max(peak) / 1024:.1f} MB at peak, {rss_after / 1024:.1f} MB after; "
        f"open fds {fds_start} at start, {fds_before} after warm-up, {fds_after} after; "
        f"slowest ping {slowest[0] * 1000:.0f} ms (at {slowest[1]:.0f} s)"
    )

    assert not churn.failures, f"{len(churn.failures)} churns failed: {churn.failures[:10]}"
    output = server.output()
    assert "Traceback" not in output, output[-5000:]
    for watcher in watchers:
        assert watcher.closed in (None, 1000, -1) and not watcher.errors, (
            watcher.user,
            watcher.closed,
            watcher.errors[:5],
        )

    # Every acked message reached every watcher, each once, in one order for all.
    order = {c: [m["id"] for m in watchers[0].messages[c]] for c in CHANNELS}
    for watcher in watchers:
        for channel in CHANNELS:
            ids = [m["id"] for m in watcher.messages[channel]]
            assert len(ids) == len(set(ids)), f"{watcher.user} got duplicates on {channel}"
            assert ids == order[channel], f"{watcher.user} saw {channel} in another order"
        got = {(c, m["id"]): m["payload"]["n"] for c in CHANNELS for m in watcher.messages[c]}
        lost = [(c, i, n) for c, i, n in churn.acked if got.get((c, i)) != n]
        assert not lost, f"{watcher.user} lost {len(lost)} acked messages: {lost[:10]}"

    # Joins and leaves of each churning user alternate, and end with a leave.
    for watcher in watchers:
        for channel in CHANNELS:
            per_user: dict[str, list[str]] = defaultdict(list)
            for event, user in watcher.presence[channel]:
                per_user[user].append(event)
            for user in USERS:
                events = per_user.get(user, [])
                expected = ["user:joined", "user:left"] * (len(events) // 2)
                assert events == expected, (watcher.user, channel, user, events[-6:])
    assert presence == {c: sorted(WATCHERS) for c in CHANNELS}, presence

    assert rss_after < rss_before + RSS_SLACK_KB, (
        f"RSS grew from {rss_before} kB to {rss_after} kB over the churn"
    )
    assert abs(fds_after - fds_before) <= FD_SLACK, (
        f"open fds went from {fds_before} to {fds_after}"
    )
