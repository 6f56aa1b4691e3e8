"""Shared state: `state:set` -> `state:changed` at N subscribers, against a plain
broadcast in the same run; and what a snapshot of many keys costs on subscribe.

    .venv/bin/python bench/state.py                  # 100 subscribers, 1000 keys
    .venv/bin/python bench/state.py --subscribers 20 --rounds 100

One server (`connections.Server`: `nyo-realtime serve`, SQLite `--db` in a temp dir,
`--Realtime.rate_limit=0`, public channels) and, in this process, raw clients
(`rawws.py`). Run by hand; not part of the tests.

* **fan-out**: `--subscribers` subscribe with `state: true`; a writer alternates a
  `state:set` and a `broadcast` of the same ~100 B value, one at a time, `--rounds`
  of each. For each, the time from the send to each subscriber's frame (every
  subscriber's sample counts) and to the last subscriber's: p50 / p99.
* **snapshot**: `--keys` keys of ~100 B each on another channel; one client
  subscribes with `state: true` and unsubscribes, `--snapshots` times: the time from
  the `subscribe` to the `state` frame, against a subscribe without state (to its
  `subscribed`), and the snapshot's size.

The clients share this process's core with their own parsing: on a 2-core machine the
numbers are the server's and the clients' together, comparable within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connections import Server, make_token  # noqa: E402
from rawws import RawSocket, raise_open_file_limit  # noqa: E402

CHANNEL = "bench-state"
SNAPSHOT_CHANNEL = "bench-state-snapshot"
VALUE = {"x": 0, "pad": "x" * 80}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def fan_out(server: Server, subscribers: int, rounds: int) -> dict[str, list[float]]:
    arrived: dict[str, asyncio.Event] = {}
    seen: dict[str, int] = {}
    times: dict[str, list[float]] = {
        "state": [],
        "broadcast": [],
        "state last": [],
        "broadcast last": [],
    }
    started: dict[str, float] = {}

    def on_frame(sock: RawSocket, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind not in ("state:changed", "message"):
            return
        tag = str((frame.get("value") if kind == "state:changed" else frame.get("payload"))["x"])
        now = time.perf_counter()
        label = "state" if kind == "state:changed" else "broadcast"
        times[label].append(now - started[tag])
        seen[tag] = seen.get(tag, 0) + 1
        if seen[tag] == subscribers:
            times[label + " last"].append(now - started[tag])
            arrived[tag].set()

    socks = []
    for i in range(subscribers):
        sock = await RawSocket.open(f"{server.url}?token={make_token(f's{i}')}", on_frame)
        await sock.hello
        await sock.request({"type": "subscribe", "channel": CHANNEL, "state": True})
        socks.append(sock)
    writer = await RawSocket.open(f"{server.url}?token={make_token('writer')}")
    await writer.hello
    await writer.request({"type": "subscribe", "channel": CHANNEL})
    gc.collect()
    gc.disable()
    try:
        for n in range(2 * rounds):
            tag = str(n)
            arrived[tag] = asyncio.Event()
            value = {**VALUE, "x": n}
            started[tag] = time.perf_counter()
            if n % 2 == 0:
                writer.send({"type": "state:set", "channel": CHANNEL, "key": "k", "value": value})
            else:
                writer.send(
                    {"type": "broadcast", "channel": CHANNEL, "event": "e", "payload": value}
                )
            await asyncio.wait_for(arrived[tag].wait(), 30)
    finally:
        gc.enable()
    for sock in [*socks, writer]:
        sock.close()
    return times


async def snapshot(server: Server, keys: int, rounds: int) -> tuple[list[float], list[float], int]:
    writer = await RawSocket.open(f"{server.url}?token={make_token('keys')}")
    await writer.hello
    await writer.request({"type": "subscribe", "channel": SNAPSHOT_CHANNEL})
    for n in range(keys):
        await writer.request(
            {
                "type": "state:set",
                "channel": SNAPSHOT_CHANNEL,
                "key": f"key-{n:04d}",
                "value": VALUE,
            }
        )
    got: asyncio.Future[dict[str, Any]] | None = None
    size = 0

    def on_frame(sock: RawSocket, frame: dict[str, Any]) -> None:
        if frame.get("type") == "state" and got is not None and not got.done():
            got.set_result(frame)

    reader = await RawSocket.open(f"{server.url}?token={make_token('reader')}", on_frame)
    await reader.hello
    with_state, without = [], []
    for _ in range(rounds):
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        start = time.perf_counter()
        await reader.request({"type": "subscribe", "channel": SNAPSHOT_CHANNEL, "state": True})
        frame = await asyncio.wait_for(got, 30)
        with_state.append(time.perf_counter() - start)
        size = len(frame["entries"])
        await reader.request({"type": "unsubscribe", "channel": SNAPSHOT_CHANNEL})
        start = time.perf_counter()
        await reader.request({"type": "subscribe", "channel": SNAPSHOT_CHANNEL})
        without.append(time.perf_counter() - start)
        await reader.request({"type": "unsubscribe", "channel": SNAPSHOT_CHANNEL})
    reader.close()
    writer.close()
    return with_state, without, size


def row(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{label:<28} {percentile(ms, 0.5):>8.2f} {percentile(ms, 0.99):>8.2f} {len(ms):>7}"


async def main(args: argparse.Namespace) -> None:
    raise_open_file_limit()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(
            Path(tmp),
            None,
            args.subscribers + 100,
            ["--Realtime.rate_limit=0", "--Realtime.default_channel_type=public"],
        )
        server.start()
        try:
            times = await fan_out(server, args.subscribers, args.rounds)
            with_state, without, size = await snapshot(server, args.keys, args.snapshots)
        finally:
            server.process.terminate()  # type: ignore[union-attr]
    print(f"\n{args.subscribers} subscribers, {args.rounds} rounds of each (ms)")
    print(f"{'':<28} {'p50':>8} {'p99':>8} {'samples':>7}")
    for label in ("state", "broadcast", "state last", "broadcast last"):
        print(
            row(
                f"{label} (each subscriber)"
                if "last" not in label
                else f"{label} of {args.subscribers}",
                times[label],
            )
        )
    print(f"\nsubscribe, {size} keys of ~100 B (ms)")
    print(row("with state: to `state`", with_state))
    print(row("without state: to `subscribed`", without))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
