"""A/B: server CPU per delivery of a git ref against the work tree, in one run.

    .venv/bin/python bench/compare.py HEAD~1              # fan-out, 3 rounds each; ~1 minute
    .venv/bin/python bench/compare.py main --rounds 5 --window 32
    .venv/bin/python bench/compare.py HEAD --mode mixed   # presence channels at a fixed rate
    .venv/bin/python bench/compare.py HEAD~1 --redis      # 3 nodes on one redis-server

REF is checked out with `git worktree add --detach` in a temporary directory
(removed at the end); its server runs with this venv's python and
PYTHONPATH=<that checkout> (and the checkout as working directory, so that `-m`
imports its `nyo_realtime_ext`, which is checked and printed). The work tree's
server runs the same way from this checkout, uncommitted changes included. The
two alternate, REF first: A B A B ... for --rounds rounds, each a fresh
`nyo-realtime serve` (`--Realtime.rate_limit=0`, public channels, SQLite history
in a temp --db) pinned to core 0 with `taskset -c 0`; this process, the load
generator, pins itself to core 1.

The figure is the **server's CPU µs per delivery**: utime+stime from
/proc/<pid>/stat over the measured phase, divided by the deliveries (10 ms
ticks; 1,000,000 deliveries by default, so ~10 s of server CPU and a
resolution far below 1 %). Deliveries/s is printed too, but on two cores the
load generator is the limit and it hides regressions. `other` is the CPU the
rest of the machine took during the phase (% of one core): rounds where it is
high shared the box and are less trustworthy; the summary is the median of the
rounds of each side, and the ratio work tree / REF of the medians (below 1.00:
the work tree is cheaper); the ratio of each side's quietest round (least
`other`) is printed as a cross-check.

Modes:

* `fanout` (default): --subscribers (500) on one public channel, one publisher
  (subscribed, `echo: false`) sends --messages (2000) messages of --size (100)
  payload bytes. --window 0 (default): all publishes written as fast as the
  socket takes them, none waiting for its ack (what lets the server batch
  across publishes); --window 32: at most 32 unacked, as peers.py does.
* `mixed`: 100 presence channels with 20 subscribers each (2000 users), 50
  publishers (each subscribed to 2 channels, `echo: false`), paced at --rate
  (20,000) deliveries/s in total for --seconds (10): server CPU per delivery and
  publish->receive p50/p99 (the payload carries the send time; same process).

`--redis`: 3 nodes (`serve --redis`) on one redis-server started here (temp dir,
no persistence; needs `redis-server` on PATH), subscribers spread evenly, the
publishers on node 1; CPU is summed over the nodes, redis-server apart.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from connections import SECRET  # noqa: E402
from loads import (  # noqa: E402
    MIX_CHANNELS,
    MIX_MEMBERS,
    MIX_PUBLISHERS,
    Meter,
    connect,
    connect_many,
    mixed,
    publish,
    wait_for_count,
    wait_quiet,
)
from nodes import RedisServer  # noqa: E402
from rawws import raise_open_file_limit  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the code under test -----------------------------------------------------------


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def imported_from(source: Path) -> str:
    """Where a server started like ours would import nyo_realtime_ext from."""
    out = subprocess.run(
        [sys.executable, "-c", "import nyo_realtime_ext; print(nyo_realtime_ext.__file__)"],
        cwd=source, env={**os.environ, "PYTHONPATH": str(source)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    path = out.stdout.strip()
    if not Path(path).resolve().is_relative_to(source.resolve()):
        raise SystemExit(f"compare.py: {source} imports nyo_realtime_ext from {path}, not itself")
    return path


class Server:
    """One `nyo-realtime serve` of the code in `source`, pinned to core 0."""

    def __init__(self, source: Path, tmp: Path, name: str, extra: tuple[str, ...] = ()) -> None:
        self.source = source
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.log_path = tmp / f"{name}.log"
        self.args = [
            "taskset", "-c", "0", sys.executable, "-m", "nyo_realtime_ext.server", "serve",
            "--port", str(self.port), "--jwt-secret", SECRET, "--db", str(tmp / f"{name}.db"),
            "--log-level=WARN", "--Realtime.rate_limit=0",
            "--Realtime.default_channel_type=public", "--Realtime.max_connections=20000",
            *extra,
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=log, env=env, cwd=source)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start within 30 s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- the fan-out (the mixed load is loads.mixed, shared with peers.py) --------------


async def fanout(urls: list[str], meter: Meter, args: argparse.Namespace) -> dict[str, Any]:
    n = args.subscribers
    subs = await connect_many(
        [(urls[i % len(urls)], f"s{i}", ["fan"]) for i in range(n)]
    )  # fmt: skip
    publisher = await connect(urls[0], "pub", ["fan"])
    payload = {"d": "x" * args.size}
    try:
        # Warm-up, untimed: first-use costs (imports, caches, the channel's history row).
        await asyncio.gather(*(publish(publisher, "fan", payload, True) for _ in range(20)))  # type: ignore[misc]
        await wait_for_count(subs, 20 * n, 30)
        for s in subs:
            s.count = 0
        gc.collect()
        gc.freeze()
        gc.disable()  # a collection of the client's objects is a stall of the load generator
        window = asyncio.Semaphore(args.window) if args.window else None
        pending = []
        with meter:
            for _ in range(args.messages):
                if window is not None:
                    await window.acquire()
                future = publish(publisher, "fan", payload, True)
                assert future is not None
                if window is not None:
                    future.add_done_callback(lambda _: window.release())
                pending.append(future)
            await asyncio.wait_for(asyncio.gather(*pending), 120)
            expected = args.messages * n
            got = await wait_for_count(subs, expected, 120)
        gc.enable()
        result = meter.result(got)
        result["lost"] = expected - got
        return result
    finally:
        gc.enable()
        gc.unfreeze()
        for s in [*subs, publisher]:
            s.abort()


def run_round(source: Path, args: argparse.Namespace, label: str) -> dict[str, Any]:
    waited = wait_quiet(args.wait_quiet)
    with tempfile.TemporaryDirectory(prefix="nyo-compare-") as tmp_name:
        tmp = Path(tmp_name)
        redis = RedisServer(tmp, pinned="0") if args.redis else None
        servers: list[Server] = []
        try:
            for i in range(3 if redis else 1):
                extra = ("--redis", redis.url) if redis else ()
                servers.append(Server(source, tmp, f"{label}-{i}", extra))
            meter = Meter(servers, redis)
            urls = [s.url for s in servers]
            scenario = fanout if args.mode == "fanout" else mixed
            result = asyncio.run(scenario(urls, meter, args))
        finally:
            for s in servers:
                s.stop()
            if redis:
                redis.stop()
    result["waited"] = waited
    return result


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def row(label: str, r: dict[str, Any], mode: str) -> str:
    cells = [label, fmt(r["us"]), f"{r['deliv_s'] / 1000:.1f}k", f"{r['server_pct']:.0f}",
             f"{r['client_pct']:.0f}", f"{r['other_pct']:.0f}", str(r["lost"])]  # fmt: skip
    if r.get("redis_us") is not None:
        cells.insert(2, fmt(r["redis_us"]))
    if mode == "mixed":
        cells += [fmt(r["p50"]), fmt(r["p99"])]
    return "| " + " | ".join(cells) + " |"


def header(args: argparse.Namespace) -> str:
    cols = ["round", "server µs/deliv", "deliv/s", "server CPU %", "client CPU %", "other CPU %",
            "lost"]  # fmt: skip
    if args.redis:
        cols.insert(2, "redis µs/deliv")
    if args.mode == "mixed":
        cols += ["p50 ms", "p99 ms"]
    align = ["---"] + ["--:"] * (len(cols) - 1)
    return "| " + " | ".join(cols) + " |\n|" + "|".join(align) + "|"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", nargs="?", default="HEAD", help="git ref to compare against")
    parser.add_argument("--mode", choices=("fanout", "mixed"), default="fanout")
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=100, help="payload bytes per message")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--window", type=int, default=0, help="unacked publishes at most (0: no limit)"
    )
    parser.add_argument("--rate", type=float, default=20000.0, help="mixed: deliveries/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="mixed: measured seconds")
    parser.add_argument("--redis", action="store_true", help="3 nodes on one redis-server")
    parser.add_argument(
        "--wait-quiet", type=float, default=5.0, help="s to wait for an idle machine per round"
    )
    args = parser.parse_args()
    raise_open_file_limit()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})  # the servers have core 0

    ref_sha = git("rev-parse", "--verify", f"{args.ref}^{{commit}}")
    head = git("rev-parse", "--short", "HEAD")
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nyo-compare-ref-") as parent:
        checkout = Path(parent) / "ref"
        git("worktree", "add", "--detach", str(checkout), ref_sha)
        try:
            sides = {"ref": checkout, "work": ROOT}
            print(f"REF  {args.ref} = {ref_sha[:10]}: {imported_from(checkout)}")
            print(f"work tree {head}{dirty}: {imported_from(ROOT)}")
            if args.mode == "fanout":
                how = f"window {args.window}" if args.window else "unwindowed"
                print(f"fanout: {args.subscribers} subscribers, {args.messages} messages of "
                      f"{args.size} B ({how}){', 3 nodes on redis' if args.redis else ''}")  # fmt: skip
            else:
                print(f"mixed: {MIX_CHANNELS} presence channels x {MIX_MEMBERS} subscribers, "
                      f"{MIX_PUBLISHERS} publishers, {args.rate:.0f} deliveries/s for "
                      f"{args.seconds:.0f} s{', 3 nodes on redis' if args.redis else ''}")  # fmt: skip
            print()
            print(header(args), flush=True)
            results: dict[str, list[dict[str, Any]]] = {"ref": [], "work": []}
            for n in range(1, args.rounds + 1):
                for side, source in sides.items():
                    r = run_round(source, args, side)
                    results[side].append(r)
                    print(row(f"{side} #{n}", r, args.mode), flush=True)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False
            )
            subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)

    med = {side: statistics.median(r["us"] for r in rs) for side, rs in results.items()}
    print()
    print(
        "| median | server µs/deliv | min | max |"
        + (" p50 ms | p99 ms |" if args.mode == "mixed" else "")
    )
    print("|---|--:|--:|--:|" + ("--:|--:|" if args.mode == "mixed" else ""))
    for side, rs in results.items():
        us = [r["us"] for r in rs]
        extra = ""
        if args.mode == "mixed":
            extra = (f" {statistics.median(r['p50'] for r in rs):.2f} |"
                     f" {statistics.median(r['p99'] for r in rs):.2f} |")  # fmt: skip
        print(f"| {side} | {med[side]:.2f} | {min(us):.2f} | {max(us):.2f} |{extra}")
    print()
    print(
        f"ratio work tree / {args.ref}: {med['work'] / med['ref']:.3f}x server CPU per delivery "
        f"(median of {args.rounds}; {time.monotonic() - began:.0f} s)"
    )
    quiet = {side: min(rs, key=lambda r: r["other_pct"]) for side, rs in results.items()}
    print(
        f"quietest round of each: REF {quiet['ref']['us']:.2f} (other "
        f"{quiet['ref']['other_pct']:.0f} %), work {quiet['work']['us']:.2f} (other "
        f"{quiet['work']['other_pct']:.0f} %): {quiet['work']['us'] / quiet['ref']['us']:.3f}x"
    )
    noisy = [r["other_pct"] for rs in results.values() for r in rs if r["other_pct"] > 10]
    if noisy:
        print(f"note: {len(noisy)} round(s) had other CPU above 10 % of a core: the box was shared")


if __name__ == "__main__":
    main()
