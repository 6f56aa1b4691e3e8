"""Delivery latency at a fixed rate, quiet and while (and right after) history is written hard.

    .venv/bin/python bench/latency.py                          # this checkout
    .venv/bin/python bench/latency.py --baseline /tmp/old      # and another, same run

One server (`connections.Server`: `nyo-realtime serve`, SQLite `--db` in a temp
dir, `--Realtime.rate_limit=0`, public channels) and, in this process, raw
clients (`rawws.py`): `--subscribers` on one channel and a publisher paced at
`--rate` messages/s (default 100 x 100 = 10k deliveries/s). The payload carries
the send time; each subscriber records publish->receive. Phases of `--seconds`:

* quiet: only the paced fan-out;
* writes: the same, while a writer publishes `--write-rate` messages/s of
  `--write-size` bytes to 10 other channels (history on: every one is an INSERT
  and a DELETE in SQLite, and the WAL grows ~2 MB/s by default);
* after: quiet again, right after the writes stop.

Printed: p50 / p99 / max per phase, and `other`: the CPU % (of one core) that
processes other than the server and this client used meanwhile. On a shared box
latency is only comparable between phases with `other` near 0: `--rounds`
alternates baseline and this checkout, and the ratios use each one's quietest
round (least `other` summed over its phases).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from connections import Server, make_token  # noqa: E402
from rawws import RawSocket, raise_open_file_limit  # noqa: E402

CHANNEL = "bench-latency"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TICK = 0.01  # the publisher sends rate * TICK messages every TICK seconds


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def process_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def paced(sock: RawSocket, channel: str, rate: float, seconds: float, size: int) -> int:
    """Publish at `rate` messages/s for `seconds`, without waiting for acks."""
    pad = "x" * size
    sent, start = 0, time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * rate) + 1
        while sent < due:
            sock.send(
                {
                    "type": "broadcast",
                    "channel": channel,
                    "event": "t",
                    "payload": {"t": time.perf_counter(), "pad": pad},
                }
            )
            sent += 1
        await asyncio.sleep(TICK)
    return sent


async def measure(args: argparse.Namespace, source: str | None, label: str) -> dict[str, Any]:
    samples: list[float] = []

    def on_frame(sock: RawSocket, frame: dict[str, Any]) -> None:
        if frame.get("type") == "message" and frame.get("channel") == CHANNEL:
            samples.append(time.perf_counter() - frame["payload"]["t"])

    results: dict[str, Any] = {"label": label}
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(
            Path(tmp),
            source,
            args.subscribers + 100,
            ["--Realtime.rate_limit=0", "--Realtime.default_channel_type=public"],
        )
        server.start()
        print(f"{label}: server code from {server.module_path()}", flush=True)
        socks: list[RawSocket] = []
        try:
            for i in range(args.subscribers):
                sock = await RawSocket.open(f"{server.url}?token={make_token(f's{i}')}", on_frame)
                await sock.hello
                await sock.request({"type": "subscribe", "channel": CHANNEL})
                socks.append(sock)
            publisher = await RawSocket.open(f"{server.url}?token={make_token('pub')}")
            writer = await RawSocket.open(f"{server.url}?token={make_token('writer')}")
            for sock in (publisher, writer):
                await sock.hello
                socks.append(sock)
            await publisher.request({"type": "subscribe", "channel": CHANNEL})
            history = [f"bench-history-{i}" for i in range(10)]
            for name in history:
                await writer.request({"type": "subscribe", "channel": name})
            await paced(publisher, CHANNEL, args.rate, 1.0, 40)  # warm-up
            await asyncio.sleep(1.0)

            async def phase(name: str, writes: bool) -> None:
                samples.clear()
                # A collection of this process's objects would show up as a stall
                # of the client in the p99: none while latency is measured.
                gc.collect()
                gc.freeze()
                gc.disable()
                started = time.monotonic()
                busy0, server0, self0 = (
                    machine_busy(),
                    process_cpu(server.pid),
                    process_cpu(os.getpid()),
                )
                jobs = [paced(publisher, CHANNEL, args.rate, args.seconds, 40)]
                if writes:
                    per_channel = args.write_rate / len(history)
                    jobs += [
                        paced(writer, h, per_channel, args.seconds, args.write_size)
                        for h in history
                    ]
                await asyncio.gather(*jobs)
                await asyncio.sleep(1.0)  # the last deliveries
                gc.enable()
                ours = process_cpu(server.pid) - server0 + process_cpu(os.getpid()) - self0
                other = (machine_busy() - busy0 - ours) / (time.monotonic() - started) * 100
                ms = [s * 1000 for s in samples]
                results[name] = {
                    "n": len(ms),
                    "p50": statistics.median(ms) if ms else float("nan"),
                    "p99": percentile(ms, 0.99),
                    "max": max(ms, default=float("nan")),
                    "other": max(other, 0.0),
                }
                r = results[name]
                print(
                    f"{label}: {name:6s} {r['n']} deliveries, p50 {r['p50']:.2f} ms, "
                    f"p99 {r['p99']:.2f} ms, max {r['max']:.1f} ms, other CPU {r['other']:.0f} %",
                    flush=True,
                )

            await phase("quiet", False)
            await phase("writes", True)
            await phase("after", False)
        finally:
            for sock in socks:
                sock.abort()
            server.stop()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="another checkout to measure first, same run")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s to the subscribers")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--write-rate", type=float, default=500.0)
    parser.add_argument("--write-size", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    raise_open_file_limit()
    olds, news = [], []
    for round_ in range(1, args.rounds + 1):
        if args.baseline:
            source = str(Path(args.baseline).resolve())
            olds.append(await measure(args, source, f"baseline #{round_}"))
        news.append(await measure(args, None, f"this checkout #{round_}"))

    def quietest(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return min(runs, key=lambda r: sum(r[p]["other"] for p in ("quiet", "writes", "after")))

    if olds:
        old, new = quietest(olds), quietest(news)
        print(f"ratios from {new['label']} / {old['label']}")
        for name in ("quiet", "writes", "after"):
            print(
                f"{name}: p50 this / baseline = {new[name]['p50'] / old[name]['p50']:.2f}, "
                f"p99 this / baseline = {new[name]['p99'] / old[name]['p99']:.2f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
