"""Many idle connections on one server: memory per connection, and reconnect storms.

    .venv/bin/python bench/connections.py                      # 3000 connections, KB each
    .venv/bin/python bench/connections.py --baseline /tmp/old  # the same for another
                                                               # checkout, in the same run
    .venv/bin/python bench/connections.py -n 5000 --storm      # SIGTERM, restart, time to all back
    .venv/bin/python bench/connections.py -n 10000 --hold 180  # held with heartbeats

Starts `nyo-realtime serve` (its code from this checkout, or from `--baseline DIR`
through PYTHONPATH) with a JWT secret and a database in a temporary directory,
then from this one process opens raw WebSocket connections (`rawws.py`: one
asyncio Protocol each, so 10,000 fit), each a different user authenticated by
the token in its URL and subscribed to one of `--channels` presence channels.

KB per connection = (server RSS with warm-up + N connections − RSS with the
warm-up connections only) / N, from /proc/PID/status: the warm-up (100
connections, same channels) pays for what is made once (imports, caches,
channel state), so the figure is what one more connection costs.

`--storm`: after the measurement every channel gets one message, the server is
stopped with SIGTERM and started again on the same port and database; every
client reconnects with the Python client's policy (full jitter in a window of 3 s
that doubles per failed attempt, at most 30 s) and resubscribes with `since` =
the last id it saw. Reported: seconds from the restart until the last client is
subscribed again, and whether every one was `recovered`; the restarted server's
peak RSS (VmHWM).

`--profile PREFIX`: record the server with py-spy (`pip install py-spy`; not a
dependency) while the N connections are admitted and during the storm, into
PREFIX-<label>-<phase>.txt (collapsed stacks); `bench/pyspy_top.py FILE` sums them.

`--hold S`: keep the connections S seconds, each sending `ping` every 25 s (the
client's heartbeat), then publish one message per channel and count deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawws import RawSocket, raise_open_file_limit  # noqa: E402

SECRET = "bench-secret-that-is-long-enough-for-hs256!"
WARMUP = 100
CONCURRENT = 200  # handshakes in flight at once
RECONNECT_DELAY, MAX_RECONNECT_DELAY = 3.0, 30.0  # the Python client's policy
HEARTBEAT = 25.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token(sub: str) -> str:
    import jwt

    return jwt.encode({"sub": sub, "name": sub}, SECRET, algorithm="HS256")


def proc_status(pid: int, field: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class Server:
    def __init__(self, tmp: Path, source: str | None, max_connections: int, extra: list[str]):
        self.port = free_port()
        self.db = tmp / "bench.db"
        self.log_path = tmp / "server.log"
        self.source = source
        self.args = [
            sys.executable, "-m", "nyo_realtime_ext.server", "serve", "--port", str(self.port),
            "--jwt-secret", SECRET, "--db", str(self.db), "--log-level=WARN",
            f"--Realtime.max_connections={max_connections}", *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.source:  # the checkout to measure comes first on the path
            env["PYTHONPATH"] = self.source
        with open(self.log_path, "a") as log:
            # `-m` puts the working directory first on the path: the source's own.
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=log, env=env, cwd=self.source or tempfile.gettempdir()
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start within 30 s")

    def module_path(self) -> str:
        """Where the server imported nyo_realtime_ext from (so a baseline is one)."""
        maps = Path(f"/proc/{self.pid}/cwd").resolve()
        out = subprocess.run(
            [sys.executable, "-c", "import nyo_realtime_ext; print(nyo_realtime_ext.__file__)"],
            cwd=maps, env={**os.environ, "PYTHONPATH": self.source or ""},
            capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout.strip()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Profile:
    """py-spy recording a process until `stop` (nothing when no prefix is given)."""

    def __init__(self, prefix: str | None, label: str, phase: str, pid: int) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if prefix:
            out = f"{prefix}-{label.replace(' ', '-')}-{phase}.txt"
            self.process = subprocess.Popen(
                ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                 "--nonblocking", "--output", out],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # attached before the phase starts

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            self.process.wait(timeout=60)


class Client:
    """One user on one presence channel; reconnects as the Python client does."""

    __slots__ = ("user", "channel", "sock", "last_id", "seen", "duplicates", "recovered")

    def __init__(self, user: str, channel: str) -> None:
        self.user, self.channel = user, channel
        self.sock: RawSocket | None = None
        self.last_id: str | None = None
        self.seen: set[str] = set()
        self.duplicates = 0
        self.recovered: bool | None = None

    def on_frame(self, sock: RawSocket, frame: dict[str, Any]) -> None:
        if frame.get("type") == "message":
            message_id = frame["id"]
            if message_id in self.seen:
                self.duplicates += 1
            self.seen.add(message_id)
            self.last_id = message_id

    async def connect(self, url: str) -> None:
        sock = await RawSocket.open(f"{url}?token={make_token(self.user)}", self.on_frame)
        hello = await sock.hello
        if hello.get("type") != "authenticated":
            sock.abort()
            raise ConnectionError(f"not authenticated: {hello}")
        frame: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
        if self.last_id is not None:
            frame["since"] = self.last_id
        reply = await sock.request(frame)
        if reply.get("type") != "subscribed":
            sock.abort()
            raise ConnectionError(f"not subscribed: {reply}")
        if "recovered" in reply:
            self.recovered = reply["recovered"]
        self.sock = sock

    async def reconnect(self, url: str, deadline: float) -> float:
        """Back with backoff and full jitter; returns when (monotonic)."""
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            window = min(MAX_RECONNECT_DELAY, RECONNECT_DELAY * 2 ** (attempt - 1))
            await asyncio.sleep(random.random() * window)
            try:
                await self.connect(url)
                return time.monotonic()
            except (OSError, ConnectionError, asyncio.TimeoutError):
                continue
        raise TimeoutError(f"{self.user} did not come back")


async def open_all(clients: list[Client], url: str) -> None:
    gate = asyncio.Semaphore(CONCURRENT)

    async def one(client: Client) -> None:
        async with gate:
            await client.connect(url)

    await asyncio.gather(*(one(c) for c in clients))


async def settle(pid: int, seconds: float = 3.0) -> int:
    """RSS once it stops moving (the server finishes its joins), in kB."""
    await asyncio.sleep(1.0)
    last, stable_since = proc_status(pid, "VmRSS"), time.monotonic()
    while time.monotonic() - stable_since < seconds:
        await asyncio.sleep(0.5)
        rss = proc_status(pid, "VmRSS")
        if abs(rss - last) > 256:
            last, stable_since = rss, time.monotonic()
    return proc_status(pid, "VmRSS")


async def publish_each(clients: list[Client], channels: list[str], tag: str) -> None:
    """One message per channel, sent by one of its subscribers."""
    by_channel = {}
    for client in clients:
        by_channel.setdefault(client.channel, client)
    for name in channels:
        sock = by_channel[name].sock
        assert sock is not None
        reply = await sock.request(
            {"type": "broadcast", "channel": name, "event": "bench", "payload": {"t": tag}}
        )
        assert reply.get("type") == "ack", reply


async def wait_deliveries(clients: list[Client], expected: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = sum(len(c.seen) for c in clients)
        if got >= expected:
            return got
        await asyncio.sleep(0.2)
    return sum(len(c.seen) for c in clients)


async def measure(args: argparse.Namespace, source: str | None, label: str) -> dict[str, Any]:
    result: dict[str, Any] = {"label": label}
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp), source, args.connections + WARMUP + 100, args.server_arg)
        server.start()
        print(f"{label}: server code from {server.module_path()}", flush=True)
        channels = [f"presence-bench-{i}" for i in range(args.channels)]
        warm = [Client(f"w{i}", channels[i % len(channels)]) for i in range(WARMUP)]
        clients = [Client(f"u{i}", channels[i % len(channels)]) for i in range(args.connections)]
        try:
            await open_all(warm, server.url)
            before = await settle(server.pid)
            profile = Profile(args.profile, label, "connect", server.pid)
            started = time.monotonic()
            await open_all(clients, server.url)
            result["connect_s"] = time.monotonic() - started
            profile.stop()
            after = await settle(server.pid)
            result["rss_before_kb"], result["rss_after_kb"] = before, after
            result["kb_per_conn"] = (after - before) / args.connections
            print(
                f"{label}: {args.connections} connections in {result['connect_s']:.1f} s; "
                f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MB: "
                f"{result['kb_per_conn']:.2f} KB per connection",
                flush=True,
            )
            everyone = warm + clients
            if args.hold:
                await hold(everyone, args.hold, server.pid)
            if args.hold or args.storm:
                await publish_each(everyone, channels, "before")
                got = await wait_deliveries(everyone, len(everyone))
                result["fanout_ok"] = got == len(everyone)
                print(f"{label}: fan-out reached {got} of {len(everyone)}", flush=True)
            if args.storm:
                result.update(await storm(server, everyone, channels, label, args.profile))
        finally:
            for client in warm + clients:
                if client.sock is not None:
                    client.sock.abort()
            server.stop()
    return result


async def hold(clients: list[Client], seconds: float, pid: int) -> None:
    """Heartbeats as the client sends them, spread over the interval."""
    end = time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < end:
        for i, client in enumerate(clients):
            if client.sock is not None and i % int(HEARTBEAT) == int(time.monotonic()) % int(
                HEARTBEAT
            ):
                client.sock.send({"type": "ping"})
        await asyncio.sleep(1.0)
        alive = sum(1 for c in clients if c.sock is not None and not c.sock.closed.done())
        if int(time.monotonic() - started) % 30 == 0:
            rss = proc_status(pid, "VmRSS") / 1024
            print(f"  held {time.monotonic() - started:.0f} s: {alive} open, RSS {rss:.0f} MB")
    alive = sum(1 for c in clients if c.sock is not None and not c.sock.closed.done())
    print(f"held {seconds:.0f} s: {alive} of {len(clients)} connections still open", flush=True)


async def storm(
    server: Server, clients: list[Client], channels: list[str], label: str, prefix: str | None
) -> dict[str, Any]:
    server.stop(signal.SIGTERM)
    await asyncio.gather(*(c.sock.closed for c in clients if c.sock is not None))
    for client in clients:
        client.sock = None
    server.start()
    restarted = time.monotonic()
    profile = Profile(prefix, label, "storm", server.pid)
    backs = await asyncio.gather(*(c.reconnect(server.url, restarted + 300) for c in clients))
    last = max(backs) - restarted
    profile.stop()
    hwm = proc_status(server.pid, "VmHWM")
    recovered = sum(1 for c in clients if c.recovered)
    await publish_each(clients, channels, "after")
    got = await wait_deliveries(clients, 2 * len(clients))
    duplicates = sum(c.duplicates for c in clients)
    print(
        f"{label}: storm: last of {len(clients)} back {last:.1f} s after the restart; "
        f"{recovered} recovered; peak RSS {hwm / 1024:.0f} MB; after it {got} of "
        f"{2 * len(clients)} messages, {duplicates} duplicates",
        flush=True,
    )
    return {"storm_s": last, "storm_hwm_kb": hwm, "recovered": recovered, "dups": duplicates}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--connections", type=int, default=3000)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--baseline", help="another checkout to measure first, same run")
    parser.add_argument("--storm", action="store_true")
    parser.add_argument("--hold", type=float, default=0.0)
    parser.add_argument("--profile", metavar="PREFIX", help="py-spy the server into PREFIX-*")
    parser.add_argument(
        "--server-arg", action="append", default=[], help="one more argument for the server"
    )
    args = parser.parse_args()
    limit = raise_open_file_limit()
    if limit < args.connections + WARMUP + 100:
        sys.exit(f"open-file limit {limit} is too low for {args.connections} connections")
    results = []
    if args.baseline:
        results.append(await measure(args, str(Path(args.baseline).resolve()), "baseline"))
    results.append(await measure(args, None, "this checkout"))
    if len(results) == 2:
        old, new = results
        print(f"KB/connection: this / baseline = {new['kb_per_conn'] / old['kb_per_conn']:.2f}")
        if "storm_s" in old:
            print(f"storm time: this / baseline = {new['storm_s'] / old['storm_s']:.2f}")
            print(f"storm VmHWM: this / baseline = {new['storm_hwm_kb'] / old['storm_hwm_kb']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
