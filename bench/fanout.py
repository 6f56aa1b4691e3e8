"""Fan-out benchmark: nyo-realtime against a python-socketio baseline, on loopback.

    .venv/bin/python bench/fanout.py            # full run (N = 1, 10, 100, 500)
    .venv/bin/python bench/fanout.py --quick    # N = 1, 10, 100 with fewer messages
    .venv/bin/python bench/fanout.py --profile-server /tmp/ours.prof   # cProfile our server

Needs the `bench` extra (`pip install -e .[bench]`). Run by hand; not part of the tests.

What it does, per N and per server (ours, then socketio), each server in its own
subprocess on 127.0.0.1:

* N subscribers on one channel, spread over a few client processes (multiprocessing,
  one asyncio loop each: aiohttp WebSockets for ours, socketio.AsyncClient for the
  baseline), plus one publisher process.
* **saturated**: the publisher sends M messages of ~100 B payload as fast as the
  server acks them (at most WINDOW unacked); we count every delivery and report
  deliveries/s = all deliveries / (last receive - first send), and the
  publish->receive latency under that load (mostly queueing).
* **light**: the same at a paced rate of LIGHT_DELIVERIES deliveries/s in total,
  for the latency the server adds when it is not saturated.
* **acks** (N = 1 only): one publisher, one subscriber, one request in flight:
  publish->ack round-trips/s.

Ours runs with `--Realtime.rate_limit=0` (the 200 frames/s default would throttle the
publisher), `--Realtime.default_channel_type=public` (a socketio room has no presence)
and `--db` in a temporary directory; history (SQLite) stays on, as in production.
CPU% of the server and of the client processes is sampled from /proc so that one can
see who the bottleneck is: a server near 100% of one core is the limit; on a 2-core
machine, clients + server share the two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret-that-is-long-enough-for-hs256!"
CHANNEL = "bench:fanout"
WINDOW = 32  # unacked publishes in the saturated phase
LIGHT_DELIVERIES = 2000  # total deliveries/s in the light phase
LIGHT_SECONDS = 2.0
ACK_ROUNDS = 3000
PHASE_TIMEOUT = 60.0  # a publisher stops after this long, whatever it has sent
GRACE = 10.0  # seconds subscribers may lag behind the last publish
PAD = "x" * 60  # payload {"t":..., "s":..., "p":..., "pad":...} is ~100 bytes
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token(sub: str) -> str:
    import jwt

    return jwt.encode({"sub": sub, "name": sub, "tenant": "bench"}, SECRET, algorithm="HS256")


def machine_busy_seconds() -> float:
    """CPU seconds spent by the whole machine (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        return (user + nice + system + steal) / CLK_TCK  # softirq: loopback work, ours
    except (OSError, ValueError):
        return 0.0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


# -- servers ---------------------------------------------------------------------


class Server:
    def __init__(
        self, kind: str, tmp: Path, profile: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "ours":
            prefix = [sys.executable]
            if profile:
                prefix += ["-m", "cProfile", "-o", profile]
            args = prefix + [
                "-m", "nyo_realtime_ext.server", "serve", "--port", str(self.port),
                "--jwt-secret", SECRET, "--db", str(tmp / f"bench-{self.port}.db"),
                "--Realtime.rate_limit=0", "--Realtime.default_channel_type=public",
                "--log-level=WARN", *extra_args,
            ]  # fmt: skip
            self.url = f"ws://127.0.0.1:{self.port}/ws"
        else:
            args = [sys.executable, str(HERE / "sio_server.py"), str(self.port)]
            self.url = f"http://127.0.0.1:{self.port}"
        # A file, not a pipe: an unread pipe fills up and stalls the server mid-run.
        self.log_path = tmp / f"{kind}-{self.port}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=self.log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{kind} server exited: {self.log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{kind} server did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        errors = self.log_path.read_text().strip()
        if errors:
            print(f"{self.kind} server's log:\n{errors[-2000:]}", file=sys.stderr)


# -- clients (run in worker processes) ----------------------------------------------


class OursClient:
    """A lean nyo-realtime client on aiohttp's WebSocket (C frame reader)."""

    def __init__(self, session: Any, url: str, token: str) -> None:
        self.session, self.url, self.token = session, url, token
        self.on_message = lambda payload: None
        self.on_ack = lambda: None

    async def connect(self) -> None:
        import orjson

        self.ws = await self.session.ws_connect(
            f"{self.url}?token={self.token}", autoping=True, max_msg_size=0, compress=0
        )
        frame = orjson.loads((await self.ws.receive()).data)
        assert frame["type"] == "authenticated", frame
        await self.ws.send_str(
            orjson.dumps({"type": "subscribe", "channel": CHANNEL, "ref": 0}).decode()
        )
        frame = orjson.loads((await self.ws.receive()).data)
        assert frame["type"] == "subscribed", frame
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        import aiohttp
        import orjson

        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = orjson.loads(msg.data)
            kind = frame["type"]
            if kind == "message":
                self.on_message(frame["payload"])
            elif kind == "ack":
                self.on_ack()
            elif kind == "error":
                print("server error:", frame, file=sys.stderr)

    async def publish(self, payload: dict, ref: int) -> None:
        import orjson

        await self.ws.send_str(
            orjson.dumps(
                {
                    "type": "broadcast",
                    "channel": CHANNEL,
                    "event": "tick",
                    "payload": payload,
                    "echo": False,
                    "ref": ref,
                }  # fmt: skip
            ).decode()
        )

    async def close(self) -> None:
        await self.ws.close()


class SioClient:
    def __init__(self, session: Any, url: str, token: str) -> None:
        import socketio

        self.url = url
        self.sio = socketio.AsyncClient(reconnection=False, http_session=session)
        self.on_message = lambda payload: None
        self.on_ack = lambda: None
        self.sio.on("message", lambda message: self.on_message(message["payload"]))

    async def connect(self) -> None:
        await self.sio.connect(self.url, transports=["websocket"], wait_timeout=30)
        assert await self.sio.call("subscribe", CHANNEL, timeout=30) is True

    async def publish(self, payload: dict, ref: int) -> None:
        await self.sio.emit(
            "broadcast",
            {"channel": CHANNEL, "event": "tick", "payload": payload},
            callback=lambda *_: self.on_ack(),
        )

    async def close(self) -> None:
        await self.sio.disconnect()


class PhaseStats:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.first = math.inf
        self.last = 0.0
        self.latencies = array("d")
        self.done = asyncio.Event()


def worker(role: str, kind: str, url: str, n: int, first_user: int, conn: Any) -> None:
    """A client process: `role` is 'sub' (n subscribers) or 'pub' (one publisher)."""
    try:
        asyncio.run(_worker(role, kind, url, n, first_user, conn))
    except KeyboardInterrupt:
        pass


async def _worker(role: str, kind: str, url: str, n: int, first_user: int, conn: Any) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    commands: asyncio.Queue = asyncio.Queue()

    def pump() -> None:  # the control pipe, read in a thread
        while True:
            try:
                item = conn.recv()
            except (EOFError, OSError):
                item = ("quit",)
            loop.call_soon_threadsafe(commands.put_nowait, item)
            if item[0] == "quit":
                return

    threading.Thread(target=pump, daemon=True).start()
    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector)
    cls = OursClient if kind == "ours" else SioClient
    clients = [cls(session, url, make_token(f"u{first_user + i}")) for i in range(n)]
    phases: dict[str, PhaseStats] = {}

    def on_message(payload: dict) -> None:
        now = time.time()
        stats = phases.get(payload["p"])
        if stats is None:
            return
        stats.count += 1
        stats.latencies.append(now - payload["t"])
        if now < stats.first:
            stats.first = now
        stats.last = now
        if stats.count >= stats.expected:
            stats.done.set()

    gate = asyncio.Semaphore(25)  # connect a few at a time

    async def open_one(client: Any) -> None:
        async with gate:
            await client.connect()

    for client in clients:
        client.on_message = on_message
    try:
        await asyncio.gather(*(open_one(c) for c in clients))
        conn.send(("ready",))
        while True:
            cmd = await commands.get()
            if cmd[0] == "quit":
                break
            if cmd[0] == "expect":
                _, phase, per_sub = cmd
                phases[phase] = PhaseStats(per_sub * n)
                conn.send(("expecting",))  # before this, the phase's messages would be dropped
            elif cmd[0] == "collect":
                _, phase, grace = cmd
                stats = phases[phase]
                try:
                    await asyncio.wait_for(stats.done.wait(), grace)
                except asyncio.TimeoutError:
                    pass
                conn.send((stats.count, stats.first, stats.last, stats.latencies.tobytes()))
                del phases[phase]
            elif cmd[0] == "publish":
                _, phase, count, window, rate = cmd
                conn.send(await _publish(clients[0], phase, count, window, rate))
    finally:
        for client in clients:
            try:
                await asyncio.wait_for(client.close(), 2)
            except Exception:
                pass
        await session.close()


async def _publish(client: Any, phase: str, count: int, window: int, rate: float | None) -> tuple:
    """Send `count` messages: at most `window` unacked, and paced at `rate`/s if given."""
    slots = asyncio.Semaphore(window)
    acked = 0
    all_acked = asyncio.Event()

    def on_ack() -> None:
        nonlocal acked
        acked += 1
        slots.release()
        if acked >= count:
            all_acked.set()

    client.on_ack = on_ack
    start = time.time()
    deadline = start + PHASE_TIMEOUT
    sent = 0
    for seq in range(count):
        if rate:
            delay = start + seq / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await slots.acquire()
        now = time.time()
        if now > deadline:
            break
        await client.publish({"t": now, "s": seq, "p": phase, "pad": PAD}, seq + 1)
        sent += 1
    if sent == count:
        try:
            await asyncio.wait_for(all_acked.wait(), GRACE)
        except asyncio.TimeoutError:
            pass
    return (start, time.time(), sent, acked)


# -- orchestration ------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class Scenario:
    """One server, N subscribers in a few processes, one publisher process."""

    def __init__(self, server: Server, n: int, procs: int) -> None:
        self.server = server
        self.n = n
        ctx = mp.get_context("spawn")
        self.workers: list[tuple[Any, Any]] = []
        shares = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        first = 1
        for role, size in [("pub", 1)] + [("sub", s) for s in shares if s]:
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=worker, args=(role, server.kind, server.url, size, first, child), daemon=True
            )
            p.start()
            first += size
            self.workers.append((p, parent))
        self.pub = self.workers[0][1]
        self.subs = [c for _, c in self.workers[1:]]
        for _, c in self.workers:
            if not c.poll(120):
                raise RuntimeError(f"{server.kind}: a client process did not connect in 120 s")
            c.recv()

    def run(self, phase: str, per_sub: int, window: int, rate: float | None) -> dict:
        for c in self.subs:
            c.send(("expect", phase, per_sub))
        for c in self.subs:  # or a busy subscriber process misses the first messages
            c.recv()
        pids = [self.server.pid] + [p.pid for p, _ in self.workers]
        cpu0 = [cpu_seconds(pid) for pid in pids]
        busy0 = machine_busy_seconds()
        t0 = time.time()
        self.pub.send(("publish", phase, per_sub, window, rate))
        if not self.pub.poll(PHASE_TIMEOUT + GRACE + 30):
            raise RuntimeError("publisher hung")
        start, pub_end, sent, acked = self.pub.recv()
        counts, lasts, lat = 0, 0.0, array("d")
        for c in self.subs:
            c.send(("collect", phase, GRACE))
        for c in self.subs:
            count, _first, last, raw = c.recv()
            counts += count
            lasts = max(lasts, last)
            lat.frombytes(raw)
        wall = time.time() - t0
        cpu1 = [cpu_seconds(pid) for pid in pids]
        ours = sum(b - a for a, b in zip(cpu0, cpu1, strict=True))
        other = max(0.0, machine_busy_seconds() - busy0 - ours)
        end = lasts if lasts else pub_end
        elapsed = max(end - start, 1e-9)
        latencies = sorted(lat)
        return {
            "sent": sent,
            "acked": acked,
            "expected": sent * self.n,
            "deliveries": counts,
            "deliveries_s": counts / elapsed,
            "publish_s": acked / max(pub_end - start, 1e-9),
            "p50": percentile(latencies, 0.50) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "server_cpu": (cpu1[0] - cpu0[0]) / wall * 100,
            "pub_cpu": (cpu1[1] - cpu0[1]) / wall * 100,
            "client_cpu": sum(b - a for a, b in zip(cpu0[2:], cpu1[2:], strict=True)) / wall * 100,
            "other_cpu": other / wall * 100,
            "elapsed": elapsed,
        }

    def close(self) -> None:
        for _, c in self.workers:
            try:
                c.send(("quit",))
            except OSError:
                pass
        for p, _ in self.workers:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)


