"""Unit costs for docs/scaling.md: node and Redis CPU per connection, per join, per
leave, per publish and per delivery received through pub/sub, on 1 shard and on 3.

    .venv/bin/python bench/costs.py                    # 3 nodes, 1 shard and 3 shards; ~70 s
    .venv/bin/python bench/costs.py --rounds 2         # the two setups alternating, twice
    .venv/bin/python bench/costs.py --setups memory    # one node on the embedded engine (joins only)

Needs `redis-server` and `redis-cli` on PATH. Run by hand; not part of the tests.

Setups (`--setups`, comma-separated, in this order within each round):

* `memory`: one `nyo-realtime serve` on the embedded engine (SQLite, temp --db).
* `redis`: three `serve --redis redis://...` on one redis-server (nodes.RedisServer).
* `cluster`: the same three nodes on `redis+cluster://` of three masters
  (nodes.RedisClusterServers; sharded pub/sub); Redis CPU is the three servers' sum, and
  the busiest shard's share is printed too.

Phases, each measured on its own with loads.Meter (utime+stime from /proc/<pid>/stat of
every node and every redis-server; 'other' = the rest of the machine):

* `connect`: --users (1500) WebSockets, user i on node i % nodes, each a different user
  (a JWT in the URL), up to 100 handshakes in flight: per connection (TCP, upgrade, JWT,
  `authenticated`). `idle 3 s`: the same connections doing nothing for 3 s (heartbeat
  timers, presence leases, Redis's own cron): read its CPU %, not its µs/unit.
* `join 1`: every user subscribes to a presence channel of its own (nobody else there):
  the cost of a join without fan-out, the channel's creation included (its record, the
  quota). `leave 1`: every one unsubscribes. `join 1 again`: the same joins into the
  channels that now exist (then unsubscribed, untimed).
* `join M`: the same users into presence channels of --members (20) members, members
  spread over the nodes; a join into a channel of k members sends k-1 `user:joined` and a
  `subscribed` listing k members, so these joins also cost M(M-1)/2 deliveries per channel;
  the table gives the frames counted (joins run concurrently, so a member whose own
  join is in flight may get both a `user:joined` and the joiner in its list: between
  M(M-1)/2 and M(M-1) of them).
* `publish k=1` / `publish k=3`: --messages (8000) publishes of ~100 B, at most 32
  unacked, round-robin over --channels (60) public channels, from one publisher on node 1
  (subscribed, `echo: false`). k=1: each channel's only subscriber is on node 1, so each
  publish reaches one node through pub/sub; k=3: one subscriber on each node, three.
  Redis CPU per publish at k = 1 and k = 3 gives the two unit costs: per pub/sub
  delivery received = (R3 - R1) / 2, per publish (the Lua step: sequence, XADD, trim) =
  R1 - that. Nodes 2-3 at k=3 give the node CPU per pub/sub message received (one
  WebSocket delivery included).

CPU ticks are 10 ms: a phase with under ~20 ticks of Redis CPU is coarse, and the table
shows the ticks. A phase waits for its replies and frames, then 0.5 s for background
work (a leave's presence is ended in the background) before the meter stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import Server  # noqa: E402 - bench/ is not a package
from loads import (  # noqa: E402
    CONCURRENT,
    Meter,
    Sub,
    connect,
    connect_many,
    publish,
    wait_quiet,
)
from nodes import RedisClusterServers, RedisServer  # noqa: E402
from rawws import raise_open_file_limit  # noqa: E402

WINDOW = 32  # unacked publishes
SETTLE = 0.5  # s of background work allowed after the last reply of a phase
IDLE = 3.0  # s of the idle phase
PAD = "x" * 80
SETUPS = {"memory": "1 node, memory", "redis": "3 nodes, 1 shard", "cluster": "3 nodes, 3 shards"}


def frames(socks: list[Sub]) -> int:
    return sum(s.received for s in socks)


async def wait_frames(socks: list[Sub], expected: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while (got := frames(socks)) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return got


async def requests(socks: list[Sub], frames_for: list[dict[str, Any]], want: str) -> None:
    """One request per socket, up to CONCURRENT in flight; each must answer `want`."""
    gate = asyncio.Semaphore(CONCURRENT)

    async def one(sock: Sub, frame: dict[str, Any]) -> None:
        async with gate:
            reply = await sock.request(frame)
            assert reply["type"] == want, reply

    await asyncio.gather(*(one(s, f) for s, f in zip(socks, frames_for, strict=True)))


class Phase:
    """A Meter around one phase, and its row: CPU per unit of `units`."""

    def __init__(self, meter: Meter, name: str, units: int) -> None:
        self.meter, self.name, self.units = meter, name, units

    async def __aenter__(self) -> Phase:
        self.meter.__enter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(SETTLE)
        self.meter.__exit__(*exc)

    def row(self, frames_sent: int | None = None) -> dict[str, Any]:
        m, per = self.meter, self.units / 1e6
        return {
            "phase": self.name,
            "units": self.units,
            "frames": frames_sent,
            "node_us": m.server / per,
            "node_each_us": [c / per for c in m.server_each],
            "redis_us": m.redis_cpu / per if m.redis else None,
            "redis_max_us": max(m.redis_each) / per if m.redis else None,
            "redis_ticks": round(m.redis_cpu * 100),
            "node_ticks": round(m.server * 100),
            "rate": self.units / m.wall,
            "node_pct": m.server / m.wall * 100,
            "redis_pct": m.redis_cpu / m.wall * 100 if m.redis else None,
            "other_pct": m.other / m.wall * 100,
        }


async def joins(urls: list[str], meter: Meter, args: argparse.Namespace) -> list[dict[str, Any]]:
    n, m = args.users, args.members
    rows = []
    meter_phase = Phase(meter, "connect", n)
    async with meter_phase:
        socks = await connect_many([(urls[i % len(urls)], f"j{i}", []) for i in range(n)])
    rows.append(meter_phase.row())
    try:
        async with Phase(meter, "idle 3 s", n) as phase:  # heartbeats, leases, Redis's cron
            await asyncio.sleep(IDLE - SETTLE)
        rows.append(phase.row())
        alone = [{"type": "subscribe", "channel": f"presence-alone-{i}"} for i in range(n)]
        before = frames(socks)
        async with Phase(meter, "join 1", n) as phase:
            await requests(socks, alone, "subscribed")
        rows.append(phase.row(frames(socks) - before))
        before = frames(socks)
        async with Phase(meter, "leave 1", n) as phase:
            await requests(
                socks, [{**f, "type": "unsubscribe"} for f in alone], "unsubscribed"
            )  # fmt: skip
        rows.append(phase.row(frames(socks) - before))
        before = frames(socks)
        async with Phase(meter, "join 1 again", n) as phase:  # the channels exist now
            await requests(socks, alone, "subscribed")
        rows.append(phase.row(frames(socks) - before))
        await requests(socks, [{**f, "type": "unsubscribe"} for f in alone], "unsubscribed")
        # Channel c has users c*m .. c*m+m-1: on different nodes (user i is on node i % 3).
        grouped = [{"type": "subscribe", "channel": f"presence-group-{i // m}"} for i in range(n)]
        channels = n // m
        joined = channels * m * (m - 1) // 2  # `user:joined` frames, the k-th joiner's k-1
        before = frames(socks)
        async with Phase(meter, f"join {m}", n) as phase:
            await requests(socks, grouped, "subscribed")
            await wait_frames(socks, before + n + joined)
        rows.append(phase.row(frames(socks) - before))
    finally:
        for s in socks:
            s.abort()
    return rows


async def publishes(
    urls: list[str], meter: Meter, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    c = args.channels
    for k in (1, 3):
        if k > len(urls):
            continue
        names = [f"pub{k}-{i}" for i in range(c)]
        subs = await connect_many(
            [(urls[j], f"s{k}-{i}-{j}", [names[i]]) for i in range(c) for j in range(k)]
        )  # fmt: skip
        publisher = await connect(urls[0], f"publisher-{k}", names)
        payload = {"d": PAD}
        try:
            for i in range(2 * c):  # warm-up: every channel's first publish (its stream)
                await publish(publisher, names[i % c], payload, True)  # type: ignore[misc]
            await wait_frames(subs, 2 * c * k)
            window = asyncio.Semaphore(WINDOW)
            pending = []
            before = frames(subs)
            async with Phase(meter, f"publish k={k}", args.messages) as phase:
                for i in range(args.messages):
                    await window.acquire()
                    future = publish(publisher, names[i % c], payload, True)
                    assert future is not None
                    future.add_done_callback(lambda _, w=window: w.release())
                    pending.append(future)
                await asyncio.wait_for(asyncio.gather(*pending), 120)
                await wait_frames(subs, before + args.messages * k)
            row = phase.row(frames(subs) - before)
            row["lost"] = max(0, before + args.messages * k - frames(subs))
            rows.append(row)
        finally:
            for s in [*subs, publisher]:
                s.abort()
    return rows


def run(setup: str, tmp: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    redis: RedisServer | RedisClusterServers | None = None
    if setup == "redis":
        redis = RedisServer(tmp)
    elif setup == "cluster":
        redis = RedisClusterServers(tmp)
    servers: list[Server] = []
    try:
        extra: tuple[str, ...] = ("--Realtime.max_channels_per_user=0",)
        if redis:
            extra += ("--redis", redis.url)
        for _ in range(3 if redis else 1):
            servers.append(Server("ours", tmp, extra_args=extra))
        meter = Meter(servers, redis)
        urls = [s.url for s in servers]

        async def both() -> list[dict[str, Any]]:
            rows = await joins(urls, meter, args)
            if redis:
                rows += await publishes(urls, meter, args)
            return rows

        return asyncio.run(both())
    finally:
        for s in servers:
            s.stop()
        if redis:
            redis.stop()


def fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def report(results: list[tuple[str, int, list[dict[str, Any]]]], args: argparse.Namespace) -> None:
    print()
    print(f"`{' '.join(['.venv/bin/python', 'bench/costs.py', *sys.argv[1:]])}` — "
          f"{os.cpu_count()} cores, python {sys.version.split()[0]}, {args.users} users, "
          f"join M = {args.members}, {args.messages} publishes over {args.channels} channels")  # fmt: skip
    print()
    print("| setup | phase | units | frames out | node CPU µs/unit | per node µs/unit "
          "| redis CPU µs/unit | busiest shard µs/unit | node / redis ticks | units/s "
          "| node / redis CPU % | other CPU % |")  # fmt: skip
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for setup, round_, rows in results:
        for r in rows:
            each = " / ".join(f"{x:.0f}" for x in r["node_each_us"])
            shard = fmt(r["redis_max_us"]) if setup == "cluster" else "-"
            print(f"| {SETUPS[setup]} #{round_} | {r['phase']} | {r['units']} "
                  f"| {fmt(r['frames'])} | {r['node_us']:.0f} | {each} | {fmt(r['redis_us'], 1)} "
                  f"| {shard} | {r['node_ticks']} / {r['redis_ticks']} | {r['rate']:.0f} "
                  f"| {r['node_pct']:.0f} / {fmt(r['redis_pct'])} | {r['other_pct']:.0f} |")  # fmt: skip
    if any(r["phase"] == "publish k=3" for _, _, rows in results for r in rows):
        print()
        print(
            "| setup | redis µs per publish (R1 − per-receipt) | redis µs per pub/sub receipt "
            "((R3 − R1) / 2) | node 1 µs per publish (k=1) | nodes 2-3 µs per receipt (k=3) |"
        )
        print("|---|--:|--:|--:|--:|")
        for setup, round_, rows in results:
            by = {r["phase"]: r for r in rows}
            if "publish k=1" not in by or "publish k=3" not in by:
                continue
            r1, r3 = by["publish k=1"], by["publish k=3"]
            receipt = (r3["redis_us"] - r1["redis_us"]) / 2
            per_pub = r1["redis_us"] - receipt
            # k=3: nodes 2 and 3 each received every publish once (one WebSocket delivery each).
            remote = (r3["node_each_us"][1] + r3["node_each_us"][2]) / 2
            print(f"| {SETUPS[setup]} #{round_} | {per_pub:.1f} | {receipt:.1f} "
                  f"| {r1['node_each_us'][0]:.0f} | {remote:.0f} |")  # fmt: skip
    print()
    print("µs/unit = CPU seconds (utime+stime) in the phase / units (connections, joins, leaves")
    print("or publishes; the idle row: per connection over 3 s); node = all nodes summed,")
    print("'per node' = node 1 / 2 / 3; ticks = 10 ms of CPU (under ~20 ticks a figure is coarse);")
    print("'frames out' = frames the clients received in the phase, replies included; 'other' =")
    print("the rest of the machine, % of one core (should be near 0).")
    lost = [r for _, _, rows in results for r in rows if r.get("lost")]
    if lost:
        print(f"WARNING: {len(lost)} publish phase(s) lost deliveries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", default="redis,cluster", help="memory, redis, cluster")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--users", type=int, default=1500, help="connections (default 1500)")
    parser.add_argument("--members", type=int, default=20, help="members per channel, join M")
    parser.add_argument("--messages", type=int, default=8000, help="publishes per phase")
    parser.add_argument("--channels", type=int, default=60, help="channels of the publishes")
    parser.add_argument("--wait-quiet", type=float, default=10.0, metavar="S",
                        help="before each setup, wait up to S s for an idle machine")  # fmt: skip
    args = parser.parse_args()
    setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    for s in setups:
        if s not in SETUPS:
            parser.error(f"unknown setup {s!r}: memory, redis or cluster")
    raise_open_file_limit()
    began, results = time.monotonic(), []
    with tempfile.TemporaryDirectory(prefix="nyo-costs-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for setup in setups:
                print(f"  {SETUPS[setup]} #{round_} ...", end="", flush=True, file=sys.stderr)
                wait_quiet(args.wait_quiet)
                t = time.monotonic()
                rows = run(setup, Path(tmp), args)
                results.append((setup, round_, rows))
                print(f" {time.monotonic() - t:.1f} s", flush=True, file=sys.stderr)
    report(results, args)
    print(f"total run time {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
