"""The pieces of the soaks (tests/e2e/test_soak.py on one server, test_soak_redis.py on
two nodes of one Redis): churners in modes, watchers that record everything, and the
checks of what the watchers recorded."""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import orjson
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from .tokens import make_token
from .wsclient import WSClient

MODES = ("clean", "abrupt", "unsubscribe", "reset", "unacked", "anonymous")
CHANNELS = [f"presence-soak-{n}" for n in range(4)]
# Enough users that their rate budgets (rate_limit frames/s each, shared by all of a
# user's connections) hold at full churn; few enough that each churns hundreds of
# connections, so a leaked per-user connection count would reach its cap.
USERS = [f"churner-{n}" for n in range(32)]
MAX_WATCHER_LAG = 2.0
CLOSED = (WebSocketClosedError, StreamClosedError, ConnectionError)


class Watcher:
    """A long-lived subscriber of every channel that records everything it is sent.

    Its connection may be lost (its node killed): `reopen` connects again, elsewhere,
    and subscribes to each channel with `since`, the id of the last message it read
    there; `recovered` keeps what each answer said, and `resumed_at` where in
    `messages` the new connection's messages start."""

    def __init__(self, user: str, ws: WebSocketClientConnection, channels: list[str]) -> None:
        self.user = user
        self.channels = channels
        self.messages: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.presence: dict[str, list[tuple[str, str]]] = defaultdict(list)  # (event, user)
        self.presence_at: dict[str, list[float]] = defaultdict(list)  # when each arrived
        self.errors: list[dict[str, Any]] = []
        self.closed: int | None = None
        self.lost: list[int] = []  # close codes of connections lost before `reopen`
        self.recovered: dict[str, bool] = {}
        self.resumed_at: dict[str, int] = {}
        self.read_up_to = 0.0  # publish time (`payload.t`) of the newest message read
        self.changed = asyncio.Event()  # set at every frame read, and at the close
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = itertools.count(1)
        self._start(ws)

    def _start(self, ws: WebSocketClientConnection) -> None:
        self.ws = ws
        self.closed = None
        self._reader = asyncio.ensure_future(self._read(ws))

    @classmethod
    async def open(cls, url: str, user: str, channels: list[str] = CHANNELS) -> Watcher:
        watcher = cls(user, await cls._connect(url, user), channels)
        for channel in channels:
            reply = await watcher.request({"type": "subscribe", "channel": channel})
            assert reply["type"] == "subscribed", reply
        return watcher

    @staticmethod
    async def _connect(url: str, user: str) -> WebSocketClientConnection:
        return await asyncio.wait_for(websocket_connect(f"{url}?token={make_token(user)}"), 30)

    async def reopen(self, url: str) -> None:
        """Connect again to `url` and subscribe to every channel from where it was."""
        assert self.closed is not None, "reopen a watcher whose connection was lost"
        self.lost.append(self.closed)
        self._start(await self._connect(url, self.user))
        for channel in self.channels:
            seen = self.messages[channel]
            self.resumed_at[channel] = len(seen)
            since = seen[-1]["id"] if seen else ""
            frame = {"type": "subscribe", "channel": channel, "since": since}
            reply = await self.request(frame, timeout=60)
            assert reply["type"] == "subscribed", reply
            self.recovered[channel] = reply["recovered"]

    async def _read(self, ws: WebSocketClientConnection) -> None:
        while (data := await ws.read_message()) is not None:
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
                self.presence_at[frame["channel"]].append(time.monotonic())
            elif type_ == "error":
                self.errors.append(frame)
            self.changed.set()
        self.closed = ws.close_code or -1
        for future in self._replies.values():  # never to be answered
            if not future.done():
                future.set_exception(ConnectionError(f"closed ({self.closed})"))
        self._replies.clear()
        self.changed.set()

    async def request(self, frame: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        ref = f"{self.user}-{next(self._refs)}"
        future = self._replies[ref] = asyncio.get_running_loop().create_future()
        await self.ws.write_message(orjson.dumps({**frame, "ref": ref}).decode())
        return await asyncio.wait_for(future, timeout)

    async def until(self, check: Callable[[], Any], timeout: float, what: str) -> None:
        """Wait until `check()` holds of what this watcher recorded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            self.changed.clear()
            left = deadline - loop.time()
            assert left > 0, f"{self.user}: not within {timeout:.0f} s: {what}"
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def keep_alive(self, every: float = 5.0) -> None:
        """Within any heartbeat_timeout, however long the soak; through a reopen."""
        while True:
            await asyncio.sleep(every)
            if self.closed is None:
                try:
                    await self.request({"type": "ping"}, timeout=60)
                except CLOSED:
                    pass  # lost: the test reopens it, or fails on `closed`

    def close(self) -> None:
        self._reader.cancel()
        self.ws.close()


class Churn:
    """Churners in `MODES`, each on `url_for(n)`; `resume` is told of each that failed,
    and returns whether it made up for it (else the failure is reported)."""

    def __init__(self, url: str, watchers: list[Watcher], concurrency: int) -> None:
        self.url = url
        self.watchers = watchers
        self.concurrency = concurrency
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

    def url_for(self, n: int) -> str:
        return self.url

    async def resume(self, n: int, exc: Exception) -> bool:
        return False

    async def worker(self, deadline: float, until: int | None = None) -> None:
        """Churn until `deadline`, or until `until` connections have churned in all."""
        while time.monotonic() < deadline and (until is None or self.churned < until):
            if self.lagging():
                await asyncio.sleep(0.02)
                self.held_back += 0.02 / self.concurrency
                continue
            n = next(self.numbers)
            try:
                await asyncio.wait_for(self.once(n), 20)
            except Exception as exc:  # every failure is reported at the end
                if not await self.resume(n, exc):
                    self.failed(n, exc)
            self.stage.pop(n, None)
            self.clients.pop(n, None)
            self.churned += 1

    def failed(self, n: int, exc: BaseException) -> None:
        at = time.monotonic() - self.started
        client = self.clients.get(n)
        unread = client.backlog[-3:] if client is not None else []
        self.failures.append(
            f"churn {n} ({self.modes_of(n)}) at {at:.1f} s, {self.stage.get(n)}: "
            f"{exc!r}; other frames it got: {unread}"
        )
        if client is not None and client.ws.protocol is not None:
            abort(client.ws)

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

    @staticmethod
    def place(n: int) -> tuple[str, str]:
        """The user and the channel of churner `n`."""
        return USERS[n % len(USERS)], CHANNELS[(n // len(USERS)) % len(CHANNELS)]

    async def once(self, n: int) -> None:
        mode = self.modes_of(n)
        self.modes[mode] += 1
        stage = self.stage
        stage[n] = "connecting"
        if mode == "anonymous":  # never authenticates: a ping, then gone
            await self.anonymous(n)
            return
        user, channel = self.place(n)
        client = self.clients[n] = await WSClient.open(self.url_for(n), make_token(user))
        stage[n] = "authenticating"
        frame = await client.expect("authenticated")
        assert frame["user"]["userId"] == user, frame
        stage[n] = "subscribing"
        await client.subscribe(channel)
        stage[n] = "publishing"
        if mode == "unacked":
            payload = {"n": n, "t": time.monotonic()}
            publish = {"type": "broadcast", "channel": channel, "event": "soak"}
            await client.send({**publish, "payload": payload, "ref": f"x{n}"})
            abort(client.ws)
            return
        await self.publish(n, client, channel)
        stage[n] = "leaving"
        await self.leave(n, client, channel)

    async def anonymous(self, n: int) -> None:
        client = self.clients[n] = await WSClient.open(self.url_for(n))
        self.stage[n] = "ping"
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        client.close()

    async def publish(self, n: int, client: WSClient, channel: str) -> None:
        """Publish with a `ref` and wait for the `ack`."""
        payload = {"n": n, "t": time.monotonic()}
        publish = {"type": "broadcast", "channel": channel, "event": "soak", "payload": payload}
        reply = await client.request(publish)
        assert reply["type"] == "ack", reply
        self.acked.append((channel, reply["id"], n))
        self.acked_up_to = max(self.acked_up_to, payload["t"])

    async def leave(self, n: int, client: WSClient, channel: str) -> None:
        mode = self.modes_of(n)
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
    """Churn for `seconds`, or until `connections` more connections churned."""
    started = time.monotonic()
    until = None if connections is None else churn.churned + connections
    workers = (churn.worker(started + seconds, until) for _ in range(churn.concurrency))
    await asyncio.gather(*workers)
    return time.monotonic() - started


def check_messages(
    watchers: list[Watcher], acked: list[tuple[str, str, int]], channels: list[str] = CHANNELS
) -> None:
    """Every acked message reached every watcher, each once, in one order for all.

    The first watcher never lost its connection: its order is the channel's. One
    that did and came back `recovered: true` on a channel has exactly that order
    there too; one told `recovered: false` has a part of it up to its loss and a
    part to the end after its return."""
    order = {c: [m["id"] for m in watchers[0].messages[c]] for c in channels}
    assert not watchers[0].lost, f"{watchers[0].user} is the reference; it must not move"
    for watcher in watchers:
        for channel in channels:
            ids = [m["id"] for m in watcher.messages[channel]]
            assert len(ids) == len(set(ids)), f"{watcher.user} got duplicates on {channel}"
            if watcher.recovered.get(channel, True):
                assert ids == order[channel], (
                    f"{watcher.user} saw {channel} in another order, or with a gap: "
                    f"{gap(ids, order[channel])}"
                )
            else:
                k = watcher.resumed_at[channel]
                after = ids[k:]
                assert ids[:k] == order[channel][:k], f"{watcher.user}: {channel} before"
                assert not after or after == order[channel][-len(after) :], (
                    f"{watcher.user}: {channel} after its return, {gap(after, order[channel])}"
                )
    got = {(c, m["id"]): m["payload"]["n"] for c in channels for m in watchers[0].messages[c]}
    lost = [(c, i, n) for c, i, n in acked if got.get((c, i)) != n]
    assert not lost, f"{len(lost)} acked messages lost: {lost[:10]}"


def gap(ids: list[str], order: list[str]) -> str:
    """Where `ids` first parts from `order`, for a failure's message."""
    for i, (mine, theirs) in enumerate(zip(ids, order)):  # noqa: B905
        if mine != theirs:
            return f"at {i}: {mine} where {theirs}, around {order[max(0, i - 2) : i + 3]}"
    return f"{len(ids)} ids where {len(order)}"


def check_alternation(watcher: Watcher, users: list[str], channels: list[str] = CHANNELS) -> None:
    """Joins and leaves of each user alternate on every channel, and end with a leave."""
    for channel in channels:
        per_user: dict[str, list[str]] = defaultdict(list)
        for event, user in watcher.presence[channel]:
            per_user[user].append(event)
        for user in users:
            events = per_user.get(user, [])
            expected = ["user:joined", "user:left"] * (len(events) // 2)
            assert events == expected, (watcher.user, channel, user, events[-6:])


def all_left(watcher: Watcher, users: list[str], channels: list[str] = CHANNELS) -> bool:
    """Whether `watcher` saw each of `users` leave each channel as often as join it."""
    for channel in channels:
        count = Counter(watcher.presence[channel])
        if any(count["user:joined", u] != count["user:left", u] for u in users):
            return False
    return True