def messages_for(n: int, quick: bool) -> int:
    budget = 40_000 if quick else 150_000  # deliveries per saturated phase
    return max(100, min(4000 if quick else 10_000, budget // n))


def procs_for(n: int) -> int:
    return 1 if n <= 10 else (2 if n <= 100 else 3)


def bench_one(kind: str, n: int, tmp: Path, quick: bool, profile: str | None) -> dict:
    server = Server(kind, tmp, profile if kind == "ours" else None)
    try:
        scenario = Scenario(server, n, procs_for(n))
        try:
            result = {"n": n, "kind": kind}
            result["sat"] = scenario.run(f"sat{n}", messages_for(n, quick), WINDOW, None)
            rate = max(2.0, min(1000.0, LIGHT_DELIVERIES / n))
            light_count = max(10, int(rate * LIGHT_SECONDS))
            result["light"] = scenario.run(f"light{n}", light_count, WINDOW, rate)
            if n == 1:
                result["acks"] = scenario.run("acks", ACK_ROUNDS // (3 if quick else 1), 1, None)
            return result
        finally:
            scenario.close()
    finally:
        server.stop()


def fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 10_000 else f"{x:.0f}"


def fmt_ms(x: float) -> str:
    return "-" if math.isnan(x) else (f"{x:.2f}" if x < 10 else f"{x:.0f}")


def report(results: list[dict], sizes: list[int], total: float) -> None:
    by = {(r["kind"], r["n"]): r for r in results}
    print()
    print(f"nyo-realtime fan-out benchmark  ({os.cpu_count()} CPU cores; loopback 127.0.0.1; "
          f"python {sys.version.split()[0]})")  # fmt: skip
    print("ours: --Realtime.rate_limit=0 (no throttling), default_channel_type=public, "
          "SQLite history on (temp --db).")  # fmt: skip
    print("socketio: python-socketio AsyncServer, aiohttp mode, emit to room; clients "
          "socketio.AsyncClient.")  # fmt: skip
    print(
        f"saturated = publisher with {WINDOW} unacked publishes; light = paced at "
        f"~{LIGHT_DELIVERIES} deliveries/s in total. Latency = publish -> subscriber receive."
    )
    print(
        "CPU% (saturated phase) = process CPU time / wall time, 100% = one core; sub CPU sums all"
    )
    print(
        "subscriber processes. Server near 100% = server-bound; publisher near 100% = publisher-bound."
    )
    print()
    head = (f"{'N':>4} {'server':<9} {'deliv/s':>9} {'pub msg/s':>9} {'sat p50':>8} {'sat p99':>8} "
            f"{'lite p50':>8} {'lite p99':>8} {'srv CPU':>7} {'pub CPU':>7} {'sub CPU':>7} {'other':>6} {'lost':>5}")  # fmt: skip
    print(head)
    print("-" * len(head))
    for n in sizes:
        for kind in ("ours", "socketio"):
            r = by.get((kind, n))
            if r is None:
                continue
            s, lt = r["sat"], r["light"]
            lost = (s["expected"] - s["deliveries"]) + (lt["expected"] - lt["deliveries"])
            print(f"{n:>4} {kind:<9} {fmt_rate(s['deliveries_s']):>9} {fmt_rate(s['publish_s']):>9} "
                  f"{fmt_ms(s['p50']):>8} {fmt_ms(s['p99']):>8} {fmt_ms(lt['p50']):>8} "
                  f"{fmt_ms(lt['p99']):>8} {s['server_cpu']:>6.0f}% {s['pub_cpu']:>6.0f}% {s['client_cpu']:>6.0f}% "
                  f"{s['other_cpu']:>5.0f}% {lost:>5}")  # fmt: skip
    print("(latencies in ms; 'other' = CPU used by processes outside the benchmark during the")
    print(" saturated phase: above ~10% the machine was not quiet and the numbers are low;")
    print(" 'lost' = deliveries missing at the end, should be 0)")
    noisy = [r for r in results if max(r[p]["other_cpu"] for p in ("sat", "light")) > 10]
    if noisy:
        print(f"WARNING: {len(noisy)} of {len(results)} runs shared the CPU with other work "
              "(see 'other'); rerun on a quiet machine before trusting absolute numbers.")  # fmt: skip
    print()
    print("ratios ours / socketio (throughput: >1 is better; latency: <1 is better)")
    head2 = f"{'N':>4} {'deliv/s':>8} {'sat p50':>8} {'sat p99':>8} {'lite p50':>8} {'lite p99':>8}"
    print(head2)
    print("-" * len(head2))
    for n in sizes:
        a, b = by.get(("ours", n)), by.get(("socketio", n))
        if not a or not b:
            continue

        def ratio(x: float, y: float) -> str:
            return "-" if not y or math.isnan(x) or math.isnan(y) else f"{x / y:.2f}x"

        print(f"{n:>4} {ratio(a['sat']['deliveries_s'], b['sat']['deliveries_s']):>8} "
              f"{ratio(a['sat']['p50'], b['sat']['p50']):>8} {ratio(a['sat']['p99'], b['sat']['p99']):>8} "
              f"{ratio(a['light']['p50'], b['light']['p50']):>8} "
              f"{ratio(a['light']['p99'], b['light']['p99']):>8}")  # fmt: skip
    acks = {k: by[(k, 1)]["acks"] for k in ("ours", "socketio") if (k, 1) in by}
    print()
    if acks:
        print("publish -> ack round-trips/s, 1 publisher, 1 subscriber, 1 request in flight:")
    for kind, a in acks.items():
        print(f"  {kind:<9} {a['publish_s']:>8.0f}/s   (server CPU {a['server_cpu']:.0f}%)")
    if len(acks) == 2 and acks["socketio"]["publish_s"]:
        print(f"  ratio     {acks['ours']['publish_s'] / acks['socketio']['publish_s']:>8.2f}x")
    print()
    print(f"total run time {total:.0f} s; load average at the end: "
          f"{Path('/proc/loadavg').read_text().split()[0]}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=None, help="comma-separated N, default 1,10,100,500")
    parser.add_argument("--quick", action="store_true", help="fewer messages, N up to 100")
    parser.add_argument("--only", choices=["ours", "socketio"], help="bench one server only")
    parser.add_argument("--profile-server", metavar="FILE", help="run our server under cProfile")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else (
        [1, 10, 100] if args.quick else [1, 10, 100, 500])  # fmt: skip
    kinds = [args.only] if args.only else ["ours", "socketio"]
    begin = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="nyo-bench-") as tmp:
        for n in sizes:
            for kind in kinds:
                print(f"  N={n:<4} {kind:<9} ...", end="", flush=True, file=sys.stderr)
                t = time.time()
                profile = None
                if args.profile_server:
                    profile = (
                        f"{args.profile_server}.{n}" if len(sizes) > 1 else args.profile_server
                    )
                results.append(bench_one(kind, n, Path(tmp), args.quick, profile))
                print(f" {time.time() - t:.1f} s", file=sys.stderr, flush=True)
    report(results, sizes, time.time() - begin)


if __name__ == "__main__":
    main()
