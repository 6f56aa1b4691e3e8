"""nyo-realtime beside its peers: node `ws`, node socket.io, python-socketio,
Python `websockets` and `picows`.

    (cd bench && npm install)             # ws and socket.io, into bench/node_modules
    pip install -e '.[bench]'             # python-socketio, aiohttp, picows
    .venv/bin/python bench/peers.py       # all six; ~5 minutes on a quiet 2-core box
    .venv/bin/python bench/peers.py --only nyo,ws --idle 3000
    .venv/bin/python bench/peers.py --jupyter             # + nyo-realtime in jupyter server
    .venv/bin/python bench/peers.py --mode mixed          # nyo, ws, socket.io: compare.py's mixed load

Each server runs alone, pinned to core 0 (`taskset -c 0`); this process, the
load generator, pins itself to core 1. The clients are `rawws.RawSocket`s, one
asyncio Protocol each, speaking each server's dialect: nyo-realtime's frames
(token in the URL, `subscribe`, `broadcast` with `echo: false`), the same frames
for `node_ws_server.js`, `websockets_server.py` (`websockets.asyncio.server` and
its `broadcast()`) and `picows_server.py` (picows, a Cython WebSocket on asyncio),
and Engine.IO 4 / Socket.IO 5 packets over a WebSocket for the two socket.io
servers (`node_sio_server.js`, `sio_server.py`). The peers do no auth, history or
presence; nyo-realtime does all three (its fan-out subscribers join a public
channel, its idle ones presence channels, with SQLite history on). `--jupyter`
adds one more row: nyo-realtime as the server extension of a real
`jupyter-server` (JWT auth with `--Realtime.jwt_secret`, the WebSocket at
`{base_url}nyo-realtime/ws`, JUPYTER_CONFIG_DIR and JUPYTER_RUNTIME_DIR in the
temp dir), ready once `/nyo-realtime/settings` answers 200 (up to
`--start-timeout`, 300 s; otherwise an error with the command and the tail of
its log, and the other servers' rows are still printed), and a table of
jupyter / standalone (`nyo`): server CPU per delivery and KB per idle connection.

Per server:

* **KB per idle connection**: bench/connections.py's method and clients: RSS
  with `--idle` more connections, each in one of 100 presence channels (rooms of
  that name for the peers), minus RSS with 100 (warm-up), over `--idle`, once RSS
  stops moving.
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

`--mode mixed` runs instead `loads.mixed`, the load of `compare.py --mode mixed`
(100 presence channels x 20 subscribers, 50 publishers, `--rate` 20,000
deliveries/s for `--seconds` 10), against `nyo`, `ws` and `sio-node` (`--only`;
`--jupyter` adds `jupyter`), a fresh server per round, `--rounds` (2) rounds
alternating: server CPU µs per delivery, p50/p99, deliveries/s, and each
server's median over node ws's. node ws and socket.io have no presence: their
channels are plain rooms of the same names and members.

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
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import loads  # noqa: E402
from connections import SECRET, Client, make_token, open_all, settle  # noqa: E402
from loads import Meter, Sub, cpu_seconds, wait_quiet  # noqa: E402
from rawws import RawSocket, client_frame, raise_open_file_limit  # noqa: E402

ROOMS = 100  # idle connections: in ROOMS presence channels, as bench/connections.py
WARMUP = 100
WINDOW = 32
RECONNECT_DELAY, MAX_RECONNECT_DELAY = 3.0, 30.0
SERVERS = ("nyo", "ws", "sio-node", "sio-py", "websockets", "picows")
MIXED_SERVERS = ("nyo", "ws", "sio-node")
PRESENCE = ("nyo", "jupyter")  # the others have rooms, no presence
START_TIMEOUT = 30.0  # s for a server to listen; --start-timeout for jupyter server
LOG_TAIL = 40  # lines of a server's log in the error when it does not start


def room(i: int) -> str:
    return f"presence-bench-{i % ROOMS}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class SioSub(SioSocket, Sub):
    """A socket.io subscriber counting `message` events as `loads.Sub` does."""

    def on_text(self, payload: bytes) -> None:
        if self.hello.done() and payload.startswith(b'42["message"'):
            self.count_message(payload)
            return
        SioSocket.on_text(self, payload)


class SioDialect:
    """The mixed load (`loads.mixed`) over Socket.IO: rooms joined with `subscribe`."""

    @staticmethod
    async def connect(url: str, user: str, channels: list[str]) -> Sub:
        sock = await SioSub.open(url)
        await asyncio.wait_for(sock.hello, 30)
        for channel in channels:
            await asyncio.wait_for(sock.emit(["subscribe", channel], ack=True), 30)  # type: ignore[arg-type]
        return sock

    @staticmethod
    def publish(sock: Sub, channel: str, payload: Any, waiter: bool) -> asyncio.Future[Any] | None:
        # Always with an ack id, as the other dialects' ref: every server acks each publish.
        SioSocket.acks += 1
        ref = str(SioSocket.acks)
        future = None
        if waiter:
            future = asyncio.get_running_loop().create_future()
            sock.waiting[ref] = future
        data = {"channel": channel, "event": "t", "payload": payload}
        sock._write(client_frame(b"42" + ref.encode() + orjson.dumps(["broadcast", data])))
        return future


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
        self.log_path = tmp / f"{kind}.log"
        self.start_timeout = START_TIMEOUT
        self.started_in = 0.0

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
            # `jupyter-server` itself, not `jupyter server`: the PID measured is the server's.
            return [
                str(Path(sys.executable).with_name("jupyter-server")), "--no-browser",
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

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.kind == "jupyter":
            # Nothing from the user's ~/.jupyter (config, runtime files): only the
            # installed jupyter-config and the flags above.
            for name in ("CONFIG", "RUNTIME"):
                env[f"JUPYTER_{name}_DIR"] = str(self.tmp / f"jupyter-{name.lower()}")
        return env

    def ready(self) -> bool:
        if self.kind != "jupyter":
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False
        # Listening is not enough: the extension's own route must answer (404 until
        # it is loaded, or for good when it failed to load).
        url = f"http://127.0.0.1:{self.port}/nyo-realtime/settings?token=bench"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    {line}" for line in lines[-LOG_TAIL:]) or "    (empty log)"

    def start(self) -> None:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child keeps it
        command = ["taskset", "-c", "0", *self.command()]
        began = time.monotonic()
        self.process = subprocess.Popen(command, stdout=log, stderr=log, cwd=HERE, env=self.env())
        while (waited := time.monotonic() - began) < self.start_timeout:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.process.returncode} after {waited:.1f} s; "
                    f"command: {' '.join(command)}\nlast lines of {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            if self.ready():
                self.started_in = waited
                return
            time.sleep(0.1 if self.kind == "jupyter" else 0.05)
        self.stop()
        what = (
            "its /nyo-realtime/settings route did not answer 200"
            if self.kind == "jupyter"
            else "it did not listen"
        )
        raise RuntimeError(
            f"{self.kind} did not start within {self.start_timeout:.0f} s ({what}; "
            f"--start-timeout to wait longer); command: {' '.join(command)}\n"
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

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


async def open_idle(peer: Peer, count: int, prefix: str) -> list[RawSocket]:
    """`count` idle connections, user `{prefix}{i}` in `room(i)`: bench/connections.py's
    clients (token in the URL, a presence channel each) for every server speaking
    nyo-realtime's frames; socket.io's joins the room of that name."""
    if not peer.sio:
        clients = [Client(f"{prefix}{i}", room(i)) for i in range(count)]
        await open_all(clients, peer.url)
        return [c.sock for c in clients if c.sock is not None]
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> RawSocket:
        async with gate:
            return await peer.connect(f"{prefix}{i}", room(i))

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def make_peer(kind: str, tmp: Path, args: argparse.Namespace) -> Peer:
    peer = Peer(kind, tmp)
    if kind == "jupyter":
        peer.start_timeout = args.start_timeout
    return peer


async def run_peer(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"server": kind}
    with tempfile.TemporaryDirectory() as tmp:
        peer = make_peer(kind, Path(tmp), args)
        peer.start()
        if kind == "jupyter":
            print(f"jupyter: jupyter server ready in {peer.started_in:.1f} s", flush=True)
        socks: list[RawSocket] = []
        try:
            # Idle connections: bench/connections.py's method (warm-up, then RSS delta).
            socks += await open_idle(peer, WARMUP, "w")
            before = await settle(peer.pid)
            idle = await open_idle(peer, args.idle, "u")
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
            cpu0, self0, started = cpu_seconds(peer.pid), cpu_seconds(os.getpid()), time.monotonic()
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
            result["cpu_us"] = (cpu_seconds(peer.pid) - cpu0) / max(count[0], 1) * 1e6
            result["client_cpu"] = (cpu_seconds(os.getpid()) - self0) / elapsed * 100
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
                        socks.append(await peer.connect(f"u{i}", room(i)))
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


async def mixed_round(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One server, fresh, under `loads.mixed` (the load of `compare.py --mode mixed`)."""
    waited = wait_quiet(args.wait_quiet)
    with tempfile.TemporaryDirectory() as tmp:
        peer = make_peer(kind, Path(tmp), args)
        peer.start()
        try:
            dialect = SioDialect() if peer.sio else loads.NYO
            result = await loads.mixed([peer.url], Meter([peer], None), args, dialect)
        finally:
            peer.stop()
    result["server"], result["waited"] = kind, waited
    return result


