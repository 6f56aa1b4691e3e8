"""How long the event loop's SQLite commits take under heavy history writes, with
SQLite's own checkpoints (inside the commit every 1000 WAL pages, the old way) and
with `Store.checkpoint` in a worker thread every second (what the server does).

    .venv/bin/python bench/commits.py                 # 20,000 messages of 4 KB, each way
    .venv/bin/python bench/commits.py --messages 5000

The store of this checkout, in a temp dir; the old way is the same store with
`PRAGMA wal_autocheckpoint=1000` (SQLite's default) and no thread. Each "pass"
appends `--batch` messages and commits, as one busy event-loop pass does; the
commit's duration is what every client waits for in that pass. Alternates the two
ways for `--rounds` rounds; less sensitive to other load on the machine than
end-to-end latency, since the stall is disk work (the checkpoint's copy and fsync).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from nyo_realtime_ext.engines.ids import message_id
from nyo_realtime_ext.engines.memory import Store  # noqa: E402
from nyo_realtime_ext.models import ChannelKey, ChannelRecord, Message  # noqa: E402

KEY = ChannelKey("bench", "history")


async def run(threaded: bool, messages: int, batch: int, size: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(str(Path(tmp) / "bench.db"))
        if not threaded:
            store.conn.execute("PRAGMA wal_autocheckpoint=1000")
        store.create_channel(ChannelRecord(KEY, "public", None, time.time()), "e")
        durations: list[float] = []
        checkpointing: asyncio.Future[None] | None = None
        next_checkpoint = time.monotonic() + 1.0
        payload = "x" * size
        loop = asyncio.get_running_loop()
        try:
            for first in range(1, messages + 1, batch):
                for seq in range(first, min(first + batch, messages + 1)):
                    message = Message(KEY.name, message_id("e", seq), "t", payload, None, 0.0)
                    store.append_message(KEY, seq, message, keep=100)
                started = time.perf_counter()
                store.commit()
                durations.append((time.perf_counter() - started) * 1000)
                if threaded and time.monotonic() >= next_checkpoint:
                    next_checkpoint = time.monotonic() + 1.0
                    if checkpointing is None or checkpointing.done():
                        checkpointing = loop.run_in_executor(None, store.checkpoint)
                await asyncio.sleep(0)  # a pass of the event loop
            if checkpointing is not None:
                await checkpointing
        finally:
            store.close()
    return durations


def summary(label: str, ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    stats = {
        "p50": statistics.median(ordered),
        "p99": ordered[int(0.99 * (len(ordered) - 1))],
        "max": ordered[-1],
        "total": sum(ordered),
    }
    print(
        f"{label}: {len(ms)} commits, p50 {stats['p50']:.3f} ms, p99 {stats['p99']:.3f} ms, "
        f"max {stats['max']:.1f} ms, all commits {stats['total'] / 1000:.2f} s",
        flush=True,
    )
    return stats


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    old: list[float] = []
    new: list[float] = []
    for round_ in range(1, args.rounds + 1):
        old += await run(False, args.messages, args.batch, args.size)
        summary(f"#{round_} checkpoint in the commit (old)", old[-(args.messages // args.batch) :])
        new += await run(True, args.messages, args.batch, args.size)
        summary(f"#{round_} checkpoint in a thread (now)", new[-(args.messages // args.batch) :])
    a, b = summary("all rounds, old", old), summary("all rounds, now", new)
    print(
        f"now / old: p99 {b['p99'] / a['p99']:.2f}, max {b['max'] / a['max']:.2f}, "
        f"time in commits {b['total'] / a['total']:.2f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
