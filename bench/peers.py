"""nyo-realtime beside its peers: node `ws`, node socket.io, python-socketio,
Python `websockets` and `picows`.

    (cd bench && npm install)             # ws and socket.io, into bench/node_modules
    pip install -e '.[bench]'             # python-socketio, aiohttp, picows
    .venv/bin/python bench/peers.py       # all six; ~5 minutes on a quiet 2-core box
    .venv/bin/python bench/peers.py --only nyo,ws --idle 3000
    .venv/bin/python bench/peers.py --jupyter --window 0   # + nyo-realtime in jupyter server

Each server runs alone, pinned to core 0 (`taskset -c 0`); this process, the
load generator, pins itself to core 1. The clients are `rawws.RawSocket`s, one
asyncio Protocol each, speaking each server's dialect: nyo-realtime's frames
(token in the URL, `subscribe`, `broadcast` with `echo: false`), the same frames
for `node_ws_server.js`, `websockets_server.py` (`websockets.asyncio.server` and
its `broadcast()`) and `picows_server.py` (picows, a Cython WebSocket on asyncio),
and Engine.IO 4 / Socket.IO 5 packets over a WebSocket for the two socket.io
servers (`node_sio_server.js`, `sio_server.py`). The peers do no auth, history or
presence; nyo-realtime does all three (its subscribers join public channels
here, with SQLite history on). `--jupyter` adds one more row: nyo-realtime as
the server extension of a real `jupyter server` (JWT auth with
`--Realtime.jwt_secret`, the WebSocket at `{base_url}nyo-realtime/ws`).

Per server:

* **KB per idle connection**: RSS with `--idle` more connections, each in one of
  100 rooms, minus RSS with 100 (warm-up), over `--idle`.
* **deliveries/s** and **server CPU µs per delivery**: `--subscribers` in one
  room, a publisher with at most `--window` (32) unacknowledged publishes (0:
  all written as fast as the socket takes them), `--messages` messages; CPU is
  the server's utime+stime from /proc over the phase. The table gives it also as
  a ratio to node socket.io and to node ws, measured in the same run.
* **p50 / p99** publish->receive at a fixed `--rate` messages/s to the same
  subscribers (100 x 100 = 10k deliveries/s by default).
* **storm**: the idle connections are still open; SIGTERM, restart, every client
  reconnects with the Python client's backoff (full jitter in a window of 3 s,
  doubled per failed attempt) and resubscribes: seconds until the last is back.

The load generator is one Python process on one core: above ~60-80k deliveries/s
it, not the server, is the limit (its CPU % is printed; near 100 % means so).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from connections import SECRET, make_token, proc_status  # noqa: E402
from rawws import RawSocket, raise_open_file_limit  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOMS = 100
WARMUP = 100
WINDOW = 32
RECONNECT_DELAY, MAX_RECONNECT_DELAY = 3.0, 30.0
SERVERS = ("nyo", "ws", "sio-node", "sio-py", "websockets", "picows")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class SioSocket(RawSocket):
    """Engine.IO 4 + Socket.IO 5 over a WebSocket: just what the bench uses."""

    acks = 0

    def on_text(self, payload: bytes) -> None:
        kind = payload[:1]
        if kind == b"0":  # engine.io open: connect to the default namespace
            self._write_text(b"40")
        elif kind == b"2":  # engine.io ping
            self._write_text(b"3")
        elif payload.startswith(b"40"):  # namespace connected
            if not self.hello.done():
                self.hello.set_result({"type": "authenticated"})
        elif payload.startswith(b"42"):  # an event: ["message", {...}]
            name, data = orjson.loads(payload[2:])
            if self.on_frame is not None:
                self.on_frame(self, {"type": name, **data})
        elif payload.startswith(b"43"):  # an ack: 43<id>[...]
            body = payload[2:]
            start = body.index(b"[")
            waiter = self.waiting.pop(body[:start].decode(), None)
            if waiter is not None and not waiter.done():
                waiter.set_result({"type": "ack", "args": orjson.loads(body[start:])})

    def _write_text(self, data: bytes) -> None:
        from rawws import client_frame

        self._write(client_frame(data))

    def emit(self, args: list[Any], ack: bool) -> asyncio.Future[dict[str, Any]] | None:
        if not ack:
            self._write_text(b"42" + orjson.dumps(args))
            return None
        SioSocket.acks += 1
        ref = str(SioSocket.acks)
        waiter = asyncio.get_running_loop().create_future()
        self.waiting[ref] = waiter
        self._write_text(b"42" + ref.encode() + orjson.dumps(args))
        return waiter


class Peer:
    """One server under test and how to talk to it."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.port = free_port()
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None
        self.sio = kind.startswith("sio")
        path = "/socket.io/?EIO=4&transport=websocket" if self.sio else "/ws"
        if kind == "jupyter":
            path = "/nyo-realtime/ws"
        self.url = f"ws://127.0.0.1:{self.port}{path}"

    def command(self) -> list[str]:
        if self.kind == "nyo":
            return [
                sys.executable, "-m", "nyo_realtime_ext.server", "serve", "--port",
                str(self.port), "--jwt-secret", SECRET, "--db", str(self.tmp / "nyo.db"),
                "--log-level=WARN", "--Realtime.rate_limit=0",
                "--Realtime.default_channel_type=public", "--Realtime.max_connections=20000",
            ]  # fmt: skip
        if self.kind == "jupyter":
            # The extension is enabled by jupyter-config/ (installed with the package).
            return [
                str(Path(sys.executable).with_name("jupyter")), "server", "--no-browser",
                "--allow-root", f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
                "--ServerApp.token=bench", f"--ServerApp.root_dir={self.tmp}",
                "--ServerApp.open_browser=False", "--log-level=WARN",
                f"--Realtime.jwt_secret={SECRET}", f"--Realtime.db_path={self.tmp / 'jp.db'}",
                "--Realtime.rate_limit=0", "--Realtime.default_channel_type=public",
                "--Realtime.max_connections=20000",
            ]  # fmt: skip
        if self.kind == "sio-py":
            return [sys.executable, str(HERE / "sio_server.py"), str(self.port)]
        if self.kind in ("websockets", "picows"):
            return [sys.executable, str(HERE / f"{self.kind}_server.py"), str(self.port)]
        script = "node_ws_server.js" if self.kind == "ws" else "node_sio_server.js"
        return ["node", str(HERE / script), str(self.port)]

    def start(self) -> None:
        log = open(self.tmp / f"{self.kind}.log", "a")  # noqa: SIM115 - the child keeps it
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", *self.command()], stdout=log, stderr=log, cwd=HERE
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited: {(self.tmp / f'{self.kind}.log').read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not start")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    # -- the dialects ------------------------------------------------------------------

    async def connect(self, user: str, room: str, on_frame: Any = None) -> RawSocket:
        if self.sio:
            sock: RawSocket = await SioSocket.open(self.url, on_frame)
            await asyncio.wait_for(sock.hello, 30)
            await asyncio.wait_for(sock.emit(["subscribe", room], ack=True), 30)  # type: ignore[arg-type]
            return sock
        sock = await RawSocket.open(f"{self.url}?token={make_token(user)}", on_frame)
        await asyncio.wait_for(sock.hello, 30)
        reply = await sock.request({"type": "subscribe", "channel": room})
        assert reply["type"] == "subscribed", reply
        return sock

    def publish(self, sock: RawSocket, room: str, payload: Any) -> asyncio.Future[Any]:
        if self.sio:
            data = {"channel": room, "event": "t", "payload": payload}
            return sock.emit(["broadcast", data], ack=True)  # type: ignore[attr-defined,return-value]
        # A bare future, as for socket.io: no task or timer per publish in the client.
        SioSocket.acks += 1
        ref = f"p{SioSocket.acks}"
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        sock.waiting[ref] = waiter
        sock.send(
            {"type": "broadcast", "channel": room, "event": "t", "payload": payload,
             "echo": False, "ref": ref}
        )  # fmt: skip
        return waiter


async def open_many(peer: Peer, count: int, prefix: str) -> list[RawSocket]:
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> RawSocket:
        async with gate:
            return await peer.connect(f"{prefix}{i}", f"room-{i % ROOMS}")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def settle(pid: int) -> int:
    await asyncio.sleep(2.0)
    last = proc_status(pid, "VmRSS")
    for _ in range(20):
        await asyncio.sleep(0.5)
        rss = proc_status(pid, "VmRSS")
        if abs(rss - last) < 256:
            return rss
        last = rss
    return last


async def run_peer(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"server": kind}
    with tempfile.TemporaryDirectory() as tmp:
        peer = Peer(kind, Path(tmp))
        peer.start()
        socks: list[RawSocket] = []
        try:
            # Idle connections.
            socks += await open_many(peer, WARMUP, "w")
            before = await settle(peer.pid)
            idle = await open_many(peer, args.idle, "u")
            socks += idle
            after = await settle(peer.pid)
            result["kb_idle"] = (after - before) / args.idle

            # Fan-out, saturated, then at a fixed rate.
            got: list[float] = []
            count = [0]

            def on_frame(sock: RawSocket, frame: dict[str, Any]) -> None:
                if frame.get("type") == "message":
                    count[0] += 1
                    t = frame["payload"].get("t")
                    if t is not None:
                        got.append(time.perf_counter() - t)

            subs = [await peer.connect(f"s{i}", "fan", on_frame) for i in range(args.subscribers)]
            publisher = await peer.connect("pub", "fan")
            socks += [*subs, publisher]
            expected = args.messages * args.subscribers
            # A collection of the client's thousands of objects is a 100-200 ms stall
            # of the load generator (seen as a p99 of ~200 ms for every server): none
            # while anything is timed.
            gc.collect()
            gc.freeze()
            gc.disable()
            cpu0, self0, started = process_cpu(peer.pid), process_cpu(os.getpid()), time.monotonic()
            window = asyncio.Semaphore(args.window) if args.window else None
            pending = set()
            for _ in range(args.messages):
                if window is not None:
                    await window.acquire()
                future = peer.publish(publisher, "fan", {"n": 1})
                if window is not None:
                    future.add_done_callback(lambda _: window.release())
                pending.add(future)
            await asyncio.gather(*pending)
            deadline = time.monotonic() + 60
            while count[0] < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            elapsed = time.monotonic() - started
            result["deliv_s"] = count[0] / elapsed
            result["cpu_us"] = (process_cpu(peer.pid) - cpu0) / max(count[0], 1) * 1e6
            result["client_cpu"] = (process_cpu(os.getpid()) - self0) / elapsed * 100
            result["lost"] = expected - count[0]

            got.clear()
            start = time.perf_counter()
            sent = 0
            while (now := time.perf_counter()) - start < args.seconds:
                while sent < int((now - start) * args.rate) + 1:
                    peer.publish(publisher, "fan", {"t": time.perf_counter()})
                    sent += 1
                await asyncio.sleep(0.005)
            await asyncio.sleep(1.0)
            gc.enable()  # measured: see gc.disable() above
            ms = sorted(x * 1000 for x in got)
            result["p50"] = statistics.median(ms)
            result["p99"] = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
            for waiter in publisher.waiting.values():
                waiter.cancel()  # acks still on the way: not an error, and not to be logged
            for sock in [*subs, publisher]:
                sock.abort()

            # Reconnect storm of the idle connections.
            peer.stop()
            for sock in socks:
                sock.abort()
            socks = []
            peer.start()
            restarted = time.monotonic()

            async def back(i: int) -> float:
                attempt = 0
                while True:
                    attempt += 1
                    window_s = min(MAX_RECONNECT_DELAY, RECONNECT_DELAY * 2 ** (attempt - 1))
                    await asyncio.sleep(random.random() * window_s)
                    try:
                        socks.append(await peer.connect(f"u{i}", f"room-{i % ROOMS}"))
                        return time.monotonic()
                    except (OSError, ConnectionError, asyncio.TimeoutError, AssertionError):
                        if time.monotonic() - restarted > 300:
                            raise

            result["storm_s"] = max(await asyncio.gather(*(back(i) for i in range(args.idle))))
            result["storm_s"] -= restarted
        finally:
            for sock in socks:
                sock.abort()
            peer.stop()
    print(
        f"{kind}: {result['kb_idle']:.1f} KB/idle conn, {result['deliv_s']:.0f} deliv/s, "
        f"{result['cpu_us']:.2f} server µs/deliv (client CPU {result['client_cpu']:.0f} %, "
        f"lost {result['lost']}), p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms, "
        f"storm {result['storm_s']:.1f} s",
        flush=True,
    )
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SERVERS), help=f"of {', '.join(SERVERS)}")
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--window", type=int, default=WINDOW, help="unacked publishes at most (0: no limit)"
    )
    parser.add_argument(
        "--jupyter", action="store_true", help="also nyo-realtime inside `jupyter server`"
    )
    args = parser.parse_args()
    raise_open_file_limit()
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {1})  # the servers have core 0
    kinds = args.only.split(",")
    if args.jupyter and "jupyter" not in kinds:
        kinds.append("jupyter")
    results = [await run_peer(kind, args) for kind in kinds]
    cpu = {r["server"]: r["cpu_us"] for r in results}

    def ratio(kind: str, base: str) -> str:
        return f"{cpu[kind] / cpu[base]:.2f}x" if base in cpu and cpu[base] else "-"

    print()
    how = f"≤ {args.window} unacked" if args.window else "unwindowed"
    print(f"{args.subscribers} subscribers x {args.messages} messages, publisher {how}")
    print(
        "| server | KB/idle conn | deliv/s (sat) | server CPU µs/deliv | / node socket.io "
        "| / node ws | p50 ms | p99 ms | storm s |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        kind = r["server"]
        print(
            f"| {kind} | {r['kb_idle']:.1f} | {r['deliv_s'] / 1000:.1f}k | "
            f"{r['cpu_us']:.2f} | {ratio(kind, 'sio-node')} | {ratio(kind, 'ws')} | "
            f"{r['p50']:.2f} | {r['p99']:.2f} | {r['storm_s']:.1f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
