"""Loads shared by bench/compare.py and bench/peers.py: CPU meters, the counting
subscriber and the mixed load (presence channels at a fixed delivery rate).

`mixed()` speaks a *dialect*: how to connect, subscribe and publish. `NYO` is
nyo-realtime's frames (token in the URL, `subscribe`, `broadcast` with
`echo: false` and a ref), which node_ws_server.js, websockets_server.py and
picows_server.py speak too; peers.py adds the socket.io one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from connections import make_token
from rawws import RawSocket

CLK_TCK = os.sysconf("SC_CLK_TCK")
CONCURRENT = 100  # handshakes in flight while connecting
MIX_CHANNELS, MIX_MEMBERS, MIX_PUBLISHERS = 100, 20, 50
QUIET = 0.15  # machine busy below this share of all cores counts as quiet


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its threads included, not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + steal) / CLK_TCK


def wait_quiet(budget: float) -> float:
    """Wait up to `budget` s for a 1 s window in which the machine is nearly idle."""
    begin = time.monotonic()
    while time.monotonic() - begin < budget:
        busy0 = machine_busy_seconds()
        time.sleep(1)
        if machine_busy_seconds() - busy0 < QUIET * (os.cpu_count() or 1):
            break
    return time.monotonic() - begin


# -- the clients -------------------------------------------------------------------


class Sub(RawSocket):
    """A subscriber that counts message frames without parsing them (fan-out), or
    parses them for the send time in the payload (`latencies` is a list)."""

    __slots__ = ("count", "latencies")

    def __init__(self, on_frame: Any = None) -> None:
        super().__init__(on_frame)
        self.count = 0
        self.latencies: list[float] | None = None

    def count_message(self, payload: bytes) -> None:
        self.count += 1
        if self.latencies is not None:
            sent = payload.find(b'"t":')
            if sent >= 0:
                end = sent + 4
                while payload[end : end + 1] not in (b",", b"}"):
                    end += 1
                self.latencies.append(time.perf_counter() - float(payload[sent + 4 : end]))

    def on_text(self, payload: bytes) -> None:
        if self.hello.done() and not self.waiting and b'"type":"message"' in payload:
            self.count_message(payload)
            return
        super().on_text(payload)


async def connect(url: str, user: str, channels: list[str]) -> Sub:
    sock = await Sub.open(f"{url}?token={make_token(user)}")
    hello = await asyncio.wait_for(sock.hello, 30)
    assert hello.get("type") == "authenticated", hello
    for channel in channels:
        reply = await sock.request({"type": "subscribe", "channel": channel})
        assert reply["type"] == "subscribed", reply
    return sock


_refs = 0


def publish(
    sock: RawSocket, channel: str, payload: Any, waiter: bool
) -> asyncio.Future[Any] | None:
    """A broadcast; with `waiter`, a bare future for its ack (no task or timer)."""
    global _refs
    _refs += 1
    ref = f"p{_refs}"
    future = None
    if waiter:
        future = asyncio.get_running_loop().create_future()
        sock.waiting[ref] = future
    sock.send(
        {"type": "broadcast", "channel": channel, "event": "t", "payload": payload,
         "echo": False, "ref": ref}
    )  # fmt: skip
    return future


class Dialect(Protocol):
    """How a load talks to a server: `connect` returns a subscribed counting `Sub`."""

    async def connect(self, url: str, user: str, channels: list[str]) -> Sub: ...

    def publish(
        self, sock: Sub, channel: str, payload: Any, waiter: bool
    ) -> asyncio.Future[Any] | None: ...


class NyoDialect:
    """nyo-realtime's frames (and the peers that speak them)."""

    connect = staticmethod(connect)
    publish = staticmethod(publish)


NYO = NyoDialect()


async def connect_many(
    plan: list[tuple[str, str, list[str]]],
    connect_one: Callable[[str, str, list[str]], Any] = connect,
) -> list[Sub]:
    gate = asyncio.Semaphore(CONCURRENT)

    async def one(url: str, user: str, channels: list[str]) -> Sub:
        async with gate:
            return await connect_one(url, user, channels)  # type: ignore[no-any-return]

    return list(await asyncio.gather(*(one(*p) for p in plan)))


class HasPid(Protocol):
    @property
    def pid(self) -> int: ...


class HasPids(Protocol):
    @property
    def pids(self) -> list[int]: ...