def channels_of(kind: str) -> str:
    return "presence" if kind in PRESENCE else "rooms (no presence)"


async def run_mixed(kinds: list[str], args: argparse.Namespace) -> None:
    print(
        f"mixed: {loads.MIX_CHANNELS} channels x {loads.MIX_MEMBERS} subscribers, "
        f"{loads.MIX_PUBLISHERS} publishers, {args.rate:.0f} deliveries/s for "
        f"{args.seconds:.0f} s, payload {args.size} B; {args.rounds} round(s), servers "
        f"alternating. nyo-realtime's channels are presence channels; node ws and socket.io "
        f"have no presence: theirs are plain rooms of the same names and members."
    )
    print()
    cols = ["round", "channels", "server µs/deliv", "deliv/s", "p50 ms", "p99 ms",
            "server CPU %", "client CPU %", "other CPU %", "lost"]  # fmt: skip
    print("| " + " | ".join(cols) + " |\n|---|---|" + "--:|" * (len(cols) - 2), flush=True)
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for n in range(1, args.rounds + 1):
        for kind in kinds:
            r = await mixed_round(kind, args)
            results[kind].append(r)
            print(
                f"| {kind} #{n} | {channels_of(kind)} | {r['us']:.2f} | "
                f"{r['deliv_s'] / 1000:.1f}k | {r['p50']:.2f} | {r['p99']:.2f} | "
                f"{r['server_pct']:.0f} | {r['client_pct']:.0f} | {r['other_pct']:.0f} | "
                f"{r['lost']} |",
                flush=True,
            )
    med = {
        kind: {
            key: statistics.median(r[key] for r in rs) for key in ("us", "p50", "p99", "deliv_s")
        }
        for kind, rs in results.items()
    }

    def ratio(kind: str, key: str) -> str:
        return f"{med[kind][key] / med['ws'][key]:.2f}x" if "ws" in med else "-"

    print()
    print(f"median of {args.rounds} round(s) per server:")
    print(
        "| server | channels | server CPU µs/deliv | / node ws | p50 ms | p99 ms | p99 / node ws "
        "| deliv/s | other CPU % |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for kind, m in med.items():
        other = statistics.median(r["other_pct"] for r in results[kind])
        print(
            f"| {kind} | {channels_of(kind)} | {m['us']:.2f} | {ratio(kind, 'us')} | "
            f"{m['p50']:.2f} | {m['p99']:.2f} | {ratio(kind, 'p99')} | "
            f"{m['deliv_s'] / 1000:.1f}k | {other:.0f} |"
        )
    if "nyo" in med and "ws" in med:
        print()
        print(
            f"nyo / node ws: {med['nyo']['us'] / med['ws']['us']:.2f}x server CPU per delivery, "
            f"{med['nyo']['p99'] / med['ws']['p99']:.2f}x p99 (issue 18 asks for at most 1.00x "
            f"each; nyo does presence, auth and history, node ws none of them)"
        )
    noisy = sum(1 for rs in results.values() for r in rs if r["other_pct"] > 10)
    if noisy:
        print(f"note: {noisy} round(s) had other CPU above 10 % of a core: the box was shared")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        choices=("all", "mixed"),
        default="all",
        help="all: idle memory, fan-out, latency, storm; mixed: compare.py's mixed load",
    )
    parser.add_argument(
        "--only",
        help=f"of {', '.join(SERVERS)} (default: all of them; --mode mixed: "
        f"{','.join(MIXED_SERVERS)})",
    )
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument(
        "--rate",
        type=float,
        help="all: messages/s of the latency phase (100); mixed: deliveries/s (20000)",
    )
    parser.add_argument(
        "--seconds", type=float, help="latency phase (all: 5) or measured phase (mixed: 10)"
    )
    parser.add_argument("--size", type=int, default=100, help="mixed: payload bytes")
    parser.add_argument("--rounds", type=int, default=2, help="mixed: rounds per server")
    parser.add_argument(
        "--wait-quiet", type=float, default=5.0, help="mixed: s to wait for an idle machine"
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=300.0,
        help="s to wait for jupyter server to start (a loaded box can take minutes)",
    )
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
    mixed = args.mode == "mixed"
    if args.rate is None:
        args.rate = 20000.0 if mixed else 100.0
    if args.seconds is None:
        args.seconds = 10.0 if mixed else 5.0
    kinds = (args.only or ",".join(MIXED_SERVERS if mixed else SERVERS)).split(",")
    if args.jupyter:
        if "nyo" not in kinds:
            kinds.insert(0, "nyo")  # the standalone figures it is compared with
        if "jupyter" not in kinds:
            kinds.append("jupyter")
    if mixed:
        await run_mixed(kinds, args)
        return
    results, failed = [], []
    for kind in kinds:
        try:
            results.append(await run_peer(kind, args))
        except RuntimeError as e:  # a server that did not start: say why, go on with the rest
            print(f"{kind}: FAILED: {e}", file=sys.stderr, flush=True)
            failed.append(kind)
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
    by = {r["server"]: r for r in results}
    if "jupyter" in by and "nyo" in by:
        jp, nyo = by["jupyter"], by["nyo"]
        print()
        print(
            "| under jupyter server / standalone | jupyter | standalone | ratio | issue 18 asks |"
        )
        print("|---|--:|--:|--:|---|")
        print(
            f"| server CPU µs/deliv | {jp['cpu_us']:.2f} | {nyo['cpu_us']:.2f} | "
            f"{jp['cpu_us'] / nyo['cpu_us']:.2f}x | ≤ 1.5x |"
        )
        print(
            f"| KB/idle conn ({args.idle}, {ROOMS} presence channels) | {jp['kb_idle']:.1f} | "
            f"{nyo['kb_idle']:.1f} | {jp['kb_idle'] / nyo['kb_idle']:.2f}x | ≤ 8 KB under Jupyter |"
        )
        print(
            f"| p99 ms at {args.rate:.0f} msg/s x {args.subscribers} | {jp['p99']:.2f} | "
            f"{nyo['p99']:.2f} | {jp['p99'] / nyo['p99']:.2f}x | - |"
        )
    if failed:
        sys.exit(f"did not run: {', '.join(failed)} (see the errors above)")


if __name__ == "__main__":
    asyncio.run(main())
