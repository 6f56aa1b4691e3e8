"""A real Redis Cluster for tests: three masters and three replicas on loopback.

Six `redis-server --cluster-enabled yes`, each on a free port with its own
directory, joined by `redis-cli --cluster create ... --cluster-replicas 1`; ready
once every node's `cluster info` says `cluster_state:ok`. Started once per test
session (tests/conftest.py's `redis_cluster`): tests share it under prefixes of
their own, as nodes of different deployments share one Redis.

A Sentinel set (`SentinelSet`): a master, a replica and three sentinels watching it.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from .redis_server import free_port

# How long a master may be unreachable before its replica is promoted: short, so a
# failover test waits seconds, not the default 15.
NODE_TIMEOUT_MS = 1000


def ask(port: int, *command: str, timeout: float = 5.0) -> str:
    """One command through redis-cli, its output as text ('' if it failed)."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *command], capture_output=True, text=True, timeout=timeout
    )
    return out.stdout if out.returncode == 0 else ""


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is free too; at most 55535."""
    while True:
        port = random.randint(20000, 55535)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


class _Process:
    """One redis-server (or sentinel) process on a port of its own."""

    def __init__(self, directory: Path, args: list[str], port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> _Process:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, *self.args, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.directory), "--logfile", str(self.directory / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: answers(self.port), f"redis on {self.port}", 20)
        return self

    def kill(self) -> None:
        """kill -9: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RedisCluster:
    """Three masters, each with a replica (`--cluster-replicas 1`)."""

    def __init__(self, directory: Path, size: int = 6) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.nodes = [
            _Process(
                directory / f"node{i}",
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    str(NODE_TIMEOUT_MS),
                    "--cluster-config-file",
                    "nodes.conf",
                    *persistence,
                ],
                free_cluster_port(),
            )  # fmt: skip
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])
        return f"redis+cluster://{hosts}"

    def start(self) -> RedisCluster:
        assert shutil.which("redis-cli"), "redis-cli is not installed"
        for node in self.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Every live node says the cluster is ok, and agrees on three masters."""

        def ok() -> bool:
            live = [n for n in self.nodes if n.alive]
            return all("cluster_state:ok" in ask(n.port, "cluster", "info") for n in live) and all(
                len(self.masters(n.port)) == 3 for n in live
            )

        wait_for(ok, "cluster_state:ok on every node", timeout)

        def synced() -> bool:
            # Every replica has its master's data: a failover test kills a master.
            replicas = [n for n in self.nodes if n.alive and n.port not in self.masters()]
            return all(
                "master_link_status:up" in ask(n.port, "info", "replication") for n in replicas
            )

        wait_for(synced, "every replica in sync with its master", timeout)

    def wait_failover(self, port: int, timeout: float = 60.0) -> None:
        """The master on `port` (killed) was replaced: three masters serve, none on it."""

        def replaced() -> bool:
            live = [n for n in self.nodes if n.alive]
            return all(
                "cluster_state:ok" in ask(n.port, "cluster", "info")
                and len(self.masters(n.port)) == 3
                and port not in self.masters(n.port)
                for n in live
            )

        wait_for(replaced, f"a replica took over from {port}", timeout)

    def masters(self, via: int | None = None) -> list[int]:
        """Ports of the masters that serve slots, as a live node sees them."""
        port = via or next(n.port for n in self.nodes if n.alive)
        masters = []
        for line in ask(port, "cluster", "nodes").splitlines():
            fields = line.split()
            if len(fields) > 8 and "master" in fields[2] and "fail" not in fields[2]:
                masters.append(int(fields[1].split("@")[0].rpartition(":")[2]))
        return sorted(masters)

    def node(self, port: int) -> _Process:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


class SentinelSet:
    """A master, its replica and three sentinels that watch it as `service`."""

    def __init__(self, directory: Path, service: str = "nyo") -> None:
        self.service = service
        persistence = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.master = _Process(directory / "master", persistence)
        self.replica = _Process(directory / "replica", persistence)
        self.sentinels: list[_Process] = []
        self.directory = directory

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self) -> SentinelSet:
        self.master.start()
        self.replica.args += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        for i in range(3):
            port = free_port()
            directory = self.directory / f"sentinel{i}"
            directory.mkdir(parents=True, exist_ok=True)
            config = directory / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.service} 1000\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
            sentinel = _Process(directory, [str(config), "--sentinel"], port)
            self.sentinels.append(sentinel.start())
        wait_for(
            lambda: (
                "slaves=1" in ask(self.sentinels[0].port, "info", "sentinel")
                and "sentinels=3" in ask(self.sentinels[0].port, "info", "sentinel")
            ),
            "the sentinels know the replica and each other",
        )
        return self

    def master_port(self) -> int:
        out = ask(self.sentinels[0].port, "sentinel", "get-master-addr-by-name", self.service)
        lines = out.split()
        return int(lines[1]) if len(lines) > 1 else 0

    def stop(self) -> None:
        for process in (*self.sentinels, self.master, self.replica):
            process.kill()