class Meter:
    """Server, redis, own and machine CPU over a phase. `redis` is one redis-server or
    several (nodes.RedisClusterServers: every shard's); `server_each` and `redis_each`
    keep each process's share (CPU seconds), in the order given."""

    def __init__(self, servers: Sequence[HasPid], redis: HasPids | None) -> None:
        self.pids = [s.pid for s in servers]
        self.redis_pids = list(redis.pids) if redis else []
        self.redis = bool(self.redis_pids)

    def __enter__(self) -> Meter:
        self.t0 = time.monotonic()
        self.busy0 = machine_busy_seconds()
        self.srv0 = [cpu_seconds(p) for p in self.pids]
        self.redis0 = [cpu_seconds(p) for p in self.redis_pids]
        self.self0 = cpu_seconds(os.getpid())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.t0
        self.server_each = [cpu_seconds(p) - c for p, c in zip(self.pids, self.srv0, strict=True)]
        self.redis_each = [
            cpu_seconds(p) - c for p, c in zip(self.redis_pids, self.redis0, strict=True)
        ]
        self.server = sum(self.server_each)
        self.redis_cpu = sum(self.redis_each)
        self.client = cpu_seconds(os.getpid()) - self.self0
        busy = machine_busy_seconds() - self.busy0
        self.other = max(0.0, busy - self.server - self.redis_cpu - self.client)

    def result(self, deliveries: int) -> dict[str, Any]:
        per = max(deliveries, 1) / 1e6
        return {
            "us": self.server / per,
            "redis_us": self.redis_cpu / per if self.redis else None,
            "deliv_s": deliveries / self.wall,
            "server_pct": self.server / self.wall * 100,
            "client_pct": self.client / self.wall * 100,
            "other_pct": self.other / self.wall * 100,
        }


async def wait_for_count(socks: list[Sub], expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (got := sum(s.count for s in socks)) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return got


# -- the mixed load ----------------------------------------------------------------


async def mixed(
    urls: list[str], meter: Meter, args: argparse.Namespace, dialect: Dialect = NYO
) -> dict[str, Any]:
    """100 presence channels x 20 subscribers, 50 publishers (2 channels each, not
    receiving their own), paced at `args.rate` deliveries/s for `args.seconds`
    after 1 s of warm-up; payloads of `args.size` bytes carry the send time."""
    channels = [f"presence-mix-{c}" for c in range(MIX_CHANNELS)]
    plan = [
        (urls[(c * MIX_MEMBERS + j) % len(urls)], f"m{c}-{j}", [channels[c]])
        for c in range(MIX_CHANNELS)
        for j in range(MIX_MEMBERS)
    ]
    subs = await connect_many(plan, dialect.connect)
    per_pub = MIX_CHANNELS // MIX_PUBLISHERS
    pubs = await connect_many(
        [(urls[0], f"p{i}", channels[i * per_pub : (i + 1) * per_pub])
         for i in range(MIX_PUBLISHERS)],
        dialect.connect,
    )  # fmt: skip
    targets = [(pubs[c // per_pub], channels[c]) for c in range(MIX_CHANNELS)]
    pad = "x" * args.size
    msg_rate = args.rate / MIX_MEMBERS

    async def paced(seconds: float) -> int:
        start, sent = time.perf_counter(), 0
        while (now := time.perf_counter()) - start < seconds:
            while sent < int((now - start) * msg_rate) + 1:
                sock, channel = targets[sent % MIX_CHANNELS]
                dialect.publish(sock, channel, {"t": time.perf_counter(), "d": pad}, False)
                sent += 1
            await asyncio.sleep(0.002)
        return sent

    try:
        await asyncio.sleep(1.0)  # the presence joins settle
        sent = await paced(1.0)  # warm-up
        await wait_for_count(subs, sent * MIX_MEMBERS, 30)
        for s in subs:
            s.count = 0
            s.latencies = []
        gc.collect()
        gc.freeze()
        gc.disable()
        with meter:
            sent = await paced(args.seconds)
            expected = sent * MIX_MEMBERS
            got = await wait_for_count(subs, expected, 60)
        gc.enable()
        result = meter.result(got)
        result["lost"] = expected - got
        ms = sorted(x * 1000 for s in subs for x in s.latencies or ())
        result["p50"] = statistics.median(ms) if ms else float("nan")
        result["p99"] = ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan")
        return result
    finally:
        gc.enable()
        gc.unfreeze()
        for s in [*subs, *pubs]:
            s.abort()
